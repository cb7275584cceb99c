/* Saga instances (see sagas.h). The statements are prepared once, as the store's are: a saga
 * reads and writes its row for every message it handles. */
#include "sagas.h"

#include <stdlib.h>

#include "choreo.h"
#include "sql.h"

enum { S_LOAD, S_SAVE, S_REMOVE, S_MISS, S_LIST, S_SHOW, S_INSTANCES, S_COUNT };

static const char *const sagas_sql[S_COUNT] = {
    [S_LOAD] = "SELECT state, version FROM choreo_sagas WHERE name = ?1 AND key = ?2",
    [S_SAVE] = "INSERT INTO choreo_sagas(name, key, state, version, updated) "
               "VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) "
               "ON CONFLICT(name, key) DO UPDATE SET state = excluded.state, "
               "version = excluded.version, updated = excluded.updated",
    [S_REMOVE] = "DELETE FROM choreo_sagas WHERE name = ?1 AND key = ?2",
    [S_MISS] = "INSERT INTO choreo_saga_misses(name, type, count) VALUES (?1, ?2, 1) "
               "ON CONFLICT(name, type) DO UPDATE SET count = count + 1",
    [S_LIST] = "SELECT name, key, version, updated, NULL FROM choreo_sagas "
               "WHERE ?1 IS NULL OR name = ?1 ORDER BY name, key LIMIT 10000",
    [S_SHOW] = "SELECT name, key, version, updated, state FROM choreo_sagas "
               "WHERE name = ?1 AND key = ?2",
    [S_INSTANCES] = "SELECT count(*) FROM choreo_sagas",
};

static const char sagas_schema[] =
    "CREATE TABLE IF NOT EXISTS choreo_sagas("
    "  name TEXT NOT NULL, key TEXT NOT NULL, state BLOB NOT NULL, version INTEGER NOT NULL,"
    "  updated TEXT NOT NULL, PRIMARY KEY (name, key));"
    "CREATE TABLE IF NOT EXISTS choreo_saga_misses("
    "  name TEXT NOT NULL, type TEXT NOT NULL, count INTEGER NOT NULL,"
    "  PRIMARY KEY (name, type));";

struct choreo_sagas {
  sqlite3_stmt *st[S_COUNT];
};

int choreo_sagas_open(choreo_sagas **out, sqlite3 *db) {
  choreo_sagas *t = calloc(1, sizeof *t);
  if (!t) return CHOREO_ENOMEM;
  int rc = choreo_sql_prepare(db, sagas_schema, sagas_sql, S_COUNT, t->st);
  if (rc) {
    free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void choreo_sagas_close(choreo_sagas *t) {
  if (!t) return;
  choreo_sql_finalize(t->st, S_COUNT);
  free(t);
}

/* Binds name and key (NULL binds SQL NULL); SQLITE_OK or an error such as SQLITE_TOOBIG. */
static int sagas_bind(sqlite3_stmt *st, const char *name, const char *key) {
  int rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  return rc ? rc : sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
}


int choreo_sagas_load(choreo_sagas *t, const char *name, const char *key, msgpack_sbuffer *state,
                      int64_t *version, bool *found) {
  sqlite3_stmt *st = t->st[S_LOAD];
  state->size = 0;
  *found = false;
  int step = sagas_bind(st, name, key) ? SQLITE_ERROR : sqlite3_step(st);
  if (step == SQLITE_ROW) {
    *found = true;
    *version = sqlite3_column_int64(st, 1);
    const void *blob = sqlite3_column_blob(st, 0);
    int n = sqlite3_column_bytes(st, 0);
    if (n > 0 && msgpack_sbuffer_write(state, blob, (size_t)n)) {
      choreo_sql_finish(st, SQLITE_DONE);
      return CHOREO_ENOMEM;
    }
  }
  return choreo_sql_finish(st, step);
}

int choreo_sagas_save(choreo_sagas *t, const char *name, const char *key, const char *state,
                      size_t state_len, int64_t version) {
  sqlite3_stmt *st = t->st[S_SAVE];
  int rc = sagas_bind(st, name, key);
  if (!rc) rc = sqlite3_bind_blob64(st, 3, state ? state : "", state_len, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_int64(st, 4, version);
  return choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
}

int choreo_sagas_remove(choreo_sagas *t, const char *name, const char *key) {
  sqlite3_stmt *st = t->st[S_REMOVE];
  return choreo_sql_finish(st, sagas_bind(st, name, key) ? SQLITE_ERROR : sqlite3_step(st));
}

int choreo_sagas_miss(choreo_sagas *t, const char *name, const char *type) {
  sqlite3_stmt *st = t->st[S_MISS];
  return choreo_sql_finish(st, sagas_bind(st, name, type) ? SQLITE_ERROR : sqlite3_step(st));
}

int choreo_sagas_count(choreo_sagas *t, int64_t *count) {
  sqlite3_stmt *st = t->st[S_INSTANCES];
  int step = sqlite3_step(st);
  *count = step == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  return choreo_sql_finish(st, step);
}

int choreo_sagas_each(choreo_sagas *t, const char *name, const char *key, choreo_saga_fn fn,
                      void *ud) {
  sqlite3_stmt *st = t->st[key ? S_SHOW : S_LIST];
  int step = key ? sagas_bind(st, name, key) : sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = 0;
  if (step != SQLITE_OK) return choreo_sql_finish(st, SQLITE_ERROR);
  while (rc >= 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
    const char *updated = (const char *)sqlite3_column_text(st, 3);
    choreo_saga_row row = {.name = (const char *)sqlite3_column_text(st, 0),
                           .key = (const char *)sqlite3_column_text(st, 1),
                           .version = sqlite3_column_int64(st, 2),
                           .updated = updated ? updated : "",
                           .state = sqlite3_column_blob(st, 4),
                           .state_len = (size_t)sqlite3_column_bytes(st, 4)};
    rc = fn(ud, &row);
  }
  if (rc < 0) {
    choreo_sql_finish(st, SQLITE_DONE);
    return rc;
  }
  return choreo_sql_finish(st, step);
}
