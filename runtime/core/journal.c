/* The journal (see journal.h). A batch's entries are packed with msgpack-c as they come,
 * each an array:
 *   [at_ms, id, source, seq, type, kind, correlation, causation, handler, outcome, attempts,
 *    duration_us, emitted_first, emitted_last, error]
 * and written at the end of the batch as one row, with one (correlation, batch) row per
 * conversation it touched: a batch of one conversation's messages costs two inserts in all.
 * Entries are small because neighbours are alike: at_ms is counted from the entry before (the
 * first from 0), `true` stands for the previous entry's value of source, type, kind,
 * correlation, causation and handler, and for an id that is "<source>/<seq>". */
#include "journal.h"

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "choreo.h"
#include "mpput.h"
#include "sql.h"

enum { J_ADD, J_CONVERSATION, J_EACH, J_RECENT, J_OLDEST, J_FORGET, J_DELETE, J_COUNT };

static const char *const journal_sql[J_COUNT] = {
    [J_ADD] = "INSERT INTO choreo_journal(at, count, entries, conversations) "
              "VALUES (?1, ?2, ?3, ?4)",
    [J_CONVERSATION] = "INSERT OR IGNORE INTO choreo_journal_conversations(correlation, batch) "
                       "VALUES (?1, ?2)",
    [J_EACH] = "SELECT j.count, j.entries FROM choreo_journal_conversations c "
               "JOIN choreo_journal j ON j.rowid = c.batch WHERE c.correlation = ?1 "
               "ORDER BY c.batch",
    [J_RECENT] = "SELECT count, entries, at FROM choreo_journal ORDER BY rowid DESC",
    /* Oldest first, to stop at the first batch still kept: `at` grows with the rowid. */
    [J_OLDEST] = "SELECT rowid, at, conversations FROM choreo_journal ORDER BY rowid LIMIT ?1",
    [J_FORGET] = "DELETE FROM choreo_journal_conversations WHERE correlation = ?1 AND batch = ?2",
    [J_DELETE] = "DELETE FROM choreo_journal WHERE rowid = ?1",
};

/* conversations: the batch's correlations, NUL-terminated one after the other, for retention
 * to delete their rows without reading the entries. */
static const char journal_schema[] =
    "CREATE TABLE IF NOT EXISTS choreo_journal("
    "  at INTEGER NOT NULL, count INTEGER NOT NULL, entries BLOB NOT NULL,"
    "  conversations BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS choreo_journal_conversations("
    "  correlation TEXT NOT NULL, batch INTEGER NOT NULL, PRIMARY KEY (correlation, batch))"
    "  WITHOUT ROWID;";

enum { E_AT, E_ID, E_SOURCE, E_SEQ, E_TYPE, E_KIND, E_CORRELATION, E_CAUSATION, E_HANDLER,
       E_OUTCOME, E_ATTEMPTS, E_DURATION, E_FIRST, E_LAST, E_ERROR, E_FIELDS };

/* The fields an entry may take from the one before. */
enum { R_SOURCE, R_TYPE, R_KIND, R_CORRELATION, R_CAUSATION, R_HANDLER, R_FIELDS };
#define JOURNAL_REPEAT_MAX 256 /* longer values are written out each time */

struct choreo_journal {
  sqlite3_stmt *st[J_COUNT];
  msgpack_sbuffer entries;
  int count;
  int64_t at_ms; /* of the last entry noted */
  struct {
    bool known; /* NULL is a value too */
    size_t n;
    char p[JOURNAL_REPEAT_MAX];
  } previous[R_FIELDS];
  /* The conversations of the batch under way, NUL-terminated one after the other: each once
   * in a run of messages of one conversation, INSERT OR IGNORE takes care of the rest. */
  msgpack_sbuffer conversations;
  size_t last, last_len; /* offset and length of the last one added */
};

static const char *const journal_outcomes[] = {
    [CHOREO_JOURNAL_OK] = "ok",
    [CHOREO_JOURNAL_RETRYING] = "retrying",
    [CHOREO_JOURNAL_DEAD] = "dead",
    [CHOREO_JOURNAL_UNHANDLED] = "unhandled",
};
#define JOURNAL_OUTCOMES (int)(sizeof journal_outcomes / sizeof *journal_outcomes)

const char *choreo_journal_outcome_name(choreo_journal_outcome o) { return journal_outcomes[o]; }

