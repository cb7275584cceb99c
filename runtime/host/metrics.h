/* The host's metrics (--metrics): Prometheus' text exposition format at GET /metrics, on NNG's
 * HTTP server. A scrape asks the loop for a fresh page (uv_async_t) and waits at most a second
 * for it; a loop busy longer (a long handler) gets the scrape the page it rendered last. So a
 * scrape never holds the loop, and the loop renders only when scraped: the page's counts read
 * whole tables. */
#ifndef CHOREO_METRICS_H
#define CHOREO_METRICS_H

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "choreo.h"

/* Embedded in its owner, as libuv's handles are: start, stop, then wait for on_loop to turn
 * false. */
typedef struct choreo_metrics {
  choreo_host *host;
  nng_http_server *server;
  nng_http_handler *handler;
  bool started;          /* start ran: stop has work to do */
  bool server_started;   /* nng_http_server_start succeeded */
  bool handler_added;    /* the server holds our handler */
  uv_async_t render;     /* NNG's threads: a scrape wants a fresh page */
  bool on_loop;          /* render is on the loop */
  pthread_mutex_t lock;
  pthread_cond_t rendered;
  char *page;            /* under lock: the latest page */
  size_t len;
  uint64_t generation;   /* under lock: pages rendered */
  bool stopping;         /* under lock: answer at once */
} choreo_metrics;

/* Serves the metrics on url: http://HOST:PORT, or a bare PORT for 127.0.0.1. On failure err
 * holds one line; stop it all the same. */
int choreo_metrics_start(choreo_metrics *m, uv_loop_t *loop, choreo_host *host, const char *url,
                         char *err, size_t errlen);
/* Stops the server and the timer. Safe on a zeroed struct, and twice. */
void choreo_metrics_stop(choreo_metrics *m);

#endif
