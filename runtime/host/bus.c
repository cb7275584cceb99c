/* NNG on the libuv loop and endpoint naming (see bus.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus.h"

/* LeakSanitizer, in sanitizer builds: see bus_listen. */
#if defined(__SANITIZE_ADDRESS__)
#define BUS_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUS_LSAN 1
#endif
#endif
#ifdef BUS_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#include <nng/protocol/reqrep0/rep.h>
#include "bus_close.h"
#include "choreo.h"
#include "codec.h"
#include "log.h"

static void bus_on_readable(uv_poll_t *poll, int status, int events) {
  (void)status;
  (void)events;
  choreo_bus_watch_drain(poll->data);
}

int choreo_bus_sender_open(choreo_bus_sender *s, nng_socket sock, nng_duration timeout) {
  s->sock = sock;
  if (nng_aio_alloc(&s->aio, NULL, NULL) != 0) {
    s->aio = NULL;
    return CHOREO_ENOMEM;
  }
  nng_aio_set_timeout(s->aio, timeout);
  return 0;
}

int choreo_bus_send(choreo_bus_sender *s, const void *data, size_t len) {
  nng_msg *msg;
  int rv = nng_msg_alloc(&msg, len);
  if (rv) return rv;
  memcpy(nng_msg_body(msg), data, len);
  nng_aio_set_msg(s->aio, msg);
  nng_send_aio(s->sock, s->aio);
  nng_aio_wait(s->aio);
  rv = nng_aio_result(s->aio);
  if (rv) nng_msg_free(msg); /* still ours when it was not sent */
  return rv;
}

void choreo_bus_sender_close(choreo_bus_sender *s) {
  if (s->aio) nng_aio_free(s->aio);
  s->aio = NULL;
}

int choreo_bus_watch_start(choreo_bus_watch *w, uv_loop_t *loop, nng_socket sock,
                           int per_wake, choreo_bus_recv_cb cb, void *ud) {
  int fd;
  if (nng_socket_get_int(sock, NNG_OPT_RECVFD, &fd) != 0) return CHOREO_EBUS;
  w->sock = sock;
  w->per_wake = per_wake;
  w->cb = cb;
  w->quiet = NULL;
  w->ud = ud;
  if (nng_aio_alloc(&w->recv, NULL, NULL) != 0) {
    w->recv = NULL;
    return CHOREO_ENOMEM;
  }
  nng_aio_set_timeout(w->recv, NNG_DURATION_ZERO); /* what is there already, or nothing */
  if (uv_poll_init(loop, &w->poll, fd) != 0) {
    nng_aio_free(w->recv);
    w->recv = NULL;
    return CHOREO_EBUS;
  }
  uv_timer_init(loop, &w->recheck); /* cannot fail on a loop that took the poll handle */
  w->poll.data = w->recheck.data = w;
  w->started = 1;
  w->on_loop = true;
  return uv_poll_start(&w->poll, UV_READABLE, bus_on_readable) ? CHOREO_EBUS : 0;
}

static void bus_on_recheck(uv_timer_t *timer) { choreo_bus_watch_drain(timer->data); }

void choreo_bus_watch_drain(choreo_bus_watch *w) {
  int received = 0;
  bool empty = false;
  uint64_t until = uv_hrtime() + CHOREO_DRAIN_MAX_MS * (uint64_t)1000000;
  while (received < w->per_wake && w->started) {
    nng_recv_aio(w->sock, w->recv);
    nng_aio_wait(w->recv);
    int rc = nng_aio_result(w->recv);
    if (rc != 0) {
      empty = rc == NNG_ETIMEDOUT;
      break;
    }
    w->cb(w->ud, nng_aio_get_msg(w->recv));
    received++;
    /* What is left keeps the socket readable: the loop's next turn drains on, after its
     * timers, file events (a reload) and control requests have had theirs. */
    if (uv_hrtime() >= until) break;
  }
  /* Not pushed back by the drains that follow: while messages come, a look every 5 ms, as a
   * wake-up missed in a burst (when drains come more often than that) waits no longer. */
  if (received && w->started && !uv_is_active((uv_handle_t *)&w->recheck))
    uv_timer_start(&w->recheck, bus_on_recheck, CHOREO_BUS_RECHECK_MS, 0);
  if (!received && empty && w->started && w->quiet) w->quiet(w->ud);
}

