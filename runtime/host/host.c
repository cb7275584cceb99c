/* The host (choreo.h): one libuv loop that owns the engine (handlers and SQLite), the PUB
 * socket, the FETCH server, the control socket and the peers, the timers for retries, timeouts
 * and the safety drain, and the script watcher for hot reload. After every commit, new log
 * rows go out on PUB and our own handlers get them through the same dispatch path as
 * everyone else's. `choreo run` is a thin user of this file; so is any embedding program. */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "bus.h"
#include "bus_close.h"
#include "control.h"
#include "host.h"
#include "http.h"
#include "metrics.h"
#include "json.h"
#include "log.h"
#include "lua_scripts.h"
#include "peers.h"
#include "serve.h"
#include "sp_pub.h"
#include "watch.h"

/* Discovery, the periodic FETCH, the listeners' probes, the rate's samples, and a backstop drain
 * of every socket. A missed wake-up is each watch's own to catch, within 5 ms (bus.h): an idle
 * host wakes four times a second, not two hundred. */
#define TICK_MS 250
#define RELOAD_DEBOUNCE_MS 50
/* A frame's rows at most, as a FETCH answer's (CHOREO_FETCH_ROWS): at 1,000 a transaction of
 * 1,000 events and the one more a handler sent itself went out as two frames, and every frame
 * costs each subscriber its wake-ups (a quarter of a pipeline consumer's context switches). */
#define PUBLISH_ROWS 2000
#define PUBLISH_BYTES (1u << 20)
#define PUB_QUEUE 128 /* frames waiting for each subscriber */
#define OWN_BATCH 1000
#define HOST_HANDLES 9 /* six timers, own_idle, build_idle, stop_async */
/* Our own messages that no handler here takes are passed over this long after they were
 * appended, many in one transaction: one transaction each cost a relay publishing one message
 * at a time (1k/s) a fifth of its CPU, in system calls. */
#define OWN_PASS_DELAY_MS 20
#define BUILD_BATCH 500 /* stream events per step of a projection's build */
#define TRIM_EVERY_MS 10000
#define RATE_EVERY_TICKS (1000 / TICK_MS)
#define RATE_SAMPLES 61 /* a minute between the oldest and the newest */
#define TRIM_ROWS 1000 /* per transaction: a short one, then the loop's other work */
#define DEFAULT_RETAIN_MS (7 * 86400000LL)
#define DEFAULT_RETAIN_MAX_MS (30 * 86400000LL)

struct choreo_host {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  bool owns_loop;
  choreo_engine *engine;
  char *name, *dir;
  char bus[PATH_MAX];
  nng_socket pub;
  choreo_bus_sender publisher; /* on pub */
  bool pub_open;
  choreo_bus_listeners pub_listeners; /* watched by the tick, like the servers' */
  choreo_sp_pub local_pub; /* ours on the bus, served by the loop (sp_pub.h); --listen on pub */
  choreo_fetch_server serve;
  choreo_control control;
  choreo_http http;
  choreo_metrics metrics;
  choreo_peers peers;
  uv_timer_t tick, retry_timer, timeout_timer, reload_timer, trim_timer;
  uv_timer_t own_later; /* the delayed pass over our own messages (OWN_PASS_DELAY_MS) */
  int64_t retain_ms, retain_max_ms;
  uv_idle_t own_idle;
  uv_idle_t build_idle; /* steps projections' builds, one batch per loop turn */
  choreo_watch watch;
  uv_async_t stop_async; /* choreo_host_stop from any thread */
  pthread_t loop_thread;  /* the thread that opened the host, which runs its loop */
  uint64_t opened_ns;     /* uv_hrtime() at open, for the uptime */
  uint64_t rate_samples[RATE_SAMPLES]; /* handled counts, one a second */
  uint64_t rate_next;                  /* samples taken */
  uint64_t trimmed_at;                 /* the handled count when memory was last given back */
  atomic_bool stop_requested;
  int handles_on_loop; /* of the HOST_HANDLES, those the loop still holds */
  bool stopping;
  int64_t published; /* the last seq published on PUB */
  uint64_t ticks;
  msgpack_sbuffer frame;
  /* A published frame that starts where our own handlers are: the next batch for them. */
  msgpack_sbuffer own_frame;
  bool own_frame_ready;
};

