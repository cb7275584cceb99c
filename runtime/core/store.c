/* The host's durable state in SQLite: the log that doubles as the outbox, the per-source
 * checkpoints that make consumers idempotent, delayed retries and dead letters. This file owns
 * the connection, the choreo_* tables and every statement run on them; the scripts' own tables
 * (ctx.db) share the connection and its transactions but are none of its business.
 *
 * Every statement is prepared once at open and reused, because per-message SQL is on the hot
 * path (~1.5 µs per row inside a batch; docs/ARCHITECTURE.md, Measured facts). A statement is
 * always reset after use so that no read stays open across a COMMIT or ROLLBACK. */
#include "store.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "appended.h"
#include "checkpointer.h"
#include "choreo.h"
#include "clock.h"
#include "logrows.h"
#include "sql.h"
#include "walwrites.h"

enum {
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_SAVEPOINT,
  ST_RELEASE,
  ST_ROLLBACK_TO,
  ST_DEAD_SAVEPOINT,
  ST_DEAD_RELEASE,
  ST_DEAD_ROLLBACK_TO,
  ST_HEAD,
  ST_APPEND,
  ST_APPEND_NEXT,
  ST_READ,
  ST_CHECKPOINT,
  ST_SET_CHECKPOINT,
  ST_RETRY_ADD,
  ST_RETRY_NEXT,
  ST_RETRY_DUE,
  ST_RETRY_REMOVE,
  ST_DEAD_ADD,
  ST_DEAD_LIST,
  ST_DEAD_TO_RETRY,
  ST_DEAD_MARK_RETRYING,
  ST_DEAD_IS_RETRYING,
  ST_DEAD_AGAIN,
  ST_DEAD_DROP,
  ST_DEAD_EXPIRE,
  ST_DROPPED_ONE,
  ST_DROPPED_EXPIRING,
  ST_DEAD_COUNT,
  ST_RETRY_COUNT,
  ST_REQUEST_GET,
  ST_REQUEST_PUT,
  ST_REQUEST_EXPIRE,
  ST_SUBSCRIBER_PUT,
  ST_SUBSCRIBERS_MIN,
  ST_OLDEST_ROWS,
  ST_TRIM,
  ST_OLDEST,
  ST_CHECKPOINTS,
  ST_PENDING_SEQS,
  ST_SIZE,
  ST_PAGE_SIZE,
  ST_COUNT
};

/* The per-message savepoint is a fixed name because messages are never nested; dead_retry uses
 * its own name so it can run inside a message's savepoint without releasing it. */
static const char *const store_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT choreo_msg",
    [ST_RELEASE] = "RELEASE choreo_msg",
    [ST_ROLLBACK_TO] = "ROLLBACK TO choreo_msg",
    [ST_DEAD_SAVEPOINT] = "SAVEPOINT choreo_dead",
    [ST_DEAD_RELEASE] = "RELEASE choreo_dead",
    [ST_DEAD_ROLLBACK_TO] = "ROLLBACK TO choreo_dead",
    [ST_HEAD] = "SELECT coalesce(max(seq), 0) FROM choreo_log",
    [ST_APPEND] = "INSERT INTO choreo_log(seq, type, kind, to_host, msg, at_ms) "
                  "VALUES (?, ?, ?, ?, ?, ?)",
    /* The pending rows leave seq to SQLite, which gives max(seq) + 1: the seq they carry, as
     * retention always keeps the head's row (store_wrote_as checks). An explicit seq costs a
     * seek of the table's b-tree per row to find that no row has it (about 650 instructions of
     * a dispatched event's 24,000), where the next rowid is read from the cursor at its end. */
    [ST_APPEND_NEXT] = "INSERT INTO choreo_log(type, kind, to_host, msg, at_ms) "
                       "VALUES (?, ?, ?, ?, ?)",
    [ST_READ] = "SELECT seq, msg FROM choreo_log WHERE seq > ? ORDER BY seq LIMIT ?",
    [ST_CHECKPOINT] = "SELECT seq FROM choreo_checkpoints WHERE source = ?",
    [ST_SET_CHECKPOINT] = "INSERT INTO choreo_checkpoints(source, seq) VALUES (?, ?) "
                          "ON CONFLICT(source) DO UPDATE SET seq = excluded.seq",
    [ST_RETRY_ADD] = "INSERT INTO choreo_retries(source, seq, msg, attempts, due_ms, error, "
                     "dead_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
    [ST_RETRY_NEXT] = "SELECT min(due_ms) FROM choreo_retries",
    [ST_RETRY_DUE] = "SELECT id, msg, attempts, dead_id FROM choreo_retries WHERE due_ms <= ? "
                     "ORDER BY due_ms, id LIMIT ?",
    [ST_RETRY_REMOVE] = "DELETE FROM choreo_retries WHERE id = ?",
    [ST_DEAD_ADD] = "INSERT INTO choreo_dead_letters(source, seq, type, msg, attempts, error, "
                    "traceback, time, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_DEAD_LIST] = "SELECT id, source, seq, type, msg, attempts, error, traceback, time, "
                     "retrying, revived FROM choreo_dead_letters ORDER BY id",
    [ST_DEAD_TO_RETRY] = "INSERT INTO choreo_retries(source, seq, msg, attempts, due_ms, error, "
                         "dead_id) SELECT source, seq, msg, 0, ?, error, id "
                         "FROM choreo_dead_letters WHERE id = ? AND retrying = 0",
    [ST_DEAD_MARK_RETRYING] = "UPDATE choreo_dead_letters SET retrying = 1, revived = revived + 1 "
                              "WHERE id = ?",
    [ST_DEAD_IS_RETRYING] = "SELECT retrying FROM choreo_dead_letters WHERE id = ?",
    [ST_DEAD_AGAIN] = "UPDATE choreo_dead_letters SET attempts = ?, error = ?, traceback = ?, "
                      "time = ?, at_ms = ?, retrying = 0 WHERE id = ?",
    [ST_DEAD_DROP] = "DELETE FROM choreo_dead_letters WHERE id = ?",
    [ST_DEAD_EXPIRE] = "DELETE FROM choreo_dead_letters WHERE id IN (SELECT id FROM "
                       "choreo_dead_letters WHERE retrying = 0 AND at_ms < ? ORDER BY id LIMIT ?)",
    /* The same rows as ST_DEAD_DROP and ST_DEAD_EXPIRE, noted before they go (one without a
     * source is skipped by OR IGNORE); a letter being retried is not noted: it is in
     * choreo_retries, and is applied or comes back as a new letter. */
    [ST_DROPPED_ONE] = "INSERT OR IGNORE INTO choreo_dropped(source, seq) SELECT source, seq FROM "
                       "choreo_dead_letters WHERE id = ? AND retrying = 0",
    [ST_DROPPED_EXPIRING] = "INSERT OR IGNORE INTO choreo_dropped(source, seq) SELECT source, seq "
                            "FROM choreo_dead_letters WHERE retrying = 0 AND at_ms < ? "
                            "ORDER BY id LIMIT ?",
    [ST_DEAD_COUNT] = "SELECT count(*) FROM choreo_dead_letters WHERE retrying = 0",
    [ST_RETRY_COUNT] = "SELECT count(*) FROM choreo_retries",
    [ST_REQUEST_GET] = "SELECT seq FROM choreo_requests WHERE key = ?",
    [ST_REQUEST_PUT] = "INSERT INTO choreo_requests(key, seq, time) VALUES (?, ?, ?)",
    /* A key is remembered as long as the row it appended: a resend after that is too late. */
    [ST_REQUEST_EXPIRE] = "DELETE FROM choreo_requests WHERE seq <= ?",
    [ST_SUBSCRIBER_PUT] = "INSERT INTO choreo_subscribers(name, applied, seen_ms) VALUES (?, ?, ?) "
                          "ON CONFLICT(name) DO UPDATE SET applied = excluded.applied, "
                          "seen_ms = excluded.seen_ms",
    [ST_SUBSCRIBERS_MIN] = "SELECT min(applied) FROM choreo_subscribers WHERE seen_ms >= ?",
    [ST_OLDEST_ROWS] = "SELECT seq, at_ms FROM choreo_log ORDER BY seq LIMIT ?",
    [ST_TRIM] = "DELETE FROM choreo_log WHERE seq <= ?",
    [ST_OLDEST] = "SELECT coalesce(min(seq), 0) FROM choreo_log",
    [ST_CHECKPOINTS] = "SELECT source, seq FROM choreo_checkpoints WHERE seq > 0 ORDER BY source",
    [ST_PENDING_SEQS] = "SELECT seq FROM choreo_retries WHERE source = ?1 AND seq BETWEEN ?2 AND ?3 "
                        "UNION SELECT seq FROM choreo_dead_letters WHERE source = ?1 AND seq "
                        "BETWEEN ?2 AND ?3 UNION SELECT seq FROM choreo_dropped WHERE source = ?1 "
                        "AND seq BETWEEN ?2 AND ?3 ORDER BY 1",
    [ST_SIZE] = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
    [ST_PAGE_SIZE] = "SELECT page_size FROM pragma_page_size()",
};