void choreo_bus_watch_on_quiet(choreo_bus_watch *w, choreo_bus_quiet_cb quiet) {
  w->quiet = quiet;
}

static void bus_on_closed(uv_handle_t *handle) {
  choreo_bus_watch *w = handle->data;
  if (--w->closing) return;
  w->on_loop = false; /* before the callback, which may free the watch */
  if (w->closed) w->closed(w->ud);
}

int choreo_bus_watch_stop(choreo_bus_watch *w, choreo_bus_closed_cb closed) {
  if (!w->started) return 0;
  w->started = 0;
  nng_aio_free(w->recv); /* nothing is pending on it: each receive was waited for */
  w->recv = NULL;
  w->closed = closed;
  w->closing = 2;
  uv_close((uv_handle_t *)&w->poll, bus_on_closed);
  uv_close((uv_handle_t *)&w->recheck, bus_on_closed);
  return 1;
}

/* A listener that let no connection through for this long after a probe connected is deaf:
 * NNG connects and greets over ipc or loopback in well under a millisecond, and in a few even
 * when loaded. */
#define BUS_PROBE_EVERY_MS 2000
#define BUS_PROBE_PATIENCE_MS 3000

void choreo_bus_lsan_pause(void) {
#ifdef BUS_LSAN
  __lsan_disable();
#endif
}

void choreo_bus_lsan_resume(void) {
#ifdef BUS_LSAN
  __lsan_enable();
#endif
}

/* NNG 1.5 never frees an endpoint closed while it holds a connection it has not handed to its
 * socket, nor that connection: a listener gone deaf (choreo_bus_listeners) holds every one that
 * came since, and a dialer closed while it greets (peers.c's) holds that one. Not ours to free:
 * what an endpoint allocates when it is created is taken as not leaked, and what it holds is
 * reached from there; what is ours LeakSanitizer still reports. */
static int bus_listener_create(nng_listener *l, nng_socket s, const char *url) {
  choreo_bus_lsan_pause();
  int rv = nng_listener_create(l, s, url);
  choreo_bus_lsan_resume();
  return rv;
}

static int bus_dialer_create(nng_dialer *d, nng_socket s, const char *url) {
  choreo_bus_lsan_pause();
  int rv = nng_dialer_create(d, s, url);
  choreo_bus_lsan_resume();
  return rv;
}

/* Listens on url with the receive size limit set; *id gets the listener's id before it
 * starts, so that no connection through it can come before the id is known. */
static int bus_listen(nng_socket s, const char *url, nng_listener *out, atomic_int *id,
                      char *err, size_t errlen) {
  nng_listener l;
  int rv = bus_listener_create(&l, s, url);
  if (!rv) rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, CHOREO_MAX_FRAME);
  if (!rv && id) atomic_store(id, nng_listener_id(l));
  if (!rv) rv = nng_listener_start(l, 0);
  if (rv) {
    snprintf(err, errlen, "cannot listen on %s: %s%s", url, nng_strerror(rv),
             rv == NNG_EADDRINUSE ? " (is another host with this name running?)" : "");
    return CHOREO_EBUS;
  }
  if (out) *out = l;
  return 0;
}

static int bus_listener_open(choreo_bus_listeners *ls, choreo_bus_listener *l, char *err,
                             size_t errlen) {
  int rc = bus_listen(ls->sock, l->url, &l->listener, &l->listener_id, err, errlen);
  l->listening = rc == 0;
  return rc;
}

/* NNG's thread: a connection came through a listener, before the socket looks at it (and turns
 * a probe away). */
