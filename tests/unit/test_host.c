/* Unit tests of the public embedding API (runtime/include/choreo.h, runtime/host/host.c): real
 * hosts with real NNG sockets, SQLite files and libuv loops, driven only through choreo.h.
 * They check what an embedding program relies on: a host on its own loop runs Lua and C
 * handlers side by side and stops from a handler or from another thread; a host on the
 * caller's loop refuses choreo_host_run, and once stopped leaves no handle on that loop; a
 * host closed without ever running lets go of everything; bad configurations and bad
 * messages are refused with the documented codes and texts, and a refused open leaves nothing
 * behind; a reload that fails keeps the running scripts and one that succeeds swaps them in;
 * the name and database defaults; two hosts on one bus find each other and deliver an event
 * across; and the peer list, named from the bus or as given by --peer.
 *
 * Everything lives in a fresh /tmp/choreo-test-host-XXXXXX directory, removed at the end; each
 * test makes its own subdirectory with its scripts, its bus directory (the ipc:// endpoints,
 * so no test can see another's hosts, nor any host running elsewhere on the machine) and its
 * database files. No test can wait for ever: every loop the tests run has a safety timer that
 * stops the hosts, breaks the loop and fails the test when it fires, and alarm() bounds the
 * process. Beside choreo.h and uv.h only nng_fini() is used, at the very end (see main), and
 * whether NNG let go of every socket (bus_close.h). */
#include <limits.h>
#include <nng/nng.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bus_close.h"
#include "check.h"
#include "temp_files.h"
#include "choreo.h"

#define SAFETY_MS 10000 /* far above what any test needs; only a broken host gets there */

static char root[64];

/* Emits one Pong per Ping: a Pong reaching a C handler proves the Lua handler ran. */
static const char ping_pong_lua[] =
    "local choreo = require 'choreo'\n"
    "choreo.on('Ping', function(msg, ctx)\n"
    "  ctx:publish('Pong', { n = msg.data.n })\n"
    "end)\n";

/* ---- files ---- */

static bool is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* One test's corner of the temp directory: ROOT/TAG/scripts (the host's dir, with
 * handlers.lua when script is given), ROOT/TAG/bus and ROOT/TAG/host.db. */
typedef struct {
  char base[128], dir[160], bus[160], data[160], script[192];
} place;

static void place_make(place *p, const char *tag, const char *script) {
  snprintf(p->base, sizeof p->base, "%s/%s", root, tag);
  snprintf(p->dir, sizeof p->dir, "%s/scripts", p->base);
  snprintf(p->bus, sizeof p->bus, "%s/bus", p->base);
  snprintf(p->data, sizeof p->data, "%s/host.db", p->base);
  snprintf(p->script, sizeof p->script, "%s/handlers.lua", p->dir);
  CHECK(mkdir(p->base, 0700) == 0);
  CHECK(mkdir(p->dir, 0700) == 0);
  CHECK(mkdir(p->bus, 0700) == 0);
  if (script) check_write_file(p->script, script);
}

static choreo_host_config place_config(const place *p, const char *name, uv_loop_t *loop) {
  return (choreo_host_config){.dir = p->dir, .name = name, .data = p->data, .bus = p->bus,
                              .loop = loop};
}

static choreo_host *open_host(const choreo_host_config *cfg) {
  char err[512] = "";
  choreo_host *h = NULL;
  int rc = choreo_host_open(&h, cfg, err, sizeof err);
  if (rc) fprintf(stderr, "open %s: %s (%s)\n", cfg->name ? cfg->name : "?", err,
                  choreo_strerror(rc));
  CHECK(rc == 0 && h != NULL);
  return h;
}

static double ms_since(uint64_t start) { return (double)(uv_hrtime() - start) / 1e6; }

/* ---- bounding time ---- */

/* A timer that stops the hosts and breaks uv_run when it fires, which fails the test. It is
 * unreferenced, so it never keeps a loop alive by itself: a loop whose hosts stopped cleanly
 * returns from uv_run while it is still armed. */
typedef struct {
  uv_timer_t timer;
  choreo_host *hosts[2];
  bool fired;
} safety_net;