choreo_engine *choreo_host_engine(choreo_host *h) { return h->engine; }
uv_loop_t *choreo_host_loop(choreo_host *h) { return h->loop; }

/* The subscribers on this machine that a frame just woke: Linux puts a task woken through a
 * socket on the writer's CPU when it can, and there it would wait for the rest of this turn of
 * the loop (the reply to a client, the timers, the next poll), ~25 µs a message at 1k/s on this
 * project's VM. Yielding the CPU lets them take the frame first (README, "Latency"); when none
 * waits on this CPU, the system call returns at once. */
static void host_hand_over(void) { sched_yield(); }

/* Subscribers on this machine that lost frames just now are told, once they have taken the
 * rest, how far our log goes (sp_pub.h); h->frame, sent already, is free for it. */
static void host_set_notice(choreo_host *h) {
  h->frame.size = 0;
  if (choreo_frame_header(&h->frame, h->name, h->published + 1, 0, h->published) == 0)
    choreo_sp_pub_set_notice(&h->local_pub, h->frame.data, h->frame.size);
}

static void host_publish(choreo_host *h) {
  int64_t head, own;
  bool woke_local = false;
  uint64_t dropped = h->local_pub.dropped;
  if (choreo_engine_head(h->engine, &head)) return; /* the next commit tries again */
  while (h->published < head) {
    int n;
    if (choreo_engine_read_log(h->engine, h->published, PUBLISH_ROWS, PUBLISH_BYTES, &h->frame,
                               &n) || n == 0)
      break;
    woke_local |= choreo_sp_pub_send(&h->local_pub, h->frame.data, h->frame.size) > 0;
    if (choreo_bus_listeners_connections(&h->pub_listeners) > 0) /* else NNG would drop it */
      choreo_bus_publish(&h->publisher, h->frame.data, h->frame.size);
    if (!h->own_frame_ready && !choreo_engine_checkpoint(h->engine, h->name, &own) &&
        h->published == own) {
      msgpack_sbuffer spare = h->own_frame;
      h->own_frame = h->frame;
      h->frame = spare;
      h->own_frame_ready = true;
    }
    h->published += n;
  }
  if (h->local_pub.dropped != dropped) host_set_notice(h);
  if (woke_local) host_hand_over();
}

/* One uv_timer per kind of durable timer, armed for the earliest due row. Never for 0 ms: a
 * timer started from its own callback for a time already past runs again in the same turn of
 * libuv's loop (libuv 1.44; issue #4245, fixed in 1.48), so a row that stays due (its run
 * failed) would hold the loop for ever, away from its sockets and from a stop. */
static void host_arm(choreo_host *h, uv_timer_t *timer, uv_timer_cb cb, int rc, int64_t due) {
  if (rc || due < 0) { /* an unreadable due time is asked again after the next commit */
    uv_timer_stop(timer);
    return;
  }
  int64_t wait = due - choreo_engine_now_ms(h->engine);
  uv_timer_start(timer, cb, wait > 1 ? (uint64_t)wait : 1, 0);
}

static void host_on_retry(uv_timer_t *t);
static void host_on_timeout(uv_timer_t *t);
static void host_on_own(uv_idle_t *idle);
static void host_on_own_later(uv_timer_t *t);

/* A build waits for nothing but the loop: it catches up a batch per turn, between the other
 * work, and swaps its tables in once it has. */
static void host_on_build(uv_idle_t *idle) {
  choreo_host *h = idle->data;
  bool pending;
  int rc = choreo_engine_projections_step(h->engine, BUILD_BATCH, &pending);
  if (rc && rc != CHOREO_ESTOPPED)
    choreo_log(CHOREO_LOG_ERROR, h->name, "projection build step failed: %s", choreo_strerror(rc));
  if (rc || !pending) uv_idle_stop(idle);
  if (!rc && !pending) choreo_peers_history(&h->peers); /* a build may wait for other hosts */
}

/* Our own messages wait for the loop's next turn, or, when no handler here takes any of them
 * and fewer than half a batch wait, for OWN_PASS_DELAY_MS: then a single pass covers all that
 * came meanwhile. The frame kept for the next turn would cover only the first of those. */