static void bus_on_pipe_added(nng_pipe pipe, nng_pipe_ev ev, void *arg) {
  (void)ev;
  choreo_bus_listeners *ls = arg;
  atomic_fetch_add(&ls->connections, 1);
  int id = nng_listener_id(nng_pipe_listener(pipe));
  for (size_t i = 0; id > 0 && i < ls->cap; i++)
    if (atomic_load(&ls->list[i].listener_id) == id) atomic_store(&ls->list[i].accepted, true);
}

/* NNG's thread: a connection that came through a listener (bus_on_pipe_added) is gone. */
static void bus_on_pipe_removed(nng_pipe pipe, nng_pipe_ev ev, void *arg) {
  (void)pipe;
  (void)ev;
  choreo_bus_listeners *ls = arg;
  atomic_fetch_sub(&ls->connections, 1);
}

int choreo_bus_listeners_connections(choreo_bus_listeners *ls) {
  return atomic_load(&ls->connections);
}

/* The probe's SP greeting: "\0SP\0", protocol 0 (none: see bus.h), two zero bytes. */
#define BUS_GREETING 8
static const uint8_t bus_probe_greeting[BUS_GREETING] = {0, 'S', 'P', 0, 0, 0, 0, 0};

/* NNG's thread: the probe's next step once the previous one is done: connected, then our
 * greeting sent, then the listener's read. The loop ends a probe with nng_aio_free, which
 * stops what is pending and waits for a step under way. The connection is closed as soon as
 * the exchange is over: the listener hangs up on a probe, and until the probe's end (the
 * tick's next look) NNG 1.5's poller would spin on the hung-up descriptor, busy for
 * milliseconds on the thread every message of the host goes through. */
static void bus_probe_step(void *arg) {
  choreo_bus_listener *l = arg;
  nng_aio *aio = l->probe_aio;
  if (nng_aio_result(aio) != 0) { /* refused, or ended: not greeted */
    if (l->probe_conn) nng_stream_close(l->probe_conn);
    return;
  }
  if (l->probe_conn)
    l->probe_moved += nng_aio_count(aio);
  else
    l->probe_conn = nng_aio_get_output(aio, 0);
  size_t want = l->probe_moved < BUS_GREETING ? BUS_GREETING : 2 * BUS_GREETING;
  if (l->probe_moved == want) {
    atomic_store(&l->greeted, memcmp(l->probe_bytes + BUS_GREETING, bus_probe_greeting, 4) == 0);
    nng_stream_close(l->probe_conn);
    return;
  }
  nng_iov iov = {.iov_buf = l->probe_bytes + l->probe_moved, .iov_len = want - l->probe_moved};
  nng_aio_set_iov(aio, 1, &iov);
  if (want == BUS_GREETING)
    nng_stream_send(l->probe_conn, aio);
  else
    nng_stream_recv(l->probe_conn, aio);
}

static void bus_probe_start(choreo_bus_listener *l) {
  /* Any connection through it from now on proves it, the probe's or a peer's. */
  atomic_store(&l->accepted, false);
  atomic_store(&l->greeted, false);
  if (nng_aio_alloc(&l->probe_aio, bus_probe_step, l) != 0) return;
  memcpy(l->probe_bytes, bus_probe_greeting, BUS_GREETING);
  l->probe_moved = 0;
  l->probing = true;
  nng_stream_dialer_dial(l->probe_dialer, l->probe_aio);
}

static void bus_probe_end(choreo_bus_listener *l) {
  nng_aio_free(l->probe_aio);
  nng_stream_free(l->probe_conn);
  l->probe_aio = NULL;
  l->probe_conn = NULL;
  l->probing = false;
}

