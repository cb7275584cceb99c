/* What the engine unit tests share: a scripts directory of their own under /tmp (dir, made by
 * the test's main with mkdtemp), files written into it, and an engine named "svc" over those
 * scripts with a fresh in-memory database and a clock the test moves (fake_now). Included by
 * one test file per program, so its static definitions are that program's. */
#ifndef CHOREO_TEST_ENGINE_FIXTURE_H
#define CHOREO_TEST_ENGINE_FIXTURE_H

#include <stdio.h>
#include <unistd.h>

#include "check.h"
#include "engine.h"
#include "lua_scripts.h"

static char dir[64];
static int64_t fake_now = 1700000000000; /* the engines' clock, in ms */

static int64_t fake_clock(void *ud) {
  (void)ud;
  return fake_now;
}

static void write_file(const char *name, const char *text) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  check_write_file(path, text);
}

static void remove_file(const char *name) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  unlink(path);
}

/* fetch_history: as a host does (choreo_engine_config). */
static inline choreo_engine *open_engine_fetching(bool fetch_history) {
  choreo_engine_config cfg = {.name = "svc", .dir = dir, .data = ":memory:",
                              .scripts = &choreo_lua_scripts, .now_ms = fake_clock,
                              .fetch_history = fetch_history};
  char err[512] = "";
  choreo_engine *e = NULL;
  int rc = choreo_engine_open(&e, &cfg, err, sizeof err);
  if (rc) fprintf(stderr, "open: %s\n", err);
  CHECK(rc == 0 && e != NULL);
  return e;
}

static inline choreo_engine *open_engine(void) { return open_engine_fetching(false); }

/* The single integer a query returns (-1 on error). */
static int64_t query_int(choreo_engine *e, const char *sql) {
  sqlite3_stmt *st = NULL;
  int64_t v = -1;
  if (sqlite3_prepare_v2(choreo_engine_db(e), sql, -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  else
    fprintf(stderr, "query %s: %s\n", sql, sqlite3_errmsg(choreo_engine_db(e)));
  sqlite3_finalize(st);
  return v;
}

#endif
