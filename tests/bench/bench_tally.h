/* The consumer's account of what it committed, kept a transaction at a time: which events
 * arrived (a second delivery of one is a duplicate), how long each took from its send to the
 * consumer's read that brought it (where choreo's latency ends too: its handler's first line),
 * and the longest wait between two COMMITs. The consumer of the pipeline and latency workloads
 * keeps its account itself. A consumer process of the restart workload forwards each committed
 * transaction through a pipe to the process that supervises it, which keeps one account across
 * all the consumer processes of the run. */
#ifndef BENCH_TALLY_H
#define BENCH_TALLY_H

#include <stddef.h>

#include "bench_latency.h"
#include "bench_util.h"

/* The most events one transaction may hold. */
#define BENCH_TALLY_BATCH 100

/* One event of a committed transaction, also as it travels through the pipe. */
typedef struct bench_tally_event {
  long index;       /* the event's index; -1 for the "ready" notice (bench_tally_ready) */
  double sent;      /* its send time (bench_payload_stamped); -1 when the account needs none */
  double received;  /* bench_now() when the read that brought it returned, before the BEGIN */
  double committed; /* bench_now() right after the COMMIT that holds it returned */
} bench_tally_event;

typedef struct bench_tally {
  bench_seen seen;      /* first deliveries */
  bench_latency lat;    /* their latencies, if `timed` */
  int timed;            /* the latency and restart workloads: keep each event's latency */
  long committed;       /* events accounted for, duplicates included */
  double last_commit;   /* the latest commit, once `committed` > 0 */
  double max_gap;       /* the longest time between the commits of two consecutive events */
  int forward_fd;       /* >= 0: a consumer process, forwarding to its supervisor */
  int ready;            /* "ready" notices received */
  bench_tally_event batch[BENCH_TALLY_BATCH]; /* the open transaction's events */
  int n;
  /* What the pipe delivered beyond the last whole record. */
  unsigned char inbox[32 * sizeof(bench_tally_event)];
  size_t inbox_len;
} bench_tally;

/* An account kept here of `events` events; with `timed`, of each one's latency too. */
void bench_tally_init(bench_tally *t, long events, int timed);

/* An account forwarded through `fd`: a consumer process of the restart workload. */
void bench_tally_forward(bench_tally *t, int fd);

/* Tells the supervisor through the pipe that this consumer is connected and about to read. */
void bench_tally_ready(bench_tally *t);

/* Notes an event stored in the open transaction, which the consumer's read returned at
 * `received`. Fails (bench_fail) on a payload without a send time when the account needs one,
 * or on more than BENCH_TALLY_BATCH events. */
void bench_tally_stored(bench_tally *t, long index, const void *payload, int len,
                        double received);

/* The transaction's COMMIT returned at `when`: accounts for its events, or forwards them. */
void bench_tally_committed(bench_tally *t, double when);

/* The supervisor's side: reads what the pipe `fd` holds (call when it is readable) and
 * accounts for it. Returns the bytes read, 0 at the end of the pipe, -1 on an error (errno). */
long bench_tally_receive(bench_tally *t, int fd);

void bench_tally_free(bench_tally *t);

#endif
