/* The control socket (ipc://BUS/NAME.ctl) the command line talks to. Requests and answers are
 * JSON objects: {"op": "publish"|"send"|"status"|"dead"|"sagas"|"stream"|"query", ...}; every
 * answer has "ok",
 * and "error" when ok is false. This is the one place where the host's state becomes JSON. */
#ifndef CHOREO_CONTROL_H
#define CHOREO_CONTROL_H

#include <cjson/cJSON.h>
#include <uv.h>

#include "bus.h"
#include "choreo.h"

/* Embedded in its owner, as libuv's handles are: start, stop, then wait for
 * server.watch.on_loop to turn false. */
typedef struct choreo_control {
  choreo_host *host;
  choreo_bus_server server;
} choreo_control;

/* Listens on url for the host's requests. On failure err holds one line; stop it all the
 * same. */
int choreo_control_start(choreo_control *c, uv_loop_t *loop, choreo_host *host, const char *url,
                         char *err, size_t errlen);
void choreo_control_drain(choreo_control *c);
/* The answer to one request body (len bytes of JSON, NUL-terminated or not), as the socket
 * sends it: malloc'd JSON text (free() it), NULL when memory runs out. Also the entry point of
 * the control requests' fuzz harness (tests/fuzz). */
char *choreo_control_answer(choreo_host *h, const char *body, size_t len);
/* The same for a request from another machine (the FETCH socket's "ask"): only the reads of
 * the journal and the status; anything else is answered with an error. */
char *choreo_control_answer_remote(choreo_host *h, const char *body, size_t len);
/* Runs the query `name` (choreo.query) on args (JSON text, NULL for none): 0 with *result, or
 * CHOREO_ENOENT (no such query), CHOREO_EINVAL (args not JSON), CHOREO_ESTOPPED (the host is
 * stopping) or another code (the query failed) with one line in err. What the control socket and the HTTP server answer. */
int choreo_control_query(choreo_host *h, const char *name, const char *args, cJSON **result,
                         char *err, size_t errlen);
/* Safe on a zeroed struct that never started, and twice. */
void choreo_control_stop(choreo_control *c);

#endif
