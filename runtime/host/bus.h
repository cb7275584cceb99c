/* NNG on the libuv loop: sockets are watched through NNG_OPT_RECVFD with a uv_poll_t, and
 * drained without blocking, a bounded number of messages per wake-up. Also the naming of
 * endpoints: ipc://BUS/NAME.{pub,rep,ctl} on one machine; tcp://host:port for PUB with
 * FETCH served on port + 1 across machines. */
#ifndef CHOREO_BUS_H
#define CHOREO_BUS_H

#include <limits.h>
#include <nng/nng.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "codec.h"
#include "sp_rep.h"

#define CHOREO_DRAIN_PER_WAKE 64
/* A drain stops after the message that takes it past this: a consumer behind its producer had
 * the loop for 64 frames at a time (a third of a second at 2,000 rows a frame), and a reload,
 * a timer or `choreo status` waited as long. */
#define CHOREO_DRAIN_MAX_MS 5
#define CHOREO_BUS_URL_MAX (PATH_MAX + 32)

/* Called with each message received; the callee owns msg. */
typedef void (*choreo_bus_recv_cb)(void *ud, nng_msg *msg);

/* Called with the watch's ud once libuv has let go of the watch: it may be freed then. */
typedef void (*choreo_bus_closed_cb)(void *ud);

/* Called with the watch's ud after a drain that found nothing to receive. */
typedef void (*choreo_bus_quiet_cb)(void *ud);

/* Sends on one socket through an nng_aio kept for the socket's life. nng_send and nng_recv
 * allocate an aio per call, and NNG 1.5 draws each new aio's id from getrandom(2): a system
 * call per message sent or received (and per empty poll), which on a virtual machine's kernel
 * costs 10 us or more, on the path of every message. */
typedef struct choreo_bus_sender {
  nng_socket sock;
  nng_aio *aio; /* NULL: not open */
} choreo_bus_sender;

/* 0, or CHOREO_ENOMEM. Each send waits for at most timeout (NNG_DURATION_ZERO: never). */
int choreo_bus_sender_open(choreo_bus_sender *s, nng_socket sock, nng_duration timeout);
/* Sends a copy of data; 0 or NNG's error (NNG_ETIMEDOUT when it would have to wait longer). */
int choreo_bus_send(choreo_bus_sender *s, const void *data, size_t len);
/* Safe on a zeroed struct and twice. */
void choreo_bus_sender_close(choreo_bus_sender *s);

typedef struct choreo_bus_watch {
  uv_poll_t poll; /* its data is the watch itself */
  /* A drain that received looks again a little later (see choreo_bus_watch_drain). */
  uv_timer_t recheck;
  nng_socket sock;
  nng_aio *recv; /* the receives', for the reason choreo_bus_sender gives */
  choreo_bus_recv_cb cb;
  choreo_bus_closed_cb closed;
  choreo_bus_quiet_cb quiet; /* or NULL */
  void *ud;
  int started; /* watching; cleared by stop */
  bool on_loop; /* the handles are the loop's until both closes complete */
  int closing;  /* handles whose close has not completed yet */
  int per_wake; /* messages received per wake-up at most */
} choreo_bus_watch;

/* Starts watching sock, receiving at most per_wake messages per wake-up (CHOREO_DRAIN_PER_WAKE
 * unless each takes long and the next is sure to be there); returns 0 or CHOREO_EBUS. */
int choreo_bus_watch_start(choreo_bus_watch *w, uv_loop_t *loop, nng_socket sock,
                           int per_wake, choreo_bus_recv_cb cb, void *ud);
/* Receives what is waiting (at most per_wake, and for CHOREO_DRAIN_MAX_MS). NNG 1.5 can miss
 * a wake-up: the receive that empties a socket's queue clears its descriptor, and a message
 * arriving in that instant raises it again, only for the clear to swallow the raise; the
 * socket then stays silent, for it counts as raised. That takes a receive, so after a drain
 * that received anything the watch drains again CHOREO_BUS_RECHECK_MS later (unless a look is
 * due already), until a look finds nothing: a watch of an idle socket costs no wake-ups. The
 * host's tick drains every watch too, as a backstop. */
