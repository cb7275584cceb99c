/* The host's metrics (--metrics): Prometheus' text exposition format at GET /metrics, on NNG's
 * HTTP server. A timer on the loop renders the page every second between batches; NNG's
 * threads answer each scrape with the latest page, so a scrape never waits for the loop (a
 * long handler, a busy host) and never holds it. */
#ifndef CHOREO_METRICS_H
#define CHOREO_METRICS_H

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "choreo.h"

/* Embedded in its owner, as libuv's handles are: start, stop, then wait for on_loop to turn
 * false. */
typedef struct choreo_metrics {
  choreo_host *host;
  nng_http_server *server;
  nng_http_handler *handler;
  bool started;
  uv_timer_t render; /* the loop: the page, every second */
  bool on_loop;      /* render is on the loop */
  pthread_mutex_t lock;
  char *page; /* under lock: the latest page */
  size_t len;
} choreo_metrics;

/* Serves the metrics on url: http://HOST:PORT, or a bare PORT for 127.0.0.1. On failure err
 * holds one line; stop it all the same. */
int choreo_metrics_start(choreo_metrics *m, uv_loop_t *loop, choreo_host *host, const char *url,
                         char *err, size_t errlen);
/* Stops the server and the timer. Safe on a zeroed struct, and twice. */
void choreo_metrics_stop(choreo_metrics *m);

#endif
