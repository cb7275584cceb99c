/* Durable timeouts: ordering, cancellation by subject, taking what is due, and the engine
 * moving due timeouts into the log exactly once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "choreo.h"
#include "engine.h"
#include "lua_scripts.h"
#include "timeouts.h"

static int64_t next_due_of(choreo_timeouts *t) {
  int64_t v = -99;
  CHECK(choreo_timeouts_next_due(t, &v) == 0);
  return v;
}

static int64_t next_timeout_of(choreo_engine *e) {
  int64_t v = -99;
  CHECK(choreo_engine_next_timeout(e, &v) == 0);
  return v;
}

static int64_t count_of(choreo_timeouts *t) {
  int64_t v = -99;
  CHECK(choreo_timeouts_count(t, &v) == 0);
  return v;
}

static int taken_count;
static char taken_types[8][16];

static int take(void *ud, const choreo_timeout *t) {
  (void)ud;
  snprintf(taken_types[taken_count++ % 8], 16, "%s", t->type);
  return 0;
}

static choreo_timeouts *open_timeouts(sqlite3 **db) {
  choreo_timeouts *t = NULL;
  CHECK(sqlite3_open(":memory:", db) == SQLITE_OK);
  CHECK(choreo_timeouts_open(&t, *db) == 0);
  return t;
}

static void test_order_and_take(void) {
  sqlite3 *db;
  choreo_timeouts *t = open_timeouts(&db);
  CHECK(next_due_of(t) == -1);
  choreo_timeout a = {.due_ms = 300, .type = "Late", .subject = "saga:S:1"};
  choreo_timeout b = {.due_ms = 100, .type = "Early", .data = "\x01", .data_len = 1};
  choreo_timeout c = {.due_ms = 200, .type = "Middle", .subject = "saga:S:1"};
  CHECK(choreo_timeouts_add(t, &a) == 0);
  CHECK(choreo_timeouts_add(t, &b) == 0);
  CHECK(choreo_timeouts_add(t, &c) == 0);
  CHECK(count_of(t) == 3);
  CHECK(next_due_of(t) == 100);
  taken_count = 0;
  CHECK(choreo_timeouts_take_due(t, 250, 10, take, NULL) == 0);
  CHECK(taken_count == 2 && strcmp(taken_types[0], "Early") == 0 &&
        strcmp(taken_types[1], "Middle") == 0);
  CHECK(count_of(t) == 1);
  CHECK(choreo_timeouts_take_due(t, 250, 10, take, NULL) == 0);
  CHECK(taken_count == 2); /* taken ones are gone */
  CHECK(next_due_of(t) == 300);
  choreo_timeouts_close(t);
  sqlite3_close(db);
}

static void test_cancel_by_subject(void) {
  sqlite3 *db;
  choreo_timeouts *t = open_timeouts(&db);
  choreo_timeout a = {.due_ms = 1, .type = "A", .subject = "saga:S:1"};
  choreo_timeout b = {.due_ms = 2, .type = "B", .subject = "saga:S:2"};
  CHECK(choreo_timeouts_add(t, &a) == 0 && choreo_timeouts_add(t, &a) == 0);
  CHECK(choreo_timeouts_add(t, &b) == 0);
  CHECK(choreo_timeouts_cancel(t, "saga:S:1") == 0);
  CHECK(count_of(t) == 1);
  CHECK(next_due_of(t) == 2);
  CHECK(choreo_timeouts_cancel(t, "saga:nobody") == 0);
  choreo_timeouts_close(t);
  sqlite3_close(db);
}

static int fail_second(void *ud, const choreo_timeout *t) {
  (void)t;
  return ++*(int *)ud == 2 ? CHOREO_EIO : 0;
}

static void test_callback_error_keeps_rows(void) {
  sqlite3 *db;
  choreo_timeouts *t = open_timeouts(&db);
  choreo_timeout a = {.due_ms = 1, .type = "A"};
  CHECK(choreo_timeouts_add(t, &a) == 0 && choreo_timeouts_add(t, &a) == 0);
  int calls = 0;
  CHECK(choreo_timeouts_take_due(t, 10, 10, fail_second, &calls) == CHOREO_EIO);
  CHECK(count_of(t) == 2); /* nothing deleted: the caller rolls back and retries */
  choreo_timeouts_close(t);
  sqlite3_close(db);
}

static int64_t fake_now = 1000;
static int64_t fake_clock(void *ud) {
  (void)ud;
  return fake_now;
}

/* Through the engine: a handler sets a timeout; when due it becomes one log row of kind
 * "timeout" addressed to the engine, and the handler for it runs once. */
static void test_engine_fires_through_the_log(void) {
  char dir[] = "/tmp/choreo-timeouts-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/t.lua", dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("local choreo = require 'choreo'\n"
        "choreo.db:exec('create table if not exists fired(n integer)')\n"
        "choreo.on('Start', function(msg, ctx) ctx:timeout(5, 'Due', { n = 7 }) end)\n"
        "choreo.on('Due', function(msg, ctx)\n"
        "  assert(msg.kind == 'timeout' and msg.to == 'svc')\n"
        "  ctx.db:exec('insert into fired values (?)', msg.data.n)\n"
        "end)\n",
        f);
  fclose(f);
  choreo_engine *e = NULL;
  char err[512];
  choreo_engine_config cfg = {.name = "svc", .dir = dir, .data = ":memory:",
                              .scripts = &choreo_lua_scripts, .now_ms = fake_clock};
  CHECK(choreo_engine_open(&e, &cfg, err, sizeof err) == 0);
  if (!e) return;
  CHECK(choreo_engine_emit(e, "event", NULL, "Start", NULL, 0, NULL) == 0);
  bool pending = true;
  choreo_apply_result r;
  while (pending) CHECK(choreo_engine_apply_own(e, 100, &pending, &r) == 0);
  CHECK(next_timeout_of(e) == 6000);
  CHECK(choreo_engine_fire_timeouts(e) == 0);
  CHECK(next_timeout_of(e) == 6000); /* not due yet: nothing moves */
  fake_now = 6000;
  CHECK(choreo_engine_fire_timeouts(e) == 0);
  CHECK(next_timeout_of(e) == -1);
  CHECK(choreo_engine_fire_timeouts(e) == 0);
  CHECK(next_timeout_of(e) == -1);
  pending = true;
  while (pending) CHECK(choreo_engine_apply_own(e, 100, &pending, &r) == 0);
  sqlite3_stmt *st;
  CHECK(sqlite3_prepare_v2(choreo_engine_db(e), "select count(*), sum(n) from fired", -1, &st,
                           NULL) == SQLITE_OK);
  CHECK(sqlite3_step(st) == SQLITE_ROW);
  CHECK(sqlite3_column_int(st, 0) == 1 && sqlite3_column_int(st, 1) == 7);
  sqlite3_finalize(st);
  choreo_engine_close(e);
  remove(path);
  rmdir(dir);
}

int main(void) {
  RUN(test_order_and_take);
  RUN(test_cancel_by_subject);
  RUN(test_callback_error_keeps_rows);
  RUN(test_engine_fires_through_the_log);
  return CHECK_DONE();
}