static void safety_fired(uv_timer_t *t) {
  safety_net *s = t->data;
  s->fired = true;
  fprintf(stderr, "safety timer fired\n");
  for (int i = 0; i < 2; i++)
    if (s->hosts[i]) choreo_host_stop(s->hosts[i]);
  uv_stop(t->loop);
}

static void safety_arm(safety_net *s, uv_loop_t *loop, choreo_host *a, choreo_host *b) {
  s->hosts[0] = a;
  s->hosts[1] = b;
  s->fired = false;
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  uv_timer_start(&s->timer, safety_fired, SAFETY_MS, 0);
  uv_unref((uv_handle_t *)&s->timer);
}

/* Before choreo_host_close: on the host's own loop, close runs the loop, which finishes this. */
static void safety_disarm(safety_net *s) { uv_close((uv_handle_t *)&s->timer, NULL); }

/* Steps a caller's loop until *count reaches want, or ms pass. The host's 5 ms tick keeps
 * UV_RUN_ONCE short. */
static bool run_until(uv_loop_t *loop, const int *count, int want, double ms) {
  uint64_t start = uv_hrtime();
  while (*count < want && ms_since(start) < ms) uv_run(loop, UV_RUN_ONCE);
  return *count >= want;
}

/* The handles still on a loop (closed ones are gone once uv_run has returned), but one. */
static void count_handle(uv_handle_t *handle, void *arg) {
  void **a = arg;
  if ((void *)handle != a[0]) (*(int *)a[1])++;
}

static int handles_left(uv_loop_t *loop, void *except) {
  int n = 0;
  void *arg[2] = {except, &n};
  uv_walk(loop, count_handle, arg);
  return n;
}

/* ---- C handlers ---- */

/* Counts Pings and Pongs, checks what a C handler sees, stops the host after stop_after
 * Pongs. */
typedef struct {
  choreo_host *h;
  const char *name;
  int pings, pongs, stop_after;
  int wrong; /* messages that did not look as expected */
} counter;

static int count_handler(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  counter *c = ud;
  CHECK(ctx != NULL && choreo_ctx_db(ctx) != NULL);
  bool ping = strcmp(msg->type, "Ping") == 0;
  int n = ping ? ++c->pings : ++c->pongs; /* both arrive in order: n = 1, 2, ... */
  char want[32];
  snprintf(want, sizeof want, "{\"n\":%d}", n);
  char *json = choreo_message_json(msg);
  if (!json || strcmp(json, want) != 0 || strcmp(msg->kind, "event") != 0 ||
      strcmp(msg->source, c->name) != 0 || msg->seq < 1 || !msg->id ||
      (!ping && !msg->causationid)) { /* a Pong is caused by its Ping */
    fprintf(stderr, "unexpected %s: %s from %s\n", msg->type, json ? json : "(null)",
            msg->source);
    c->wrong++;
  }
  free(json);
  /* The batch's transaction is open: the host's own publish, send and reload refuse, and the
   * head stays where it was (choreo_ctx_* is the way from a handler). */
  choreo_host_status before, after;
  CHECK(choreo_host_status_get(c->h, &before) == 0);
  CHECK(choreo_host_publish(c->h, "Inside", NULL, NULL) == CHOREO_EINVAL);
  CHECK(choreo_host_send(c->h, c->name, "Inside", NULL, NULL) == CHOREO_EINVAL);
  CHECK(choreo_host_reload(c->h, NULL, 0) == CHOREO_EINVAL);
  CHECK(choreo_host_status_get(c->h, &after) == 0 && after.head == before.head);
  if (!ping && c->pongs == c->stop_after) choreo_host_stop(c->h);
  return 0;
}

/* ---- 1. own loop: Lua and C handlers, stop from a handler, status ---- */

