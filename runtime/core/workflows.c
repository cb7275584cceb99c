/* Durable workflows' tables (see workflows.h). The statements are prepared once: an instance
 * reads and writes its rows for every message that moves it. */
#include "workflows.h"

#include <stdlib.h>

#include "choreo.h"
#include "sql.h"

enum {
  W_GET, W_PUT, W_LIST, W_COUNT,
  H_RECORD, H_COMPLETE, H_LIST, H_EMITTED, H_FORGET,
  I_PUT, I_TRIM, I_TAKE, I_DELETE, I_FORGET, W_EXPIRE_HISTORY, W_EXPIRE_SIGNALS, W_EXPIRE,
  S_RECORD, S_LIST, S_FORGET,
  W_COUNT_STATEMENTS
};

#define W_COLUMNS "name, id, status, error, waiting, wait_op, wait_ref, wait_step, steps, rev, " \
                  "started_ms, updated_ms, wait_timer"

static const char *const workflows_sql[W_COUNT_STATEMENTS] = {
    [W_GET] = "SELECT " W_COLUMNS ", input, result FROM choreo_workflows "
              "WHERE name = ?1 AND id = ?2",
    [W_PUT] = "INSERT INTO choreo_workflows(" W_COLUMNS ", input, result) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) "
              "ON CONFLICT(name, id) DO UPDATE SET status = excluded.status, "
              "error = excluded.error, waiting = excluded.waiting, wait_op = excluded.wait_op, "
              "wait_ref = excluded.wait_ref, wait_step = excluded.wait_step, "
              "wait_timer = excluded.wait_timer, "
              "steps = excluded.steps, rev = excluded.rev, updated_ms = excluded.updated_ms, "
              "input = coalesce(excluded.input, input), result = excluded.result",
    [W_LIST] = "SELECT " W_COLUMNS ", NULL, NULL FROM choreo_workflows "
               "WHERE (?1 IS NULL OR name = ?1) AND (?2 IS NULL OR status = ?2) "
               "ORDER BY updated_ms DESC, name, id LIMIT ?3",
    [W_COUNT] = "SELECT count(*) FROM choreo_workflows WHERE status = ?1",
    [H_RECORD] = "INSERT INTO choreo_workflow_history(name, id, step, op, what, ref, result, "
                 "at_ms, done_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [H_COMPLETE] = "UPDATE choreo_workflow_history SET result = ?4, done_ms = ?5 "
                   "WHERE name = ?1 AND id = ?2 AND step = ?3",
    [H_LIST] = "SELECT step, op, what, ref, result, at_ms, done_ms FROM choreo_workflow_history "
               "WHERE name = ?1 AND id = ?2 ORDER BY step",
    [H_EMITTED] = "SELECT 1 FROM choreo_workflow_history WHERE ref = ?1 LIMIT 1",
    [H_FORGET] = "DELETE FROM choreo_workflow_history WHERE name = ?1 AND id = ?2",
    [I_PUT] = "INSERT INTO choreo_workflow_inbox(name, id, type, msg) VALUES (?1, ?2, ?3, ?4)",
    [I_TRIM] = "DELETE FROM choreo_workflow_inbox WHERE n IN (SELECT n FROM choreo_workflow_inbox "
               "WHERE name = ?1 AND id = ?2 ORDER BY n DESC LIMIT -1 OFFSET ?3)",
    [I_TAKE] = "SELECT n, msg FROM choreo_workflow_inbox WHERE name = ?1 AND id = ?2 AND type = ?3 "
               "ORDER BY n LIMIT 1",
    [I_DELETE] = "DELETE FROM choreo_workflow_inbox WHERE n = ?1",
    [I_FORGET] = "DELETE FROM choreo_workflow_inbox WHERE name = ?1 AND id = ?2",
    [W_EXPIRE_HISTORY] = "DELETE FROM choreo_workflow_history WHERE (name, id) IN "
                         "(SELECT name, id FROM choreo_workflows WHERE status NOT IN "
                         "('running', 'stuck') AND updated_ms < ?1 LIMIT ?2)",
    [W_EXPIRE_SIGNALS] = "DELETE FROM choreo_workflow_signals WHERE (name, id) IN "
                         "(SELECT name, id FROM choreo_workflows WHERE status NOT IN "
                         "('running', 'stuck') AND updated_ms < ?1 LIMIT ?2)",
    [S_RECORD] = "INSERT INTO choreo_workflow_signals(name, id, during, signal, data) "
                 "VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_LIST] = "SELECT during, signal, data FROM choreo_workflow_signals WHERE name = ?1 AND id = ?2 "
               "ORDER BY n",
    [S_FORGET] = "DELETE FROM choreo_workflow_signals WHERE name = ?1 AND id = ?2",
    [W_EXPIRE] = "DELETE FROM choreo_workflows WHERE rowid IN (SELECT rowid FROM "
                 "choreo_workflows WHERE status NOT IN ('running', 'stuck') "
                 "AND updated_ms < ?1 "
                 "LIMIT ?2)",
};