static void host_schedule_own(choreo_host *h) {
  if (uv_is_active((uv_handle_t *)&h->own_idle)) return;
  if (choreo_engine_own_passable_pending(h->engine, OWN_BATCH / 2)) {
    h->own_frame_ready = false;
    if (!uv_is_active((uv_handle_t *)&h->own_later))
      uv_timer_start(&h->own_later, host_on_own_later, OWN_PASS_DELAY_MS, 0);
    return;
  }
  uv_timer_stop(&h->own_later);
  uv_idle_start(&h->own_idle, host_on_own);
}

void choreo_host_committed(choreo_host *h) {
  if (h->stopping) return;
  if (choreo_engine_projections_building(h->engine)) uv_idle_start(&h->build_idle, host_on_build);
  host_publish(h);
  bool pending;
  /* An unreadable head or checkpoint: let own dispatch try, and fail visibly. */
  if (choreo_engine_own_pending(h->engine, &pending) || pending) host_schedule_own(h);
  int64_t due;
  int rc = choreo_engine_next_retry(h->engine, &due);
  host_arm(h, &h->retry_timer, host_on_retry, rc, due);
  rc = choreo_engine_next_timeout(h->engine, &due);
  host_arm(h, &h->timeout_timer, host_on_timeout, rc, due);
}

/* Our own messages, a batch per loop iteration so a handler that keeps answering itself cannot
 * starve the sockets. */
static void host_apply_own(choreo_host *h) {
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
  choreo_engine_report(h->engine, h->name, rc, &r);
  if (!pending) uv_idle_stop(&h->own_idle);
  choreo_host_committed(h);
}

static void host_on_own(uv_idle_t *idle) { host_apply_own(idle->data); }
static void host_on_own_later(uv_timer_t *t) { host_apply_own(t->data); }

static void host_on_retry(uv_timer_t *t) {
  choreo_host *h = t->data;
  if (atomic_load(&h->stop_requested)) return; /* the stop closes the timer */
  choreo_apply_result r;
  int rc = choreo_engine_run_retries(h->engine, &r);
  choreo_engine_report(h->engine, "retries", rc, &r);
  choreo_host_committed(h);
}

/* Due timeouts become log rows; our own dispatch delivers them. Timeouts that came due while
 * the host was down fire right after it starts, since the timer is armed for the past. */
static void host_on_timeout(uv_timer_t *t) {
  choreo_host *h = t->data;
  if (atomic_load(&h->stop_requested)) return;
  int rc = choreo_engine_fire_timeouts(h->engine);
  if (rc) choreo_log(CHOREO_LOG_ERROR, h->name, "firing timeouts failed: %s", choreo_strerror(rc));
  choreo_host_committed(h);
}

/* The program may keep free memory at the top of each heap while messages flow (main.c), so a
 * burst would leave the process as large as the burst made it; after a quiet second it is
 * given back, once per burst. */
static void host_give_back_memory(choreo_host *h, uint64_t handled) {
#ifdef __GLIBC__
  if (handled == h->trimmed_at) return;
  malloc_trim(0);
  h->trimmed_at = handled;
#else
  (void)h;
  (void)handled;
#endif
}

/* The handled count once a second, the last minute of it kept: status's messages per second. */
static void host_sample_rate(choreo_host *h) {
  uint64_t handled = choreo_engine_handled(h->engine);
  if (h->rate_next && handled == h->rate_samples[(h->rate_next - 1) % RATE_SAMPLES])
    host_give_back_memory(h, handled);
  h->rate_samples[h->rate_next % RATE_SAMPLES] = handled;
  h->rate_next++;
}

static double host_rate(const choreo_host *h) {
  if (h->rate_next < 2) return 0;
  uint64_t n = h->rate_next < RATE_SAMPLES ? h->rate_next : RATE_SAMPLES;
  uint64_t newest = h->rate_samples[(h->rate_next - 1) % RATE_SAMPLES];
  uint64_t oldest = h->rate_samples[(h->rate_next - n) % RATE_SAMPLES];
  return (double)(newest - oldest) / (double)(n - 1);
}

static void host_on_tick(uv_timer_t *t) {
  choreo_host *h = t->data;
  choreo_serve_drain(&h->serve);
  choreo_control_drain(&h->control);
  choreo_peers_drain(&h->peers);
  choreo_bus_listeners_check(&h->pub_listeners, uv_now(h->loop));
  choreo_peers_tick(&h->peers);
  if (++h->ticks % RATE_EVERY_TICKS == 0) host_sample_rate(h);
}