/* A journal written before batches kept their conversations' list (an early build of this
 * version) is dropped: it is a diagnostic record, and the tables are made afresh. */
static void journal_drop_old(sqlite3 *db) {
  sqlite3_stmt *probe = NULL;
  bool exists = sqlite3_prepare_v2(db, "SELECT 1 FROM choreo_journal LIMIT 0", -1, &probe, NULL) ==
                SQLITE_OK;
  sqlite3_finalize(probe);
  probe = NULL;
  if (exists && sqlite3_prepare_v2(db, "SELECT conversations FROM choreo_journal LIMIT 0", -1,
                                   &probe, NULL) != SQLITE_OK)
    sqlite3_exec(db, "DROP TABLE choreo_journal; DROP TABLE IF EXISTS choreo_journal_conversations;",
                 NULL, NULL, NULL);
  sqlite3_finalize(probe);
}

int choreo_journal_open(choreo_journal **out, sqlite3 *db) {
  choreo_journal *j = calloc(1, sizeof *j);
  if (!j) return CHOREO_ENOMEM;
  journal_drop_old(db);
  int rc = choreo_sql_prepare(db, journal_schema, journal_sql, J_COUNT, j->st);
  if (rc) {
    free(j);
    return rc;
  }
  msgpack_sbuffer_init(&j->entries);
  msgpack_sbuffer_init(&j->conversations);
  *out = j;
  return 0;
}

void choreo_journal_close(choreo_journal *j) {
  if (!j) return;
  choreo_sql_finalize(j->st, J_COUNT);
  msgpack_sbuffer_destroy(&j->entries);
  msgpack_sbuffer_destroy(&j->conversations);
  free(j);
}

/* ---- writing ---- */

/* A string, or nil for NULL. */
static char *journal_put_str(char *p, const char *s, size_t n) {
  return s ? mp_put_str(p, s, n) : mp_put_byte(p, MP_NIL);
}

/* A string field, or `true` when the entry before had the same. */
static char *journal_put_repeated(choreo_journal *j, int field, char *out, const char *p,
                                  size_t n) {
  __typeof__(j->previous[0]) *prev = &j->previous[field];
  if (prev->known && (p ? prev->n == n && choreo_bytes_eq(prev->p, p, n) : prev->n == SIZE_MAX))
    return mp_put_byte(out, MP_TRUE);
  prev->known = !p || n <= JOURNAL_REPEAT_MAX;
  prev->n = p ? n : SIZE_MAX;
  if (p && prev->known) memcpy(prev->p, p, n);
  return journal_put_str(out, p, n);
}

/* Whether id is "<source>/<seq>", what a message that names no id of its own has (read by
 * hand: snprintf per message showed in profiles). */
static bool journal_derived_id(const choreo_msg *m) {
  const char *p = m->id.p, *end = m->id.p + m->id.n;
  if (m->seq < 1 || m->id.n <= m->source.n + 1 || !choreo_bytes_eq(p, m->source.p, m->source.n) ||
      p[m->source.n] != '/')
    return false;
  int64_t v = 0;
  for (p += m->source.n + 1; p < end; p++) {
    if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10) return false;
    v = v * 10 + (*p - '0');
  }
  return v == m->seq && m->id.p[m->source.n + 1] != '0';
}

static int journal_note_conversation(choreo_journal *j, choreo_str c) {
  msgpack_sbuffer *b = &j->conversations;
  if (b->size && j->last_len == c.n && choreo_bytes_eq(b->data + j->last, c.p, c.n)) return 0;
  size_t at = b->size;
  if (msgpack_sbuffer_write(b, c.p, c.n) || msgpack_sbuffer_write(b, "", 1)) return CHOREO_ENOMEM;
  j->last = at;
  j->last_len = c.n;
  return 0;
}

