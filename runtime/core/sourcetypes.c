/* Which message types each other host has sent this one (see sourcetypes.h). */
#include "sourcetypes.h"

#include <stdlib.h>
#include <string.h>

#include "choreo.h"
#include "sql.h"

#define REMEMBERED 8        /* (source, type) pairs noted last */
#define REMEMBERED_TYPE 128 /* longer types are noted each time (a no-op statement) */

static const char source_types_schema[] =
    "CREATE TABLE IF NOT EXISTS choreo_source_types("
    "  source TEXT NOT NULL, type TEXT NOT NULL, first_seq INTEGER NOT NULL,"
    "  PRIMARY KEY (source, type)) WITHOUT ROWID;";

enum { T_NOTE, T_OF, T_COUNT };

static const char *const source_types_sql[T_COUNT] = {
    [T_NOTE] = "INSERT OR IGNORE INTO choreo_source_types(source, type, first_seq) "
               "VALUES (?1, ?2, ?3)",
    [T_OF] = "SELECT type, first_seq FROM choreo_source_types WHERE source = ?1",
};

typedef struct remembered {
  char source[CHOREO_NAME_MAX + 1], type[REMEMBERED_TYPE + 1];
  size_t source_len, type_len;
  uint64_t epoch;
} remembered;

struct choreo_source_types {
  sqlite3_stmt *st[T_COUNT];
  remembered pairs[REMEMBERED];
  int next; /* the slot the next pair takes */
};

int choreo_source_types_open(choreo_source_types **out, sqlite3 *db) {
  choreo_source_types *t = calloc(1, sizeof *t);
  if (!t) return CHOREO_ENOMEM;
  int rc = choreo_sql_prepare(db, source_types_schema, source_types_sql, T_COUNT, t->st);
  if (rc) {
    free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void choreo_source_types_close(choreo_source_types *t) {
  if (!t) return;
  choreo_sql_finalize(t->st, T_COUNT);
  free(t);
}

static bool source_types_remembered(const choreo_source_types *t, choreo_str source,
                                    choreo_str type, uint64_t epoch) {
  for (int i = 0; i < REMEMBERED; i++) {
    const remembered *r = &t->pairs[i];
    if (r->epoch == epoch && r->type_len == type.n && r->source_len == source.n &&
        memcmp(r->type, type.p, type.n) == 0 && memcmp(r->source, source.p, source.n) == 0)
      return true;
  }
  return false;
}

int choreo_source_types_note(choreo_source_types *t, choreo_str source, choreo_str type,
                             int64_t seq, uint64_t epoch) {
  if (source_types_remembered(t, source, type, epoch)) return 0;
  sqlite3_stmt *st = t->st[T_NOTE];
  int rc = sqlite3_bind_text(st, 1, source.p, (int)source.n, SQLITE_STATIC) ||
                   sqlite3_bind_text(st, 2, type.p, (int)type.n, SQLITE_STATIC) ||
                   sqlite3_bind_int64(st, 3, seq)
               ? choreo_sql_finish(st, SQLITE_ERROR)
               : choreo_sql_finish(st, sqlite3_step(st));
  if (rc || source.n > CHOREO_NAME_MAX || type.n > REMEMBERED_TYPE) return rc;
  remembered *r = &t->pairs[t->next];
  t->next = (t->next + 1) % REMEMBERED;
  memcpy(r->source, source.p, source.n);
  memcpy(r->type, type.p, type.n);
  r->source_len = source.n;
  r->type_len = type.n;
  r->epoch = epoch;
  return 0;
}

int choreo_source_types_may_have_sent(choreo_source_types *t, const char *source,
                                      bool (*takes)(void *ud, const char *type, size_t len),
                                      void *ud, bool *may) {
  sqlite3_stmt *st = t->st[T_OF];
  int64_t first = 0;
  bool sent = false;
  int step = sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC) ? SQLITE_ERROR : SQLITE_ROW;
  while (step == SQLITE_ROW && (step = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t at = sqlite3_column_int64(st, 1);
    if (!first || at < first) first = at;
    sent = sent || takes(ud, (const char *)sqlite3_column_text(st, 0),
                         (size_t)sqlite3_column_bytes(st, 0));
  }
  *may = sent || first != 1; /* no record from its first message on: it may have */
  return choreo_sql_finish(st, step);
}