/* Short retentions (tests, small disks) are looked at more often than every 10 s. */
static uint64_t host_trim_every(const choreo_host *h) {
  int64_t half = h->retain_ms / 2;
  return (uint64_t)(half < 100 ? 100 : half < TRIM_EVERY_MS ? half : TRIM_EVERY_MS);
}

/* Retention, off the hot path: a short transaction now and then, and while a backlog of old
 * rows lasts, one a millisecond (not 0: see host_arm), with everything else run in between. */
static void host_on_trim(uv_timer_t *t) {
  choreo_host *h = t->data;
  int deleted = 0;
  int rc = choreo_engine_trim(h->engine, h->retain_ms, h->retain_max_ms, TRIM_ROWS, &deleted);
  if (rc) choreo_log(CHOREO_LOG_ERROR, h->name, "retention failed: %s", choreo_strerror(rc));
  if (deleted) choreo_log(CHOREO_LOG_DEBUG, h->name, "retention deleted %d log rows", deleted);
  uv_timer_start(t, host_on_trim, deleted >= TRIM_ROWS ? 1 : host_trim_every(h), 0);
}

int choreo_host_reload(choreo_host *h, char *err, size_t errlen) {
  if (choreo_engine_current(h->engine)) { /* the running scripts cannot be swapped under it */
    if (err && errlen) snprintf(err, errlen, "a reload cannot start inside a handler");
    return CHOREO_EINVAL;
  }
  char why[1024];
  uint64_t start = uv_hrtime();
  int rc = choreo_engine_reload(h->engine, why, sizeof why);
  if (rc)
    choreo_log(CHOREO_LOG_ERROR, h->name, "reload rejected, keeping generation %u: %s",
               choreo_engine_generation(h->engine), why);
  else
    choreo_log(CHOREO_LOG_INFO, h->name, "scripts reloaded (generation %u) in %.2f ms",
               choreo_engine_generation(h->engine), (double)(uv_hrtime() - start) / 1e6);
  if (!rc) choreo_host_committed(h); /* a projection's new version starts building */
  if (rc && err && errlen) snprintf(err, errlen, "%s", why);
  return rc;
}

static void host_on_reload(uv_timer_t *t) {
  choreo_host *h = t->data;
  choreo_host_reload(h, NULL, 0);
}

static void host_on_script_change(void *ud) {
  choreo_host *h = ud;
  /* Editors write in several steps; wait for the burst to end. */
  uv_timer_start(&h->reload_timer, host_on_reload, RELOAD_DEBOUNCE_MS, 0);
}

/* The host's own handles, in the order host_start_handles initialises them: five timers, the
 * two idles, the async. */
static void host_handles(choreo_host *h, uv_handle_t *out[HOST_HANDLES]) {
  uv_handle_t *list[HOST_HANDLES] = {
      (uv_handle_t *)&h->tick,          (uv_handle_t *)&h->retry_timer,
      (uv_handle_t *)&h->timeout_timer, (uv_handle_t *)&h->reload_timer,
      (uv_handle_t *)&h->trim_timer,    (uv_handle_t *)&h->own_later,
      (uv_handle_t *)&h->own_idle,      (uv_handle_t *)&h->build_idle,
      (uv_handle_t *)&h->stop_async};
  memcpy(out, list, sizeof list);
}

static void host_on_handle_closed(uv_handle_t *handle) {
  ((choreo_host *)handle->data)->handles_on_loop--;
}

/* Closes everything the host has on the loop; each part lets go of its handles in its own
 * time (choreo_host_stopped). */
static void host_stop_now(choreo_host *h) {
  if (h->stopping) return;
  h->stopping = true;
  atomic_store(&h->stop_requested, true);
  if (h->handles_on_loop) {
    choreo_log(CHOREO_LOG_INFO, h->name, "stopping");
    uv_handle_t *handles[HOST_HANDLES];
    host_handles(h, handles);
    for (int i = 0; i < h->handles_on_loop; i++) uv_close(handles[i], host_on_handle_closed);
  }
  choreo_watch_stop(&h->watch);
  choreo_serve_stop(&h->serve);
  choreo_control_stop(&h->control);
  choreo_http_stop(&h->http);
  choreo_metrics_stop(&h->metrics);
  choreo_peers_stop(&h->peers);
  choreo_sp_pub_stop(&h->local_pub);
  choreo_bus_listeners_stop(&h->pub_listeners); /* before its socket */
  if (h->pub_open) choreo_bus_close(h->pub);
  h->pub_open = false;
  choreo_bus_sender_close(&h->publisher);
  /* We began between two batches: what is committed is all there is, as after kill -9. */
  if (choreo_bus_nng_stuck())
    choreo_log(CHOREO_LOG_WARN, h->name,
               "stopped, but NNG 1.5 still holds a connection closed in the middle of a "
               "message (a known NNG bug): its sockets are left to it; nothing was left to "
               "commit");
}

