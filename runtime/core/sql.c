/* Shared SQLite chores of the table owners (see sql.h). */
#include "sql.h"

#include <stdbool.h>

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

int choreo_sql_add_column(sqlite3 *db, const char *table, const char *column, const char *decl,
                          const char *fill) {
  sqlite3_stmt *st;
  char *sql = sqlite3_mprintf("SELECT 1 FROM pragma_table_info('%q') WHERE name = '%q'", table,
                              column);
  if (!sql) return SQLITE_NOMEM;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  sqlite3_free(sql);
  if (rc != SQLITE_OK) return rc;
  bool has = sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  if (has) return SQLITE_OK;
  sql = sqlite3_mprintf("ALTER TABLE %s ADD COLUMN %s %s", table, column, decl);
  if (!sql) return SQLITE_NOMEM;
  rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  sqlite3_free(sql);
  return rc == SQLITE_OK && fill ? sqlite3_exec(db, fill, NULL, NULL, NULL) : rc;
}
