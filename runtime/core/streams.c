/* Event streams and their snapshots (see streams.h). */
#include "streams.h"

#include <stdlib.h>
#include <string.h>

#include "choreo.h"
#include "sql.h"

enum { S_VERSION, S_ADD, S_EACH, S_SINCE, S_COUNT_SINCE, S_ANY, S_SNAP_LOAD, S_SNAP_SAVE, S_SNAP_DROP, S_COUNT };

static const char *const streams_sql[S_COUNT] = {
    [S_VERSION] = "SELECT version FROM choreo_streams WHERE stream = ?1 "
                  "ORDER BY version DESC LIMIT 1",
    [S_ADD] = "INSERT INTO choreo_streams(stream, version, seq, msg) VALUES (?1, ?2, ?3, ?4)",
    [S_EACH] = "SELECT version, msg FROM choreo_streams WHERE stream = ?1 AND version > ?2 "
               "ORDER BY version",
    [S_SINCE] = "SELECT seq, msg FROM choreo_streams WHERE seq > ?1 AND seq <= ?2 "
                "ORDER BY seq LIMIT ?3",
    [S_COUNT_SINCE] = "SELECT count(*) FROM choreo_streams WHERE seq > ?1 AND seq <= ?2",
    [S_ANY] = "SELECT 1 FROM choreo_streams LIMIT 1",
    [S_SNAP_LOAD] = "SELECT version, state FROM choreo_snapshots "
                    "WHERE stream = ?1 AND fingerprint = ?2",
    [S_SNAP_SAVE] = "INSERT INTO choreo_snapshots(stream, version, fingerprint, state) "
                    "VALUES (?1, ?2, ?3, ?4) ON CONFLICT(stream) DO UPDATE SET "
                    "version = excluded.version, fingerprint = excluded.fingerprint, "
                    "state = excluded.state",
    /* The streams named prefix...: from the prefix up to the prefix with its last byte one
     * higher, a range the primary key answers. */
    [S_SNAP_DROP] = "DELETE FROM choreo_snapshots WHERE stream >= ?1 AND stream < ?2 "
                    "AND fingerprint <> ?3",
};

static const char streams_schema[] =
    "CREATE TABLE IF NOT EXISTS choreo_streams("
    "  seq INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,"
    "  msg BLOB NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS choreo_streams_version ON choreo_streams(stream, version);"
    "CREATE TABLE IF NOT EXISTS choreo_snapshots("
    "  stream TEXT PRIMARY KEY, version INTEGER NOT NULL, fingerprint TEXT NOT NULL,"
    "  state BLOB NOT NULL);";

struct choreo_streams {
  sqlite3_stmt *st[S_COUNT];
};

int choreo_streams_open(choreo_streams **out, sqlite3 *db) {
  choreo_streams *t = calloc(1, sizeof *t);
  if (!t) return CHOREO_ENOMEM;
  int rc = choreo_sql_prepare(db, streams_schema, streams_sql, S_COUNT, t->st);
  if (rc) {
    free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void choreo_streams_close(choreo_streams *t) {
  if (!t) return;
  choreo_sql_finalize(t->st, S_COUNT);
  free(t);
}

int choreo_streams_version(choreo_streams *t, const char *stream, int64_t *version) {
  sqlite3_stmt *st = t->st[S_VERSION];
  *version = 0;
  int step = sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC) ? SQLITE_ERROR : sqlite3_step(st);
  if (step == SQLITE_ROW) *version = sqlite3_column_int64(st, 0);
  return choreo_sql_finish(st, step);
}

int choreo_streams_add(choreo_streams *t, const char *stream, int64_t version, int64_t seq,
                       const char *msg, size_t len) {
  sqlite3_stmt *st = t->st[S_ADD];
  int rc = sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_int64(st, 2, version);
  if (!rc) rc = sqlite3_bind_int64(st, 3, seq);
  if (!rc) rc = sqlite3_bind_blob64(st, 4, msg, len, SQLITE_STATIC);
  int step = rc ? SQLITE_ERROR : sqlite3_step(st);
  if (step == SQLITE_CONSTRAINT) {
    choreo_sql_finish(st, SQLITE_DONE);
    return CHOREO_EINVAL;
  }
  return choreo_sql_finish(st, step);
}

int choreo_streams_each(choreo_streams *t, const char *stream, int64_t after,
                        choreo_stream_fn fn, void *ud) {
  sqlite3_stmt *st = t->st[S_EACH];
  if (sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC) || sqlite3_bind_int64(st, 2, after))
    return choreo_sql_finish(st, SQLITE_ERROR);
  return choreo_sql_walk(st, fn, ud, NULL);
}