/* The choreo_ prefix keeps these tables clear of whatever the scripts create through ctx.db. */
static const char store_schema[] =
    "CREATE TABLE IF NOT EXISTS choreo_log("
    "  seq INTEGER PRIMARY KEY, type TEXT NOT NULL, kind TEXT NOT NULL, to_host TEXT,"
    "  msg BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS choreo_checkpoints("
    "  source TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS choreo_retries("
    "  id INTEGER PRIMARY KEY, source TEXT, seq INTEGER, msg BLOB NOT NULL, attempts INTEGER,"
    "  due_ms INTEGER, error TEXT);"
    "CREATE INDEX IF NOT EXISTS choreo_retries_due ON choreo_retries(due_ms);"
    /* what a build's history leaves out (choreo_store_pending_seqs), without a scan per page */
    "CREATE INDEX IF NOT EXISTS choreo_retries_by_source ON choreo_retries(source, seq);"
    "CREATE TABLE IF NOT EXISTS choreo_dead_letters("
    "  id INTEGER PRIMARY KEY, source TEXT, seq INTEGER, type TEXT, msg BLOB NOT NULL,"
    "  attempts INTEGER, error TEXT, traceback TEXT, time TEXT);"
    "CREATE INDEX IF NOT EXISTS choreo_dead_letters_by_source ON choreo_dead_letters(source, seq);"
    /* Messages whose dead letter was dropped, by hand or by retention, never applied: a build's
     * history leaves them out as it leaves the dead letters out. Dead letters are few. */
    "CREATE TABLE IF NOT EXISTS choreo_dropped("
    "  source TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (source, seq)) WITHOUT ROWID;"
    /* Appends asked for from outside (the control socket) under a key: a resent request finds
     * its first outcome here instead of appending again. */
    "CREATE TABLE IF NOT EXISTS choreo_requests("
    "  key TEXT PRIMARY KEY, seq INTEGER NOT NULL, time TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS choreo_requests_seq ON choreo_requests(seq);"
    /* The hosts that fetch from our log, and the last seq each said it had applied: retention
     * keeps what they still need. */
    "CREATE TABLE IF NOT EXISTS choreo_subscribers("
    "  name TEXT PRIMARY KEY, applied INTEGER NOT NULL, seen_ms INTEGER NOT NULL);";

/* Values only this connection writes, remembered so that the paths run after every commit need
 * not ask SQLite: outside a transaction each question is a read transaction of its own, two
 * fcntl locks and a look at the WAL index. Any rollback, and any failed statement, forgets them
 * all; the next question reads them again. */
#define STORE_MEMO_SOURCES 32
#define STORE_MEMO_NAME 128 /* longer names are valid, just not remembered */
typedef struct store_memo {
  bool head_known, retry_known;
  int64_t head, retry_due;
  int nsources;
  struct {
    char name[STORE_MEMO_NAME];
    int64_t seq;
  } checkpoints[STORE_MEMO_SOURCES];
} store_memo;

struct choreo_store {
  sqlite3 *db;
  store_memo memo;
  uint64_t epoch; /* counts the times the memo was forgotten */
  int guard;      /* while positive, the authorizer refuses what would end our transaction */
  int reads_only; /* while positive, it refuses whatever is not reading (queries) */
  /* Someone else prepared a savepoint statement on the connection: a ROLLBACK TO of theirs
   * may take our appended rows with it, unseen, so inside a transaction the head is asked. */
  bool foreign_savepoints;
  size_t max_message; /* the largest encoded message append accepts */
  sqlite3_stmt *st[ST_COUNT];
  /* Reused by append and read_frame, which never call out while holding it. */
  msgpack_sbuffer scratch;
  /* The latest appends as encoded, for read_frame to publish them without reading them back;
   * keyed by epoch, so that every rollback (they all forget the memo) voids them. */
  choreo_appended appended;
  /* An error that unwinding a savepoint would otherwise erase from sqlite3_errmsg; it holds
   * until the next statement this file runs. */
  char kept[256];
  choreo_checkpointer *checkpointer; /* NULL for in-memory databases */
  /* Appends inside a transaction wait here to be written a group at a time (store_step). */
  choreo_log_rows pending;
  sqlite3_stmt *append_group; /* STORE_APPEND_GROUP rows in one INSERT */
  /* A row was written at once after the pending ones came (someone else's savepoint since):
   * theirs are no longer the log's next seqs, so they go in under their own seqs. */
  bool pending_overtaken;
  /* Someone else's SQL named the log: it would not see pending rows, so appends are written at
   * once from then on (ctx.db flushes them first through choreo_store_write_pending). */
  bool log_shared;
  int own_step; /* inside a step of ours: what the authorizer sees is a re-prepare of ours */
};

/* An append costs less in an INSERT of 64 rows than in one of its own (SQLite 3.40, callgrind:
 * ~5,150 instructions per row against ~7,400, most of them in the statement's start and end
 * and in the seek to the log's last page, which the group's rows share). */
#define STORE_APPEND_GROUP CHOREO_LOG_ROWS_MAX
#define STORE_APPEND_COLUMNS 5 /* of a pending row: all but seq */
#define STORE_PENDING_BYTES (1u << 20) /* large messages are written sooner, one by one */

static void store_forget(choreo_store *s) {
  memset(&s->memo, 0, sizeof s->memo);
  s->epoch++;
}

/* Our statements' steps, so that the authorizer can tell ours (re-prepared as they step, after a
 * schema change) from everyone else's. */
static int store_step_raw(choreo_store *s, sqlite3_stmt *st) {
  s->kept[0] = '\0'; /* a reason kept for the last failure is not this one's */
  s->own_step++;
  int rc = sqlite3_step(st);
  s->own_step--;
  return rc;
}

/* Binds one log row's columns but seq after parameter `first`, without copies; to may be
 * NULL. */
