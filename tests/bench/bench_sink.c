/* SQLite store and loss/duplicate check of the benchmarks (see bench_sink.h). */
#include "bench_sink.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int step_reset(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* Opens `path` with `flags`, sets it up as a service would (WAL is a property of the file,
 * synchronous one of the connection), runs `schema`, prepares the statements. */
static int sink_connect(bench_sink *s, const char *path, int flags, const char *schema) {
  if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) return -1;
  if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                   NULL) != SQLITE_OK ||
      sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK)
    return -1;
  if (sqlite3_prepare_v2(s->db, "INSERT INTO events(i, payload) VALUES (?1, ?2)", -1, &s->insert,
                         NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(s->db, "BEGIN", -1, &s->begin, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(s->db, "COMMIT", -1, &s->commit, NULL) != SQLITE_OK)
    return -1;
  return 0;
}

int bench_sink_open(bench_sink *s, const char *path) {
  memset(s, 0, sizeof *s);
  static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
  for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
    char name[4096];
    snprintf(name, sizeof name, "%s%s", path, suffixes[k]);
    unlink(name);
  }
  return sink_connect(s, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                      "CREATE TABLE events(i INTEGER, payload BLOB);");
}

int bench_sink_attach(bench_sink *s, const char *path) {
  memset(s, 0, sizeof *s);
  /* Without SQLITE_OPEN_CREATE: a missing store is an error, not a new empty one. */
  return sink_connect(s, path, SQLITE_OPEN_READWRITE, "");
}

int bench_sink_begin(bench_sink *s) { return step_reset(s->begin); }

int bench_sink_commit(bench_sink *s) { return step_reset(s->commit); }

int bench_sink_insert(bench_sink *s, int64_t i, const void *payload, int len) {
  sqlite3_bind_int64(s->insert, 1, i);
  /* SQLITE_STATIC: the bytes stay valid until the step below, no copy needed. */
  sqlite3_bind_blob(s->insert, 2, payload, len, SQLITE_STATIC);
  int rc = step_reset(s->insert);
  sqlite3_clear_bindings(s->insert);
  return rc;
}

int bench_sink_check(bench_sink *s, long n, long *lost, long *duplicates) {
  sqlite3_stmt *st;
  const char *sql = "SELECT count(*), count(DISTINCT i),"
                    " (SELECT count(DISTINCT i) FROM events WHERE i >= 0 AND i < ?1)"
                    " FROM events";
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
  sqlite3_bind_int64(st, 1, n);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    long rows = (long)sqlite3_column_int64(st, 0);
    long distinct = (long)sqlite3_column_int64(st, 1);
    long in_range = (long)sqlite3_column_int64(st, 2);
    *lost = n - in_range;
    *duplicates = rows - distinct;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : -1;
}

const char *bench_sink_error(const bench_sink *s) {
  return s->db ? sqlite3_errmsg(s->db) : "cannot allocate a database handle";
}

void bench_sink_close(bench_sink *s) {
  sqlite3_finalize(s->insert);
  sqlite3_finalize(s->begin);
  sqlite3_finalize(s->commit);
  sqlite3_close(s->db);
  memset(s, 0, sizeof *s);
}
