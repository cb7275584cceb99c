/* The few things every owner of choreo_* tables does with SQLite the same way: create its
 * tables and prepare its statements once, finalize them, and run a statement to its end. */
#ifndef CHOREO_SQL_H
#define CHOREO_SQL_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* Runs schema (if not NULL), then prepares the n statements sql[i] into st[i] for reuse.
 * Returns 0, or CHOREO_EIO with every statement finalized and st[] NULL. */
int choreo_sql_prepare(sqlite3 *db, const char *schema, const char *const *sql, int n,
                       sqlite3_stmt **st);
void choreo_sql_finalize(sqlite3_stmt **st, int n);
/* Steps st on past `step` (the result of the caller's last sqlite3_step, or SQLITE_ERROR when
 * binding failed) to its end, then resets it and clears its bindings. 0 or CHOREO_EIO. */
int choreo_sql_finish(sqlite3_stmt *st, int step);

/* Steps st (bound by the caller) and calls fn with each row's first column as an integer and
 * its second as bytes, until fn returns non-zero, which is returned; *n (if not NULL) counts the
 * calls that returned 0. Finishes st either way. */
int choreo_sql_walk(sqlite3_stmt *st, int (*fn)(void *ud, int64_t key, const char *bytes, size_t len),
                    void *ud, int *n);

/* Adds a column that came after its table to a database from before, then runs `fill` (may be
 * NULL) to give the old rows a value; nothing when the column is there. An SQLite code. */
int choreo_sql_add_column(sqlite3 *db, const char *table, const char *column, const char *decl,
                          const char *fill);

#endif