int choreo_bus_listeners_start(choreo_bus_listeners *ls, nng_socket s, const char *const *urls,
                               size_t n, const char *who, char *err, size_t errlen) {
  *ls = (choreo_bus_listeners){.sock = s, .who = who};
  atomic_init(&ls->connections, 0);
  ls->list = calloc(n ? n : 1, sizeof *ls->list);
  if (!ls->list) {
    snprintf(err, errlen, "out of memory");
    return CHOREO_ENOMEM;
  }
  ls->cap = n;
  for (size_t i = 0; i < n; i++) {
    choreo_bus_listener *l = &ls->list[i];
    atomic_init(&l->accepted, false);
    atomic_init(&l->greeted, false);
    atomic_init(&l->listener_id, -1);
    if (strlen(urls[i]) >= sizeof l->url) {
      snprintf(err, errlen, "cannot listen on %.200s...: URL too long", urls[i]);
      return CHOREO_EINVAL;
    }
    snprintf(l->url, sizeof l->url, "%s", urls[i]);
  }
  /* Before any listener: no connection may come unnoticed. */
  if (nng_pipe_notify(s, NNG_PIPE_EV_ADD_PRE, bus_on_pipe_added, ls) != 0 ||
      nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, bus_on_pipe_removed, ls) != 0) {
    snprintf(err, errlen, "cannot watch the connections of %s", n ? urls[0] : "a socket");
    return CHOREO_EBUS;
  }
  for (; ls->n < n; ls->n++) {
    choreo_bus_listener *l = &ls->list[ls->n];
    int rc = bus_listener_open(ls, l, err, errlen);
    if (rc) return rc;
    /* Without a probe the listener works all the same, unwatched. */
    if (nng_stream_dialer_alloc(&l->probe_dialer, l->url) != 0) l->probe_dialer = NULL;
  }
  return 0;
}

static void bus_listener_reopen(choreo_bus_listeners *ls, choreo_bus_listener *l) {
  char err[512];
  l->reopened++;
  choreo_log(CHOREO_LOG_WARN, ls->who,
             "the listener on %s let no connection through for %d s: listening again "
             "(%u times)", l->url, BUS_PROBE_PATIENCE_MS / 1000, l->reopened);
  if (l->listening) nng_listener_close(l->listener);
  l->listening = false;
  if (bus_listener_open(ls, l, err, sizeof err))
    choreo_log(CHOREO_LOG_ERROR, ls->who, "%s (tried again in %d s)", err,
               BUS_PROBE_EVERY_MS / 1000);
}

static void bus_listener_check(choreo_bus_listeners *ls, choreo_bus_listener *l,
                               uint64_t now_ms) {
  if (l->probing) {
    bool accepted = atomic_load(&l->accepted), greeted = atomic_load(&l->greeted);
    if (!(accepted && greeted) && now_ms - l->probed_at < BUS_PROBE_PATIENCE_MS) return;
    /* Greeted but never let through is the deaf listener (its transport still greets). Not
     * greeted at all, the probe could not connect: none of our business. */
    if (greeted && !accepted) bus_listener_reopen(ls, l);
    /* A probe hangs up once greeted, or after long enough: one that hung up before the
     * listener greeted it could deafen the listener itself. */
    bus_probe_end(l);
    return;
  }
  if (now_ms - l->probed_at < BUS_PROBE_EVERY_MS) return;
  l->probed_at = now_ms;
  if (!l->listening) { /* opening it again failed: once more */
    char err[512];
    if (bus_listener_open(ls, l, err, sizeof err)) {
      choreo_log(CHOREO_LOG_ERROR, ls->who, "%s (tried again in %d s)", err,
                 BUS_PROBE_EVERY_MS / 1000);
      return;
    }
  }
  bus_probe_start(l);
}

void choreo_bus_listeners_check(choreo_bus_listeners *ls, uint64_t now_ms) {
  for (size_t i = 0; i < ls->n; i++)
    if (ls->list[i].probe_dialer) bus_listener_check(ls, &ls->list[i], now_ms);
}