static void host_on_stop(uv_async_t *async) { host_stop_now(async->data); }

/* Atomics and uv_async_send only. From another thread, a handler under way (a Lua loop, a
 * runaway query) is cut short at once and its batch rolls back, so the loop, free again, can
 * close everything. On the loop's thread the caller is a handler or a callback, which returns
 * by itself: its batch commits first. */
void choreo_host_stop(choreo_host *h) {
  if (!h || atomic_exchange(&h->stop_requested, true)) return;
  if (!pthread_equal(pthread_self(), h->loop_thread)) choreo_engine_interrupt(h->engine);
  uv_async_send(&h->stop_async);
}

bool choreo_host_stopped(const choreo_host *h) {
  return h->stopping && h->handles_on_loop == 0 && h->watch.on_loop == 0 &&
         !choreo_bus_server_on_loop(&h->serve.server) &&
         !choreo_bus_server_on_loop(&h->control.server) && !h->http.on_loop &&
         !h->metrics.on_loop && h->local_pub.listener.on_loop == 0 && h->peers.on_loop == 0;
}

/* Lets the loop finish closing what host_stop_now closed. A caller's loop is only stepped,
 * without waiting, until our handles are gone. */
static void host_finish_closing(choreo_host *h) {
  if (h->owns_loop) {
    uv_run(h->loop, UV_RUN_DEFAULT);
    return;
  }
  while (!choreo_host_stopped(h)) uv_run(h->loop, UV_RUN_NOWAIT);
}

/* Ours on the bus (the loop's own), and each --listen (the PUB socket's, watched as the FETCH
 * listeners are: one gone deaf would leave every peer that reconnects without our live frames,
 * bus.h). */
static int host_listen_pub(choreo_host *h, const choreo_host_config *cfg, char *err,
                           size_t errlen) {
  /* A subscriber's queue of frames: at NNG's 16, a consumer that paused for a WAL restart
   * (tens of ms) behind a producer publishing 400k events/s lost frames, and caught them up
   * through FETCH while the producer went on. The frames are shared by the subscribers'
   * queues, not copied. */
  if (nng_pub0_open(&h->pub) != 0) {
    snprintf(err, errlen, "cannot open the publisher socket");
    return CHOREO_EBUS;
  }
  h->pub_open = true;
  if (nng_socket_set_int(h->pub, NNG_OPT_SENDBUF, PUB_QUEUE) != 0) {
    snprintf(err, errlen, "cannot size the publisher socket's queues");
    return CHOREO_EBUS;
  }
  if (choreo_bus_sender_open(&h->publisher, h->pub, NNG_DURATION_ZERO)) {
    snprintf(err, errlen, "out of memory");
    return CHOREO_ENOMEM;
  }
  char own[CHOREO_URL_MAX];
  choreo_bus_ipc_url(own, sizeof own, h->bus, h->name, "pub");
  int rc = choreo_sp_pub_start(&h->local_pub, h->loop, own, h->name, err, errlen);
  if (!rc)
    rc = choreo_bus_listeners_start(&h->pub_listeners, h->pub, cfg->listen,
                                    cfg->nlisten, h->name, err, errlen);
  return rc;
}

