/* The history a build fetches from other hosts' logs (see buildhistory.h). */
#include "buildhistory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql.h"

static const char history_schema[] =
    "CREATE TABLE IF NOT EXISTS choreo_build_sources("
    "  source TEXT PRIMARY KEY, upto INTEGER NOT NULL, fetched INTEGER NOT NULL DEFAULT 0,"
    "  gone INTEGER NOT NULL DEFAULT 0, state INTEGER NOT NULL DEFAULT 0,"
    "  merged INTEGER NOT NULL DEFAULT 0,"
    "  why TEXT NOT NULL DEFAULT '') WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS choreo_build_history("
    "  id INTEGER PRIMARY KEY, source TEXT NOT NULL, seq INTEGER NOT NULL, msg BLOB NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS choreo_build_history_once "
    "  ON choreo_build_history(source, seq);"
    "CREATE TABLE IF NOT EXISTS choreo_build_replay("
    "  one INTEGER PRIMARY KEY CHECK (one = 1), source TEXT NOT NULL, seq INTEGER NOT NULL,"
    "  done INTEGER NOT NULL);";

/* Runs st, which the caller bound (bound: 0, or not when a binding failed), to its end, and
 * finalizes it. */
static int history_finish(sqlite3_stmt *st, int bound) {
  int rc = bound == SQLITE_OK ? choreo_sql_finish(st, sqlite3_step(st))
                              : choreo_sql_finish(st, SQLITE_ERROR);
  sqlite3_finalize(st);
  return rc;
}

static int history_prepare(sqlite3 *build, const char *sql, sqlite3_stmt **st) {
  return sqlite3_prepare_v2(build, sql, -1, st, NULL) == SQLITE_OK ? 0 : CHOREO_EIO;
}

static int history_read_sources(sqlite3 *build, choreo_build_history *h) {
  sqlite3_stmt *st;
  if (history_prepare(build, "SELECT source, upto, fetched, gone, state, why, merged "
                             "FROM choreo_build_sources ORDER BY source", &st))
    return CHOREO_EIO;
  int step, rc = 0;
  while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
    choreo_history_source *grown = realloc(h->sources, (size_t)(h->n + 1) * sizeof *grown);
    if (!grown) {
      rc = CHOREO_ENOMEM;
      break;
    }
    h->sources = grown;
    choreo_history_source *s = &h->sources[h->n++];
    snprintf(s->name, sizeof s->name, "%s", (const char *)sqlite3_column_text(st, 0));
    s->upto = sqlite3_column_int64(st, 1);
    s->fetched = sqlite3_column_int64(st, 2);
    s->gone = sqlite3_column_int64(st, 3);
    s->state = sqlite3_column_int(st, 4);
    snprintf(s->why, sizeof s->why, "%s", (const char *)sqlite3_column_text(st, 5));
    s->merged = sqlite3_column_int64(st, 6);
  }
  if (!rc && step != SQLITE_DONE) rc = CHOREO_EIO;
  sqlite3_finalize(st);
  return rc;
}

int choreo_build_history_setup(sqlite3 *build) {
  if (sqlite3_exec(build, history_schema, NULL, NULL, NULL) != SQLITE_OK ||
      choreo_sql_add_column(build, "choreo_build_sources", "merged", "INTEGER NOT NULL DEFAULT 0",
                            NULL) != SQLITE_OK) /* (a build file begun before it had merged) */
    return CHOREO_EIO;
  return 0;
}