void choreo_bus_listeners_stop(choreo_bus_listeners *ls) {
  if (ls->list) {
    nng_pipe_notify(ls->sock, NNG_PIPE_EV_ADD_PRE, NULL, NULL);
    nng_pipe_notify(ls->sock, NNG_PIPE_EV_REM_POST, NULL, NULL);
  }
  for (size_t i = 0; i < ls->n; i++) {
    choreo_bus_listener *l = &ls->list[i];
    if (l->probing) bus_probe_end(l);
    nng_stream_dialer_free(l->probe_dialer);
    if (l->listening) nng_listener_close(l->listener);
  }
  ls->n = ls->cap = 0;
  free(ls->list);
  ls->list = NULL;
}

#define BUS_REPLY_WAIT_MS 100

int choreo_bus_server_start(choreo_bus_server *s, uv_loop_t *loop, const char *who,
                            const char *const *urls, size_t nurls, choreo_bus_recv_cb cb,
                            void *ud, const char *what, char *err, size_t errlen) {
  *s = (choreo_bus_server){.open = false};
  if (nng_rep0_open(&s->sock) != 0) {
    snprintf(err, errlen, "cannot open the %s socket", what);
    return CHOREO_EBUS;
  }
  s->open = true;
  if (choreo_bus_sender_open(&s->replies, s->sock, BUS_REPLY_WAIT_MS)) {
    snprintf(err, errlen, "out of memory");
    return CHOREO_ENOMEM;
  }
  /* The first ipc:// URL is the loop's own; the rest go to the socket, in their order. */
  const char *rest[nurls ? nurls : 1];
  size_t nrest = 0;
  int rc = 0;
  for (size_t i = 0; i < nurls && !rc; i++) {
    if (!s->local.listener.loop && choreo_sp_ipc_path(urls[i]))
      rc = choreo_sp_rep_start(&s->local, loop, urls[i], who, cb, ud, err, errlen);
    else
      rest[nrest++] = urls[i];
  }
  if (!rc) rc = choreo_bus_listeners_start(&s->listeners, s->sock, rest, nrest, who, err, errlen);
  if (rc) return rc;
  rc = choreo_bus_watch_start(&s->watch, loop, s->sock, CHOREO_DRAIN_PER_WAKE, cb, ud);
  if (rc) snprintf(err, errlen, "cannot watch the %s socket", what);
  return rc;
}

bool choreo_bus_server_on_loop(const choreo_bus_server *s) {
  return s->watch.on_loop || s->local.listener.on_loop > 0;
}

void choreo_bus_server_drain(choreo_bus_server *s) {
  if (!s->watch.started) return;
  choreo_bus_watch_drain(&s->watch);
  choreo_bus_listeners_check(&s->listeners, uv_now(s->watch.poll.loop));
}

/* The answer goes in a message of its own, not the request's: a REP socket keeps where the
 * request came from, and a reply in flight to a connection that closes in the middle of it is
 * lost by NNG 1.5 with its copy, as a publish is (below). The request was allocated on NNG's
 * receiving thread, so LeakSanitizer could not be told that it was not ours (a FETCH answer
 * lost so to a peer killed with -9 was reported as our leak). */
void choreo_bus_server_reply(choreo_bus_server *s, nng_msg *request, const void *body,
                             size_t len) {
  if (choreo_sp_rep_owns(request)) {
    choreo_sp_rep_reply(&s->local, request, body, len);
    return;
  }
  nng_msg_free(request);
  choreo_bus_lsan_pause();
  choreo_bus_send(&s->replies, body, len);
  choreo_bus_lsan_resume();
}

void choreo_bus_server_stop(choreo_bus_server *s) {
  choreo_sp_rep_stop(&s->local);
  choreo_bus_watch_stop(&s->watch, NULL); /* before its socket, which owns the descriptor */
  choreo_bus_listeners_stop(&s->listeners);
  if (s->open) choreo_bus_close(s->sock);
  s->open = false;
  choreo_bus_sender_close(&s->replies);
}

