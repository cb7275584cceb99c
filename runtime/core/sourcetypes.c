/* Which message types each other host has sent this one (see sourcetypes.h). */
#include "sourcetypes.h"

#include <stdlib.h>
#include <string.h>

#include "choreo.h"
#include "sql.h"

#define REMEMBERED_MAX 1024 /* (source, type) pairs remembered; past it, noted each time */
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
} remembered;

/* The pairs noted under one epoch, sorted (remembered_cmp) for bsearch: a host hears a
 * handful of types from each other host, so after the first of each, a message costs a few
 * comparisons, not a statement. */
struct choreo_source_types {
  sqlite3_stmt *st[T_COUNT];
  remembered *pairs;
  int n, cap;
  int last; /* the pair found or noted last: a run of messages is mostly of one type */
  uint64_t epoch; /* the store's, when the pairs were noted: a rollback may have undone them */
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
  free(t->pairs);
  free(t);
}

static int remembered_cmp_str(const char *a, size_t an, const char *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  return c ? c : (an > bn) - (an < bn);
}

static int remembered_cmp(const void *pa, const void *pb) {
  const remembered *a = pa, *b = pb;
  int c = remembered_cmp_str(a->source, a->source_len, b->source, b->source_len);
  return c ? c : remembered_cmp_str(a->type, a->type_len, b->type, b->type_len);
}

/* Remembers a pair just noted, in its sorted place; a pair too long or one too many is not. */
static void source_types_remember(choreo_source_types *t, const remembered *key) {
  if (t->n == t->cap) {
    int cap = t->cap ? t->cap * 2 : 16;
    if (cap > REMEMBERED_MAX) return;
    remembered *grown = realloc(t->pairs, (size_t)cap * sizeof *grown);
    if (!grown) return; /* noted each time instead */
    t->pairs = grown;
    t->cap = cap;
  }
  int at = 0;
  while (at < t->n && remembered_cmp(&t->pairs[at], key) < 0) at++;
  memmove(&t->pairs[at + 1], &t->pairs[at], (size_t)(t->n - at) * sizeof *t->pairs);
  t->pairs[at] = *key;
  t->n++;
  t->last = at;
}

static bool source_types_is_last(const choreo_source_types *t, choreo_str source,
                                 choreo_str type) {
  if (t->last >= t->n) return false;
  const remembered *r = &t->pairs[t->last];
  return r->source_len == source.n && r->type_len == type.n &&
         choreo_bytes_eq(r->source, source.p, source.n) && choreo_bytes_eq(r->type, type.p, type.n);
}

int choreo_source_types_note(choreo_source_types *t, choreo_str source, choreo_str type,
                             int64_t seq, uint64_t epoch) {
  if (t->epoch != epoch) {
    t->n = 0;
    t->epoch = epoch;
  }
  if (source_types_is_last(t, source, type)) return 0;
  bool fits = source.n <= CHOREO_NAME_MAX && type.n <= REMEMBERED_TYPE;
  remembered key;
  if (fits) {
    memcpy(key.source, source.p, source.n);
    memcpy(key.type, type.p, type.n);
    key.source_len = source.n;
    key.type_len = type.n;
    const remembered *found =
        t->n ? bsearch(&key, t->pairs, (size_t)t->n, sizeof key, remembered_cmp) : NULL;
    if (found) {
      t->last = (int)(found - t->pairs);
      return 0;
    }
  }
  sqlite3_stmt *st = t->st[T_NOTE];
  int rc = sqlite3_bind_text(st, 1, source.p, (int)source.n, SQLITE_STATIC) ||
                   sqlite3_bind_text(st, 2, type.p, (int)type.n, SQLITE_STATIC) ||
                   sqlite3_bind_int64(st, 3, seq)
               ? choreo_sql_finish(st, SQLITE_ERROR)
               : choreo_sql_finish(st, sqlite3_step(st));
  if (!rc && fits) source_types_remember(t, &key);
  return rc;
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
