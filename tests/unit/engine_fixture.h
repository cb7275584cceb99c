/* What the engine unit tests share: a scripts directory of their own under /tmp (dir, made by
 * the test's main with mkdtemp), files written into it, and an engine named "svc" over those
 * scripts with a fresh in-memory database and a clock the test moves (fake_now), and messages
 * for frames (add_msg). Included by
 * one test file per program, so its static definitions are that program's. */
#ifndef CHOREO_TEST_ENGINE_FIXTURE_H
#define CHOREO_TEST_ENGINE_FIXTURE_H

#include <stdio.h>
#include <unistd.h>

#include "check.h"
#include "codec.h"
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

/* One message: data is the map {n = n}. */
static inline void add_msg(msgpack_sbuffer *frame, const char *source, int64_t seq,
                           const char *type, const char *kind, const char *to, int64_t n) {
  msgpack_sbuffer data;
  msgpack_sbuffer_init(&data);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  msgpack_pack_str_with_body(&pk, "n", 1);
  msgpack_pack_int64(&pk, n);
  choreo_msg_fields f = {.source = source, .type = type, .kind = kind, .to = to, .seq = seq,
                         .data = data.data, .data_len = data.size};
  CHECK(choreo_msg_encode(&f, frame) == 0);
  msgpack_sbuffer_destroy(&data);
}

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