static const char workflows_schema[] =
    "CREATE TABLE IF NOT EXISTS choreo_workflows("
    "  name TEXT NOT NULL, id TEXT NOT NULL, status TEXT NOT NULL, error TEXT, waiting TEXT,"
    "  wait_op TEXT, wait_ref TEXT, wait_step INTEGER NOT NULL, wait_timer INTEGER NOT NULL,"
    "  steps INTEGER NOT NULL,"
    "  rev INTEGER NOT NULL, started_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    "  input BLOB, result BLOB, PRIMARY KEY (name, id));"
    /* Two values, not three: SQLite checks an IN list of more than two with a temporary
     * b-tree, and it checks this one at every write of an instance. */
    "CREATE INDEX IF NOT EXISTS choreo_workflows_ended ON choreo_workflows(updated_ms)"
    "  WHERE status NOT IN ('running', 'stuck');"
    /* choreo status and each metrics scrape count instances by status: from this index, not
     * from rows that hold inputs and results (a scan of 200,000 took over a second). A step
     * that keeps the status leaves it alone. */
    "CREATE INDEX IF NOT EXISTS choreo_workflows_status ON choreo_workflows(status);"
    "CREATE TABLE IF NOT EXISTS choreo_workflow_history("
    "  name TEXT NOT NULL, id TEXT NOT NULL, step INTEGER NOT NULL, op TEXT NOT NULL,"
    "  what TEXT NOT NULL, ref TEXT, result BLOB, at_ms INTEGER NOT NULL, done_ms INTEGER,"
    "  PRIMARY KEY (name, id, step));"
    "CREATE INDEX IF NOT EXISTS choreo_workflow_history_ref ON choreo_workflow_history(ref)"
    "  WHERE ref IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS choreo_workflow_inbox("
    "  n INTEGER PRIMARY KEY, name TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL,"
    "  msg BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS choreo_workflow_signals("
    "  n INTEGER PRIMARY KEY, name TEXT NOT NULL, id TEXT NOT NULL, during INTEGER NOT NULL,"
    "  signal TEXT NOT NULL, data BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS choreo_workflow_signals_of ON choreo_workflow_signals(name, id, n);"
    "CREATE INDEX IF NOT EXISTS choreo_workflow_inbox_of ON choreo_workflow_inbox(name, id, n);"
    "CREATE INDEX IF NOT EXISTS choreo_workflow_inbox_by_type"
    "  ON choreo_workflow_inbox(name, id, type, n);";

struct choreo_workflows {
  sqlite3_stmt *st[W_COUNT_STATEMENTS];
};