int choreo_build_history_read(sqlite3 *build, choreo_build_history *h) {
  *h = (choreo_build_history){.planned = false};
  sqlite3_stmt *st;
  if (history_prepare(build, "SELECT source, seq, done FROM choreo_build_replay", &st))
    return CHOREO_EIO;
  int step = sqlite3_step(st);
  if (step == SQLITE_ROW) {
    h->planned = true;
    snprintf(h->replay_source, sizeof h->replay_source, "%s",
             (const char *)sqlite3_column_text(st, 0));
    h->replay_seq = sqlite3_column_int64(st, 1);
    h->replayed = sqlite3_column_int(st, 2) != 0;
    step = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  if (step != SQLITE_DONE) return CHOREO_EIO;
  int rc = history_read_sources(build, h);
  if (rc) choreo_build_history_free(h);
  return rc;
}

void choreo_build_history_free(choreo_build_history *h) {
  free(h->sources);
  h->sources = NULL;
  h->n = 0;
}

int choreo_build_history_begin(sqlite3 *build, choreo_history_page *page) {
  *page = (choreo_history_page){.build = build};
  if (sqlite3_exec(build, "SAVEPOINT choreo_history", NULL, NULL, NULL) != SQLITE_OK)
    return CHOREO_EIO;
  /* What this host kept replaces what a peer's log says under the same (source, seq): it is
   * what this host applied (a peer whose database was replaced reuses seqs). */
  if (!history_prepare(build, "INSERT OR IGNORE INTO choreo_build_history(source, seq, msg) "
                              "VALUES (?1, ?2, ?3)", &page->store) &&
      !history_prepare(build, "INSERT OR REPLACE INTO choreo_build_history(source, seq, msg) "
                              "VALUES (?1, ?2, ?3)", &page->keep))
    return 0;
  choreo_build_history_end(page, CHOREO_EIO);
  return CHOREO_EIO;
}

int choreo_build_history_end(choreo_history_page *page, int rc) {
  sqlite3_finalize(page->store);
  sqlite3_finalize(page->keep);
  page->store = page->keep = NULL;
  if (rc) {
    sqlite3_exec(page->build, "ROLLBACK TO choreo_history; RELEASE choreo_history", NULL, NULL,
                 NULL);
    return rc;
  }
  return sqlite3_exec(page->build, "RELEASE choreo_history", NULL, NULL, NULL) == SQLITE_OK
             ? 0
             : CHOREO_EIO;
}

int choreo_build_history_plan(sqlite3 *build, const choreo_history_source *sources, int n) {
  choreo_history_page page;
  int rc = choreo_build_history_begin(build, &page);
  if (rc) return rc;
  for (int i = 0; i < n && !rc; i++) {
    sqlite3_stmt *st;
    rc = history_prepare(build, "INSERT OR REPLACE INTO choreo_build_sources(source, upto) "
                                "VALUES (?1, ?2)", &st);
    if (!rc)
      rc = history_finish(st, sqlite3_bind_text(st, 1, sources[i].name, -1, SQLITE_STATIC) ||
                                      sqlite3_bind_int64(st, 2, sources[i].upto));
  }
  if (!rc && sqlite3_exec(build, "INSERT OR REPLACE INTO choreo_build_replay VALUES (1, '', 0, 0)",
                          NULL, NULL, NULL) != SQLITE_OK)
    rc = CHOREO_EIO;
  return choreo_build_history_end(&page, rc);
}

const choreo_history_source *choreo_build_history_wanted(const choreo_build_history *h) {
  for (int i = 0; i < h->n; i++)
    if (h->sources[i].state == CHOREO_HISTORY_FETCHING) return &h->sources[i];
  return NULL;
}

choreo_history_source *choreo_build_history_find(choreo_build_history *h, const char *source,
                                                 size_t len) {
  for (int i = 0; i < h->n; i++)
    if (strlen(h->sources[i].name) == len && memcmp(h->sources[i].name, source, len) == 0)
      return &h->sources[i];
  return NULL;
}

const choreo_history_source *choreo_build_history_merging(const choreo_build_history *h) {
  for (int i = 0; i < h->n; i++)
    if (h->sources[i].state != CHOREO_HISTORY_FETCHING && h->sources[i].merged < h->sources[i].upto)
      return &h->sources[i];
  return NULL;
}

int choreo_build_history_holds_prepare(sqlite3 *build, sqlite3_stmt **st) {
  return history_prepare(build, "SELECT 1 FROM choreo_build_history WHERE source = ?1 AND seq = ?2",
                         st);
}

int choreo_build_history_holds(const choreo_build_history *h, sqlite3_stmt *st, choreo_str source,
                               int64_t seq) {
  const choreo_history_source *s =
      choreo_build_history_find((choreo_build_history *)h, source.p, source.n);
  if (!s || seq > s->upto) return 0; /* (kept after the plan: not in the history) */
  int step = sqlite3_bind_text(st, 1, source.p, (int)source.n, SQLITE_STATIC) ||
                     sqlite3_bind_int64(st, 2, seq)
                 ? SQLITE_ERROR
                 : sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return step == SQLITE_ROW ? 1 : step == SQLITE_DONE ? 0 : CHOREO_EIO;
}

static int history_put(sqlite3_stmt *st, choreo_str source, int64_t seq, const char *msg,
                       size_t len) {
  return sqlite3_bind_text(st, 1, source.p, (int)source.n, SQLITE_STATIC) ||
                 sqlite3_bind_int64(st, 2, seq) || sqlite3_bind_blob64(st, 3, msg, len, SQLITE_STATIC)
             ? choreo_sql_finish(st, SQLITE_ERROR)
             : choreo_sql_finish(st, sqlite3_step(st));
}

int choreo_build_history_store(choreo_history_page *page, choreo_str source, int64_t seq,
                               const char *msg, size_t len) {
  return history_put(page->store, source, seq, msg, len);
}

int choreo_build_history_store_kept(choreo_history_page *page, choreo_str source, int64_t seq,
                                    const char *msg, size_t len) {
  return history_put(page->keep, source, seq, msg, len);
}

int choreo_build_history_progress(choreo_history_page *page, const choreo_history_source *s) {
  sqlite3_stmt *st;
  if (history_prepare(page->build, "UPDATE choreo_build_sources SET fetched = ?2, gone = ?3, "
                                   "state = ?4, why = ?5, merged = ?6 WHERE source = ?1", &st))
    return CHOREO_EIO;
  return history_finish(st, sqlite3_bind_text(st, 1, s->name, -1, SQLITE_STATIC) ||
                                sqlite3_bind_int64(st, 2, s->fetched) ||
                                sqlite3_bind_int64(st, 3, s->gone) ||
                                sqlite3_bind_int(st, 4, s->state) ||
                                sqlite3_bind_text(st, 5, s->why, -1, SQLITE_STATIC) ||
                                sqlite3_bind_int64(st, 6, s->merged));
}

int choreo_build_history_replay(sqlite3 *build, const char *source, int64_t seq, int max,
                                int (*fn)(void *ud, int64_t seq, const char *msg, size_t len),
                                void *ud, int *n) {
  sqlite3_stmt *st;
  *n = 0;
  if (history_prepare(build, "SELECT seq, msg FROM choreo_build_history "
                             "WHERE (source, seq) > (?1, ?2) ORDER BY source, seq LIMIT ?3", &st))
    return CHOREO_EIO;
  int rc = sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC) || sqlite3_bind_int64(st, 2, seq) ||
                   sqlite3_bind_int(st, 3, max)
               ? choreo_sql_finish(st, SQLITE_ERROR)
               : choreo_sql_walk(st, fn, ud, n);
  sqlite3_finalize(st);
  return rc;
}

