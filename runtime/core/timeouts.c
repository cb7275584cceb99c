/* Durable timeouts (see timeouts.h). */
#include <stdlib.h>
#include <string.h>

#include "choreo.h"
#include "sql.h"
#include "timeouts.h"

enum { T_ADD, T_CANCEL, T_NEXT, T_DUE, T_DELETE, T_COUNT_ROWS, T_OF, T_COUNT };

static const char *const timeouts_sql[T_COUNT] = {
    [T_ADD] = "INSERT INTO choreo_timeouts(due_ms, type, data, correlationid, causationid, subject) "
              "VALUES (?, ?, ?, ?, ?, ?)",
    [T_CANCEL] = "DELETE FROM choreo_timeouts WHERE subject = ?",
    [T_NEXT] = "SELECT min(due_ms) FROM choreo_timeouts",
    [T_DUE] = "SELECT id, due_ms, type, data, correlationid, causationid, subject "
              "FROM choreo_timeouts WHERE due_ms <= ? ORDER BY due_ms, id LIMIT ?",
    [T_DELETE] = "DELETE FROM choreo_timeouts WHERE id = ?",
    [T_COUNT_ROWS] = "SELECT count(*) FROM choreo_timeouts",
    [T_OF] = "SELECT due_ms, type, correlationid, causationid, subject FROM choreo_timeouts "
             "WHERE correlationid = ? ORDER BY due_ms, id LIMIT ?",
};

static const char timeouts_schema[] =
    "CREATE TABLE IF NOT EXISTS choreo_timeouts("
    "  id INTEGER PRIMARY KEY, due_ms INTEGER NOT NULL, type TEXT NOT NULL, data BLOB,"
    "  correlationid TEXT, causationid TEXT, subject TEXT);"
    "CREATE INDEX IF NOT EXISTS choreo_timeouts_due ON choreo_timeouts(due_ms);"
    "CREATE INDEX IF NOT EXISTS choreo_timeouts_subject ON choreo_timeouts(subject);"
    "CREATE INDEX IF NOT EXISTS choreo_timeouts_correlation ON choreo_timeouts(correlationid);";

struct choreo_timeouts {
  sqlite3_stmt *st[T_COUNT];
};

int choreo_timeouts_open(choreo_timeouts **out, sqlite3 *db) {
  choreo_timeouts *t = calloc(1, sizeof *t);
  if (!t) return CHOREO_ENOMEM;
  int rc = choreo_sql_prepare(db, timeouts_schema, timeouts_sql, T_COUNT, t->st);
  if (rc) {
    free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void choreo_timeouts_close(choreo_timeouts *t) {
  if (!t) return;
  choreo_sql_finalize(t->st, T_COUNT);
  free(t);
}

/* Steps a statement that returns no rows, then readies it for reuse. */
static int timeouts_run(sqlite3_stmt *st) { return choreo_sql_finish(st, sqlite3_step(st)); }

static int timeouts_int(sqlite3_stmt *st, int64_t if_null, int64_t *out) {
  int rc = CHOREO_EIO;
  if (sqlite3_step(st) == SQLITE_ROW) {
    *out = sqlite3_column_type(st, 0) == SQLITE_NULL ? if_null : sqlite3_column_int64(st, 0);
    rc = 0;
  }
  sqlite3_reset(st);
  return rc;
}

static void timeouts_bind_text(sqlite3_stmt *st, int i, const char *s) {
  if (s)
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

int choreo_timeouts_add(choreo_timeouts *t, const choreo_timeout *to) {
  sqlite3_stmt *st = t->st[T_ADD];
  sqlite3_bind_int64(st, 1, to->due_ms);
  sqlite3_bind_text(st, 2, to->type, -1, SQLITE_STATIC);
  if (to->data)
    sqlite3_bind_blob64(st, 3, to->data, to->data_len, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 3);
  timeouts_bind_text(st, 4, to->correlationid);
  timeouts_bind_text(st, 5, to->causationid);
  timeouts_bind_text(st, 6, to->subject);
  return timeouts_run(st);
}

int choreo_timeouts_cancel(choreo_timeouts *t, const char *subject) {
  sqlite3_bind_text(t->st[T_CANCEL], 1, subject, -1, SQLITE_STATIC);
  return timeouts_run(t->st[T_CANCEL]);
}

int choreo_timeouts_next_due(choreo_timeouts *t, int64_t *due_ms) {
  return timeouts_int(t->st[T_NEXT], -1, due_ms);
}

int choreo_timeouts_count(choreo_timeouts *t, int64_t *count) {
  return timeouts_int(t->st[T_COUNT_ROWS], 0, count);
}

int choreo_timeouts_take_due(choreo_timeouts *t, int64_t now_ms, int max, choreo_timeout_fn fn,
                             void *ud) {
  sqlite3_stmt *st = t->st[T_DUE];
  sqlite3_bind_int64(st, 1, now_ms);
  sqlite3_bind_int(st, 2, max);
  int64_t ids[max > 0 ? max : 1];
  int n = 0, rc = 0, step = SQLITE_DONE;
  while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
    choreo_timeout to = {
        .due_ms = sqlite3_column_int64(st, 1),
        .type = (const char *)sqlite3_column_text(st, 2),
        .data = sqlite3_column_blob(st, 3),
        .data_len = (size_t)sqlite3_column_bytes(st, 3),
        .correlationid = (const char *)sqlite3_column_text(st, 4),
        .causationid = (const char *)sqlite3_column_text(st, 5),
        .subject = (const char *)sqlite3_column_text(st, 6),
    };
    ids[n++] = sqlite3_column_int64(st, 0);
    rc = fn(ud, &to);
  }
  if (!rc && step != SQLITE_DONE && step != SQLITE_ROW) rc = CHOREO_EIO;
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  for (int i = 0; !rc && i < n; i++) {
    sqlite3_bind_int64(t->st[T_DELETE], 1, ids[i]);
    rc = timeouts_run(t->st[T_DELETE]);
  }
  return rc;
}

int choreo_timeouts_of(choreo_timeouts *t, const char *correlation, int max, choreo_timeout_fn fn,
                       void *ud) {
  sqlite3_stmt *st = t->st[T_OF];
  int rc = sqlite3_bind_text(st, 1, correlation, -1, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_int(st, 2, max);
  if (rc) return choreo_sql_finish(st, SQLITE_ERROR);
  int step, stop = 0;
  while (!stop && (step = sqlite3_step(st)) == SQLITE_ROW) {
    choreo_timeout to = {
        .due_ms = sqlite3_column_int64(st, 0),
        .type = (const char *)sqlite3_column_text(st, 1),
        .correlationid = (const char *)sqlite3_column_text(st, 2),
        .causationid = (const char *)sqlite3_column_text(st, 3),
        .subject = (const char *)sqlite3_column_text(st, 4),
    };
    stop = fn(ud, &to);
  }
  if (stop) {
    choreo_sql_finish(st, SQLITE_DONE);
    return stop;
  }
  return choreo_sql_finish(st, step);
}