static void test_own_loop(void) {
  place p;
  place_make(&p, "own", ping_pong_lua);
  choreo_host_config cfg = place_config(&p, "one", NULL);
  choreo_host *h = open_host(&cfg);
  if (!h) return;
  CHECK(choreo_host_loop(h) != NULL);
  CHECK(!choreo_host_stopped(h));
  CHECK(bus_entries(p.bus) == 3); /* one.pub, one.rep, one.ctl */
  enum { N = 5 };
  counter c = {.h = h, .name = "one", .stop_after = N};
  CHECK(choreo_host_on(h, "Ping", count_handler, &c) == 0);
  CHECK(choreo_host_on(h, "Pong", count_handler, &c) == 0);
  /* Appended now, handled once the loop runs ("nothing is handled before the loop runs"). */
  for (int i = 1; i <= N; i++) {
    char json[32];
    snprintf(json, sizeof json, "{\"n\":%d}", i);
    int64_t seq = -1;
    CHECK(choreo_host_publish(h, "Ping", json, &seq) == 0);
    CHECK(seq == i);
  }
  CHECK(c.pings == 0);
  safety_net s;
  safety_arm(&s, choreo_host_loop(h), h, NULL);
  uint64_t start = uv_hrtime();
  CHECK(choreo_host_run(h) == 0);
  fprintf(stderr, "  own loop: %d Pings and Pongs in %.1f ms\n", c.pings + c.pongs,
          ms_since(start));
  CHECK(!s.fired);
  CHECK(c.pings == N && c.pongs == N && c.wrong == 0);
  CHECK(choreo_host_stopped(h));

  choreo_host_status st;
  CHECK(choreo_host_status_get(h, &st) == 0);
  char real[PATH_MAX];
  CHECK(realpath(p.dir, real) != NULL);
  CHECK(strcmp(st.name, "one") == 0);
  CHECK(strcmp(st.dir, real) == 0);
  CHECK(st.head == 2 * N); /* N Pings and the N Pongs the script emitted */
  CHECK(st.own_applied == st.head);
  CHECK(st.generation == 1);
  CHECK(st.reload_error != NULL && st.reload_error[0] == '\0');
  CHECK(st.dead_letters == 0);
  CHECK(st.bad_frames == 0);

  safety_disarm(&s);
  choreo_host_close(h);
  CHECK(bus_entries(p.bus) == 0); /* every listener closed */
  choreo_host_close(NULL); /* allowed */
  remove_tree(p.base);
}

/* ---- 2. stop from another thread ---- */

static void *stop_later(void *arg) {
  struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
  nanosleep(&ts, NULL);
  choreo_host_stop(arg);
  choreo_host_stop(arg); /* the second call does nothing */
  return NULL;
}

static void test_stop_from_thread(void) {
  place p;
  place_make(&p, "thread", ping_pong_lua);
  choreo_host_config cfg = place_config(&p, "two", NULL);
  choreo_host *h = open_host(&cfg);
  if (!h) return;
  safety_net s;
  safety_arm(&s, choreo_host_loop(h), h, NULL);
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, stop_later, h) == 0);
  uint64_t start = uv_hrtime();
  CHECK(choreo_host_run(h) == 0);
  double ms = ms_since(start);
  CHECK(pthread_join(thread, NULL) == 0);
  fprintf(stderr, "  stopped from a thread after %.1f ms\n", ms);
  CHECK(!s.fired);
  CHECK(ms >= 150); /* it ran until the thread stopped it (the safety net bounds the rest) */
  CHECK(choreo_host_stopped(h));
  choreo_host_stop(h); /* again, after the host has closed its handles: harmless */
  CHECK(choreo_host_stopped(h));
  safety_disarm(&s);
  choreo_host_close(h);

  /* A stop asked before the loop runs: choreo_host_run returns at once. */
  h = open_host(&cfg);
  if (h) {
    safety_arm(&s, choreo_host_loop(h), h, NULL);
    choreo_host_stop(h);
    start = uv_hrtime();
    CHECK(choreo_host_run(h) == 0);
    CHECK(!s.fired);
    CHECK(choreo_host_stopped(h));
    safety_disarm(&s);
    choreo_host_close(h);
  }
  remove_tree(p.base);
}

/* A handler that would never return, with a budget far too large to help: a stop from another
 * thread cuts it short (Lua loop and endless query alike), its batch rolls back (the handler's
 * row is not there, the message is still to be applied), and run returns. */