int choreo_journal_note(choreo_journal *j, const choreo_journal_entry *en) {
  const choreo_msg *m = en->msg;
  /* A message with no correlation starts a conversation: its own id names it. */
  choreo_str c = m->correlationid.p ? m->correlationid : m->id;
  size_t handler_len = en->handler ? strlen(en->handler) : 0;
  size_t error_len = en->error ? strlen(en->error) : 0;
  /* The array header, seven integers and eight strings (each may be nil or `true`). */
  size_t need = 1 + 7 * MP_PUT_INT + 8 * MP_PUT_STR_HEADER + m->id.n + m->source.n +
                m->type.n + m->kind.n + c.n + m->causationid.n + handler_len + error_len;
  if (!mp_reserve(&j->entries, need)) return CHOREO_ENOMEM;
  char *p = j->entries.data + j->entries.size;
  p = mp_put_byte(p, MP_FIXARRAY(E_FIELDS));
  p = mp_put_int(p, en->at_ms - j->at_ms);
  p = journal_derived_id(m) ? mp_put_byte(p, MP_TRUE) : journal_put_str(p, m->id.p, m->id.n);
  p = journal_put_repeated(j, R_SOURCE, p, m->source.p, m->source.n);
  p = mp_put_int(p, m->seq);
  p = journal_put_repeated(j, R_TYPE, p, m->type.p, m->type.n);
  p = journal_put_repeated(j, R_KIND, p, m->kind.p, m->kind.n);
  p = journal_put_repeated(j, R_CORRELATION, p, c.p, c.n);
  p = journal_put_repeated(j, R_CAUSATION, p, m->causationid.p, m->causationid.n);
  p = journal_put_repeated(j, R_HANDLER, p, en->handler, handler_len);
  p = mp_put_int(p, (int64_t)en->outcome);
  p = mp_put_int(p, en->attempts);
  p = mp_put_int(p, en->duration_us);
  p = mp_put_int(p, en->emitted_first);
  p = mp_put_int(p, en->emitted_last);
  p = journal_put_str(p, en->error, error_len);
  if (journal_note_conversation(j, c)) return CHOREO_ENOMEM;
  j->entries.size = (size_t)(p - j->entries.data);
  j->count++;
  j->at_ms = en->at_ms;
  return 0;
}

void choreo_journal_discard(choreo_journal *j) {
  j->entries.size = j->conversations.size = 0;
  j->count = 0;
  j->at_ms = 0;
  for (int i = 0; i < R_FIELDS; i++) j->previous[i].known = false;
}

int choreo_journal_flush(choreo_journal *j, int64_t now_ms) {
  if (!j->count) return 0;
  sqlite3_stmt *st = j->st[J_ADD];
  int rc = sqlite3_bind_int64(st, 1, now_ms);
  if (!rc) rc = sqlite3_bind_int(st, 2, j->count);
  if (!rc) rc = sqlite3_bind_blob64(st, 3, j->entries.data, j->entries.size, SQLITE_STATIC);
  if (!rc)
    rc = sqlite3_bind_blob64(st, 4, j->conversations.data, j->conversations.size, SQLITE_STATIC);
  rc = choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
  int64_t batch = sqlite3_last_insert_rowid(sqlite3_db_handle(st));
  st = j->st[J_CONVERSATION];
  for (size_t at = 0; !rc && at < j->conversations.size;) {
    const char *c = j->conversations.data + at;
    size_t n = strlen(c);
    rc = sqlite3_bind_text(st, 1, c, (int)n, SQLITE_STATIC);
    if (!rc) rc = sqlite3_bind_int64(st, 2, batch);
    rc = choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
    at += n + 1;
  }
  choreo_journal_discard(j);
  return rc;
}

/* ---- reading ---- */

/* Reading a batch: the strings of the entry under way, NUL-terminated, in a buffer grown to
 * fit them, and what the entries before left for `true` to stand for (copies). */
typedef struct journal_reader {
  char *buf;
  size_t used, cap;
  int64_t at_ms;
  char *previous[R_FIELDS]; /* NULL: the value was absent (or nothing came before) */
  bool failed;              /* out of memory */
} journal_reader;

static void journal_reader_free(journal_reader *t) {
  free(t->buf);
  for (int i = 0; i < R_FIELDS; i++) free(t->previous[i]);
}

static const char *journal_str(journal_reader *t, const msgpack_object *o) {
  if (o->type != MSGPACK_OBJECT_STR) return NULL;
  size_t n = o->via.str.size;
  if (t->used + n + 1 > t->cap) { /* entries read before stay valid: the caller is done */
    t->failed = true;
    return NULL;
  }
  char *out = t->buf + t->used;
  memcpy(out, o->via.str.ptr, n);
  out[n] = '\0';
  t->used += n + 1;
  return out;
}