static int store_bind_append(sqlite3_stmt *st, int first, const char *type, const char *kind,
                             const char *to, const char *msg, size_t len, int64_t at_ms) {
  return sqlite3_bind_text(st, first + 1, type, -1, SQLITE_STATIC) ||
         sqlite3_bind_text(st, first + 2, kind, -1, SQLITE_STATIC) ||
         sqlite3_bind_text(st, first + 3, to, -1, SQLITE_STATIC) ||
         sqlite3_bind_blob64(st, first + 4, msg, len, SQLITE_STATIC) ||
         sqlite3_bind_int64(st, first + 5, at_ms);
}

static int store_bind_row(sqlite3_stmt *st, int first, const choreo_log_rows *r, int i) {
  const choreo_log_row *row = &r->row[i];
  return store_bind_append(st, first, choreo_log_rows_at(r, row->type),
                           choreo_log_rows_at(r, row->kind),
                           row->has_to ? choreo_log_rows_at(r, row->to) : NULL,
                           choreo_log_rows_at(r, row->msg), row->msg_len, row->at_ms);
}

/* Whether the k pending rows from i went in under the seqs they carry (their messages name
 * them): SQLite gave the statement's rows max(seq) + 1 onwards, one after the other. Anything
 * else (a row of the log's head deleted from outside while we run) fails the batch, which
 * then rolls back, rather than leave messages whose seq is not their row's. */
static bool store_wrote_as(choreo_store *s, const choreo_log_rows *r, int i, int k) {
  bool one_run = true;
  for (int j = 1; j < k; j++) one_run = one_run && r->row[i + j].seq == r->row[i].seq + j;
  if (one_run && sqlite3_last_insert_rowid(s->db) == r->row[i + k - 1].seq) return true;
  snprintf(s->kept, sizeof s->kept, "the log's rows do not end where this host's head was "
           "(%lld): was a row deleted from outside?", (long long)(r->row[i].seq - 1));
  return false;
}

static void store_drop_pending(choreo_store *s) {
  choreo_log_rows_clear(&s->pending);
  s->pending_overtaken = false;
}

/* Writes the pending rows: whole groups in one statement, the rest one by one. On failure
 * they are dropped with the memo (the caller's batch fails and rolls back). */
static int store_write_pending(choreo_store *s) {
  choreo_log_rows *r = &s->pending;
  bool own_seqs = s->pending_overtaken;
  int rc = 0;
  for (int i = 0; i < r->n && !rc;) {
    int k = 1;
    sqlite3_stmt *st;
    if (own_seqs) {
      st = s->st[ST_APPEND];
      rc = sqlite3_bind_int64(st, 1, r->row[i].seq) || store_bind_row(st, 1, r, i);
    } else {
      k = r->n - i >= STORE_APPEND_GROUP ? STORE_APPEND_GROUP : 1;
      st = k == 1 ? s->st[ST_APPEND_NEXT] : s->append_group;
      for (int j = 0; j < k && !rc; j++)
        rc = store_bind_row(st, j * STORE_APPEND_COLUMNS, r, i + j);
    }
    if (!rc)
      rc = store_step_raw(s, st) == SQLITE_DONE && (own_seqs || store_wrote_as(s, r, i, k)) ? 0 : 1;
    sqlite3_reset(st); /* every parameter is bound again for the next use */
    i += k;
  }
  store_drop_pending(s);
  if (!rc) return 0;
  store_forget(s);
  return CHOREO_EIO;
}

int choreo_store_write_pending(choreo_store *s) {
  return s->pending.n ? store_write_pending(s) : 0;
}

static bool store_is_rollback(const choreo_store *s, const sqlite3_stmt *st) {
  return st == s->st[ST_ROLLBACK] || st == s->st[ST_ROLLBACK_TO] ||
         st == s->st[ST_DEAD_ROLLBACK_TO];
}

/* Every statement of ours first writes the pending rows (a rollback drops them): whatever it
 * reads of the log, and whichever savepoint it ends, they are in. But the two a handler's
 * publish runs: a C handler may have taken a savepoint of its own since the rows came (one the
 * authorizer saw prepared, after them), and a ROLLBACK TO of it must not take them along. */
static int store_step(choreo_store *s, sqlite3_stmt *st) {
  if (s->pending.n && st != s->st[ST_APPEND] && st != s->st[ST_APPEND_NEXT] &&
      st != s->st[ST_HEAD]) {
    if (store_is_rollback(s, st)) store_drop_pending(s);
    else if (store_write_pending(s)) return SQLITE_ERROR;
  }
  return store_step_raw(s, st);
}

/* Readies a statement for its next use. reset() repeats the error of the last step, which
 * the caller has already seen, so its result is not interesting here; it is also what makes
 * that error's text available to sqlite3_errmsg. */
static void store_done(choreo_store *s, int which) {
  sqlite3_reset(s->st[which]);
  sqlite3_clear_bindings(s->st[which]);
}

static int store_fail(choreo_store *s, int which) {
  store_done(s, which);
  store_forget(s);
  return CHOREO_EIO;
}

/* Runs a statement that returns no rows (its parameters already bound). */
static int store_run(choreo_store *s, int which) {
  int rc = store_step(s, s->st[which]);
  store_done(s, which);
  if (rc == SQLITE_DONE) return 0;
  store_forget(s);
  return CHOREO_EIO;
}

/* Runs a statement that returns one integer; *out is left alone when it returns no row. */
static int store_int(choreo_store *s, int which, int64_t *out) {
  sqlite3_stmt *st = s->st[which];
  int rc = store_step(s, st);
  if (rc == SQLITE_ROW) {
    *out = sqlite3_column_int64(st, 0);
    rc = store_step(s, st);
  }
  store_done(s, which);
  if (rc == SQLITE_DONE) return 0;
  store_forget(s);
  return CHOREO_EIO;
}

static int store_bind_str(sqlite3_stmt *st, int i, choreo_str v) {
  if (v.p == NULL) return sqlite3_bind_null(st, i);
  return sqlite3_bind_text64(st, i, v.p, v.n, SQLITE_STATIC, SQLITE_UTF8);
}

static void store_errf(char *err, size_t errlen, const char *path, const char *why) {
  if (errlen) snprintf(err, errlen, "cannot open database %s: %s", path, why);
}

/* Records whether `PRAGMA journal_mode=WAL` answered "wal": where WAL cannot work (no shared
 * memory between processes), SQLite keeps the old mode without reporting an error. */
static int store_wal_cb(void *ud, int n, char **values, char **names) {
  (void)names;
  *(int *)ud = n == 1 && values[0] && strcmp(values[0], "wal") == 0;
  return 0;
}

/* Waiting for a lock another connection holds (a script's attached database, a CLI): SQLite's
 * own busy_timeout sleeps 1, 2, 5, 10, 15 ms and up, which once added as much again to the
 * loop's stall as the lock itself took; this one looks every millisecond, for 5 s. */
#define STORE_BUSY_TRIES 5000
static int store_busy_wait(void *ud, int tries) {
  (void)ud;
  if (tries >= STORE_BUSY_TRIES) return 0;
  nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
  return 1;
}

static int store_wal_hook(void *ud, sqlite3 *db, const char *name, int frames) {
  if (strcmp(name, "main") != 0) return SQLITE_OK; /* a database a script attached */
  choreo_checkpointer_committed(((choreo_store *)ud)->checkpointer, db, frames);
  return SQLITE_OK;
}