static const char stuck_lua[] =
    "local choreo = require 'choreo'\n"
    "choreo.db:exec('create table if not exists ran(how text)')\n"
    "choreo.on('Stuck', function(msg, ctx)\n"
    "  ctx.db:exec('insert into ran values (?)', msg.data.how)\n"
    "  if msg.data.how == 'sql' then\n"
    "    ctx.db:one('with recursive c(x) as (select 1 union all select x + 1 from c) '\n"
    "               .. 'select count(*) from c')\n"
    "  else\n"
    "    while true do end\n"
    "  end\n"
    "end)\n";

static void test_stop_cuts_a_stuck_handler_short(void) {
  const char *ways[] = {"{\"how\":\"sql\"}", "{\"how\":\"lua\"}"};
  for (int i = 0; i < 2; i++) {
    place p;
    place_make(&p, i ? "stuck-lua" : "stuck-sql", stuck_lua);
    choreo_host_config cfg = place_config(&p, "stuck", NULL);
    cfg.instruction_limit = UINT64_MAX / 2;
    choreo_host *h = open_host(&cfg);
    if (!h) continue;
    CHECK(choreo_host_publish(h, "Stuck", ways[i], NULL) == 0);
    safety_net s;
    safety_arm(&s, choreo_host_loop(h), h, NULL);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, stop_later, h) == 0);
    CHECK(choreo_host_run(h) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(!s.fired);
    choreo_host_status st;
    CHECK(choreo_host_status_get(h, &st) == 0);
    CHECK(st.head == 1 && st.own_applied == 0); /* rolled back, to be applied at the next start */
    CHECK(st.dead_letters == 0);
    safety_disarm(&s);
    choreo_host_close(h);
    remove_tree(p.base);
  }
}

/* ---- 3. the caller's loop ---- */

