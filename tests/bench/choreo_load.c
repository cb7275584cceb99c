/* bench_choreo_load: offers Ping events to a running choreo host at a fixed rate, as a client
 * would, through its control socket. Every millisecond it publishes the events due by then in
 * one request (one transaction), as a client at a high rate batches its writes. Each event's
 * data is {"i": n, "t": seconds} with t on CLOCK_REALTIME, the clock choreo.now() reads, so a
 * handler can compute publish-to-handler latency. It is a client as thin as the Redis
 * benchmark's (hiredis): one thread that writes each request and reads its reply itself
 * (sp_req.h); --nng makes it an NNG REQ socket instead. */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp_req.h"

#define TICK_S 0.001
#define MAX_BATCH 1000
#define REQUEST_TIMEOUT_S 5

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

/* The control socket's client: this thread's own connection (sp_req.h), or with --nng an NNG
 * REQ socket as most clients would open, to measure what NNG's threads add. */
typedef struct load_client {
  bench_sp_req thin;
  nng_socket s;
  nng_aio *aio; /* one for every request and reply (see load_nng_open) */
  nng_msg *reply;
} load_client;

static int load_nng_open(load_client *c, const char *url) {
  if (nng_req0_open(&c->s) || nng_dial(c->s, url, NULL, 0)) {
    fprintf(stderr, "bench_choreo_load: cannot connect to %s\n", url);
    return -1;
  }
  /* nng_send and nng_recv allocate an aio per call, and NNG 1.5 draws each one's id from
   * getrandom(2), a system call between the event's time stamp and its arrival. */
  if (nng_aio_alloc(&c->aio, NULL, NULL)) {
    fprintf(stderr, "bench_choreo_load: out of memory\n");
    return -1;
  }
  nng_aio_set_timeout(c->aio, REQUEST_TIMEOUT_S * 1000);
  return 0;
}

/* Sends the request and waits for its reply, NUL-terminated as the control socket answers;
 * NULL when either fails. */
static const char *load_request(load_client *c, const char *req, size_t len) {
  if (c->thin.fd >= 0) {
    size_t n;
    const char *reply = bench_sp_req_call(&c->thin, req, len, &n);
    return reply && n > 0 && reply[n - 1] == '\0' ? reply : NULL;
  }
  nng_msg *msg;
  if (c->reply) nng_msg_free(c->reply);
  c->reply = NULL;
  if (nng_msg_alloc(&msg, len)) return NULL;
  memcpy(nng_msg_body(msg), req, len);
  nng_aio_set_msg(c->aio, msg);
  nng_send_aio(c->s, c->aio);
  nng_aio_wait(c->aio);
  if (nng_aio_result(c->aio)) {
    nng_msg_free(msg);
    return NULL;
  }
  nng_recv_aio(c->s, c->aio);
  nng_aio_wait(c->aio);
  if (nng_aio_result(c->aio)) return NULL;
  c->reply = nng_aio_get_msg(c->aio);
  size_t n = nng_msg_len(c->reply);
  const char *body = nng_msg_body(c->reply);
  return n > 0 && body[n - 1] == '\0' ? body : NULL;
}

static void load_close(load_client *c) {
  bench_sp_req_close(&c->thin);
  if (c->reply) nng_msg_free(c->reply);
  if (c->aio) nng_aio_free(c->aio);
  if (nng_socket_id(c->s) > 0) nng_close(c->s);
}

int main(int argc, char **argv) {
  bool use_nng = argc == 5 && strcmp(argv[1], "--nng") == 0;
  if (argc != 4 && !use_nng) {
    fprintf(stderr, "usage: bench_choreo_load [--nng] CTL_URL RATE SECONDS\n");
    return 2;
  }
  argv += use_nng;
  double rate = atof(argv[2]), seconds = atof(argv[3]);
  if (rate <= 0 || seconds <= 0) {
    fprintf(stderr, "bench_choreo_load: RATE and SECONDS must be positive\n");
    return 2;
  }
  load_client client = {.thin = {.fd = -1}, .s = NNG_SOCKET_INITIALIZER};
  char err[256];
  if (use_nng ? load_nng_open(&client, argv[1])
              : bench_sp_req_open(&client.thin, argv[1], REQUEST_TIMEOUT_S, err, sizeof err)) {
    if (!use_nng) fprintf(stderr, "bench_choreo_load: %s\n", err);
    load_close(&client);
    return 1;
  }
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
      len += snprintf(req + len, sizeof req - (size_t)len, "%s{\"i\":%ld,\"t\":%.6f}",
                      k ? "," : "", sent + failed + k + 1, now);
    len += snprintf(req + len, sizeof req - (size_t)len, "]}");
    const char *reply = load_request(&client, req, (size_t)len + 1);
    if (reply && strstr(reply, "\"ok\":true")) sent += n;
    else failed += n;
  }
  double took = load_wall() - start;
  load_close(&client);
  printf("{\"sent\": %ld, \"failed\": %ld, \"offered_per_s\": %.1f}\n", sent, failed, sent / took);
  return failed ? 1 : 0;
}
