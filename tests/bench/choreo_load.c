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
  nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000);
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
    char *reply = NULL;
    size_t rlen = 0;
    if (nng_send(s, req, (size_t)len + 1, 0) == 0 && nng_recv(s, &reply, &rlen, NNG_FLAG_ALLOC) == 0) {
      if (strstr(reply, "\"ok\":true")) sent += n;
      else failed += n;
      nng_free(reply, rlen);
    } else {
      failed += n;
    }
  }
  double took = load_wall() - start;
  nng_close(s);
  printf("{\"sent\": %ld, \"failed\": %ld, \"offered_per_s\": %.1f}\n", sent, failed, sent / took);
  return failed ? 1 : 0;
}
