/* Unit test of stopping hosts when NNG 1.5 never lets go of a socket (runtime/host/bus_close.h;
 * docs/ARCHITECTURE.md, on NNG 1.5). That hang depends on a race between a connection's close
 * and a message under way on it; this test is linked with -Wl,--wrap=nng_close, so that once
 * `nng_close_hangs` is set every nng_close the runtime makes never returns, which makes it
 * certain. An embedding program must still get its loop back from a stop, and
 * choreo_host_close must return, with what the hosts committed kept, every handle off the
 * caller's loop and the hosts' endpoints gone from the bus directory, so that hosts of the
 * same names can open there again in the same process.
 *
 * Two hosts share a loop and a bus: A publishes Hello, B's Lua handler records it and B's C
 * handler, in the same batch, makes NNG hang and stops both. Nothing can wait for ever: a
 * safety timer fails the test if the loop does not end, and alarm() bounds the process (a
 * loop held in nng_close cannot run the timer). */
#include <nng/nng.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "bus_close.h"
#include "check.h"
#include "temp_files.h"
#include "choreo.h"

#define SAFETY_MS 10000 /* a stop waits for NNG CHOREO_BUS_CLOSE_WAIT_MS at most */

static atomic_bool nng_close_hangs;

int __real_nng_close(nng_socket s);
int __wrap_nng_close(nng_socket s);

int __wrap_nng_close(nng_socket s) {
  if (!atomic_load(&nng_close_hangs)) return __real_nng_close(s);
  for (;;) pause();
}

static const char recorder_lua[] =
    "local choreo = require 'choreo'\n"
    "choreo.db:exec('create table if not exists seen(n integer)')\n"
    "choreo.on('Hello', function(msg, ctx)\n"
    "  ctx.db:exec('insert into seen values (?)', msg.data.n)\n"
    "end)\n";

static char root[64], bus[128];

typedef struct {
  char dir[160], data[160];
} place;

static void place_make(place *p, const char *name) {
  char script[200];
  snprintf(p->dir, sizeof p->dir, "%s/%s", root, name);
  snprintf(p->data, sizeof p->data, "%s/%s.db", root, name);
  snprintf(script, sizeof script, "%s/handlers.lua", p->dir);
  CHECK(mkdir(p->dir, 0700) == 0);
  check_write_file(script, recorder_lua);
}

static choreo_host *open_host(const place *p, const char *name, uv_loop_t *loop) {
  choreo_host_config cfg = {.dir = p->dir, .name = name, .data = p->data, .bus = bus,
                            .loop = loop};
  char err[512] = "";
  choreo_host *h = NULL;
  int rc = choreo_host_open(&h, &cfg, err, sizeof err);
  if (rc) fprintf(stderr, "open %s: %s\n", name, err);
  CHECK(rc == 0 && h != NULL);
  return h;
}

/* How many Hello rows B's database holds, read without a host. */
static int seen_rows(const place *p) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int n = -1;
  if (sqlite3_open_v2(p->data, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "select count(*) from seen", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

typedef struct {
  choreo_host *a, *b;
  int b_saw;
  uv_timer_t safety;
  bool safety_fired;
} pair;

static int b_hello(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)ctx;
  (void)msg;
  pair *pr = ud;
  pr->b_saw++;
  atomic_store(&nng_close_hangs, true);
  choreo_host_stop(pr->a);
  choreo_host_stop(pr->b);
  return 0;
}

static void safety_fired(uv_timer_t *t) {
  pair *pr = t->data;
  pr->safety_fired = true;
  fprintf(stderr, "safety timer fired\n");
  choreo_host_stop(pr->a);
  choreo_host_stop(pr->b);
  uv_stop(t->loop);
}

static void count_handle(uv_handle_t *handle, void *arg) {
  if (uv_has_ref(handle) && !uv_is_closing(handle)) ++*(int *)arg;
}

static void test_stop_when_nng_never_closes(void) {
  place pa, pb;
  place_make(&pa, "a");
  place_make(&pb, "b");
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  pair pr = {0};
  pr.a = open_host(&pa, "a", &loop);
  pr.b = pr.a ? open_host(&pb, "b", &loop) : NULL;
  if (pr.a && pr.b) {
    CHECK(choreo_host_on(pr.b, "Hello", b_hello, &pr) == 0);
    CHECK(choreo_host_publish(pr.a, "Hello", "{\"n\":1}", NULL) == 0);
    CHECK(uv_timer_init(&loop, &pr.safety) == 0);
    pr.safety.data = &pr;
    CHECK(uv_timer_start(&pr.safety, safety_fired, SAFETY_MS, 0) == 0);
    uv_unref((uv_handle_t *)&pr.safety); /* the loop ends with the hosts' handles */
    uint64_t start = uv_hrtime();
    uv_run(&loop, UV_RUN_DEFAULT);
    fprintf(stderr, "  both stopped %.1f ms after the loop began\n",
            (double)(uv_hrtime() - start) / 1e6);
    CHECK(!pr.safety_fired);
    CHECK(pr.b_saw == 1);
    CHECK(choreo_bus_nng_stuck());
    CHECK(choreo_host_stopped(pr.a) && choreo_host_stopped(pr.b));
    int open_handles = 0;
    uv_walk(&loop, count_handle, &open_handles);
    CHECK(open_handles == 0);
    uv_close((uv_handle_t *)&pr.safety, NULL);
  }
  choreo_host_close(pr.b);
  choreo_host_close(pr.a);
  CHECK(bus_entries(bus) == 0); /* the listeners were closed though the sockets were not */
  CHECK(seen_rows(&pb) == 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);

  /* Hosts of the same names open again on the same bus and data, in the same process; their
   * stop no longer waits for NNG at all. */
  pr.a = open_host(&pa, "a", NULL);
  pr.b = pr.a ? open_host(&pb, "b", NULL) : NULL;
  CHECK(bus_entries(bus) == (pr.a && pr.b ? 6 : -1));
  choreo_host_close(pr.b);
  choreo_host_close(pr.a);
  CHECK(bus_entries(bus) == 0);
  CHECK(seen_rows(&pb) == 1);
}

int main(void) {
  setenv("CHOREO_LOG", "error", 0);
  alarm(50); /* the last resort, inside ctest's 60 s: a stop held in nng_close ends here */
  snprintf(root, sizeof root, "/tmp/choreo-test-nng-stuck-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(bus, sizeof bus, "%s/bus", root);
  CHECK(mkdir(bus, 0700) == 0);
  RUN(test_stop_when_nng_never_closes);
  remove_tree(root);
  /* No nng_fini: it would wait for the sockets NNG keeps, for ever. */
  return CHECK_DONE();
}