int choreo_workflows_open(choreo_workflows **out, sqlite3 *db) {
  choreo_workflows *w = calloc(1, sizeof *w);
  if (!w) return CHOREO_ENOMEM;
  int rc = choreo_sql_prepare(db, workflows_schema, workflows_sql, W_COUNT_STATEMENTS, w->st);
  if (rc) {
    free(w);
    return rc;
  }
  *out = w;
  return 0;
}

void choreo_workflows_close(choreo_workflows *w) {
  if (!w) return;
  choreo_sql_finalize(w->st, W_COUNT_STATEMENTS);
  free(w);
}

/* Binds the instance's name and id as ?1 and ?2; SQLITE_OK or an error. */
static int workflows_bind(sqlite3_stmt *st, const char *name, const char *id) {
  int rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  return rc ? rc : sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
}

static const char *workflows_text(sqlite3_stmt *st, int col) {
  return (const char *)sqlite3_column_text(st, col);
}

/* Walks the rows of st (bound, W_COLUMNS first) into fn until it returns non-zero. */
static int workflows_walk(sqlite3_stmt *st, choreo_workflow_fn fn, void *ud, bool *found) {
  int step, rc = 0;
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
    if (found) *found = true;
    choreo_workflow_row row = {
        .name = workflows_text(st, 0), .id = workflows_text(st, 1),
        .status = workflows_text(st, 2), .error = workflows_text(st, 3),
        .waiting = workflows_text(st, 4), .wait_op = workflows_text(st, 5),
        .wait_ref = workflows_text(st, 6), .wait_step = sqlite3_column_int64(st, 7),
        .steps = sqlite3_column_int64(st, 8), .rev = sqlite3_column_int64(st, 9),
        .started_ms = sqlite3_column_int64(st, 10), .updated_ms = sqlite3_column_int64(st, 11),
        .wait_timer = sqlite3_column_int(st, 12) != 0,
        .input = sqlite3_column_blob(st, 13), .input_len = (size_t)sqlite3_column_bytes(st, 13),
        .result = sqlite3_column_blob(st, 14),
        .result_len = (size_t)sqlite3_column_bytes(st, 14)};
    rc = fn(ud, &row);
  }
  if (rc) {
    choreo_sql_finish(st, SQLITE_DONE);
    return rc;
  }
  return choreo_sql_finish(st, step);
}

int choreo_workflows_get(choreo_workflows *w, const char *name, const char *id,
                         choreo_workflow_fn fn, void *ud, bool *found) {
  sqlite3_stmt *st = w->st[W_GET];
  *found = false;
  if (workflows_bind(st, name, id)) return choreo_sql_finish(st, SQLITE_ERROR);
  return workflows_walk(st, fn, ud, found);
}

static int workflows_bind_blob(sqlite3_stmt *st, int col, const char *blob, size_t len) {
  return blob ? sqlite3_bind_blob64(st, col, blob, len, SQLITE_STATIC) : sqlite3_bind_null(st, col);
}

int choreo_workflows_put(choreo_workflows *w, const choreo_workflow_row *row) {
  sqlite3_stmt *st = w->st[W_PUT];
  int rc = workflows_bind(st, row->name, row->id);
  const char *texts[] = {row->status, row->error, row->waiting, row->wait_op, row->wait_ref};
  for (int i = 0; !rc && i < 5; i++) rc = sqlite3_bind_text(st, 3 + i, texts[i], -1, SQLITE_STATIC);
  const int64_t ints[] = {row->wait_step, row->steps, row->rev, row->started_ms, row->updated_ms};
  for (int i = 0; !rc && i < 5; i++) rc = sqlite3_bind_int64(st, 8 + i, ints[i]);
  if (!rc) rc = sqlite3_bind_int(st, 13, row->wait_timer);
  if (!rc) rc = workflows_bind_blob(st, 14, row->input, row->input_len);
  if (!rc) rc = workflows_bind_blob(st, 15, row->result, row->result_len);
  return choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
}