/* The FETCH endpoints: ours on the bus, and port + 1 of each --listen (checked before). */
static int host_serve(choreo_host *h, const choreo_host_config *cfg, char *err, size_t errlen) {
  size_t n = cfg->nlisten + 1;
  char (*urls)[CHOREO_URL_MAX] = calloc(n, sizeof *urls);
  const char **list = calloc(n, sizeof *list);
  if (!urls || !list) {
    free(list);
    free(urls);
    snprintf(err, errlen, "out of memory");
    return CHOREO_ENOMEM;
  }
  choreo_bus_ipc_url(urls[0], sizeof urls[0], h->bus, h->name, "rep");
  for (size_t i = 0; i < cfg->nlisten; i++)
    choreo_bus_rep_url(cfg->listen[i], urls[i + 1], sizeof urls[i + 1]);
  for (size_t i = 0; i < n; i++) list[i] = urls[i];
  int rc = choreo_serve_start(&h->serve, h->loop, h, h->engine, list, n, err, errlen);
  free(list);
  free(urls);
  return rc;
}

static void host_committed_cb(void *ud) { choreo_host_committed(ud); }

static int host_start_sockets(choreo_host *h, const choreo_host_config *cfg, char *err,
                              size_t errlen) {
  char url[CHOREO_URL_MAX];
  for (size_t i = 0; i < cfg->nlisten; i++) { /* checked first: nothing listens on a bad one */
    if (choreo_bus_rep_url(cfg->listen[i], url, sizeof url)) {
      snprintf(err, errlen, "--listen %s: expected tcp://HOST:PORT", cfg->listen[i]);
      return CHOREO_EINVAL;
    }
  }
  int rc = host_listen_pub(h, cfg, err, errlen);
  if (!rc) rc = host_serve(h, cfg, err, errlen);
  choreo_bus_ipc_url(url, sizeof url, h->bus, h->name, "ctl");
  if (!rc) rc = choreo_control_start(&h->control, h->loop, h, url, err, errlen);
  if (!rc && cfg->http) rc = choreo_http_start(&h->http, h->loop, h, cfg->http, err, errlen);
  if (!rc && cfg->metrics)
    rc = choreo_metrics_start(&h->metrics, h->loop, h, cfg->metrics, err, errlen);
  if (!rc)
    rc = choreo_peers_start(&h->peers, h->loop, h->engine, h->bus, cfg->peers, cfg->npeers,
                            host_committed_cb, h, err, errlen);
  return rc;
}

/* Initialises the host's own handles in host_handles() order; handles_on_loop counts those
 * that made it, and only those are closed. */
static int host_start_handles(choreo_host *h) {
  uv_handle_t *handles[HOST_HANDLES];
  host_handles(h, handles);
  int rc = 0;
  for (int i = 0; i < HOST_HANDLES && !rc; i++) {
    rc = i < 6   ? uv_timer_init(h->loop, (uv_timer_t *)handles[i])
         : i < 8  ? uv_idle_init(h->loop, (uv_idle_t *)handles[i])
                  : uv_async_init(h->loop, &h->stop_async, host_on_stop);
    if (!rc) {
      handles[i]->data = h;
      h->handles_on_loop++;
    }
  }
  if (!rc) rc = uv_timer_start(&h->tick, host_on_tick, TICK_MS, TICK_MS);
  if (!rc) rc = uv_timer_start(&h->trim_timer, host_on_trim, host_trim_every(h), 0);
  if (!rc) rc = choreo_watch_start(&h->watch, h->loop, h->dir, h->name, host_on_script_change, h);
  return rc ? CHOREO_EIO : 0;
}

const char *choreo_host_default_name(const char *real_dir) {
  const char *slash = strrchr(real_dir, '/');
  return slash && slash[1] ? slash + 1 : "root";
}

/* The defaults of choreo_host_config: the directory resolved, the name its base name, the
 * database DIR/.choreo/NAME.db. */
static int host_resolve(choreo_host *h, const choreo_host_config *cfg, char *data, size_t size,
                        char *err, size_t errlen) {
  char real[PATH_MAX];
  struct stat st;
  if (!cfg->dir || stat(cfg->dir, &st) != 0 || !S_ISDIR(st.st_mode) || !realpath(cfg->dir, real)) {
    snprintf(err, errlen, "%s: no such directory", cfg->dir ? cfg->dir : "(no directory given)");
    return CHOREO_ENOENT;
  }
  h->dir = strdup(real);
  h->name = strdup(cfg->name ? cfg->name : choreo_host_default_name(real));
  if (!h->dir || !h->name) return CHOREO_ENOMEM;
  int rc = choreo_name_check(h->name, err, errlen);
  if (rc) return rc;
  if (cfg->data) {
    snprintf(data, size, "%s", cfg->data);
    return 0;
  }
  snprintf(data, size, "%s/.choreo", real);
  if (mkdir(data, 0755) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create %.512s: %s", data, strerror(errno));
    return CHOREO_EIO;
  }
  snprintf(data, size, "%s/.choreo/%s.db", real, h->name);
  return 0;
}