int choreo_streams_since(choreo_streams *t, int64_t after, int64_t upto, int max,
                         choreo_stream_seq_fn fn, void *ud, int *n) {
  sqlite3_stmt *st = t->st[S_SINCE];
  *n = 0;
  if (sqlite3_bind_int64(st, 1, after) || sqlite3_bind_int64(st, 2, upto) ||
      sqlite3_bind_int(st, 3, max))
    return choreo_sql_finish(st, SQLITE_ERROR);
  return choreo_sql_walk(st, fn, ud, n);
}

int choreo_streams_count_since(choreo_streams *t, int64_t after, int64_t upto, int64_t *n) {
  sqlite3_stmt *st = t->st[S_COUNT_SINCE];
  *n = 0;
  int step = sqlite3_bind_int64(st, 1, after) || sqlite3_bind_int64(st, 2, upto)
                 ? SQLITE_ERROR
                 : sqlite3_step(st);
  if (step == SQLITE_ROW) *n = sqlite3_column_int64(st, 0);
  return choreo_sql_finish(st, step);
}

int choreo_streams_any(choreo_streams *t, bool *any) {
  sqlite3_stmt *st = t->st[S_ANY];
  int step = sqlite3_step(st);
  *any = step == SQLITE_ROW;
  return choreo_sql_finish(st, step);
}

int choreo_streams_snapshot_load(choreo_streams *t, const char *stream, const char *fingerprint,
                                 msgpack_sbuffer *state, int64_t *version, bool *found) {
  sqlite3_stmt *st = t->st[S_SNAP_LOAD];
  state->size = 0;
  *found = false;
  int step = sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC) ||
                     sqlite3_bind_text(st, 2, fingerprint, -1, SQLITE_STATIC)
                 ? SQLITE_ERROR
                 : sqlite3_step(st);
  if (step == SQLITE_ROW) {
    *found = true;
    *version = sqlite3_column_int64(st, 0);
    const void *blob = sqlite3_column_blob(st, 1);
    int n = sqlite3_column_bytes(st, 1);
    if (n > 0 && msgpack_sbuffer_write(state, blob, (size_t)n)) {
      choreo_sql_finish(st, SQLITE_DONE);
      return CHOREO_ENOMEM;
    }
  }
  return choreo_sql_finish(st, step);
}

int choreo_streams_snapshot_save(choreo_streams *t, const char *stream, int64_t version,
                                 const char *fingerprint, const char *state, size_t len) {
  sqlite3_stmt *st = t->st[S_SNAP_SAVE];
  int rc = sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_int64(st, 2, version);
  if (!rc) rc = sqlite3_bind_text(st, 3, fingerprint, -1, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_blob64(st, 4, state ? state : "", len, SQLITE_STATIC);
  return choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
}

int choreo_streams_snapshots_drop_stale(choreo_streams *t, const char *prefix,
                                        const char *fingerprint, int *dropped) {
  size_t n = strlen(prefix);
  *dropped = 0;
  /* The end of the range: the prefix with its last byte one higher (a prefix of 0xff bytes
   * has no end; then everything after it is in range). */
  char *end = malloc(n + 1);
  if (!end) return CHOREO_ENOMEM;
  memcpy(end, prefix, n + 1);
  size_t k = n;
  while (k > 0 && (unsigned char)end[k - 1] == 0xff) end[--k] = '\0';
  if (k > 0) end[k - 1] = (char)((unsigned char)end[k - 1] + 1);
  sqlite3_stmt *st = t->st[S_SNAP_DROP];
  int rc = sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
  if (!rc) rc = k > 0 ? sqlite3_bind_text(st, 2, end, -1, SQLITE_STATIC)
                      : sqlite3_bind_blob(st, 2, "", 0, SQLITE_STATIC); /* any text sorts below */
  if (!rc) rc = sqlite3_bind_text(st, 3, fingerprint, -1, SQLITE_STATIC);
  int step = rc ? SQLITE_ERROR : sqlite3_step(st);
  if (step == SQLITE_DONE) *dropped = sqlite3_changes(sqlite3_db_handle(st));
  rc = choreo_sql_finish(st, step);
  free(end);
  return rc;
}