static void test_callers_loop(void) {
  place p;
  place_make(&p, "caller", ping_pong_lua);
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  choreo_host_config cfg = place_config(&p, "three", &loop);
  choreo_host *h = open_host(&cfg);
  if (!h) {
    CHECK(uv_loop_close(&loop) == 0);
    return;
  }
  CHECK(choreo_host_loop(h) == &loop);
  CHECK(choreo_host_run(h) == CHOREO_EINVAL); /* the caller runs this loop */
  counter c = {.h = h, .name = "three", .stop_after = 1};
  CHECK(choreo_host_on(h, "Pong", count_handler, &c) == 0);
  CHECK(choreo_host_publish(h, "Ping", "{\"n\":1}", NULL) == 0);
  safety_net s;
  safety_arm(&s, &loop, h, NULL);
  CHECK(!choreo_host_stopped(h));
  /* Returns only when nothing referenced is left on the loop: the host closed it all. */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(!s.fired);
  CHECK(c.pongs == 1 && c.wrong == 0);
  CHECK(choreo_host_stopped(h));
  CHECK(handles_left(&loop, &s.timer) == 0); /* not even an unreferenced one */
  safety_disarm(&s);
  choreo_host_close(h);
  CHECK(bus_entries(p.bus) == 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* the safety timer's close */
  CHECK(uv_loop_close(&loop) == 0);
  remove_tree(p.base);
}

/* ---- 4. closed without ever running ---- */

static void test_close_unrun(void) {
  place p;
  place_make(&p, "unrun", ping_pong_lua);
  /* Own loop, with a message waiting for handlers that never run. */
  choreo_host_config cfg = place_config(&p, "four", NULL);
  uint64_t start = uv_hrtime();
  choreo_host *h = open_host(&cfg);
  if (h) {
    CHECK(choreo_host_publish(h, "Ping", "{\"n\":1}", NULL) == 0);
    choreo_host_close(h);
  }
  /* A caller's loop: close leaves nothing on it, so it closes. */
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  cfg.loop = &loop;
  h = open_host(&cfg);
  if (h) {
    CHECK(choreo_host_publish(h, "Ping", "{\"n\":2}", NULL) == 0);
    choreo_host_close(h);
  }
  CHECK(handles_left(&loop, NULL) == 0);
  CHECK(uv_loop_close(&loop) == 0);
  CHECK(bus_entries(p.bus) == 0);
  double ms = ms_since(start);
  fprintf(stderr, "  two hosts opened and closed in %.1f ms\n", ms);
  CHECK(ms < 5000);
  remove_tree(p.base);
}

/* ---- 5. bad input ---- */

static int64_t head_of(choreo_host *h) {
  choreo_host_status st;
  CHECK(choreo_host_status_get(h, &st) == 0);
  return st.head;
}

static void test_bad_input(void) {
  place p;
  place_make(&p, "bad", ping_pong_lua);
  static int dummy;
  choreo_host *const not_null = (choreo_host *)(void *)&dummy; /* to see *out reset */
  char err[512];
  char missing[200];
  snprintf(missing, sizeof missing, "%s/no-such-dir", p.base);

  choreo_host_config cfg = place_config(&p, "svc", NULL);
  cfg.dir = missing;
  choreo_host *h = not_null;
  err[0] = '\0';
  CHECK(choreo_host_open(&h, &cfg, err, sizeof err) == CHOREO_ENOENT);
  CHECK(strstr(err, "no such directory") != NULL);
  CHECK(h == NULL);
  cfg.dir = NULL;
  h = not_null;
  CHECK(choreo_host_open(&h, &cfg, err, sizeof err) == CHOREO_ENOENT);
  CHECK(h == NULL);

  cfg = place_config(&p, "bad/name", NULL);
  h = not_null;
  err[0] = '\0';
  CHECK(choreo_host_open(&h, &cfg, err, sizeof err) == CHOREO_EINVAL);
  CHECK(strstr(err, "invalid name") != NULL);
  CHECK(h == NULL);

  const char *listen[] = {"tcp://127.0.0.1"}; /* no port */
  cfg = place_config(&p, "svc", NULL);
  cfg.listen = listen;
  cfg.nlisten = 1;
  h = not_null;
  err[0] = '\0';
  CHECK(choreo_host_open(&h, &cfg, err, sizeof err) != 0);
  CHECK(strstr(err, "--listen") != NULL);
  CHECK(h == NULL);
  CHECK(bus_entries(p.bus) == 0); /* refused before anything listened */

  /* A bad --peer is found late, once the sockets listen and handles are on the caller's
   * loop: the failed open must take them all off again. */
  const char *peers[] = {"bogus"};
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  cfg = place_config(&p, "svc", &loop);
  cfg.peers = peers;
  cfg.npeers = 1;
  h = not_null;
  err[0] = '\0';
  CHECK(choreo_host_open(&h, &cfg, err, sizeof err) == CHOREO_EINVAL);
  CHECK(strstr(err, "--peer bogus") != NULL);
  CHECK(h == NULL);
  CHECK(handles_left(&loop, NULL) == 0);
  CHECK(uv_loop_close(&loop) == 0);
  CHECK(bus_entries(p.bus) == 0);

  /* Nothing of the failed opens is left listening: the same name opens on the same bus. */
  cfg = place_config(&p, "svc", NULL);
  choreo_host *first = open_host(&cfg);
  if (!first) {
    remove_tree(p.base);
    return;
  }
  /* A second host with that name on that bus (its own database) is refused, and the first
   * keeps its endpoint (the second's failure must not unlink the first's socket). */
  char data2[200], pub[200];
  snprintf(data2, sizeof data2, "%s/second.db", p.base);
  snprintf(pub, sizeof pub, "%s/svc.pub", p.bus);
  choreo_host_config cfg2 = cfg;
  cfg2.data = data2;
  h = not_null;
  err[0] = '\0';
  CHECK(choreo_host_open(&h, &cfg2, err, sizeof err) != 0);
  CHECK(strstr(err, "another host with this name") != NULL);
  CHECK(h == NULL);
  CHECK(exists(pub));
  CHECK(bus_entries(p.bus) == 3); /* the first host's three, nothing of the second's */

  /* Messages refused leave the log as it was; valid ones move the head. */
  int64_t head = head_of(first), seq = -7;
  CHECK(choreo_host_publish(first, "T", "{\"unterminated\": ", &seq) != 0);
  CHECK(choreo_host_publish(first, "T", "not json", NULL) != 0);
  CHECK(choreo_host_publish(first, "T", "{} trailing", NULL) != 0);
  CHECK(head_of(first) == head);
  CHECK(choreo_host_publish(first, "", "{}", NULL) == CHOREO_EINVAL);
  CHECK(choreo_host_publish(first, NULL, "{}", NULL) == CHOREO_EINVAL);
  CHECK(choreo_host_send(first, "../x", "Do", "{}", NULL) == CHOREO_EINVAL);
  CHECK(choreo_host_send(first, NULL, "Do", "{}", NULL) == CHOREO_EINVAL);
  CHECK(choreo_host_send(first, "", "Do", "{}", NULL) == CHOREO_EINVAL);
  CHECK(choreo_host_send(first, "other", "", "{}", NULL) == CHOREO_EINVAL);
  CHECK(head_of(first) == head);
  CHECK(choreo_host_publish(first, "T", "{\"ok\": true}", &seq) == 0 && seq == head + 1);
  CHECK(choreo_host_send(first, "other", "Do", NULL, &seq) == 0 && seq == head + 2);
  CHECK(head_of(first) == head + 2);
  choreo_host_close(first);
  CHECK(bus_entries(p.bus) == 0);
  remove_tree(p.base);
}

/* ---- 6. reload ---- */

static const char v1_lua[] =
    "local choreo = require 'choreo'\n"
    "choreo.on('Ping', function(msg, ctx) ctx:publish('FromV1', { n = msg.data.n }) end)\n";
static const char broken_lua[] =
    "local choreo = require 'choreo'\n"
    "choreo.on('Ping', function(msg, ctx)\n"
    "  ctx:publish('FromBroken', { n = msg.data.n ]\n"
    "end)\n";
static const char v2_lua[] =
    "local choreo = require 'choreo'\n"
    "choreo.on('Ping', function(msg, ctx) ctx:publish('FromV2', { n = msg.data.n }) end)\n";

typedef struct {
  int v1, v2, other;
} versions;

static int version_handler(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)ctx;
  versions *v = ud;
  if (strcmp(msg->type, "FromV1") == 0) v->v1++;
  else if (strcmp(msg->type, "FromV2") == 0) v->v2++;
  else v->other++;
  return 0;
}

