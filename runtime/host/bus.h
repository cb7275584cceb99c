/* NNG on the libuv loop: sockets are watched through NNG_OPT_RECVFD with a uv_poll_t, and
 * drained without blocking, a bounded number of messages per wake-up. Also the naming of
 * endpoints: ipc://BUS/NAME.{pub,rep,ctl} on one machine; tcp://host:port for PUB with
 * FETCH served on port + 1 across machines. */
#ifndef CHOREO_BUS_H
#define CHOREO_BUS_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "codec.h"

#define CHOREO_DRAIN_PER_WAKE 64

/* Called with each message received; the callee owns msg. */
typedef void (*choreo_bus_recv_cb)(void *ud, nng_msg *msg);

/* Called with the watch's ud once libuv has let go of the watch: it may be freed then. */
typedef void (*choreo_bus_closed_cb)(void *ud);

typedef struct choreo_bus_watch {
  uv_poll_t poll; /* its data is the watch itself */
  nng_socket sock;
  choreo_bus_recv_cb cb;
  choreo_bus_closed_cb closed;
  void *ud;
  int started; /* watching; cleared by stop */
  bool on_loop; /* the poll handle is the loop's until its close completes */
} choreo_bus_watch;

/* Starts watching sock; returns 0 or CHOREO_EBUS. */
int choreo_bus_watch_start(choreo_bus_watch *w, uv_loop_t *loop, nng_socket sock,
                           choreo_bus_recv_cb cb, void *ud);
/* Receives what is waiting (at most CHOREO_DRAIN_PER_WAKE); the slow safety drain calls it too,
 * because older NNG releases could miss a wake-up. */
void choreo_bus_watch_drain(choreo_bus_watch *w);
/* Stops watching; closed (if not NULL) runs when the watch may be freed. Returns whether the
 * watch was running: if not, closed is not called and the watch may be freed at once. */
int choreo_bus_watch_stop(choreo_bus_watch *w, choreo_bus_closed_cb closed);

/* A REP socket that answers requests on the loop (FETCH, the control socket). Embedded in its
 * owner, as libuv's handles are: start, stop, then wait for watch.on_loop to turn false. Replies block
 * for at most 100 ms: a REP reply sent without blocking is dropped whenever NNG has not yet
 * noticed that the requester's pipe finished the previous reply, which under load is often; a
 * requester that stops reading costs us at most this, then loses its answer. */
typedef struct choreo_bus_server {
  nng_socket sock;
  bool open;
  choreo_bus_watch watch;
} choreo_bus_server;

/* Listens on every url and calls cb with each request (the callee owns it, and answers with
 * choreo_bus_server_reply). `what` names the socket in err. On failure stop it all the same. */
int choreo_bus_server_start(choreo_bus_server *s, uv_loop_t *loop, const char *const *urls,
                            size_t nurls, choreo_bus_recv_cb cb, void *ud, const char *what,
                            char *err, size_t errlen);
/* Sends body as the answer to request, reusing its message (which it then owns or frees). */
void choreo_bus_server_reply(choreo_bus_server *s, nng_msg *request, const void *body, size_t len);
/* Safe on a zeroed struct that never started, and twice. */
void choreo_bus_server_stop(choreo_bus_server *s);

/* Listens on url with the receive size limit set; err gets one line on failure. */
int choreo_bus_listen(nng_socket s, const char *url, char *err, size_t errlen);
/* Dials in the background: NNG keeps reconnecting until the socket or the dialer closes.
 * *dialer (if not NULL) receives the dialer, for closing it on its own. */
int choreo_bus_dial(nng_socket s, const char *url, nng_dialer *dialer);

/* The bus directory: --bus, else $XDG_RUNTIME_DIR/choreo, else /tmp/choreo-$UID. A host
 * creates it (create); a client finds no host where it is missing. Returns 0, or CHOREO_EIO /
 * CHOREO_ENOENT with err set. */
int choreo_bus_dir(const char *given, bool create, char *out, size_t size, char *err,
                   size_t errlen);
/* ipc://DIR/NAME.SUFFIX */
void choreo_bus_ipc_url(char *out, size_t size, const char *dir, const char *name,
                        const char *suffix);
/* The FETCH endpoint that goes with a PUB endpoint: ipc .pub -> .rep, tcp port -> port + 1.
 * Returns CHOREO_EINVAL for a URL we cannot pair. */
int choreo_bus_rep_url(const char *pub_url, char *out, size_t size);
/* Calls fn with the name of each host that has an endpoint NAME.SUFFIX in the bus directory
 * (valid names only), in directory order. Returns 0, or CHOREO_EIO if it cannot be read. */
typedef void (*choreo_bus_host_fn)(void *ud, const char *name);
int choreo_bus_each_host(const char *dir, const char *suffix, choreo_bus_host_fn fn, void *ud);

#endif
