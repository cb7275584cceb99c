/* The host (choreo run): one libuv loop that owns the engine (Lua and SQLite), NNG sockets
 * polled from the loop, the timers for retries and the safety drain, the script watcher for
 * hot reload, and the signals that stop it. After every commit, new log rows go out on PUB and
 * our own handlers get them through the same dispatch path as everyone else's (DESIGN.md §2). */
#include <stdio.h>
#include <string.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>

#include "host.h"
#include "log.h"

/* The safety drain runs often because a missed wake-up shows directly as latency (it halved the
 * p99 at 20k events/s); discovery and the periodic FETCH need far less. */
#define TICK_MS 5
#define PEERS_EVERY_TICKS 50
#define RELOAD_DEBOUNCE_MS 50
#define PUBLISH_ROWS 1000
#define PUBLISH_BYTES (1u << 20)
#define OWN_BATCH 1000
#define REPLY_WAIT_MS 100

void choreo_host_report(choreo_host *h, const char *from, int rc, const choreo_apply_result *r) {
  if (rc && rc != CHOREO_EINVAL)
    choreo_log(CHOREO_LOG_ERROR, h->opts->name, "applying messages from %s failed: %s", from,
               choreo_strerror(rc));
  if (r->applied || r->failed)
    choreo_log(CHOREO_LOG_DEBUG, h->opts->name, "from %s: %d applied, %d failed, %d skipped",
               from, r->applied, r->failed, r->skipped);
}

static void host_publish(choreo_host *h) {
  choreo_store *store = choreo_engine_store(h->engine);
  int64_t head = choreo_store_head(store);
  while (h->published < head) {
    int n = choreo_store_read_frame(store, h->opts->name, h->published, PUBLISH_ROWS,
                                    PUBLISH_BYTES, &h->frame);
    if (n <= 0) return;
    /* PUB never blocks: a slow subscriber loses the frame and fetches it instead. */
    nng_send(h->pub, h->frame.data, h->frame.size, NNG_FLAG_NONBLOCK);
    if (!h->own_frame_ready && h->published == choreo_store_checkpoint(store, h->opts->name)) {
      msgpack_sbuffer spare = h->own_frame;
      h->own_frame = h->frame;
      h->frame = spare;
      h->own_frame_ready = true;
    }
    h->published += n;
  }
}

/* One uv_timer per kind of durable timer, armed for the earliest due row. */
static void host_arm(choreo_host *h, uv_timer_t *timer, int64_t due) {
  if (due < 0) {
    uv_timer_stop(timer);
    return;
  }
  int64_t wait = due - choreo_engine_now_ms(h->engine);
  uv_timer_start(timer, timer->timer_cb, wait > 0 ? (uint64_t)wait : 0, 0);
}

static void host_arm_timers(choreo_host *h) {
  host_arm(h, &h->retry_timer, choreo_store_retry_next_due(choreo_engine_store(h->engine)));
  host_arm(h, &h->timeout_timer, choreo_engine_next_timeout(h->engine));
}

void choreo_host_committed(choreo_host *h) {
  if (h->stopping) return;
  choreo_store *store = choreo_engine_store(h->engine);
  host_publish(h);
  if (choreo_store_head(store) > choreo_store_checkpoint(store, h->opts->name))
    uv_idle_start(&h->own_idle, h->own_idle.idle_cb);
  host_arm_timers(h);
}

/* Our own messages, a batch per loop iteration so a handler that keeps answering itself cannot
 * starve the sockets. */
static void host_on_own(uv_idle_t *idle) {
  choreo_host *h = idle->data;
  bool pending;
  choreo_apply_result r;
  int rc;
  if (h->own_frame_ready) {
    h->own_frame_ready = false;
    rc = choreo_engine_apply_own_frame(h->engine, h->own_frame.data, h->own_frame.size, &pending,
                                       &r);
  } else {
    rc = choreo_engine_apply_own(h->engine, OWN_BATCH, &pending, &r);
  }
  choreo_host_report(h, h->opts->name, rc, &r);
  if (!pending) uv_idle_stop(idle);
  choreo_host_committed(h);
}

static void host_on_retry(uv_timer_t *t) {
  choreo_host *h = t->data;
  choreo_apply_result r;
  choreo_engine_run_retries(h->engine, &r);
  choreo_host_report(h, "retries", 0, &r);
  choreo_host_committed(h);
}