/* Opens the host; err gets the reason for a failure. */
static int host_open(choreo_host **out, const choreo_host_config *cfg, char *err, size_t errlen) {
  choreo_host *h = calloc(1, sizeof *h);
  if (!h) return CHOREO_ENOMEM;
  msgpack_sbuffer_init(&h->frame);
  msgpack_sbuffer_init(&h->own_frame);
  atomic_init(&h->stop_requested, false);
  h->loop_thread = pthread_self();
  h->opened_ns = uv_hrtime();
  h->rate_next = 1; /* a first sample of 0 handled, at the start */
  h->retain_ms = cfg->retain_ms > 0 ? cfg->retain_ms : DEFAULT_RETAIN_MS;
  h->retain_max_ms = cfg->retain_max_ms > 0 ? cfg->retain_max_ms : DEFAULT_RETAIN_MAX_MS;
  if (h->retain_max_ms < h->retain_ms) h->retain_max_ms = h->retain_ms;
  char data[PATH_MAX + 64];
  int rc = host_resolve(h, cfg, data, sizeof data, err, errlen);
  if (!rc) rc = choreo_bus_dir(cfg->bus, true, h->bus, sizeof h->bus, err, errlen);
  choreo_engine_config ecfg = {.name = h->name, .dir = h->dir, .data = data,
                               .scripts = &choreo_lua_scripts,
                               .instruction_limit = cfg->instruction_limit,
                               .memory_limit = cfg->memory_limit,
                               .max_message = cfg->max_message,
                               .page_size = cfg->page_size,
                               .workflow_cache = cfg->workflow_cache,
                               .workflow_history_max = cfg->workflow_history_max,
                               .no_journal = cfg->no_journal,
                               .otlp_json = cfg->otlp_json,
                               .fetch_history = true};
  if (!rc) rc = choreo_engine_open(&h->engine, &ecfg, err, errlen);
  if (!rc && !cfg->loop) {
    h->owns_loop = uv_loop_init(&h->own_loop) == 0;
    if (!h->owns_loop) {
      snprintf(err, errlen, "cannot create an event loop");
      rc = CHOREO_ENOMEM;
    }
  }
  h->loop = cfg->loop ? cfg->loop : &h->own_loop;
  if (!rc) rc = choreo_engine_head(h->engine, &h->published);
  if (!rc) rc = host_start_sockets(h, cfg, err, errlen);
  if (!rc && host_start_handles(h)) {
    snprintf(err, errlen, "%s: cannot watch the scripts directory", h->dir);
    rc = CHOREO_EIO;
  }
  if (rc) {
    choreo_host_close(h);
    return rc;
  }
  choreo_log(CHOREO_LOG_INFO, h->name, "running %s (bus %s, head %lld)", h->dir, h->bus,
             (long long)h->published);
  choreo_host_committed(h);
  *out = h;
  return 0;
}

/* A write to a connection the other side closed (sp_conn.c writes with write(2), as libuv
 * does) must fail with EPIPE, not end the process. A handler the embedder set stays. */