int choreo_build_history_advance(sqlite3 *build, const char *source, int64_t seq, bool done) {
  sqlite3_stmt *st;
  if (history_prepare(build, "UPDATE choreo_build_replay SET source = ?1, seq = ?2, done = ?3",
                      &st))
    return CHOREO_EIO;
  return history_finish(st, sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC) ||
                                sqlite3_bind_int64(st, 2, seq) || sqlite3_bind_int(st, 3, done));
}

int choreo_build_history_remaining(sqlite3 *build, const choreo_build_history *h, int64_t *n) {
  *n = 0;
  if (!h->planned || h->replayed) return 0;
  sqlite3_stmt *st;
  if (history_prepare(build, "SELECT count(*) FROM choreo_build_history "
                             "WHERE (source, seq) > (?1, ?2)", &st))
    return CHOREO_EIO;
  int step = sqlite3_bind_text(st, 1, h->replay_source, -1, SQLITE_STATIC) ||
                     sqlite3_bind_int64(st, 2, h->replay_seq)
                 ? SQLITE_ERROR
                 : sqlite3_step(st);
  if (step == SQLITE_ROW) *n = sqlite3_column_int64(st, 0);
  int rc = choreo_sql_finish(st, step);
  sqlite3_finalize(st);
  return rc;
}
