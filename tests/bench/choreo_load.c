/* bench_choreo_load: offers Ping events to a running choreo host at a fixed rate, as a client
 * would, through its control socket. Every millisecond it publishes the events due by then in
 * one request (one transaction), as a client at a high rate batches its writes. Each event's
 * data is {"i": n, "t": seconds} with t on CLOCK_REALTIME, the clock choreo.now() reads, so a
 * handler can compute publish-to-handler latency. */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_S 0.001
#define MAX_BATCH 1000

static double load_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void load_sleep_until(double when) {
  double left = when - load_wall();
  if (left <= 0) return;
  struct timespec ts = {.tv_sec = (time_t)left,
                        .tv_nsec = (long)((left - (double)(time_t)left) * 1e9)};
  nanosleep(&ts, NULL);
}

/* Sends the request and waits for its reply (NUL-terminated, as the control socket answers);
 * NULL when either fails. */
static nng_msg *load_request(nng_socket s, nng_aio *aio, const char *req, size_t len) {
  nng_msg *msg;
  if (nng_msg_alloc(&msg, len)) return NULL;
  memcpy(nng_msg_body(msg), req, len);
  nng_aio_set_msg(aio, msg);
  nng_send_aio(s, aio);
  nng_aio_wait(aio);
  if (nng_aio_result(aio)) {
    nng_msg_free(msg);
    return NULL;
  }
  nng_recv_aio(s, aio);
  nng_aio_wait(aio);
  if (nng_aio_result(aio)) return NULL;
  msg = nng_aio_get_msg(aio);
  if (nng_msg_len(msg) == 0 || ((char *)nng_msg_body(msg))[nng_msg_len(msg) - 1] != '\0') {
    nng_msg_free(msg);
    return NULL;
  }
  return msg;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: bench_choreo_load CTL_URL RATE SECONDS\n");
    return 2;
  }
  double rate = atof(argv[2]), seconds = atof(argv[3]);
  if (rate <= 0 || seconds <= 0) {
    fprintf(stderr, "bench_choreo_load: RATE and SECONDS must be positive\n");
    return 2;
  }
  nng_socket s;
  if (nng_req0_open(&s) || nng_dial(s, argv[1], NULL, 0)) {
    fprintf(stderr, "bench_choreo_load: cannot connect to %s\n", argv[1]);
    return 1;
  }
  /* One aio for every request and reply: nng_send and nng_recv allocate one per call, and NNG
   * 1.5 draws each one's id from getrandom(2), a system call between the event's time stamp and
   * its arrival (the hosts do the same: bus.h). */
  nng_aio *aio;
  if (nng_aio_alloc(&aio, NULL, NULL)) {
    fprintf(stderr, "bench_choreo_load: out of memory\n");
    return 1;
  }
  nng_aio_set_timeout(aio, 5000);
  static char req[MAX_BATCH * 48 + 128];
  long sent = 0, failed = 0, total = (long)(rate * seconds);
  double start = load_wall();
  for (long tick = 1; sent + failed < total; tick++) {
    load_sleep_until(start + (double)tick * TICK_S);
    long due = (long)(rate * (load_wall() - start));
    if (due > total) due = total;
    long n = due - sent - failed;
    if (n <= 0) continue;
    if (n > MAX_BATCH) n = MAX_BATCH;
    int len = snprintf(req, sizeof req, "{\"op\":\"publish\",\"type\":\"Ping\",\"batch\":[");
    double now = load_wall();
    for (long k = 0; k < n; k++)
      len += snprintf(req + len, sizeof req - (size_t)len, "%s\"{\\\"i\\\":%ld,\\\"t\\\":%.6f}\"",
                      k ? "," : "", sent + failed + k + 1, now);
    len += snprintf(req + len, sizeof req - (size_t)len, "]}");
    nng_msg *reply = load_request(s, aio, req, (size_t)len + 1);
    if (reply && strstr(nng_msg_body(reply), "\"ok\":true")) sent += n;
    else failed += n;
    if (reply) nng_msg_free(reply);
  }
  double took = load_wall() - start;
  nng_aio_free(aio);
  nng_close(s);
  printf("{\"sent\": %ld, \"failed\": %ld, \"offered_per_s\": %.1f}\n", sent, failed, sent / took);
  return failed ? 1 : 0;
}