#define CHOREO_BUS_RECHECK_MS 5
void choreo_bus_watch_drain(choreo_bus_watch *w);
/* quiet(ud) runs after each drain that found nothing at all to receive: nothing came since
 * the drain before, as at the recheck after a burst's last message, and at the host's ticks. */
void choreo_bus_watch_on_quiet(choreo_bus_watch *w, choreo_bus_quiet_cb quiet);
/* Stops watching; closed (if not NULL) runs when the watch may be freed. Returns whether the
 * watch was running: if not, closed is not called and the watch may be freed at once. */
int choreo_bus_watch_stop(choreo_bus_watch *w, choreo_bus_closed_cb closed);

/* Listeners that are watched. NNG 1.5 (Debian 12's) stops handing new connections to a socket
 * for good when a peer connects and hangs up before NNG has greeted it: the greeting's write
 * fails with EPIPE, which NNG maps to "closed", and the listener's accept loop takes that for
 * its own close (fixed in NNG 1.6, issue #1518). A host killed as it connects does that, and
 * so does any local program with one connect() and close(). The kernel and NNG's transport
 * still accept and greet, so a peer sees its connection come up, but its messages never reach
 * us: a peer that reconnects after a restart can never catch up again. So now and then we
 * connect to each listener (a bare nng_stream, no socket) and exchange SP greetings; when the
 * listener greets us but, a few seconds later, no new connection has reached the socket through
 * it, the listener is closed and opened again on the same URL (which drops the connections it
 * still had: their dialers reconnect), and the log says so.
 *
 * The probe's greeting names protocol 0, which no SP protocol takes: the socket turns the
 * connection away once the listener has handed it over, before sending or reading anything on
 * it. A probe that the socket kept would be sent what it sends (every frame, on PUB), and NNG
 * 1.5 can hang for good when a connection is closed in the middle of a message (see
 * docs/ARCHITECTURE.md, on NNG 1.5), as a probe closed every 2 s while frames flow in soon is. */
typedef struct choreo_bus_listener {
  char url[CHOREO_BUS_URL_MAX];
  nng_listener listener;
  bool listening;
  nng_stream_dialer *probe_dialer; /* NULL: not watched */
  /* While probing, the probe's steps (NNG's threads) own these; bus.c's loop side reads them
   * only once it has ended the probe: */
  nng_aio *probe_aio;
  nng_stream *probe_conn;
  uint8_t probe_bytes[16]; /* our greeting, then the listener's */
  size_t probe_moved;      /* of probe_bytes, sent or read */
  bool probing;            /* a probe runs since probed_at */
  /* Set and read by NNG's threads: */
  atomic_bool accepted;    /* a connection reached the socket through the listener */
  atomic_bool greeted;     /* the probe's connection came up: the listener greeted it */
  atomic_int listener_id;  /* nng_listener_id(listener) */
  uint64_t probed_at;      /* loop time (ms) of the last probe */
  unsigned reopened;       /* times it was found deaf and opened again */
} choreo_bus_listener;

typedef struct choreo_bus_listeners {
  nng_socket sock; /* the socket listening */
  const char *who; /* names the host in the log */
  choreo_bus_listener *list; /* cap entries, n of them listening (or tried) */
  size_t n, cap;
  /* Connections from their NNG_PIPE_EV_ADD_PRE to their NNG_PIPE_EV_REM_POST, which NNG calls
   * for the same ones (a probe's too); set by NNG's threads. */
  atomic_int connections;
} choreo_bus_listeners;

/* Listens on every url (with the receive size limit set) and prepares the probes. Takes the
 * socket's NNG_PIPE_EV_ADD_PRE and NNG_PIPE_EV_REM_POST notifications. Neither ls nor who may
 * move until choreo_bus_listeners_stop. err gets one line on failure; stop them all the same. */
int choreo_bus_listeners_start(choreo_bus_listeners *ls, nng_socket s, const char *const *urls,
                               size_t n, const char *who, char *err, size_t errlen);