static void store_on_rollback(void *ud) {
  choreo_store *s = ud;
  store_forget(s);
  store_drop_pending(s);
}

/* Handlers run inside our transaction (one per batch, a savepoint per message), so what they
 * prepare may not end it (BEGIN, COMMIT, ROLLBACK) nor touch our savepoints: the batch would
 * commit piecemeal or fail for ever. Their own savepoints are fine. Only statements prepared
 * while guarded are checked; ours are prepared, and re-prepared, outside. */
static int store_authorize(void *ud, int action, const char *a, const char *b, const char *db,
                           const char *trigger) {
  (void)db;
  (void)trigger;
  choreo_store *s = ud;
  bool ours = action == SQLITE_SAVEPOINT && b && strncmp(b, "choreo_", 7) == 0;
  bool on_log = (action == SQLITE_READ || action == SQLITE_INSERT || action == SQLITE_UPDATE ||
                 action == SQLITE_DELETE) && a && strcmp(a, "choreo_log") == 0;
  if (on_log && !s->own_step) s->log_shared = true;
  /* Whenever prepared: a statement the scripts prepare once may run again later, unchecked. */
  if (action == SQLITE_SAVEPOINT && !ours) s->foreign_savepoints = true;
  if (s->reads_only > 0 && action != SQLITE_SELECT && action != SQLITE_READ &&
      action != SQLITE_FUNCTION && action != SQLITE_RECURSIVE)
    return SQLITE_DENY;
  if (s->guard <= 0) return SQLITE_OK;
  if (action == SQLITE_TRANSACTION || ours) return SQLITE_DENY;
  return SQLITE_OK;
}

void choreo_store_guard(choreo_store *s, bool on) { s->guard += on ? 1 : -1; }

void choreo_store_guard_connection(choreo_store *s, sqlite3 *other) {
  sqlite3_set_authorizer(other, store_authorize, s);
}

void choreo_store_guard_reads(choreo_store *s, bool on) { s->reads_only += on ? 1 : -1; }

/* Columns later releases added. choreo_log.at_ms (for retention): old rows get none and count
 * as old. Dead letters' at_ms: old ones count from the upgrade, so none vanishes at once. */
static int store_migrate(sqlite3 *db) {
  int rc = choreo_sql_add_column(db, "choreo_log", "at_ms", "INTEGER", NULL);
  if (rc == SQLITE_OK) rc = choreo_sql_add_column(db, "choreo_retries", "dead_id", "INTEGER", NULL);
  if (rc == SQLITE_OK)
    rc = choreo_sql_add_column(db, "choreo_dead_letters", "retrying", "INTEGER NOT NULL DEFAULT 0", NULL);
  if (rc == SQLITE_OK)
    rc = choreo_sql_add_column(db, "choreo_dead_letters", "revived", "INTEGER NOT NULL DEFAULT 0", NULL);
  if (rc == SQLITE_OK)
    rc = choreo_sql_add_column(db, "choreo_dead_letters", "at_ms", "INTEGER",
                          "UPDATE choreo_dead_letters SET at_ms = "
                          "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)");
  return rc;
}

/* OR FAIL: a row that broke a constraint would leave the rows before it in place, but the
 * batch fails and rolls back all the same; without it SQLite keeps a statement journal (a copy
 * of each page the statement changes) to undo just the statement. */
static int store_prepare_append_group(choreo_store *s) {
  static const char head[] =
      "INSERT OR FAIL INTO choreo_log(type, kind, to_host, msg, at_ms) VALUES ";
  static const char row[] = "(?, ?, ?, ?, ?),";
  char sql[sizeof head + STORE_APPEND_GROUP * (sizeof row - 1)];
  size_t n = sizeof head - 1;
  memcpy(sql, head, n);
  for (int i = 0; i < STORE_APPEND_GROUP; i++, n += sizeof row - 1)
    memcpy(sql + n, row, sizeof row - 1);
  sql[n - 1] = '\0'; /* the last comma */
  return sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->append_group, NULL);
}

static int store_setup(choreo_store *s, const char *path, int page_size, char *err,
                       size_t errlen) {
  sqlite3 *db = s->db;
  /* First of all, so that switching to WAL waits for a reader instead of failing at once. */
  sqlite3_busy_handler(db, store_busy_wait, NULL);
  if (strcmp(path, ":memory:") != 0) {
    int wal = 0;
    /* Before anything is written: a database's page size is set as it is created. */
    char sql[48];
    snprintf(sql, sizeof sql, "PRAGMA page_size=%d", page_size);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
      store_errf(err, errlen, path, sqlite3_errmsg(db));
      return CHOREO_EIO;
    }
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL", store_wal_cb, &wal, NULL) != SQLITE_OK) {
      store_errf(err, errlen, path, sqlite3_errmsg(db));
      return CHOREO_EIO;
    }
    if (!wal) {
      store_errf(err, errlen, path, "the file system does not support WAL mode");
      return CHOREO_EIO;
    }
  }
  /* synchronous=NORMAL in WAL mode syncs the WAL only at checkpoints, not at each COMMIT. A
   * committed transaction then survives a crash of the process (kill -9, abort): it is in the
   * WAL file, which the OS keeps. What it may not survive is a power loss or OS crash, which can
   * take the last transactions since the previous checkpoint (the database stays consistent).
   * Our guarantee is about process crashes, so we take the cheaper commit: FULL fsyncs the WAL
   * on every COMMIT, measured here (ext4, single-row transactions) at ~210 µs against ~23 µs. */
  /* journal_size_limit: a checkpoint that restarts the WAL (checkpointer.c) also truncates the
   * file to this, so one burst of writes does not leave a huge WAL on disk for good. */
  const char *pragmas = "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;"
                        "PRAGMA journal_size_limit=67108864;"; /* 64 MiB */
  if (sqlite3_exec(db, pragmas, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_exec(db, store_schema, NULL, NULL, NULL) != SQLITE_OK ||
      store_migrate(db) != SQLITE_OK) {
    store_errf(err, errlen, path, sqlite3_errmsg(db));
    return CHOREO_EIO;
  }
  if (choreo_sql_prepare(db, NULL, store_sql, ST_COUNT, s->st) || store_prepare_append_group(s)) {
    store_errf(err, errlen, path, sqlite3_errmsg(db));
    return CHOREO_EIO;
  }
  /* Checkpoints move to their own thread. The writer must then do none itself: it would wait
   * on the thread's checkpoint lock while that one syncs, which showed as 160 ms stalls. Our
   * hook replaces SQLite's automatic one. */
  if (strcmp(path, ":memory:") != 0 &&
      choreo_checkpointer_start(&s->checkpointer, path, choreo_store_page_size(s)) == 0)
    sqlite3_wal_hook(db, store_wal_hook, s);
  /* Also the rollbacks we do not run ourselves: a script's ROLLBACK, or SQLite's own after a
   * disk or memory error. */
  sqlite3_rollback_hook(db, store_on_rollback, s);
  sqlite3_set_authorizer(db, store_authorize, s);
  return 0;
}

static bool store_page_size_valid(int size) {
  return size >= 512 && size <= 65536 && (size & (size - 1)) == 0;
}