/* "…handlers.lua:LINE: message" */
static bool names_file_and_line(const char *text) {
  const char *at = strstr(text, "handlers.lua:");
  return at && at[13] >= '0' && at[13] <= '9';
}

static void test_reload(void) {
  place p;
  place_make(&p, "reload", v1_lua);
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  choreo_host_config cfg = place_config(&p, "six", &loop);
  choreo_host *h = open_host(&cfg);
  if (!h) {
    CHECK(uv_loop_close(&loop) == 0);
    return;
  }
  versions v = {0};
  CHECK(choreo_host_on(h, "From*", version_handler, &v) == 0); /* C handlers stay across reloads */
  safety_net s;
  safety_arm(&s, &loop, h, NULL);

  /* A broken script: rejected with file:line, generation 1 kept, the error in the status. */
  check_write_file(p.script, broken_lua);
  char err[512] = "";
  CHECK(choreo_host_reload(h, err, sizeof err) == CHOREO_ESCRIPT);
  CHECK(names_file_and_line(err));
  choreo_host_status st;
  CHECK(choreo_host_status_get(h, &st) == 0);
  CHECK(st.generation == 1);
  CHECK(names_file_and_line(st.reload_error));
  CHECK(strcmp(st.reload_error, err) == 0);
  /* ...and the running scripts are still v1. */
  CHECK(choreo_host_publish(h, "Ping", "{\"n\":1}", NULL) == 0);
  CHECK(run_until(&loop, &v.v1, 1, 5000));
  CHECK(v.v1 == 1 && v.v2 == 0 && v.other == 0);

  /* Fixed: swapped in as generation 2, the error cleared, and v2 handles the next Ping. */
  check_write_file(p.script, v2_lua);
  err[0] = '\0';
  CHECK(choreo_host_reload(h, err, sizeof err) == 0);
  CHECK(choreo_host_status_get(h, &st) == 0);
  CHECK(st.generation == 2);
  CHECK(st.reload_error != NULL && st.reload_error[0] == '\0');
  CHECK(choreo_host_publish(h, "Ping", "{\"n\":2}", NULL) == 0);
  CHECK(run_until(&loop, &v.v2, 1, 5000));
  CHECK(v.v1 == 1 && v.v2 == 1 && v.other == 0);

  choreo_host_stop(h);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(!s.fired);
  CHECK(choreo_host_stopped(h));
  safety_disarm(&s);
  choreo_host_close(h);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  remove_tree(p.base);
}

