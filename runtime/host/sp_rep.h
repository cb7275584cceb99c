/* A REP endpoint on this machine (ipc://PATH) whose connections the loop accepts, reads and
 * answers itself (sp_conn.h): the control and FETCH sockets' endpoints in the bus directory. A
 * request to a host of this machine used to cross NNG 1.5's poller and task threads before the
 * loop saw it, half of a published event's way to its consumer at the median on this project's
 * VM (README, "Latency"). Clients are NNG REQ sockets as before: each request's backtrace is
 * kept as NNG's REP keeps it, and its answer goes back on the connection it came on, if that is
 * still open. */
#ifndef CHOREO_SP_REP_H
#define CHOREO_SP_REP_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>
#include <uv.h>

#include "sp_listen.h"

/* The callee owns request, and answers it with choreo_sp_rep_reply. */
typedef void (*choreo_sp_rep_request_cb)(void *ud, nng_msg *request);

/* Embedded in its owner, as libuv's handles are: the owner outlives the loop's turns after the
 * stop. */
typedef struct choreo_sp_rep {
  choreo_sp_listener listener; /* its connections are the clients' */
  choreo_sp_rep_request_cb cb;
  void *ud;
} choreo_sp_rep;

/* Listens on url (ipc://PATH); 0, or CHOREO_EBUS / CHOREO_EINVAL with err set. On failure stop
 * it all the same. */
int choreo_sp_rep_start(choreo_sp_rep *r, uv_loop_t *loop, const char *url, const char *who,
                        choreo_sp_rep_request_cb cb, void *ud, char *err, size_t errlen);
/* Whether request came through an endpoint of these (NNG's REP socket hands requests over
 * with no header; ours carry where they came from in theirs). */
bool choreo_sp_rep_owns(nng_msg *request);
/* Sends body as the answer to request, which it frees. */
void choreo_sp_rep_reply(choreo_sp_rep *r, nng_msg *request, const void *body, size_t len);
/* Closes the listener and every connection, and removes the path. Safe on a zeroed struct and
 * twice. */
void choreo_sp_rep_stop(choreo_sp_rep *r);

#endif
