/* NNG on the libuv loop: sockets are watched through NNG_OPT_RECVFD with a uv_poll_t, and
 * drained without blocking, a bounded number of messages per wake-up. Also the naming of
 * endpoints: ipc://BUS/NAME.{pub,rep,ctl} on one machine; tcp://host:port for PUB with
 * FETCH served on port + 1 across machines. */
#ifndef CHOREO_BUS_H
#define CHOREO_BUS_H

#include <nng/nng.h>
#include <stddef.h>
#include <uv.h>

#define CHOREO_DRAIN_PER_WAKE 64
#define CHOREO_NAME_MAX 100

/* Called with each message received; the callee owns msg. */
typedef void (*choreo_bus_recv_cb)(void *ud, nng_msg *msg);

typedef struct choreo_bus_watch {
  uv_poll_t poll;
  nng_socket sock;
  choreo_bus_recv_cb cb;
  void *ud;
  int started;
} choreo_bus_watch;

/* Starts watching sock; returns 0 or CHOREO_EBUS. */
int choreo_bus_watch_start(choreo_bus_watch *w, uv_loop_t *loop, nng_socket sock,
                           choreo_bus_recv_cb cb, void *ud);
/* Receives what is waiting (at most CHOREO_DRAIN_PER_WAKE); the slow safety drain calls it too,
 * because older NNG releases could miss a wake-up. */
void choreo_bus_watch_drain(choreo_bus_watch *w);
void choreo_bus_watch_stop(choreo_bus_watch *w, uv_close_cb done);

/* Listens on url with the receive size limit set; err gets one line on failure. */
int choreo_bus_listen(nng_socket s, const char *url, char *err, size_t errlen);
/* Dials in the background: NNG keeps reconnecting until the socket or the dialer closes.
 * *dialer (if not NULL) receives the dialer, for closing it on its own. */
int choreo_bus_dial(nng_socket s, const char *url, nng_dialer *dialer);

/* The bus directory: --bus, else $XDG_RUNTIME_DIR/choreo, else /tmp/choreo-$UID. Created if
 * missing. Returns 0 or CHOREO_EIO with err set. */
int choreo_bus_dir(const char *given, char *out, size_t size, char *err, size_t errlen);
/* ipc://DIR/NAME.SUFFIX */
void choreo_bus_ipc_url(char *out, size_t size, const char *dir, const char *name,
                        const char *suffix);
/* The FETCH endpoint that goes with a PUB endpoint: ipc .pub -> .rep, tcp port -> port + 1.
 * Returns CHOREO_EINVAL for a URL we cannot pair. */
int choreo_bus_rep_url(const char *pub_url, char *out, size_t size);
/* Service names: 1..CHOREO_NAME_MAX of [A-Za-z0-9_.-], not starting with '.'. */
int choreo_bus_valid_name(const char *name);

#endif
