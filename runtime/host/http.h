/* The host's HTTP server (--http): GET /query/NAME?arg=value&... or POST /query/NAME with a
 * JSON body runs the query NAME (choreo.query) and answers its result as JSON. NNG's HTTP
 * server takes the requests on its threads; each is handed to the loop, which runs the query
 * between two batches and completes the request. */
#ifndef CHOREO_HTTP_H
#define CHOREO_HTTP_H

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "choreo.h"

typedef struct choreo_http_request choreo_http_request;

/* Embedded in its owner, as libuv's handles are: start, stop, then wait for on_loop to turn
 * false. */
typedef struct choreo_http {
  choreo_host *host;
  nng_http_server *server;
  nng_http_handler *handler;
  bool started;        /* start ran: stop has work to do */
  bool server_started; /* nng_http_server_start succeeded */
  bool handler_added;  /* the server holds our handler */
  uv_async_t wake; /* NNG's threads: requests are waiting */
  bool on_loop;    /* wake is on the loop */
  pthread_mutex_t lock;
  choreo_http_request *waiting, *last; /* under lock */
  bool stopping;                       /* under lock: new requests are turned away */
} choreo_http;

/* Serves queries on url (http://HOST:PORT). On failure err holds one line; stop it all the
 * same. */
int choreo_http_start(choreo_http *s, uv_loop_t *loop, choreo_host *host, const char *url,
                      char *err, size_t errlen);
/* Answers what is waiting (503), stops the server. Safe on a zeroed struct, and twice. */
void choreo_http_stop(choreo_http *s);

/* Undoes what one owner did to an NNG HTTP server it holds, and only that: another owner may
 * hold the same server (two hosts of one process on one address). Its handler is taken out
 * first, so none runs after; the server is stopped only if this owner started it. */
void choreo_http_let_go(nng_http_server *server, nng_http_handler *handler, bool handler_added,
                        bool server_started);

/* Completes an NNG HTTP request with a body (copied) of the given Content-Type, never cached;
 * out of memory, NNG answers 500. For every HTTP server of choreo's. */
void choreo_http_reply(nng_aio *aio, uint16_t status, const char *type, const char *body,
                       size_t len);

#endif