/* ---- 7. defaults: name and database ---- */

static void test_defaults(void) {
  place p;
  place_make(&p, "defaults", NULL);
  char dir[200], db[260];
  snprintf(dir, sizeof dir, "%s/inventory", p.base);
  snprintf(db, sizeof db, "%s/.choreo/inventory.db", dir);
  CHECK(mkdir(dir, 0700) == 0);
  choreo_host_config cfg = {.dir = dir, .bus = p.bus}; /* no name, no data */
  CHECK(!exists(db));
  choreo_host *h = open_host(&cfg);
  if (h) {
    choreo_host_status st;
    CHECK(choreo_host_status_get(h, &st) == 0);
    CHECK(strcmp(st.name, "inventory") == 0);
    CHECK(is_file(db));
    choreo_host_close(h);
  }
  /* A trailing slash is the same directory, so the same name. */
  char slash[210];
  snprintf(slash, sizeof slash, "%s/", dir);
  cfg.dir = slash;
  h = open_host(&cfg);
  if (h) {
    choreo_host_status st;
    CHECK(choreo_host_status_get(h, &st) == 0);
    CHECK(strcmp(st.name, "inventory") == 0);
    choreo_host_close(h);
  }
  remove_tree(p.base);
}

/* ---- 8 and 9. two hosts on one loop and one bus ---- */

typedef struct {
  choreo_host *a, *b;
  int a_saw, b_saw;
  char b_source[64], b_json[64];
  /* what B's peer list held while it handled the event */
  size_t b_npeers;
  bool b_lists_a, b_end_is_enoent;
} pair;

static void pair_maybe_stop(pair *pr) {
  if (pr->a_saw && pr->b_saw) {
    choreo_host_stop(pr->a);
    choreo_host_stop(pr->b);
  }
}

static int a_hello(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)ctx;
  (void)msg;
  pair *pr = ud;
  pr->a_saw++; /* its own event: events go to this host too */
  pair_maybe_stop(pr);
  return 0;
}

static bool ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), t = strlen(tail);
  return n >= t && strcmp(s + n - t, tail) == 0;
}

static int b_hello(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)ctx;
  pair *pr = ud;
  pr->b_saw++;
  snprintf(pr->b_source, sizeof pr->b_source, "%s", msg->source);
  char *json = choreo_message_json(msg);
  snprintf(pr->b_json, sizeof pr->b_json, "%s", json ? json : "");
  free(json);
  /* Here, while the peers are up (a stopped host has none). */
  choreo_host_status st;
  if (choreo_host_status_get(pr->b, &st) == 0) {
    pr->b_npeers = st.npeers;
    for (size_t i = 0; i < st.npeers; i++) {
      choreo_peer_status ps;
      if (choreo_host_peer_get(pr->b, i, &ps) == 0 && strcmp(ps.name, "a") == 0 &&
          ends_with(ps.url, "a.pub"))
        pr->b_lists_a = true;
    }
    choreo_peer_status ps;
    pr->b_end_is_enoent = choreo_host_peer_get(pr->b, st.npeers, &ps) == CHOREO_ENOENT &&
                          choreo_host_peer_get(pr->b, st.npeers + 100, &ps) == CHOREO_ENOENT;
  }
  pair_maybe_stop(pr);
  return 0;
}

