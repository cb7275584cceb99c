/* The consumer's account of its commits, kept here or forwarded (see bench_tally.h). */
#include "bench_tally.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

/* A transaction goes through the pipe in one write no larger than PIPE_BUF: atomic, so the
 * supervisor never sees half of one from a consumer that was killed while writing it. */
_Static_assert(BENCH_TALLY_BATCH * sizeof(bench_tally_event) <= PIPE_BUF,
               "a transaction must fit one atomic pipe write");

void bench_tally_init(bench_tally *t, long events, int timed) {
  memset(t, 0, sizeof *t);
  bench_seen_init(&t->seen, events);
  t->timed = timed;
  if (timed) bench_latency_init(&t->lat, events);
  t->forward_fd = -1;
}

void bench_tally_forward(bench_tally *t, int fd) {
  memset(t, 0, sizeof *t);
  t->forward_fd = fd;
}

static void forward(bench_tally *t, const bench_tally_event *e, int n) {
  size_t len = (size_t)n * sizeof *e;
  ssize_t w;
  do w = write(t->forward_fd, e, len);
  while (w < 0 && errno == EINTR);
  if (w != (ssize_t)len) bench_fail("reporting to the supervisor: %s", strerror(errno));
}

void bench_tally_ready(bench_tally *t) {
  bench_tally_event notice = {.index = -1, .sent = 0, .received = 0, .committed = 0};
  forward(t, &notice, 1);
}

void bench_tally_stored(bench_tally *t, long index, const void *payload, int len,
                        double received) {
  if (t->n == BENCH_TALLY_BATCH) bench_fail("more than %d events in a transaction", t->n);
  bench_tally_event *e = &t->batch[t->n++];
  e->index = index;
  e->sent = -1;
  e->received = received;
  /* The pipeline workload has no use for the send time: don't parse it. */
  if (t->timed || t->forward_fd >= 0) {
    e->sent = bench_payload_sent(payload, (size_t)len);
    if (e->sent < 0) bench_fail("an event without a send time");
  }
}

static void account(bench_tally *t, const bench_tally_event *e) {
  if (bench_seen_add(&t->seen, e->index) && t->timed)
    bench_latency_add(&t->lat, e->received - e->sent);
  if (t->committed > 0 && e->committed - t->last_commit > t->max_gap)
    t->max_gap = e->committed - t->last_commit;
  t->last_commit = e->committed;
  t->committed++;
}

void bench_tally_committed(bench_tally *t, double when) {
  for (int k = 0; k < t->n; k++) t->batch[k].committed = when;
  if (t->forward_fd >= 0) {
    if (t->n > 0) forward(t, t->batch, t->n);
  } else {
    for (int k = 0; k < t->n; k++) account(t, &t->batch[k]);
  }
  t->n = 0;
}

long bench_tally_receive(bench_tally *t, int fd) {
  ssize_t n;
  do n = read(fd, t->inbox + t->inbox_len, sizeof t->inbox - t->inbox_len);
  while (n < 0 && errno == EINTR);
  if (n == 0 && t->inbox_len > 0) bench_fail("a consumer's report ended inside a record");
  if (n <= 0) return (long)n;
  t->inbox_len += (size_t)n;
  size_t whole = t->inbox_len / sizeof(bench_tally_event);
  for (size_t k = 0; k < whole; k++) {
    bench_tally_event e;
    memcpy(&e, t->inbox + k * sizeof e, sizeof e); /* the buffer has no alignment to speak of */
    if (e.index < 0)
      t->ready++;
    else
      account(t, &e);
  }
  t->inbox_len -= whole * sizeof(bench_tally_event);
  memmove(t->inbox, t->inbox + whole * sizeof(bench_tally_event), t->inbox_len);
  return (long)n;
}

void bench_tally_free(bench_tally *t) {
  bench_seen_free(&t->seen);
  if (t->timed) bench_latency_free(&t->lat);
}