/* Due timeouts become log rows; our own dispatch delivers them. Timeouts that came due while
 * the host was down fire right after it starts, since the timer is armed for the past. */
static void host_on_timeout(uv_timer_t *t) {
  choreo_host *h = t->data;
  choreo_engine_fire_timeouts(h->engine);
  choreo_host_committed(h);
}

static void host_on_tick(uv_timer_t *t) {
  choreo_host *h = t->data;
  choreo_bus_watch_drain(&h->rep_watch);
  choreo_bus_watch_drain(&h->ctl_watch);
  choreo_peers_drain(h);
  if (++h->ticks % PEERS_EVERY_TICKS == 0) choreo_peers_tick(h);
}

static void host_on_reload(uv_timer_t *t) {
  choreo_host *h = t->data;
  char err[1024];
  uint64_t start = uv_hrtime();
  if (choreo_engine_reload(h->engine, err, sizeof err))
    choreo_log(CHOREO_LOG_ERROR, h->opts->name, "reload rejected, keeping generation %u: %s",
               choreo_engine_generation(h->engine), err);
  else
    choreo_log(CHOREO_LOG_INFO, h->opts->name, "scripts reloaded (generation %u) in %.2f ms",
               choreo_engine_generation(h->engine), (double)(uv_hrtime() - start) / 1e6);
}

static void host_on_script_change(uv_fs_event_t *ev, const char *file, int events, int status) {
  (void)events;
  choreo_host *h = ev->data;
  size_t n = file ? strlen(file) : 0;
  if (status < 0 || (file && (n < 4 || strcmp(file + n - 4, ".lua") != 0))) return;
  /* Editors write in several steps; wait for the burst to end. */
  uv_timer_start(&h->reload_timer, host_on_reload, RELOAD_DEBOUNCE_MS, 0);
}

static void host_stop(choreo_host *h) {
  if (h->stopping) return;
  h->stopping = true;
  choreo_log(CHOREO_LOG_INFO, h->opts->name, "stopping");
  uv_close((uv_handle_t *)&h->tick, NULL);
  uv_close((uv_handle_t *)&h->retry_timer, NULL);
  uv_close((uv_handle_t *)&h->timeout_timer, NULL);
  uv_close((uv_handle_t *)&h->reload_timer, NULL);
  uv_close((uv_handle_t *)&h->own_idle, NULL);
  uv_close((uv_handle_t *)&h->watch_dir, NULL);
  uv_close((uv_handle_t *)&h->sigint, NULL);
  uv_close((uv_handle_t *)&h->sigterm, NULL);
  choreo_bus_watch_stop(&h->sub_watch, NULL);
  choreo_bus_watch_stop(&h->rep_watch, NULL);
  choreo_bus_watch_stop(&h->ctl_watch, NULL);
  choreo_peers_stop(h);
}

static void host_on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  host_stop(sig->data);
}

static int host_open_sockets(choreo_host *h, char *err, size_t errlen) {
  char url[CHOREO_URL_MAX];
  if (nng_pub0_open(&h->pub) || nng_rep0_open(&h->rep) || nng_rep0_open(&h->ctl)) {
    snprintf(err, errlen, "cannot open NNG sockets");
    return CHOREO_EBUS;
  }
  /* A REP reply sent without blocking is dropped whenever NNG has not yet noticed that the
   * requester's pipe finished the previous reply, which under load is often. So replies block,
   * but briefly: a requester that stops reading costs us at most this, then loses its answer. */
  nng_socket_set_ms(h->rep, NNG_OPT_SENDTIMEO, REPLY_WAIT_MS);
  nng_socket_set_ms(h->ctl, NNG_OPT_SENDTIMEO, REPLY_WAIT_MS);
  choreo_bus_ipc_url(url, sizeof url, h->bus, h->opts->name, "pub");
  int rc = choreo_bus_listen(h->pub, url, err, errlen);
  choreo_bus_ipc_url(url, sizeof url, h->bus, h->opts->name, "rep");
  if (!rc) rc = choreo_bus_listen(h->rep, url, err, errlen);
  choreo_bus_ipc_url(url, sizeof url, h->bus, h->opts->name, "ctl");
  if (!rc) rc = choreo_bus_listen(h->ctl, url, err, errlen);
  for (size_t i = 0; !rc && i < h->opts->nlisten; i++) {
    char rep[CHOREO_URL_MAX];
    if (choreo_bus_rep_url(h->opts->listen[i], rep, sizeof rep)) {
      snprintf(err, errlen, "--listen %s: expected tcp://HOST:PORT", h->opts->listen[i]);
      return CHOREO_EINVAL;
    }
    rc = choreo_bus_listen(h->pub, h->opts->listen[i], err, errlen);
    if (!rc) rc = choreo_bus_listen(h->rep, rep, err, errlen);
  }
  if (rc) return rc;
  if (choreo_bus_watch_start(&h->rep_watch, &h->loop, h->rep, choreo_serve_fetch, h) ||
      choreo_bus_watch_start(&h->ctl_watch, &h->loop, h->ctl, choreo_control_serve, h)) {
    snprintf(err, errlen, "cannot watch NNG sockets");
    return CHOREO_EBUS;
  }
  return choreo_peers_start(h, err, errlen);
}