int choreo_store_open(choreo_store **out, const char *path, int page_size, char *err,
                      size_t errlen) {
  assert(out && path);
  *out = NULL;
  if (!page_size) page_size = CHOREO_DEFAULT_PAGE_SIZE;
  if (!store_page_size_valid(page_size)) {
    char why[96];
    snprintf(why, sizeof why, "page size %d is not a power of two from 512 to 65536", page_size);
    store_errf(err, errlen, path, why);
    return CHOREO_EINVAL;
  }
  choreo_store *s = calloc(1, sizeof *s);
  if (!s) {
    store_errf(err, errlen, path, "out of memory");
    return CHOREO_ENOMEM;
  }
  msgpack_sbuffer_init(&s->scratch);
  choreo_appended_init(&s->appended);
  s->max_message = CHOREO_DEFAULT_MAX_MESSAGE;
  /* NOMUTEX: one loop thread owns the connection (docs/ARCHITECTURE.md), so SQLite's own locking
   * would only cost time. */
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc;
  choreo_walwrites_register(); /* every connection opened from here on uses it */
  if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
    /* open_v2 hands back a handle carrying the reason unless it ran out of memory. */
    store_errf(err, errlen, path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
    rc = CHOREO_EIO;
  } else {
    rc = store_setup(s, path, page_size, err, errlen);
  }
  if (rc) {
    choreo_store_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

void choreo_store_close(choreo_store *s) {
  if (!s) return;
  choreo_checkpointer_stop(s->checkpointer);
  choreo_sql_finalize(s->st, ST_COUNT);
  sqlite3_finalize(s->append_group);
  choreo_log_rows_free(&s->pending);
  /* close_v2 rather than close, which fails with SQLITE_BUSY while statements the scripts
   * prepared through ctx.db are unfinalized: close_v2 frees the connection once they are. */
  sqlite3_close_v2(s->db);
  msgpack_sbuffer_destroy(&s->scratch);
  choreo_appended_free(&s->appended);
  free(s);
}

sqlite3 *choreo_store_db(choreo_store *s) { return s->db; }

void choreo_store_set_max_message(choreo_store *s, size_t bytes) { s->max_message = bytes; }

const char *choreo_store_errmsg(choreo_store *s) {
  return s->kept[0] ? s->kept : sqlite3_errmsg(s->db);
}

int choreo_store_begin(choreo_store *s) { return store_run(s, ST_BEGIN); }

int choreo_store_commit(choreo_store *s) { return store_run(s, ST_COMMIT); }

uint64_t choreo_store_epoch(choreo_store *s) { return s->epoch; }

bool choreo_store_foreign_savepoints(const choreo_store *s) { return s->foreign_savepoints; }

bool choreo_store_in_transaction(choreo_store *s) { return !sqlite3_get_autocommit(s->db); }

int choreo_store_rollback(choreo_store *s) {
  /* The rollback hook forgets the memo. SQLite rolls the whole transaction back by itself
   * after some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM…); a second ROLLBACK would then
   * fail for no reason. */
  if (sqlite3_get_autocommit(s->db)) return 0;
  return store_run(s, ST_ROLLBACK);
}

int choreo_store_savepoint(choreo_store *s) { return store_run(s, ST_SAVEPOINT); }

int choreo_store_release(choreo_store *s) { return store_run(s, ST_RELEASE); }

int choreo_store_rollback_savepoint(choreo_store *s) {
  store_forget(s);
  /* ROLLBACK TO keeps the savepoint open; RELEASE then removes it, leaving the enclosing
   * transaction as it was before the message. */
  int rc = store_run(s, ST_ROLLBACK_TO);
  return rc ? rc : store_run(s, ST_RELEASE);
}

/* The memo's slot for source, taking a free one if asked; NULL when there is none. */
static int64_t *store_memo_checkpoint(choreo_store *s, const char *source, bool take) {
  store_memo *m = &s->memo;
  for (int i = 0; i < m->nsources; i++)
    if (strcmp(m->checkpoints[i].name, source) == 0) return &m->checkpoints[i].seq;
  if (!take || m->nsources == STORE_MEMO_SOURCES || strlen(source) >= STORE_MEMO_NAME)
    return NULL;
  snprintf(m->checkpoints[m->nsources].name, sizeof m->checkpoints[0].name, "%s", source);
  return &m->checkpoints[m->nsources++].seq;
}

int choreo_store_checkpoint(choreo_store *s, const char *source, int64_t *out) {
  int64_t *known = store_memo_checkpoint(s, source, false);
  if (known) {
    *out = *known;
    return 0;
  }
  int64_t seq = 0;
  if (sqlite3_bind_text(s->st[ST_CHECKPOINT], 1, source, -1, SQLITE_STATIC))
    return store_fail(s, ST_CHECKPOINT);
  if (store_int(s, ST_CHECKPOINT, &seq)) return CHOREO_EIO;
  int64_t *slot = store_memo_checkpoint(s, source, true);
  if (slot) *slot = seq;
  *out = seq;
  return 0;
}

int choreo_store_set_checkpoint(choreo_store *s, const char *source, int64_t seq) {
  sqlite3_stmt *st = s->st[ST_SET_CHECKPOINT];
  /* Binding returns SQLITE_OK (0) or an error such as SQLITE_TOOBIG. */
  if (sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC) || sqlite3_bind_int64(st, 2, seq))
    return store_fail(s, ST_SET_CHECKPOINT);
  int rc = store_run(s, ST_SET_CHECKPOINT);
  int64_t *slot = rc ? NULL : store_memo_checkpoint(s, source, true);
  if (slot) *slot = seq;
  return rc;
}

int choreo_store_head(choreo_store *s, int64_t *out) {
  /* Inside a transaction the scripts share the connection and may roll back a savepoint of
   * their own through ctx.db, taking our rows with it unseen: where they ever prepared one,
   * ask (a seek to the last row). Otherwise the answer holds until a rollback. */
  bool trusted = !s->foreign_savepoints || !choreo_store_in_transaction(s);
  if (s->memo.head_known && trusted) {
    *out = s->memo.head;
    return 0;
  }
  int64_t head = 0;
  if (store_int(s, ST_HEAD, &head)) return CHOREO_EIO;
  if (s->pending.n && s->pending.row[s->pending.n - 1].seq > head)
    head = s->pending.row[s->pending.n - 1].seq;
  s->memo.head = head;
  s->memo.head_known = trusted;
  *out = head;
  return 0;
}

int choreo_store_append(choreo_store *s, const choreo_msg_fields *f, int64_t at_ms,
                        int64_t *seq_out) {
  /* head + 1 is read, then written, in two statements: safe because this connection is the
   * only writer of its log, and inside BEGIN IMMEDIATE no one else can write at all. */
  int64_t seq;
  int rc = choreo_store_head(s, &seq);
  if (rc) return rc;
  choreo_msg_fields g = *f;
  g.seq = ++seq;
  s->scratch.size = 0;
  rc = choreo_msg_encode(&g, &s->scratch);
  if (rc) return rc;
  /* Committed, a message no frame can carry would wedge every reader of the log. */
  if (s->scratch.size > s->max_message) return CHOREO_ETOOBIG;
  /* Outside a transaction, and where someone else's SQL may see the log or roll a savepoint
   * back (the rows must be in it then), the row is written at once. Pending rows stay pending:
   * they came before any savepoint someone else took since. */
  if (s->log_shared || s->foreign_savepoints || !choreo_store_in_transaction(s)) {
    if (s->pending.n) s->pending_overtaken = true;
    if (sqlite3_bind_int64(s->st[ST_APPEND], 1, seq) ||
        store_bind_append(s->st[ST_APPEND], 1, g.type, g.kind, g.to, s->scratch.data,
                          s->scratch.size, at_ms))
      return store_fail(s, ST_APPEND);
    rc = store_run(s, ST_APPEND);
  } else {
    rc = choreo_log_rows_add(&s->pending, seq, g.type, g.kind, g.to, s->scratch.data,
                             s->scratch.size, at_ms);
    if (!rc && (s->pending.n == STORE_APPEND_GROUP || s->pending.bytes.size >= STORE_PENDING_BYTES))
      rc = store_write_pending(s);
  }
  if (rc) return rc;
  s->memo.head = seq; /* a rollback forgets it (store_forget) */
  choreo_appended_add(&s->appended, s->epoch, seq, s->scratch.data, s->scratch.size);
  if (seq_out) *seq_out = seq;
  return 0;
}

const msgpack_sbuffer *choreo_store_appended(const choreo_store *s) { return &s->scratch; }

int choreo_store_read_frame(choreo_store *s, const char *source, int64_t after, int max_count,
                            size_t max_bytes, msgpack_sbuffer *out, int *rows) {
  assert(source && max_count > 0 && out && rows);
  out->size = 0;
  *rows = 0;
  int64_t head;
  int rc = choreo_store_head(s, &head);
  if (rc) return rc;
  if (after < 0) return CHOREO_EINVAL;
  if (after > head) after = head; /* a peer asking beyond our log gets our head, and no overflow */
  /* Committed rows this connection appended, unless a script's ROLLBACK TO may have taken
   * some of them away unseen (the memo's epoch misses those). */
  const char *kept;
  size_t kept_len;
  uint32_t kept_count;
  if (!s->foreign_savepoints && !choreo_store_in_transaction(s) &&
      choreo_appended_slice(&s->appended, s->epoch, after + 1, max_count, max_bytes, &kept,
                            &kept_len, &kept_count)) {
    rc = choreo_frame_header(out, source, after + 1, kept_count, head);
    if (!rc && msgpack_sbuffer_write(out, kept, kept_len)) rc = CHOREO_ENOMEM;
    if (!rc) *rows = (int)kept_count;
    return rc;
  }
  sqlite3_stmt *st = s->st[ST_READ];
  if (sqlite3_bind_int64(st, 1, after) || sqlite3_bind_int(st, 2, max_count))
    return store_fail(s, ST_READ);
  /* The header carries the count, so the rows are gathered first. */
  msgpack_sbuffer *body = &s->scratch;
  body->size = 0;
  int64_t first = after + 1;
  uint32_t count = 0;
  while ((rc = store_step(s, st)) == SQLITE_ROW) {
    const void *blob = sqlite3_column_blob(st, 1);
    size_t len = (size_t)sqlite3_column_bytes(st, 1);
    /* The frame stays within max_bytes unless one message alone is larger: that one still
     * goes out, or a reader could never get past it. */
    if (count > 0 && body->size + len > max_bytes) break;
    /* seq is dense, but the log may have been trimmed past `after`: start where rows start. */
    if (count == 0) first = sqlite3_column_int64(st, 0);
    if (msgpack_sbuffer_write(body, blob, len)) {
      store_done(s, ST_READ);
      return CHOREO_ENOMEM;
    }
    count++;
  }
  store_done(s, ST_READ);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return CHOREO_EIO;
  rc = choreo_frame_header(out, source, first, count, head);
  if (rc) return rc;
  if (msgpack_sbuffer_write(out, body->data, body->size)) return CHOREO_ENOMEM;
  *rows = (int)count;
  return 0;
}

int choreo_store_retry_add(choreo_store *s, const choreo_msg *m, int attempts, int64_t due_ms,
                           const char *error, int64_t dead_id) {
  sqlite3_stmt *st = s->st[ST_RETRY_ADD];
  if (store_bind_str(st, 1, m->source) || sqlite3_bind_int64(st, 2, m->seq) ||
      sqlite3_bind_blob64(st, 3, m->raw, m->raw_len, SQLITE_STATIC) ||
      sqlite3_bind_int(st, 4, attempts) || sqlite3_bind_int64(st, 5, due_ms) ||
      sqlite3_bind_text(st, 6, error, -1, SQLITE_STATIC) ||
      (dead_id > 0 ? sqlite3_bind_int64(st, 7, dead_id) : sqlite3_bind_null(st, 7)))
    return store_fail(s, ST_RETRY_ADD);
  int rc = store_run(s, ST_RETRY_ADD);
  if (!rc && s->memo.retry_known && (s->memo.retry_due < 0 || due_ms < s->memo.retry_due))
    s->memo.retry_due = due_ms;
  return rc;
}

int choreo_store_retry_next_due(choreo_store *s, int64_t *out) {
  if (s->memo.retry_known) {
    *out = s->memo.retry_due;
    return 0;
  }
  /* min() over an empty table is one NULL row, which column_int64 would read as 0. */
  sqlite3_stmt *st = s->st[ST_RETRY_NEXT];
  int64_t due = -1;
  int rc = store_step(s, st);
  if (rc == SQLITE_ROW) {
    if (sqlite3_column_type(st, 0) != SQLITE_NULL) due = sqlite3_column_int64(st, 0);
    rc = store_step(s, st);
  }
  store_done(s, ST_RETRY_NEXT);
  if (rc != SQLITE_DONE) return CHOREO_EIO;
  s->memo.retry_due = due;
  s->memo.retry_known = true;
  *out = due;
  return 0;
}

typedef struct store_due {
  choreo_retry_row row; /* row.raw set once every row is copied: the buffer may move */
  size_t off;
} store_due;

int choreo_store_retry_each_due(choreo_store *s, int64_t now_ms, int max, choreo_retry_fn fn,
                                void *ud) {
  assert(max > 0 && fn);
  /* The due rows are copied out before fn runs: fn typically dispatches the message, which
   * commits, removes this very row, or appends through the same connection. */
  store_due *due = malloc((size_t)max * sizeof *due);
  if (!due) return CHOREO_ENOMEM;
  msgpack_sbuffer raw;
  msgpack_sbuffer_init(&raw);
  sqlite3_stmt *st = s->st[ST_RETRY_DUE];
  int n = 0, rc = CHOREO_EIO;
  if (sqlite3_bind_int64(st, 1, now_ms) || sqlite3_bind_int(st, 2, max)) {
    store_done(s, ST_RETRY_DUE);
    goto done;
  }
  int step;
  while ((step = store_step(s, st)) == SQLITE_ROW) {
    size_t len = (size_t)sqlite3_column_bytes(st, 1);
    due[n] = (store_due){.row = {.id = sqlite3_column_int64(st, 0), .len = len,
                                 .attempts = sqlite3_column_int(st, 2),
                                 .dead_id = sqlite3_column_int64(st, 3)},
                         .off = raw.size};
    if (msgpack_sbuffer_write(&raw, sqlite3_column_blob(st, 1), len)) {
      step = SQLITE_NOMEM;
      break;
    }
    n++;
  }
  store_done(s, ST_RETRY_DUE);
  if (step != SQLITE_DONE) {
    rc = step == SQLITE_NOMEM ? CHOREO_ENOMEM : CHOREO_EIO;
    goto done;
  }
  /* A negative return from fn stops the walk and is passed on. */
  for (int i = 0; i < n; i++) {
    due[i].row.raw = raw.data + due[i].off;
    rc = fn(ud, &due[i].row);
    if (rc < 0) goto done;
  }
  rc = 0;
done:
  msgpack_sbuffer_destroy(&raw);
  free(due);
  return rc;
}

int choreo_store_retry_remove(choreo_store *s, int64_t id) {
  if (sqlite3_bind_int64(s->st[ST_RETRY_REMOVE], 1, id)) return store_fail(s, ST_RETRY_REMOVE);
  s->memo.retry_known = false; /* it may have been the earliest */
  return store_run(s, ST_RETRY_REMOVE);
}

/* A letter sent back by hand that died again takes its old row (and id) back, unless someone
 * dropped it meanwhile. *done says whether it did. */
static int store_dead_again(choreo_store *s, int64_t dead_id, int attempts, const char *error,
                            const char *traceback, const char *now, int64_t now_ms, bool *done) {
  sqlite3_stmt *st = s->st[ST_DEAD_AGAIN];
  *done = false;
  if (sqlite3_bind_int(st, 1, attempts) || sqlite3_bind_text(st, 2, error, -1, SQLITE_STATIC) ||
      sqlite3_bind_text(st, 3, traceback, -1, SQLITE_STATIC) ||
      sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC) || sqlite3_bind_int64(st, 5, now_ms) ||
      sqlite3_bind_int64(st, 6, dead_id))
    return store_fail(s, ST_DEAD_AGAIN);
  int rc = store_run(s, ST_DEAD_AGAIN);
  *done = !rc && sqlite3_changes(s->db) > 0;
  return rc;
}