static void host_ignore_sigpipe(void) {
  struct sigaction was;
  if (sigaction(SIGPIPE, NULL, &was) == 0 && was.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

int choreo_host_open(choreo_host **out, const choreo_host_config *cfg, char *err, size_t errlen) {
  char why[1024] = "";
  *out = NULL;
  host_ignore_sigpipe();
  int rc = cfg ? host_open(out, cfg, why, sizeof why) : CHOREO_EINVAL;
  if (rc && !why[0]) snprintf(why, sizeof why, "%s", choreo_strerror(rc));
  if (err && errlen) snprintf(err, errlen, "%s", rc ? why : "");
  return rc;
}

int choreo_host_run(choreo_host *h) {
  if (!h->owns_loop) return CHOREO_EINVAL;
  uv_run(h->loop, UV_RUN_DEFAULT);
  return 0;
}

void choreo_host_close(choreo_host *h) {
  if (!h) return;
  host_stop_now(h);
  host_finish_closing(h);
  if (h->owns_loop && uv_loop_close(&h->own_loop) != 0) {
    /* A handle of the program's is still on the host's loop: freeing the loop under it would
     * crash later, so the host is left allocated. */
    choreo_log(CHOREO_LOG_ERROR, h->name, "a handle is still open on the host's loop: not freed");
    return;
  }
  choreo_engine_close(h->engine);
  msgpack_sbuffer_destroy(&h->frame);
  msgpack_sbuffer_destroy(&h->own_frame);
  free(h->name);
  free(h->dir);
  free(h);
}

int choreo_host_on(choreo_host *h, const char *pattern, choreo_handler_fn fn, void *ud) {
  return choreo_engine_on(h->engine, pattern, fn, ud);
}

int choreo_host_append(choreo_host *h, const char *kind, const char *to, const char *type,
                       const choreo_emit_opts *opts, const char *const *data, const size_t *len,
                       int n, const char *key, int64_t *first_seq, bool *repeated) {
  /* Inside a handler the batch's transaction is open: appending on its own would end it. */
  if (h->stopping || choreo_engine_current(h->engine)) return CHOREO_EINVAL;
  int rc = choreo_engine_emit_batch(h->engine, kind, to, type, opts, data, len, n, key, first_seq,
                                    repeated);
  if (!rc) choreo_host_committed(h);
  return rc;
}

static int host_emit(choreo_host *h, const char *kind, const char *to, const char *type,
                     const char *json, int64_t *seq) {
  if (!type || !type[0]) return CHOREO_EINVAL;
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  int rc = json ? choreo_json_to_msgpack(json, &sb, NULL, 0) : 0;
  const char *data = sb.size ? sb.data : NULL;
  if (!rc) rc = choreo_host_append(h, kind, to, type, NULL, &data, &sb.size, 1, NULL, seq, NULL);
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

int choreo_host_publish(choreo_host *h, const char *type, const char *json, int64_t *seq) {
  return host_emit(h, "event", NULL, type, json, seq);
}

int choreo_host_send(choreo_host *h, const char *to, const char *type, const char *json,
                     int64_t *seq) {
  if (!to || !choreo_name_valid(to)) return CHOREO_EINVAL;
  return host_emit(h, "command", to, type, json, seq);
}

int choreo_host_status_get(choreo_host *h, choreo_host_status *out) {
  *out = (choreo_host_status){.name = h->name, .dir = h->dir,
                              .generation = choreo_engine_generation(h->engine),
                              .reload_error = choreo_engine_reload_error(h->engine),
                              .bad_frames = choreo_engine_bad_frames(h->engine),
                              .npeers = (size_t)h->peers.n,
                              .subscribers = choreo_sp_pub_subscribers(&h->local_pub) +
                                             choreo_bus_listeners_connections(&h->pub_listeners)};
  const choreo_unhandled *unhandled;
  int types;
  choreo_engine_unhandled(h->engine, &unhandled, &types, &out->unhandled);
  for (int i = 0; i < types; i++) out->unhandled += unhandled[i].count;
  int rc = choreo_engine_head(h->engine, &out->head);
  if (!rc) rc = choreo_engine_checkpoint(h->engine, h->name, &out->own_applied);
  if (!rc) rc = choreo_engine_dead_count(h->engine, &out->dead_letters);
  if (!rc) rc = choreo_engine_log_extent(h->engine, &out->oldest, &out->db_bytes,
                                               &out->wal_bytes);
  if (!rc) rc = choreo_engine_retry_count(h->engine, &out->retries_pending);
  if (!rc) rc = choreo_engine_pending_timeouts(h->engine, &out->timeouts_pending);
  if (!rc) rc = choreo_engine_saga_count(h->engine, &out->sagas_running);
  if (!rc) rc = choreo_workflows_count(choreo_engine_workflows(h->engine), "running",
                                       &out->workflows_running);
  if (!rc) rc = choreo_workflows_count(choreo_engine_workflows(h->engine), "stuck",
                                       &out->workflows_stuck);
  out->uptime_s = (double)(uv_hrtime() - h->opened_ns) / 1e9;
  out->handled = choreo_engine_handled(h->engine);
  out->handled_per_s = host_rate(h);
  return rc;
}

int choreo_host_peer_get(choreo_host *h, size_t i, choreo_peer_status *out) {
  return choreo_peers_status(&h->peers, i, out);
}