int choreo_workflows_each(choreo_workflows *w, const char *name, const char *status, int limit,
                          choreo_workflow_fn fn, void *ud) {
  sqlite3_stmt *st = w->st[W_LIST];
  if (workflows_bind(st, name, status) || sqlite3_bind_int(st, 3, limit))
    return choreo_sql_finish(st, SQLITE_ERROR);
  return workflows_walk(st, fn, ud, NULL);
}

int choreo_workflows_count(choreo_workflows *w, const char *status, int64_t *count) {
  sqlite3_stmt *st = w->st[W_COUNT];
  int step = sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC) ? SQLITE_ERROR : sqlite3_step(st);
  *count = step == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  return choreo_sql_finish(st, step);
}

int choreo_workflows_record(choreo_workflows *w, const char *name, const char *id,
                            const choreo_workflow_step *s) {
  sqlite3_stmt *st = w->st[H_RECORD];
  int rc = workflows_bind(st, name, id);
  if (!rc) rc = sqlite3_bind_int64(st, 3, s->step);
  if (!rc) rc = sqlite3_bind_text(st, 4, s->op, -1, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_text(st, 5, s->what, -1, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_text(st, 6, s->ref, -1, SQLITE_STATIC);
  if (!rc) rc = workflows_bind_blob(st, 7, s->result, s->result_len);
  if (!rc) rc = sqlite3_bind_int64(st, 8, s->at_ms);
  if (!rc) rc = s->result ? sqlite3_bind_int64(st, 9, s->at_ms) : sqlite3_bind_null(st, 9);
  return choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
}

int choreo_workflows_complete(choreo_workflows *w, const char *name, const char *id, int64_t step,
                              const char *result, size_t len, int64_t now_ms) {
  sqlite3_stmt *st = w->st[H_COMPLETE];
  int rc = workflows_bind(st, name, id);
  if (!rc) rc = sqlite3_bind_int64(st, 3, step);
  if (!rc) rc = sqlite3_bind_blob64(st, 4, result ? result : "", len, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_int64(st, 5, now_ms);
  rc = choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
  if (!rc && sqlite3_changes(sqlite3_db_handle(st)) == 0) return CHOREO_ENOENT;
  return rc;
}

int choreo_workflows_history(choreo_workflows *w, const char *name, const char *id,
                             choreo_workflow_step_fn fn, void *ud) {
  sqlite3_stmt *st = w->st[H_LIST];
  int step, rc = 0;
  if (workflows_bind(st, name, id)) return choreo_sql_finish(st, SQLITE_ERROR);
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
    choreo_workflow_step s = {.step = sqlite3_column_int64(st, 0), .op = workflows_text(st, 1),
                              .what = workflows_text(st, 2), .ref = workflows_text(st, 3),
                              .result = sqlite3_column_blob(st, 4),
                              .result_len = (size_t)sqlite3_column_bytes(st, 4),
                              .at_ms = sqlite3_column_int64(st, 5),
                              .done_ms = sqlite3_column_int64(st, 6)};
    if (sqlite3_column_type(st, 4) == SQLITE_NULL) s.result = NULL;
    rc = fn(ud, &s);
  }
  if (rc) {
    choreo_sql_finish(st, SQLITE_DONE);
    return rc;
  }
  return choreo_sql_finish(st, step);
}

int choreo_workflows_emitted(choreo_workflows *w, const char *ref, bool *found) {
  sqlite3_stmt *st = w->st[H_EMITTED];
  int step = sqlite3_bind_text(st, 1, ref, -1, SQLITE_STATIC) ? SQLITE_ERROR : sqlite3_step(st);
  *found = step == SQLITE_ROW;
  return choreo_sql_finish(st, step);
}

static int workflows_run(sqlite3_stmt *st, const char *name, const char *id) {
  return choreo_sql_finish(st, workflows_bind(st, name, id) ? SQLITE_ERROR : sqlite3_step(st));
}

int choreo_workflows_forget(choreo_workflows *w, const char *name, const char *id, bool inbox,
                            bool history) {
  int rc = inbox ? workflows_run(w->st[I_FORGET], name, id) : 0;
  if (!rc && history) rc = workflows_run(w->st[H_FORGET], name, id);
  return rc || !history ? rc : workflows_run(w->st[S_FORGET], name, id);
}

int choreo_workflows_inbox_put(choreo_workflows *w, const char *name, const char *id,
                               const char *type, const char *msg, size_t len) {
  sqlite3_stmt *st = w->st[I_PUT];
  int rc = workflows_bind(st, name, id);
  if (!rc) rc = sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_blob64(st, 4, msg, len, SQLITE_STATIC);
  rc = choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
  if (rc) return rc;
  st = w->st[I_TRIM];
  rc = workflows_bind(st, name, id);
  if (!rc) rc = sqlite3_bind_int(st, 3, CHOREO_WORKFLOW_INBOX_MAX);
  return choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
}

int choreo_workflows_inbox_take(choreo_workflows *w, const char *name, const char *id,
                                const char *type,
                                int (*fn)(void *ud, int64_t key, const char *msg, size_t len),
                                void *ud, bool *found) {
  sqlite3_stmt *st = w->st[I_TAKE];
  int64_t n = 0;
  int rc = workflows_bind(st, name, id);
  if (!rc) rc = sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
  if (rc) return choreo_sql_finish(st, SQLITE_ERROR);
  int step = sqlite3_step(st);
  *found = step == SQLITE_ROW;
  if (*found) {
    n = sqlite3_column_int64(st, 0);
    rc = fn(ud, 0, sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1));
  }
  if (rc) {
    choreo_sql_finish(st, SQLITE_DONE);
    return rc;
  }
  rc = choreo_sql_finish(st, step);
  if (rc || !*found) return rc;
  st = w->st[I_DELETE];
  return choreo_sql_finish(st, sqlite3_bind_int64(st, 1, n) ? SQLITE_ERROR : sqlite3_step(st));
}

int choreo_workflows_expire(choreo_workflows *w, int64_t before_ms, int max, int *deleted) {
  *deleted = 0;
  for (int i = W_EXPIRE_HISTORY; i <= W_EXPIRE; i++) { /* the same instances, theirs first */
    sqlite3_stmt *st = w->st[i];
    int rc = sqlite3_bind_int64(st, 1, before_ms);
    if (!rc) rc = sqlite3_bind_int(st, 2, max);
    rc = choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
    if (rc) return rc;
  }
  *deleted = sqlite3_changes(sqlite3_db_handle(w->st[W_EXPIRE]));
  return 0;
}

int choreo_workflows_signal(choreo_workflows *w, const char *name, const char *id, int64_t during,
                            const char *signal, const char *data, size_t len) {
  sqlite3_stmt *st = w->st[S_RECORD];
  int rc = workflows_bind(st, name, id);
  if (!rc) rc = sqlite3_bind_int64(st, 3, during);
  if (!rc) rc = sqlite3_bind_text(st, 4, signal, -1, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_blob64(st, 5, data, len, SQLITE_STATIC);
  return choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
}

int choreo_workflows_signals(choreo_workflows *w, const char *name, const char *id,
                             choreo_workflow_signal_fn fn, void *ud) {
  sqlite3_stmt *st = w->st[S_LIST];
  int step, rc = 0;
  if (workflows_bind(st, name, id)) return choreo_sql_finish(st, SQLITE_ERROR);
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
    rc = fn(ud, sqlite3_column_int64(st, 0), workflows_text(st, 1), sqlite3_column_blob(st, 2),
            (size_t)sqlite3_column_bytes(st, 2));
  if (rc) {
    choreo_sql_finish(st, SQLITE_DONE);
    return rc;
  }
  return choreo_sql_finish(st, step);
}