/* The copy NNG makes of what we send is NNG's: the same NNG 1.5 bug that can hold a stop
 * (bus.h) loses a message in flight to a connection that closes in the middle of it, and
 * LeakSanitizer is told that this one is not ours. */
void choreo_bus_publish(choreo_bus_sender *pub, const void *data, size_t len) {
  choreo_bus_lsan_pause();
  choreo_bus_send(pub, data, len);
  choreo_bus_lsan_resume();
}

/* A host found as its endpoint appears may not listen yet (or not on all its endpoints): tried
 * again soon, then less and less often, up to NNG's default pace of every 100 ms. */
#define BUS_REDIAL_FIRST_MS 5
#define BUS_REDIAL_MAX_MS 100

int choreo_bus_dial_id(nng_socket s, const char *url, nng_dialer *dialer, atomic_int *id) {
  nng_dialer d;
  int rv = bus_dialer_create(&d, s, url);
  if (!rv) rv = nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, CHOREO_MAX_FRAME);
  if (!rv) rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, BUS_REDIAL_FIRST_MS);
  if (!rv) rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, BUS_REDIAL_MAX_MS);
  if (!rv && id) atomic_store(id, nng_dialer_id(d));
  if (!rv) rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
  if (!rv && dialer) *dialer = d;
  return rv ? CHOREO_EBUS : 0;
}

int choreo_bus_dial(nng_socket s, const char *url, nng_dialer *dialer) {
  return choreo_bus_dial_id(s, url, dialer, NULL);
}

int choreo_bus_dir(const char *given, bool create, char *out, size_t size, char *err,
                   size_t errlen) {
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  if (given)
    snprintf(out, size, "%s", given);
  else if (xdg && *xdg)
    snprintf(out, size, "%s/choreo", xdg);
  else
    snprintf(out, size, "/tmp/choreo-%u", (unsigned)getuid());
  struct stat st;
  if (!create) {
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    snprintf(err, errlen, "no host is running on bus %s (no such directory)", out);
    return CHOREO_ENOENT;
  }
  if (mkdir(out, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create the bus directory %s: %s", out, strerror(errno));
    return CHOREO_EIO;
  }
  return 0;
}

void choreo_bus_ipc_url(char *out, size_t size, const char *dir, const char *name,
                        const char *suffix) {
  snprintf(out, size, "ipc://%s/%s.%s", dir, name, suffix);
}

int choreo_bus_rep_url(const char *pub_url, char *out, size_t size) {
  size_t n = strlen(pub_url);
  if (strncmp(pub_url, "ipc://", 6) == 0 && n > 4 && strcmp(pub_url + n - 4, ".pub") == 0) {
    snprintf(out, size, "%.*s.rep", (int)(n - 4), pub_url);
    return 0;
  }
  const char *colon = strrchr(pub_url, ':');
  if (!colon || strstr(pub_url, "://") == NULL || colon < strstr(pub_url, "://") + 3)
    return CHOREO_EINVAL;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end != '\0' || port < 1 || port > 65534) return CHOREO_EINVAL;
  snprintf(out, size, "%.*s:%ld", (int)(colon - pub_url), pub_url, port + 1);
  return 0;
}

int choreo_bus_each_host(const char *dir, const char *suffix, choreo_bus_host_fn fn, void *ud) {
  DIR *d = opendir(dir);
  if (!d) return CHOREO_EIO;
  size_t tail = strlen(suffix) + 1; /* ".SUFFIX" */
  for (struct dirent *ent; (ent = readdir(d));) {
    size_t n = strlen(ent->d_name);
    if (n <= tail || n - tail > CHOREO_NAME_MAX || ent->d_name[n - tail] != '.' ||
        strcmp(ent->d_name + n - tail + 1, suffix) != 0)
      continue;
    char name[CHOREO_NAME_MAX + 1];
    snprintf(name, sizeof name, "%.*s", (int)(n - tail), ent->d_name);
    if (choreo_name_valid(name)) fn(ud, name);
  }
  closedir(d);
  return 0;
}
