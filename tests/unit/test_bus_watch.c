/* Unit test of the watch that drains an NNG socket on the loop (runtime/host/bus.h): a drain
 * keeps the loop for CHOREO_DRAIN_MAX_MS at most, so a consumer behind its producer still lets
 * a reload, a timer or a control request have the loop between its frames; what it leaves is
 * taken by the turns after, none lost and in order; and the watch tells when a drain found
 * nothing at all to receive, not when it took the last message there was. Messages go over
 * inproc from a PUSH to a PULL socket; in the first test the receiver's callback takes longer
 * than the drain's time, as a large frame's handlers do. alarm() bounds the process. */
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bus.h"
#include "check.h"

#define MESSAGES 4

typedef struct {
  int seen[MESSAGES];
  int count;
  bool closed; /* the watch's handles are off the loop */
} receiver;

static void sleep_ms(long ms) {
  struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Each message takes longer than a drain may: the drain must stop after it. */
static void on_message(void *ud, nng_msg *msg) {
  receiver *r = ud;
  int n = -1;
  if (nng_msg_len(msg) == sizeof n) memcpy(&n, nng_msg_body(msg), sizeof n);
  if (r->count < MESSAGES) r->seen[r->count] = n;
  r->count++;
  nng_msg_free(msg);
  sleep_ms(CHOREO_DRAIN_MAX_MS + 2);
}

static bool readable(int fd, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, timeout_ms) == 1;
}

static void on_closed(void *ud) { ((receiver *)ud)->closed = true; }

/* A PUSH socket connected to a PULL one, holding up to MESSAGES sends (so that sends wait for
 * no one), and a watch of the PULL socket on a loop of its own. */
typedef struct {
  nng_socket push, pull;
  int fd; /* the PULL socket's NNG_OPT_RECVFD */
  uv_loop_t loop;
  choreo_bus_watch w;
  receiver r;
} watched;

static void watched_open(watched *t, const char *url, choreo_bus_recv_cb cb) {
  memset(t, 0, sizeof *t);
  CHECK(nng_push0_open(&t->push) == 0);
  CHECK(nng_pull0_open(&t->pull) == 0);
  CHECK(nng_socket_set_int(t->push, NNG_OPT_SENDBUF, MESSAGES) == 0);
  CHECK(nng_listen(t->pull, url, NULL, 0) == 0);
  CHECK(nng_dial(t->push, url, NULL, 0) == 0);
  CHECK(nng_socket_get_int(t->pull, NNG_OPT_RECVFD, &t->fd) == 0);
  CHECK(uv_loop_init(&t->loop) == 0);
  CHECK(choreo_bus_watch_start(&t->w, &t->loop, t->pull, CHOREO_DRAIN_PER_WAKE, cb, &t->r) == 0);
}

static void watched_close(watched *t) {
  if (t->w.started) CHECK(choreo_bus_watch_stop(&t->w, on_closed) == 1);
  while (!t->r.closed) uv_run(&t->loop, UV_RUN_ONCE);
  CHECK(uv_loop_close(&t->loop) == 0);
  nng_close(t->push);
  nng_close(t->pull);
}

static void test_a_drain_stops_after_its_time_and_the_next_turns_take_the_rest(void) {
  watched t;
  watched_open(&t, "inproc://choreo-bus-watch", on_message);
  for (int i = 0; i < MESSAGES; i++) CHECK(nng_send(t.push, &i, sizeof i, 0) == 0);
  /* All of them are queued before the first drain (inproc hands them over at once; the wait is
   * a margin): had it no time limit, it would take all. */
  CHECK(readable(t.fd, 5000));
  sleep_ms(100);
  choreo_bus_watch_drain(&t.w);
  CHECK(t.r.count == 1);
  CHECK(readable(t.fd, 0)); /* left for the next turns */
  /* The loop's turns take the rest: the socket stays readable while messages wait. */
  for (int turn = 0; turn < 100 && t.r.count < MESSAGES; turn++) uv_run(&t.loop, UV_RUN_ONCE);
  CHECK(t.r.count == MESSAGES);
  for (int i = 0; i < MESSAGES; i++) CHECK(t.r.seen[i] == i);
  watched_close(&t);
}

static void count_message(void *ud, nng_msg *msg) {
  ((receiver *)ud)->count++;
  nng_msg_free(msg);
}

static int quiet_drains;
static void on_quiet(void *ud) {
  (void)ud;
  quiet_drains++;
}

static void test_only_a_drain_that_received_nothing_is_quiet(void) {
  watched t;
  watched_open(&t, "inproc://choreo-bus-quiet", count_message);
  choreo_bus_watch_on_quiet(&t.w, on_quiet);
  /* Each drain here comes when a message is there: it takes it (PULL hands them over one at a
   * time), then finds the socket empty, and is not quiet. */
  for (int i = 0; i < 2; i++) CHECK(nng_send(t.push, &i, sizeof i, 0) == 0);
  for (int tries = 0; tries < 100 && t.r.count < 2; tries++)
    if (readable(t.fd, 50)) choreo_bus_watch_drain(&t.w);
  CHECK(t.r.count == 2);
  CHECK(quiet_drains == 0);
  choreo_bus_watch_drain(&t.w); /* nothing came since */
  CHECK(quiet_drains == 1);
  CHECK(nng_send(t.push, &t.r.count, sizeof t.r.count, 0) == 0);
  CHECK(readable(t.fd, 5000));
  choreo_bus_watch_drain(&t.w);
  CHECK(t.r.count == 3);
  CHECK(quiet_drains == 1);
  CHECK(choreo_bus_watch_stop(&t.w, on_closed) == 1);
  choreo_bus_watch_drain(&t.w); /* stopped: not quiet, whatever it finds */
  CHECK(quiet_drains == 1);
  watched_close(&t);
}

int main(void) {
  alarm(30);
  RUN(test_a_drain_stops_after_its_time_and_the_next_turns_take_the_rest);
  RUN(test_only_a_drain_that_received_nothing_is_quiet);
  return CHECK_DONE();
}