int choreo_store_dead_add(choreo_store *s, const choreo_msg *m, int attempts, const char *error,
                          const char *traceback, int64_t now_ms, int64_t dead_id) {
  char now[40];
  choreo_time_now(now, sizeof now);
  if (dead_id > 0) {
    bool done;
    int rc = store_dead_again(s, dead_id, attempts, error, traceback, now, now_ms, &done);
    if (rc || done) return rc;
  }
  sqlite3_stmt *st = s->st[ST_DEAD_ADD];
  if (store_bind_str(st, 1, m->source) || sqlite3_bind_int64(st, 2, m->seq) ||
      store_bind_str(st, 3, m->type) ||
      sqlite3_bind_blob64(st, 4, m->raw, m->raw_len, SQLITE_STATIC) ||
      sqlite3_bind_int(st, 5, attempts) || sqlite3_bind_text(st, 6, error, -1, SQLITE_STATIC) ||
      sqlite3_bind_text(st, 7, traceback, -1, SQLITE_STATIC) ||
      sqlite3_bind_text(st, 8, now, -1, SQLITE_STATIC) || sqlite3_bind_int64(st, 9, now_ms))
    return store_fail(s, ST_DEAD_ADD);
  return store_run(s, ST_DEAD_ADD);
}

int choreo_store_dead_resolved(choreo_store *s, int64_t dead_id) {
  if (sqlite3_bind_int64(s->st[ST_DEAD_DROP], 1, dead_id)) return store_fail(s, ST_DEAD_DROP);
  return store_run(s, ST_DEAD_DROP);
}