static const char *journal_repeated(journal_reader *t, int field, const msgpack_object *o) {
  if (o->type == MSGPACK_OBJECT_BOOLEAN) return t->previous[field];
  const char *s = journal_str(t, o);
  free(t->previous[field]);
  t->previous[field] = s ? strdup(s) : NULL;
  if (s && !t->previous[field]) t->failed = true;
  return s;
}

static int64_t journal_int(const msgpack_object *o) {
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (int64_t)o->via.u64;
  if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return o->via.i64;
  return 0;
}

/* Room for every string of the entry o, and a derived id. */
static bool journal_reserve(journal_reader *t, const msgpack_object *o) {
  size_t need = CHOREO_NAME_MAX + 32;
  for (uint32_t i = 0; i < o->via.array.size; i++)
    if (o->via.array.ptr[i].type == MSGPACK_OBJECT_STR) need += o->via.array.ptr[i].via.str.size + 1;
  t->used = 0;
  if (need <= t->cap) return true;
  char *grown = realloc(t->buf, need);
  if (!grown) return false;
  t->buf = grown;
  t->cap = need;
  return true;
}

/* Decodes the next entry of a batch into row (strings in t); false if it is not one. */
static bool journal_row(const msgpack_object *o, journal_reader *t, choreo_journal_row *row) {
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != E_FIELDS) return false;
  if (!journal_reserve(t, o)) {
    t->failed = true;
    return false;
  }
  const msgpack_object *f = o->via.array.ptr;
  t->at_ms += journal_int(&f[E_AT]);
  int64_t outcome = journal_int(&f[E_OUTCOME]);
  *row = (choreo_journal_row){
      .at_ms = t->at_ms, .seq = journal_int(&f[E_SEQ]),
      .attempts = journal_int(&f[E_ATTEMPTS]), .duration_us = journal_int(&f[E_DURATION]),
      .emitted_first = journal_int(&f[E_FIRST]), .emitted_last = journal_int(&f[E_LAST]),
      .source = journal_repeated(t, R_SOURCE, &f[E_SOURCE]),
      .type = journal_repeated(t, R_TYPE, &f[E_TYPE]),
      .kind = journal_repeated(t, R_KIND, &f[E_KIND]),
      .correlation = journal_repeated(t, R_CORRELATION, &f[E_CORRELATION]),
      .causation = journal_repeated(t, R_CAUSATION, &f[E_CAUSATION]),
      .handler = journal_repeated(t, R_HANDLER, &f[E_HANDLER]),
      .outcome = outcome >= 0 && outcome < JOURNAL_OUTCOMES ? journal_outcomes[outcome] : "?",
      .error = journal_str(t, &f[E_ERROR])};
  if (f[E_ID].type == MSGPACK_OBJECT_BOOLEAN && row->source) {
    char *id = t->buf + t->used;
    int n = snprintf(id, t->cap - t->used, "%.*s/%lld", CHOREO_NAME_MAX, row->source,
                     (long long)row->seq);
    t->used += (size_t)n + 1;
    row->id = id;
  } else {
    row->id = journal_str(t, &f[E_ID]);
  }
  return !t->failed && row->id && row->correlation;
}

/* Calls fn for each entry of the batch st's current row holds (count, entries) whose
 * conversation is `correlation` (every entry when NULL), while *left lasts. */
static int journal_walk_batch(sqlite3_stmt *st, const char *correlation, int *left,
                              choreo_journal_fn fn, void *ud) {
  const char *blob = sqlite3_column_blob(st, 1);
  size_t len = (size_t)sqlite3_column_bytes(st, 1);
  int64_t count = sqlite3_column_int64(st, 0);
  /* Our own bytes, but a damaged file must not be read past its end. */
  if (!blob || count < 1 || choreo_msgpack_check(blob, len, (size_t)count, 2)) return 0;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  journal_reader text = {0};
  size_t off = 0;
  int rc = 0;
  while (!rc && *left > 0 && msgpack_unpack_next(&u, blob, len, &off) == MSGPACK_UNPACK_SUCCESS) {
    choreo_journal_row row;
    bool read = journal_row(&u.data, &text, &row);
    if (text.failed) rc = CHOREO_ENOMEM;
    if (!read || (correlation && strcmp(row.correlation, correlation) != 0)) continue;
    (*left)--;
    rc = fn(ud, &row);
  }
  journal_reader_free(&text);
  msgpack_unpacked_destroy(&u);
  return rc;
}