static void host_start_handles(choreo_host *h) {
  uv_timer_init(&h->loop, &h->tick);
  uv_timer_init(&h->loop, &h->retry_timer);
  uv_timer_init(&h->loop, &h->timeout_timer);
  uv_timer_init(&h->loop, &h->reload_timer);
  uv_idle_init(&h->loop, &h->own_idle);
  uv_fs_event_init(&h->loop, &h->watch_dir);
  uv_signal_init(&h->loop, &h->sigint);
  uv_signal_init(&h->loop, &h->sigterm);
  h->tick.data = h->retry_timer.data = h->timeout_timer.data = h->reload_timer.data = h;
  h->own_idle.data = h->watch_dir.data = h->sigint.data = h->sigterm.data = h;
  h->retry_timer.timer_cb = host_on_retry;
  h->timeout_timer.timer_cb = host_on_timeout;
  h->own_idle.idle_cb = host_on_own;
  uv_timer_start(&h->tick, host_on_tick, TICK_MS, TICK_MS);
  uv_fs_event_start(&h->watch_dir, host_on_script_change, h->opts->dir, 0);
  uv_signal_start(&h->sigint, host_on_signal, SIGINT);
  uv_signal_start(&h->sigterm, host_on_signal, SIGTERM);
}

int choreo_host_run(const choreo_host_options *opts) {
  static choreo_host host; /* one per process; static keeps the large struct off the stack */
  choreo_host *h = &host;
  memset(h, 0, sizeof *h);
  h->opts = opts;
  msgpack_sbuffer_init(&h->frame);
  msgpack_sbuffer_init(&h->own_frame);
  char err[1024];
  choreo_engine_config cfg = {.name = opts->name, .dir = opts->dir, .data = opts->data,
                              .instruction_limit = opts->instruction_limit,
                              .memory_limit = opts->memory_limit};
  int rc = choreo_bus_dir(opts->bus, h->bus, sizeof h->bus, err, sizeof err);
  if (!rc) rc = choreo_engine_open(&h->engine, &cfg, err, sizeof err);
  bool loop_ready = !rc && uv_loop_init(&h->loop) == 0;
  if (!rc && !loop_ready) rc = CHOREO_ENOMEM;
  if (!rc) rc = host_open_sockets(h, err, sizeof err);
  if (rc) {
    fprintf(stderr, "choreo: %s\n", err);
  } else {
    h->published = choreo_store_head(choreo_engine_store(h->engine));
    host_start_handles(h);
    choreo_log(CHOREO_LOG_INFO, opts->name, "running %s (bus %s, head %lld)", opts->dir, h->bus,
               (long long)h->published);
    choreo_host_committed(h);
    uv_run(&h->loop, UV_RUN_DEFAULT);
  }
  if (loop_ready) {
    /* After a failed start some watches may be running; after a stop these are no-ops. */
    choreo_bus_watch_stop(&h->rep_watch, NULL);
    choreo_bus_watch_stop(&h->ctl_watch, NULL);
    choreo_peers_stop(h);
    uv_run(&h->loop, UV_RUN_DEFAULT); /* let closed handles finish */
    uv_loop_close(&h->loop);
  }
  nng_close(h->pub);
  nng_close(h->rep);
  nng_close(h->ctl);
  choreo_engine_close(h->engine);
  msgpack_sbuffer_destroy(&h->frame);
  msgpack_sbuffer_destroy(&h->own_frame);
  return rc;
}