int choreo_store_dead_expire(choreo_store *s, int64_t before_ms, int max_rows, int *deleted) {
  *deleted = 0;
  sqlite3_stmt *st = s->st[ST_DROPPED_EXPIRING];
  if (sqlite3_bind_int64(st, 1, before_ms) || sqlite3_bind_int(st, 2, max_rows))
    return store_fail(s, ST_DROPPED_EXPIRING);
  int rc = store_run(s, ST_DROPPED_EXPIRING);
  if (rc) return rc;
  st = s->st[ST_DEAD_EXPIRE];
  if (sqlite3_bind_int64(st, 1, before_ms) || sqlite3_bind_int(st, 2, max_rows))
    return store_fail(s, ST_DEAD_EXPIRE);
  rc = store_run(s, ST_DEAD_EXPIRE);
  if (!rc) *deleted = sqlite3_changes(s->db);
  return rc;
}

int choreo_store_dead_each(choreo_store *s, choreo_dead_fn fn, void *ud) {
  sqlite3_stmt *st = s->st[ST_DEAD_LIST];
  int rc = 0, step;
  while (rc >= 0 && (step = store_step(s, st)) == SQLITE_ROW) {
    choreo_dead_letter d = {
        .id = sqlite3_column_int64(st, 0), .source = (const char *)sqlite3_column_text(st, 1),
        .seq = sqlite3_column_int64(st, 2), .type = (const char *)sqlite3_column_text(st, 3),
        .raw = sqlite3_column_blob(st, 4), .raw_len = (size_t)sqlite3_column_bytes(st, 4),
        .attempts = sqlite3_column_int(st, 5), .error = (const char *)sqlite3_column_text(st, 6),
        .traceback = (const char *)sqlite3_column_text(st, 7),
        .time = (const char *)sqlite3_column_text(st, 8),
        .retrying = sqlite3_column_int(st, 9) != 0, .revived = sqlite3_column_int(st, 10)};
    rc = fn(ud, &d);
  }
  if (rc >= 0 && step != SQLITE_DONE) rc = CHOREO_EIO;
  store_done(s, ST_DEAD_LIST);
  return rc < 0 ? rc : 0;
}

/* Undoes what was done since ST_DEAD_SAVEPOINT, after rc. Unwinding succeeds and so resets
 * sqlite3_errmsg; the reason for the failure is kept for choreo_store_errmsg. If unwinding
 * fails too, there is nothing better left to do. */
static void store_dead_unwind(choreo_store *s, int rc) {
  char why[sizeof s->kept];
  snprintf(why, sizeof why, "%s", sqlite3_errmsg(s->db));
  store_forget(s);
  store_step(s, s->st[ST_DEAD_ROLLBACK_TO]);
  store_done(s, ST_DEAD_ROLLBACK_TO);
  store_step(s, s->st[ST_DEAD_RELEASE]);
  store_done(s, ST_DEAD_RELEASE);
  if (rc == CHOREO_EIO) memcpy(s->kept, why, sizeof why);
}

int choreo_store_dead_retry(choreo_store *s, int64_t id, int64_t now_ms) {
  /* A savepoint, not BEGIN, so the move is atomic whether or not the caller has a
   * transaction open. */
  int rc = store_run(s, ST_DEAD_SAVEPOINT);
  if (rc) return rc;
  s->memo.retry_known = false;
  sqlite3_stmt *st = s->st[ST_DEAD_TO_RETRY];
  if (sqlite3_bind_int64(st, 1, now_ms) || sqlite3_bind_int64(st, 2, id))
    rc = store_fail(s, ST_DEAD_TO_RETRY);
  else
    rc = store_run(s, ST_DEAD_TO_RETRY);
  if (rc == 0 && sqlite3_changes(s->db) == 0) {
    /* No row moved: no such letter, or one being retried already. */
    int64_t retrying = -1;
    st = s->st[ST_DEAD_IS_RETRYING];
    rc = sqlite3_bind_int64(st, 1, id) ? store_fail(s, ST_DEAD_IS_RETRYING)
                                       : store_int(s, ST_DEAD_IS_RETRYING, &retrying);
    if (rc == 0) rc = retrying < 0 ? CHOREO_ENOENT : CHOREO_EINVAL;
  }
  if (rc == 0) {
    st = s->st[ST_DEAD_MARK_RETRYING];
    rc = sqlite3_bind_int64(st, 1, id) ? store_fail(s, ST_DEAD_MARK_RETRYING)
                                       : store_run(s, ST_DEAD_MARK_RETRYING);
  }
  if (rc == 0) return store_run(s, ST_DEAD_RELEASE);
  store_dead_unwind(s, rc);
  return rc;
}