/* How many are connected through the listeners, as far as NNG has told: a message published
 * while none is would be dropped by NNG anyway (PUB), so it need not be made. */
int choreo_bus_listeners_connections(choreo_bus_listeners *ls);
/* Probes each listener every few seconds and opens one again when it has gone deaf. Call it
 * often (the host's tick) with the loop's time; it does nothing most of the time. */
void choreo_bus_listeners_check(choreo_bus_listeners *ls, uint64_t now_ms);
/* Closes the listeners (their addresses are free again at once, whatever becomes of the
 * socket: bus_close.h), ends the probes and the notification, and frees the list. Call it
 * before closing the socket. Safe on a zeroed struct and twice. */
void choreo_bus_listeners_stop(choreo_bus_listeners *ls);

/* A REP server that answers requests on the loop (FETCH, the control socket): its first ipc://
 * endpoint the loop's own (sp_rep.h), the others an NNG socket's. Embedded in its owner, as
 * libuv's handles are: start, stop, then wait for watch.on_loop to turn false. Replies on the
 * socket block for at most 100 ms: a REP reply sent without blocking is dropped whenever NNG
 * has not yet noticed that the requester's pipe finished the previous reply, which under load
 * is often; a requester that stops reading costs us at most this, then loses its answer. */
typedef struct choreo_bus_server {
  nng_socket sock;
  bool open;
  choreo_bus_sender replies;
  choreo_bus_watch watch;
  choreo_bus_listeners listeners; /* watched by choreo_bus_server_drain */
  /* The first ipc:// URL's endpoint, served by the loop itself (sp_rep.h); the others are the
   * socket's. */
  choreo_sp_rep local;
} choreo_bus_server;

/* Listens on every url and calls cb with each request (the callee owns it, and answers with
 * choreo_bus_server_reply). `who` names the host in the log, `what` the socket in err. On
 * failure stop it all the same. */
int choreo_bus_server_start(choreo_bus_server *s, uv_loop_t *loop, const char *who,
                            const char *const *urls, size_t nurls, choreo_bus_recv_cb cb,
                            void *ud, const char *what, char *err, size_t errlen);
/* Receives what is waiting (the host's safety drain) and checks the listeners. */
void choreo_bus_server_drain(choreo_bus_server *s);
/* Whether the loop still holds handles of the server's (after a stop, until it has turned). */
bool choreo_bus_server_on_loop(const choreo_bus_server *s);
/* Sends body as the answer to request, which it frees. */
void choreo_bus_server_reply(choreo_bus_server *s, nng_msg *request, const void *body, size_t len);
/* Closes it without waiting for NNG for ever (bus_close.h). Safe on a zeroed struct that never
 * started, and twice. */
void choreo_bus_server_stop(choreo_bus_server *s);

/* Sends a frame on a PUB socket (a sender opened with NNG_DURATION_ZERO) without blocking: a
 * slow subscriber loses it and fetches it instead. */
void choreo_bus_publish(choreo_bus_sender *pub, const void *data, size_t len);
/* What NNG 1.5 allocates between these is told to LeakSanitizer as not leaked (sanitizer
 * builds only): for NNG calls whose allocations NNG itself may lose, or free only after the
 * process has ended (an endpoint closed while it holds a connection, a frame in flight to a
 * subscriber that hangs up, a request on its way to a pipe when its socket closes, an HTTP
 * server reaped in the background). */
void choreo_bus_lsan_pause(void);
void choreo_bus_lsan_resume(void);
/* Dials in the background: NNG keeps reconnecting until the socket or the dialer closes
 * (except when NNG 1.5 gives up: see peers.c). *dialer (if not NULL) receives the dialer, for
 * closing it on its own; *id (if not NULL) its id, before it starts, so that no connection
 * can come up before the id is known. */
int choreo_bus_dial(nng_socket s, const char *url, nng_dialer *dialer);
int choreo_bus_dial_id(nng_socket s, const char *url, nng_dialer *dialer, atomic_int *id);

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