int choreo_journal_each(choreo_journal *j, const char *correlation, int max, choreo_journal_fn fn,
                        void *ud) {
  sqlite3_stmt *st = j->st[J_EACH];
  if (sqlite3_bind_text(st, 1, correlation, -1, SQLITE_STATIC))
    return choreo_sql_finish(st, SQLITE_ERROR);
  int step, rc = 0, left = max;
  while (!rc && left > 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
    rc = journal_walk_batch(st, correlation, &left, fn, ud);
  if (rc || left <= 0) {
    choreo_sql_finish(st, SQLITE_DONE);
    return rc;
  }
  return choreo_sql_finish(st, step);
}

int choreo_journal_recent(choreo_journal *j, int64_t since_ms, int max, choreo_journal_fn fn,
                          void *ud, bool *more) {
  sqlite3_stmt *st = j->st[J_RECENT];
  int step, rc = 0, left = max;
  *more = false;
  /* Newest first, so that only the window is read: batches are written in time order. */
  while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW && sqlite3_column_int64(st, 2) >= since_ms) {
    if (left <= 0) {
      *more = true;
      break;
    }
    rc = journal_walk_batch(st, NULL, &left, fn, ud);
  }
  if (rc || step == SQLITE_ROW) {
    choreo_sql_finish(st, SQLITE_DONE);
    return rc;
  }
  return choreo_sql_finish(st, step);
}

/* ---- retention ---- */

/* Deletes the rows of the conversations a batch touched, from the list it keeps of them;
 * *statements counts the statements run. */
static int journal_forget(choreo_journal *j, int64_t batch, const char *list, size_t len,
                          int *statements) {
  sqlite3_stmt *st = j->st[J_FORGET];
  int rc = 0;
  for (size_t at = 0; !rc && at < len;) {
    const char *end = memchr(list + at, '\0', len - at);
    size_t n = end ? (size_t)(end - list - at) : len - at;
    rc = sqlite3_bind_text(st, 1, list + at, (int)n, SQLITE_STATIC);
    if (!rc) rc = sqlite3_bind_int64(st, 2, batch);
    rc = choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
    (*statements)++;
    at += n + 1;
  }
  return rc;
}

int choreo_journal_expire(choreo_journal *j, int64_t before_ms, int max, int *deleted) {
  *deleted = 0;
  if (max < 1) return 0;
  /* The batches and their lists are read first: deleting under a running SELECT is not. */
  typedef struct journal_old {
    int64_t batch;
    char *list;
    size_t len;
  } journal_old;
  journal_old *old = calloc((size_t)max, sizeof *old);
  if (!old) return CHOREO_ENOMEM;
  sqlite3_stmt *st = j->st[J_OLDEST];
  int n = 0, step = SQLITE_DONE, rc = sqlite3_bind_int(st, 1, max), planned = 0;
  /* As many batches as the budget takes (each one's conversations and itself), and at least
   * one, however many conversations it touched: retention must move on. */
  while (!rc && n < max && (step = sqlite3_step(st)) == SQLITE_ROW &&
         sqlite3_column_int64(st, 1) < before_ms) {
    size_t len = (size_t)sqlite3_column_bytes(st, 2);
    const char *list = sqlite3_column_blob(st, 2);
    int cost = 1;
    for (size_t i = 0; i < len; i++) cost += list[i] == '\0';
    if (n && planned + cost > max) break;
    planned += cost;
    old[n] = (journal_old){sqlite3_column_int64(st, 0), malloc(len + 1), len};
    if (!old[n].list) rc = CHOREO_ENOMEM;
    else if (len) memcpy(old[n].list, list, len);
    n++;
  }
  if (rc || step == SQLITE_ROW) choreo_sql_finish(st, SQLITE_DONE);
  else rc = choreo_sql_finish(st, step);
  /* Each deletion counts against max, so that a round's work stays bounded. */
  int statements = 0;
  for (int i = 0; !rc && i < n; i++) {
    rc = journal_forget(j, old[i].batch, old[i].list, old[i].len, &statements);
    sqlite3_stmt *del = j->st[J_DELETE];
    if (!rc) rc = sqlite3_bind_int64(del, 1, old[i].batch);
    if (!rc) rc = choreo_sql_finish(del, sqlite3_step(del));
    statements++;
  }
  for (int k = 0; k < n; k++) free(old[k].list);
  free(old);
  if (!rc) *deleted = statements;
  return rc;
}