static void test_two_hosts(void) {
  place pa, pb;
  place_make(&pa, "pair-a", ping_pong_lua);
  place_make(&pb, "pair-b", ping_pong_lua);
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  choreo_host_config ca = place_config(&pa, "a", &loop);
  choreo_host_config cb = place_config(&pb, "b", &loop);
  cb.bus = pa.bus; /* one bus, two databases */
  pair pr = {0};
  pr.a = open_host(&ca);
  pr.b = pr.a ? open_host(&cb) : NULL;
  if (pr.a && pr.b) {
    CHECK(choreo_host_on(pr.a, "Hello", a_hello, &pr) == 0);
    CHECK(choreo_host_on(pr.b, "Hello", b_hello, &pr) == 0);
    int64_t seq = -1;
    /* Before the loop runs: nobody is subscribed yet, so B gets it through FETCH. */
    CHECK(choreo_host_publish(pr.a, "Hello", "{\"from\":\"a\"}", &seq) == 0 && seq == 1);
    safety_net s;
    safety_arm(&s, &loop, pr.a, pr.b);
    uint64_t start = uv_hrtime();
    uv_run(&loop, UV_RUN_DEFAULT);
    fprintf(stderr, "  event from a handled by b in %.1f ms\n", ms_since(start));
    CHECK(!s.fired);
    CHECK(pr.a_saw == 1);
    CHECK(pr.b_saw == 1);
    CHECK(strcmp(pr.b_source, "a") == 0);
    CHECK(strcmp(pr.b_json, "{\"from\":\"a\"}") == 0);
    CHECK(pr.b_npeers >= 1);
    CHECK(pr.b_lists_a);
    CHECK(pr.b_end_is_enoent);
    CHECK(choreo_host_stopped(pr.a) && choreo_host_stopped(pr.b));
    CHECK(handles_left(&loop, &s.timer) == 0);
    safety_disarm(&s);
  }
  choreo_host_close(pr.b);
  choreo_host_close(pr.a);
  CHECK(bus_entries(pa.bus) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  remove_tree(pa.base);
  remove_tree(pb.base);
}

/* A --peer endpoint is listed as given, with no name until it answers (nobody listens here). */
static void test_unnamed_peer(void) {
  place p;
  place_make(&p, "unnamed", ping_pong_lua);
  char url[200];
  snprintf(url, sizeof url, "ipc://%s/nobody-here.pub", p.base); /* outside the bus: not found */
  const char *peers[] = {url};
  choreo_host_config cfg = place_config(&p, "lonely", NULL);
  cfg.peers = peers;
  cfg.npeers = 1;
  choreo_host *h = open_host(&cfg);
  if (h) {
    choreo_host_status st;
    CHECK(choreo_host_status_get(h, &st) == 0);
    CHECK(st.npeers == 1);
    choreo_peer_status ps = {0};
    CHECK(choreo_host_peer_get(h, 0, &ps) == 0);
    CHECK(ps.name != NULL && ps.name[0] == '\0');
    CHECK(ps.url != NULL && strcmp(ps.url, url) == 0);
    CHECK(choreo_host_peer_get(h, 1, &ps) == CHOREO_ENOENT);
    choreo_host_close(h);
  }
  remove_tree(p.base);
}

int main(void) {
  setenv("CHOREO_LOG", "error", 0); /* the failures in test_bad_input and test_reload are
                                        expected; one rejected reload is still logged */
  alarm(50); /* the last resort, inside ctest's 60 s: a hung close kills the process */
  snprintf(root, sizeof root, "/tmp/choreo-test-host-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  uint64_t start = uv_hrtime();
  RUN(test_own_loop);
  RUN(test_stop_from_thread);
  RUN(test_stop_cuts_a_stuck_handler_short);
  RUN(test_callers_loop);
  RUN(test_close_unrun);
  RUN(test_bad_input);
  RUN(test_reload);
  RUN(test_defaults);
  RUN(test_two_hosts);
  RUN(test_unnamed_peer);
  fprintf(stderr, "all in %.1f ms\n", ms_since(start));
  remove_tree(root);
  /* NNG starts process-wide threads with its first socket and ends them only here; without
   * this, valgrind reports their stacks as possibly lost. Every host is closed by now, and the
   * bus directories were checked empty, so this hides no socket a host forgot. Unless NNG 1.5
   * hung in a close (a race, bus_close.h): nng_fini would then wait for it for ever. */
  if (!choreo_bus_nng_stuck()) nng_fini();
  return CHECK_DONE();
}
