/* Shared SQLite chores of the table owners (see sql.h). */
#include "sql.h"

#include "choreo.h"

int choreo_sql_prepare(sqlite3 *db, const char *schema, const char *const *sql, int n,
                       sqlite3_stmt **st) {
  for (int i = 0; i < n; i++) st[i] = NULL;
  int rc = schema ? sqlite3_exec(db, schema, NULL, NULL, NULL) : SQLITE_OK;
  for (int i = 0; rc == SQLITE_OK && i < n; i++)
    rc = sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL);
  if (rc == SQLITE_OK) return 0;
  choreo_sql_finalize(st, n);
  return CHOREO_EIO;
}

void choreo_sql_finalize(sqlite3_stmt **st, int n) {
  for (int i = 0; i < n; i++) {
    sqlite3_finalize(st[i]);
    st[i] = NULL;
  }
}

int choreo_sql_finish(sqlite3_stmt *st, int step) {
  while (step == SQLITE_ROW) step = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return step == SQLITE_DONE ? 0 : CHOREO_EIO;
}

int choreo_sql_walk(sqlite3_stmt *st, int (*fn)(void *ud, int64_t key, const char *bytes, size_t len),
                    void *ud, int *n) {
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    int rc = fn(ud, sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1),
                (size_t)sqlite3_column_bytes(st, 1));
    if (rc) {
      choreo_sql_finish(st, SQLITE_DONE);
      return rc;
    }
    if (n) (*n)++;
  }
  return choreo_sql_finish(st, step);
}