int choreo_store_dead_drop(choreo_store *s, int64_t id) {
  /* A savepoint, as in dead_retry: noted and deleted together, in a transaction or not. */
  int rc = store_run(s, ST_DEAD_SAVEPOINT);
  if (rc) return rc;
  rc = sqlite3_bind_int64(s->st[ST_DROPPED_ONE], 1, id) ? store_fail(s, ST_DROPPED_ONE)
                                                         : store_run(s, ST_DROPPED_ONE);
  if (!rc) {
    rc = sqlite3_bind_int64(s->st[ST_DEAD_DROP], 1, id) ? store_fail(s, ST_DEAD_DROP)
                                                         : store_run(s, ST_DEAD_DROP);
    if (rc == 0 && sqlite3_changes(s->db) == 0) rc = CHOREO_ENOENT;
  }
  if (rc == 0) return store_run(s, ST_DEAD_RELEASE);
  store_dead_unwind(s, rc);
  return rc;
}

int choreo_store_request_find(choreo_store *s, const char *key, int64_t *seq, bool *found) {
  *found = false;
  sqlite3_stmt *st = s->st[ST_REQUEST_GET];
  if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC)) return store_fail(s, ST_REQUEST_GET);
  int64_t v = -1;
  int rc = store_int(s, ST_REQUEST_GET, &v);
  *found = !rc && v >= 0;
  if (*found) *seq = v;
  return rc;
}

int choreo_store_request_record(choreo_store *s, const char *key, int64_t seq) {
  char now[40];
  choreo_time_now(now, sizeof now);
  sqlite3_stmt *st = s->st[ST_REQUEST_PUT];
  if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) || sqlite3_bind_int64(st, 2, seq) ||
      sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC))
    return store_fail(s, ST_REQUEST_PUT);
  return store_run(s, ST_REQUEST_PUT);
}

int choreo_store_subscriber_seen(choreo_store *s, const char *name, int64_t applied,
                                 int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_SUBSCRIBER_PUT];
  if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) || sqlite3_bind_int64(st, 2, applied) ||
      sqlite3_bind_int64(st, 3, now_ms))
    return store_fail(s, ST_SUBSCRIBER_PUT);
  return store_run(s, ST_SUBSCRIBER_PUT);
}

int choreo_store_subscribers_min(choreo_store *s, int64_t seen_since_ms, int64_t *applied,
                                 bool *any) {
  sqlite3_stmt *st = s->st[ST_SUBSCRIBERS_MIN];
  *any = false;
  if (sqlite3_bind_int64(st, 1, seen_since_ms)) return store_fail(s, ST_SUBSCRIBERS_MIN);
  int step = store_step(s, st);
  if (step == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
    *applied = sqlite3_column_int64(st, 0);
    *any = true;
  }
  if (step == SQLITE_ROW) step = store_step(s, st);
  store_done(s, ST_SUBSCRIBERS_MIN);
  return step == SQLITE_DONE ? 0 : CHOREO_EIO;
}

int choreo_store_trim(choreo_store *s, const choreo_trim *t, int max_rows, int *deleted) {
  *deleted = 0;
  sqlite3_stmt *st = s->st[ST_OLDEST_ROWS];
  if (sqlite3_bind_int(st, 1, max_rows)) return store_fail(s, ST_OLDEST_ROWS);
  /* A prefix of the log goes: from the oldest row up to the first that must stay. */
  int64_t last = 0;
  int n = 0, step;
  while ((step = store_step(s, st)) == SQLITE_ROW) {
    int64_t seq = sqlite3_column_int64(st, 0);
    bool unknown = sqlite3_column_type(st, 1) == SQLITE_NULL; /* from before at_ms: old */
    int64_t at = sqlite3_column_int64(st, 1);
    bool served = seq <= t->served_upto && (unknown || at < t->retain_before_ms);
    bool expired = seq <= t->hard_upto && (unknown || at < t->max_before_ms);
    if (!served && !expired) break;
    last = seq;
    n++;
  }
  store_done(s, ST_OLDEST_ROWS);
  if (step != SQLITE_ROW && step != SQLITE_DONE) return CHOREO_EIO;
  if (n == 0) return 0;
  if (sqlite3_bind_int64(s->st[ST_TRIM], 1, last)) return store_fail(s, ST_TRIM);
  int rc = store_run(s, ST_TRIM);
  if (!rc) choreo_appended_trimmed(&s->appended, last);
  if (!rc && sqlite3_bind_int64(s->st[ST_REQUEST_EXPIRE], 1, last))
    rc = store_fail(s, ST_REQUEST_EXPIRE);
  else if (!rc)
    rc = store_run(s, ST_REQUEST_EXPIRE);
  if (!rc) *deleted = n;
  return rc;
}

int choreo_store_oldest(choreo_store *s, int64_t *seq) {
  *seq = 0;
  return store_int(s, ST_OLDEST, seq);
}

int choreo_store_size(choreo_store *s, int64_t *bytes) {
  *bytes = 0;
  return store_int(s, ST_SIZE, bytes);
}

int choreo_store_page_size(choreo_store *s) {
  int64_t bytes = 0;
  return store_int(s, ST_PAGE_SIZE, &bytes) ? 0 : (int)bytes;
}

int64_t choreo_store_wal_size(choreo_store *s) {
  const char *db = sqlite3_db_filename(s->db, "main");
  struct stat st;
  if (!db || !*db) return 0; /* in memory */
  return stat(sqlite3_filename_wal(db), &st) == 0 ? (int64_t)st.st_size : 0;
}

int choreo_store_retry_count(choreo_store *s, int64_t *count) {
  *count = 0;
  return store_int(s, ST_RETRY_COUNT, count);
}

int choreo_store_dead_count(choreo_store *s, int64_t *count) {
  *count = 0;
  return store_int(s, ST_DEAD_COUNT, count);
}

int choreo_store_checkpoints_each(choreo_store *s, int (*fn)(void *ud, const char *source,
                                                             int64_t seq), void *ud) {
  sqlite3_stmt *st = s->st[ST_CHECKPOINTS];
  int rc = 0, step;
  while (!rc && (step = store_step(s, st)) == SQLITE_ROW)
    rc = fn(ud, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1));
  if (rc) {
    store_done(s, ST_CHECKPOINTS);
    return rc;
  }
  return step == SQLITE_DONE ? (store_done(s, ST_CHECKPOINTS), 0) : store_fail(s, ST_CHECKPOINTS);
}

int choreo_store_pending_seqs(choreo_store *s, const char *source, size_t len, int64_t from,
                              int64_t to, int (*fn)(void *ud, int64_t seq), void *ud) {
  sqlite3_stmt *st = s->st[ST_PENDING_SEQS];
  if (sqlite3_bind_text(st, 1, source, (int)len, SQLITE_STATIC) || sqlite3_bind_int64(st, 2, from) ||
      sqlite3_bind_int64(st, 3, to))
    return store_fail(s, ST_PENDING_SEQS);
  int rc = 0, step;
  while (!rc && (step = store_step(s, st)) == SQLITE_ROW) rc = fn(ud, sqlite3_column_int64(st, 0));
  if (rc) {
    store_done(s, ST_PENDING_SEQS);
    return rc;
  }
  return step == SQLITE_DONE ? (store_done(s, ST_PENDING_SEQS), 0) : store_fail(s, ST_PENDING_SEQS);
}
