/* Unit tests of runtime/store.c: the log's seq under commits, rollbacks and savepoints,
 * checkpoints across a reopen, frames read back through the codec, delayed retries and dead
 * letters. Most tests use ":memory:"; the durable ones use a file in a fresh /tmp directory. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "appended.h"
#include "check.h"
#include "choreo.h"
#include "store.h"
#include "temp_files.h"

/* The store's "value or error" readers, checked, as values. */
static int64_t head_of(choreo_store *s) {
  int64_t v = -99;
  CHECK(choreo_store_head(s, &v) == 0);
  return v;
}

static int64_t checkpoint_of(choreo_store *s, const char *source) {
  int64_t v = -99;
  CHECK(choreo_store_checkpoint(s, source, &v) == 0);
  return v;
}

static int64_t retry_due_of(choreo_store *s) {
  int64_t v = -99;
  CHECK(choreo_store_retry_next_due(s, &v) == 0);
  return v;
}

static int64_t dead_count_of(choreo_store *s) {
  int64_t v = -99;
  CHECK(choreo_store_dead_count(s, &v) == 0);
  return v;
}

/* The number of rows in the frame, or the error. */
static int read_frame(choreo_store *s, const char *source, int64_t after, int max_count,
                      size_t max_bytes, msgpack_sbuffer *out) {
  int rows = -99;
  int rc = choreo_store_read_frame(s, source, after, max_count, max_bytes, out, &rows);
  return rc ? rc : rows;
}

/* Dead letters as listed, copied out of the callback. */
typedef struct dead_copy {
  int64_t id, seq;
  char source[32], type[64], error[64], time[40];
  bool has_traceback, retrying;
  int attempts, revived;
  char msg_type[64], msg_source[32];
  int64_t msg_seq;
} dead_copy;

typedef struct dead_list {
  int n;
  dead_copy d[8];
} dead_list;

static int collect_dead(void *ud, const choreo_dead_letter *d) {
  dead_list *l = ud;
  if (l->n == 8) return CHOREO_ENOMEM;
  dead_copy *c = &l->d[l->n++];
  memset(c, 0, sizeof *c);
  c->id = d->id;
  c->seq = d->seq;
  c->attempts = d->attempts;
  c->has_traceback = d->traceback != NULL;
  c->retrying = d->retrying;
  c->revived = d->revived;
  snprintf(c->source, sizeof c->source, "%s", d->source);
  snprintf(c->type, sizeof c->type, "%s", d->type);
  snprintf(c->error, sizeof c->error, "%s", d->error);
  snprintf(c->time, sizeof c->time, "%s", d->time);
  choreo_msg m;
  if (choreo_msg_decode(d->raw, d->raw_len, &m) == 0) {
    snprintf(c->msg_type, sizeof c->msg_type, "%.*s", (int)m.type.n, m.type.p);
    snprintf(c->msg_source, sizeof c->msg_source, "%.*s", (int)m.source.n, m.source.p);
    c->msg_seq = m.seq;
  }
  return 0;
}

static choreo_store *open_memory(void) {
  char err[256] = "";
  choreo_store *s = NULL;
  int rc = choreo_store_open(&s, ":memory:", 0, err, sizeof err);
  if (rc) fprintf(stderr, "open: %s\n", err);
  CHECK(rc == 0 && s != NULL);
  return s;
}

/* Appends a row as if at at_ms (retention goes by it). */
static int64_t append_at(choreo_store *s, const char *type, int64_t at_ms) {
  choreo_msg_fields f = {.source = "orders", .type = type, .kind = "event"};
  int64_t seq = -1;
  CHECK(choreo_store_append(s, &f, at_ms, &seq) == 0);
  return seq;
}

static int64_t append(choreo_store *s, const char *type) { return append_at(s, type, 1000); }

/* The types of the log rows after `after`, read through a frame, joined with spaces. */
static void log_types(choreo_store *s, int64_t after, char *out, size_t size) {
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  out[0] = '\0';
  CHECK(read_frame(s, "orders", after, 100, 1 << 20, &buf) >= 0);
  choreo_frame_reader r;
  CHECK(choreo_frame_open(&r, buf.data, buf.size) == 0);
  choreo_msg m;
  while (choreo_frame_next(&r, &m) == 1) {
    size_t n = strlen(out);
    snprintf(out + n, size - n, "%s%.*s", n ? " " : "", (int)m.type.n, m.type.p);
  }
  choreo_frame_close(&r);
  msgpack_sbuffer_destroy(&buf);
}

static void test_append_assigns_seq(void) {
  choreo_store *s = open_memory();
  CHECK(head_of(s) == 0);
  CHECK(append(s, "A") == 1);
  CHECK(append(s, "B") == 2);
  CHECK(append(s, "C") == 3);
  CHECK(head_of(s) == 3);
  choreo_msg_fields bad = {.source = "orders", .kind = "event"}; /* no type */
  CHECK(choreo_store_append(s, &bad, 1000, NULL) == CHOREO_EINVAL);
  CHECK(head_of(s) == 3);
  choreo_store_close(s);
}

static void test_rollback_reuses_seq(void) {
  choreo_store *s = open_memory();
  CHECK(append(s, "A") == 1);
  CHECK(choreo_store_begin(s) == 0);
  CHECK(append(s, "B") == 2);
  CHECK(append(s, "C") == 3);
  CHECK(choreo_store_rollback(s) == 0);
  CHECK(head_of(s) == 1);
  CHECK(choreo_store_begin(s) == 0);
  CHECK(append(s, "D") == 2);
  CHECK(choreo_store_commit(s) == 0);
  char types[64];
  log_types(s, 0, types, sizeof types);
  CHECK(strcmp(types, "A D") == 0);
  choreo_store_close(s);
}

static void test_savepoint_rolls_back_one_message(void) {
  choreo_store *s = open_memory();
  CHECK(choreo_store_begin(s) == 0);
  CHECK(choreo_store_savepoint(s) == 0);
  CHECK(append(s, "A") == 1);
  CHECK(choreo_store_release(s) == 0);
  CHECK(choreo_store_savepoint(s) == 0);
  CHECK(append(s, "B") == 2);
  CHECK(append(s, "C") == 3);
  CHECK(choreo_store_set_checkpoint(s, "payments", 9) == 0);
  CHECK(choreo_store_rollback_savepoint(s) == 0);
  CHECK(checkpoint_of(s, "payments") == 0);
  CHECK(choreo_store_savepoint(s) == 0);
  CHECK(append(s, "D") == 2);
  CHECK(choreo_store_release(s) == 0);
  CHECK(choreo_store_commit(s) == 0);
  char types[64];
  log_types(s, 0, types, sizeof types);
  CHECK(strcmp(types, "A D") == 0);
  /* Outside a transaction a savepoint is a transaction of its own. */
  CHECK(choreo_store_savepoint(s) == 0);
  CHECK(append(s, "E") == 3);
  CHECK(choreo_store_rollback_savepoint(s) == 0);
  CHECK(head_of(s) == 2);
  choreo_store_close(s);
}

/* The head is remembered inside a transaction too, until someone else's savepoint could take
 * appended rows away unseen: then it is asked, and no seq is skipped. */
static void test_foreign_savepoint_rollback_keeps_seqs_contiguous(void) {
  choreo_store *s = open_memory();
  sqlite3 *db = choreo_store_db(s);
  CHECK(choreo_store_begin(s) == 0);
  CHECK(append(s, "A") == 1);
  CHECK(append(s, "B") == 2);
  CHECK(sqlite3_exec(db, "SAVEPOINT mine", NULL, NULL, NULL) == SQLITE_OK);
  CHECK(append(s, "C") == 3);
  CHECK(sqlite3_exec(db, "ROLLBACK TO mine", NULL, NULL, NULL) == SQLITE_OK);
  CHECK(sqlite3_exec(db, "RELEASE mine", NULL, NULL, NULL) == SQLITE_OK);
  CHECK(append(s, "D") == 3);
  CHECK(choreo_store_commit(s) == 0);
  char types[64];
  log_types(s, 0, types, sizeof types);
  CHECK(strcmp(types, "A B D") == 0);
  choreo_store_close(s);
}

/* Rows of the log as someone else's SQL sees them: "seq:type seq:type ...". */
static void log_rows_seen(choreo_store *s, char *out, size_t size) {
  sqlite3_stmt *st = NULL;
  out[0] = '\0';
  CHECK(sqlite3_prepare_v2(choreo_store_db(s), "SELECT seq, type FROM choreo_log ORDER BY seq",
                           -1, &st, NULL) == SQLITE_OK);
  while (st && sqlite3_step(st) == SQLITE_ROW) {
    size_t n = strlen(out);
    snprintf(out + n, size - n, "%s%lld:%s", n ? " " : "", (long long)sqlite3_column_int64(st, 0),
             (const char *)sqlite3_column_text(st, 1));
  }
  sqlite3_finalize(st);
}

/* Inside a transaction appends wait to be written a group at a time: every other call into the
 * store sees them (a savepoint's rollback drops its own, and only those), a rollback drops them,
 * and choreo_store_write_pending puts them in for someone else's SQL. */
static void test_appends_wait_for_the_next_statement(void) {
  choreo_store *s = open_memory();
  CHECK(choreo_store_begin(s) == 0);
  for (int i = 1; i <= 150; i++) CHECK(append(s, "A") == i); /* two groups and 22 more */
  CHECK(head_of(s) == 150);
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  CHECK(read_frame(s, "orders", 120, 100, 1 << 20, &buf) == 30); /* read from the log itself */
  CHECK(choreo_store_savepoint(s) == 0);
  for (int i = 151; i <= 220; i++) CHECK(append(s, "B") == i);
  CHECK(choreo_store_rollback_savepoint(s) == 0);
  CHECK(head_of(s) == 150);
  for (int i = 151; i <= 155; i++) CHECK(append(s, "C") == i);
  CHECK(choreo_store_commit(s) == 0);
  CHECK(read_frame(s, "orders", 0, 1000, 1 << 20, &buf) == 155);
  char types[2048];
  log_types(s, 145, types, sizeof types);
  CHECK_STR(types, "A A A A A C C C C C");

  CHECK(choreo_store_begin(s) == 0); /* a whole batch rolled back, pending rows and all */
  for (int i = 156; i <= 300; i++) CHECK(append(s, "D") == i);
  CHECK(choreo_store_rollback(s) == 0);
  CHECK(head_of(s) == 155);

  CHECK(choreo_store_begin(s) == 0); /* written for someone else's SQL */
  CHECK(append(s, "E") == 156);
  CHECK(append(s, "F") == 157);
  CHECK(choreo_store_write_pending(s) == 0);
  char seen[4096];
  log_rows_seen(s, seen, sizeof seen);
  CHECK(strstr(seen, " 155:C 156:E 157:F") != NULL && strstr(seen, ":D") == NULL);
  CHECK(append(s, "G") == 158); /* someone else read the log: written at once from now on */
  log_rows_seen(s, seen, sizeof seen);
  CHECK(strstr(seen, " 157:F 158:G") != NULL);
  CHECK(choreo_store_commit(s) == 0);
  msgpack_sbuffer_destroy(&buf);
  choreo_store_close(s);
}

/* A database in a directory of its own, and the names of the WAL and shared-memory files SQLite
 * puts beside it. */
typedef struct temp_db {
  char dir[32], path[64], wal[72], shm[72];
} temp_db;

static void temp_db_make(temp_db *t) {
  snprintf(t->dir, sizeof t->dir, "/tmp/choreo-store-XXXXXX");
  CHECK(mkdtemp(t->dir) != NULL);
  snprintf(t->path, sizeof t->path, "%s/host.db", t->dir);
  snprintf(t->wal, sizeof t->wal, "%s-wal", t->path);
  snprintf(t->shm, sizeof t->shm, "%s-shm", t->path);
}

/* A store opened on a temp_db's file. */
static choreo_store *open_file(const temp_db *t) {
  char err[256] = "";
  choreo_store *s = NULL;
  int rc = choreo_store_open(&s, t->path, 0, err, sizeof err);
  if (rc) fprintf(stderr, "open: %s\n", err);
  CHECK(rc == 0 && s != NULL);
  return s;
}

/* Pending rows take the seq SQLite gives (max(seq) + 1), which is the one their messages carry
 * as long as the log's last row stays. One deleted from outside between two batches leaves the
 * head this store remembers ahead of the table's: the next group fails and says why, rather
 * than store messages under seqs that are not theirs; after the rollback the store asks again
 * and appends go on from the row that is left. */
static void test_pending_rows_check_their_seqs(void) {
  temp_db t;
  temp_db_make(&t);
  choreo_store *s = open_file(&t);
  CHECK(choreo_store_begin(s) == 0);
  for (int i = 1; i <= 3; i++) CHECK(append(s, "A") == i);
  CHECK(choreo_store_commit(s) == 0);
  CHECK(head_of(s) == 3);
  sqlite3 *other = NULL;
  CHECK(sqlite3_open(t.path, &other) == SQLITE_OK);
  CHECK(sqlite3_exec(other, "DELETE FROM choreo_log WHERE seq = 3", NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_close(other);

  CHECK(choreo_store_begin(s) == 0);
  choreo_msg_fields f = {.source = "orders", .type = "B", .kind = "event"};
  int rc = 0;
  for (int i = 0; i < 200 && !rc; i++) rc = choreo_store_append(s, &f, 1000, NULL);
  CHECK(rc == CHOREO_EIO);
  CHECK(strstr(choreo_store_errmsg(s), "do not end where this host's head was (3)") != NULL);
  CHECK(choreo_store_rollback(s) == 0);
  CHECK(head_of(s) == 2);
  CHECK(choreo_store_begin(s) == 0);
  for (int i = 3; i <= 70; i++) CHECK(append(s, "C") == i); /* a group and four more */
  CHECK(choreo_store_commit(s) == 0);
  char seen[8192];
  log_rows_seen(s, seen, sizeof seen);
  CHECK(strncmp(seen, "1:A 2:A 3:C 4:C", 15) == 0 && strstr(seen, "70:C") != NULL &&
        strstr(seen, ":B") == NULL && strstr(seen, "71:") == NULL);
  choreo_store_close(s);
  remove_tree(t.dir);
}

static void test_checkpoints_survive_reopen(void) {
  temp_db t;
  temp_db_make(&t);
  choreo_store *s = open_file(&t);
  CHECK(checkpoint_of(s, "payments") == 0);
  CHECK(choreo_store_set_checkpoint(s, "payments", 5) == 0);
  CHECK(choreo_store_set_checkpoint(s, "shipping", 7) == 0);
  CHECK(choreo_store_set_checkpoint(s, "payments", 6) == 0);
  CHECK(checkpoint_of(s, "payments") == 6);
  CHECK(choreo_store_begin(s) == 0);
  CHECK(append(s, "A") == 1);
  CHECK(choreo_store_commit(s) == 0);
  sqlite3_stmt *st;
  CHECK(sqlite3_prepare_v2(choreo_store_db(s), "PRAGMA journal_mode", -1, &st, NULL) == 0);
  CHECK(sqlite3_step(st) == SQLITE_ROW);
  CHECK(strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0);
  sqlite3_finalize(st);
  choreo_store_close(s);

  s = open_file(&t);
  CHECK(checkpoint_of(s, "payments") == 6);
  CHECK(checkpoint_of(s, "shipping") == 7);
  CHECK(checkpoint_of(s, "billing") == 0);
  CHECK(head_of(s) == 1);
  choreo_store_close(s);

  remove_tree(t.dir);
}

static int64_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* About 6 MB of pages (1,500 rows of 4 KB) in one transaction: past the checkpointer's nudge. */
static void write_pages(choreo_store *s) {
  CHECK(sqlite3_exec(choreo_store_db(s),
                     "BEGIN; CREATE TABLE IF NOT EXISTS bulk(b BLOB);"
                     "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)"
                     " INSERT INTO bulk SELECT randomblob(4000) FROM n; COMMIT;",
                     NULL, NULL, NULL) == SQLITE_OK);
}

/* The WAL's frames (mxFrame) and how many of them are copied into the database file
 * (nBackfill), from the WAL index in the -shm file as https://www.sqlite.org/walformat.html lays
 * it out: mxFrame at byte 16 of the index header, nBackfill at byte 96 (native-endian). */
static bool wal_index(const char *shm, uint32_t *frames, uint32_t *backfilled) {
  uint32_t words[25] = {0};
  FILE *f = fopen(shm, "rb");
  bool read = f && fread(words, sizeof words, 1, f) == 1;
  if (f) fclose(f);
  *frames = words[4];
  *backfilled = words[24];
  return read;
}

/* Until the WAL index says every frame of the WAL has been copied, for at most 10 s. */
static bool wait_for_checkpoint(const char *shm) {
  for (int i = 0; i < 1000; i++) {
    uint32_t frames, backfilled;
    if (wal_index(shm, &frames, &backfilled) && frames > 0 && backfilled == frames) return true;
    nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
  }
  return false;
}

/* While a store is open, its committed pages move from the WAL into the database file, and
 * the WAL starts over instead of growing for as long as the host runs. */
static void test_wal_is_checkpointed_while_open(void) {
  temp_db t;
  temp_db_make(&t);
  choreo_store *s = open_file(&t);
  write_pages(s);
  int64_t first_wal = file_size(t.wal);
  CHECK(first_wal > 6000000);
  CHECK(wait_for_checkpoint(t.shm));
  CHECK(file_size(t.path) > 6000000);
  write_pages(s); /* into a WAL started over from its beginning */
  CHECK(file_size(t.wal) <= first_wal);
  CHECK(wait_for_checkpoint(t.shm));
  CHECK(file_size(t.path) > 12000000);
  choreo_store_close(s);
  remove_tree(t.dir);
}

/* Replaces the store's busy handler to count how often its writer waited for a lock. */
static int count_waits(void *waits, int tries) {
  (void)tries;
  ++*(int *)waits;
  nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
  return 1;
}

/* Transactions one after another, as a busy host commits batches: the WAL still starts over
 * (the writer copies the last pages itself between two transactions), and the writer never
 * waits for a lock on the way. */
static void test_wal_starts_over_under_unbroken_writes(void) {
  temp_db t;
  temp_db_make(&t);
  choreo_store *s = open_file(&t);
  sqlite3 *db = choreo_store_db(s);
  int waits = 0;
  sqlite3_busy_handler(db, count_waits, &waits);
  CHECK(sqlite3_exec(db, "CREATE TABLE rows(b BLOB)", NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_stmt *insert;
  CHECK(sqlite3_prepare_v2(db, "INSERT INTO rows VALUES (randomblob(3000))", -1, &insert,
                           NULL) == SQLITE_OK);
  /* Past the 60 MiB of WAL at which a restart is due. The checkpointer thread runs at a lower
   * priority than this loop: on a machine busy with other work it copies slower than the loop
   * writes (40,000 inserts went by first while two builds ran), so the bound is a minute, and
   * past twice that the loop pauses a millisecond between transactions, as a host does between
   * batches. */
  const int64_t frame = choreo_store_page_size(s) + 24, due = 60 << 20;
  uint32_t highest = 0, frames = 0, backfilled;
  bool started_over = false;
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  do {
    CHECK(sqlite3_step(insert) == SQLITE_DONE);
    sqlite3_reset(insert);
    CHECK(wal_index(t.shm, &frames, &backfilled));
    started_over = frames < highest;
    if (frames > highest) highest = frames;
    if (frames * frame > 2 * due) nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
    clock_gettime(CLOCK_MONOTONIC, &now);
  } while (!started_over && now.tv_sec - start.tv_sec < 60);
  sqlite3_finalize(insert);
  CHECK(started_over);
  CHECK(highest * frame > due);
  CHECK(waits == 0);
  choreo_store_close(s);
  remove_tree(t.dir);
}

/* Another connection holding the write lock for a while, as a CLI's write might. */
typedef struct lock_holder {
  sqlite3 *db;
  int hold_ms;
} lock_holder;

static void *hold_then_release(void *arg) {
  lock_holder *h = arg;
  nanosleep(&(struct timespec){.tv_nsec = h->hold_ms * 1000L * 1000}, NULL);
  CHECK(sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
  return NULL;
}

/* A batch that finds the write lock taken waits for it instead of failing. */
static void test_begin_waits_for_the_write_lock(void) {
  temp_db t;
  temp_db_make(&t);
  choreo_store *s = open_file(&t);
  lock_holder h = {NULL, 50};
  CHECK(sqlite3_open(t.path, &h.db) == SQLITE_OK);
  CHECK(sqlite3_exec(h.db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
  pthread_t holder;
  CHECK(pthread_create(&holder, NULL, hold_then_release, &h) == 0);
  CHECK(choreo_store_begin(s) == 0);
  CHECK(append(s, "A") == 1);
  CHECK(choreo_store_commit(s) == 0);
  CHECK(pthread_join(holder, NULL) == 0);
  sqlite3_close(h.db);
  choreo_store_close(s);
  remove_tree(t.dir);
}

static void test_read_frame(void) {
  choreo_store *s = open_memory();
  for (int i = 0; i < 5; i++) append(s, "T");
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  choreo_frame_reader r;
  choreo_msg m;

  /* Everything, and the size of each message for the byte limit below. */
  size_t len[5] = {0};
  CHECK(read_frame(s, "orders", 0, 100, 1 << 20, &buf) == 5);
  CHECK(choreo_frame_open(&r, buf.data, buf.size) == 0);
  CHECK(r.first == 1 && r.count == 5 && r.head == 5 && choreo_str_eq(r.source, "orders"));
  for (int i = 0; i < 5; i++) {
    CHECK(choreo_frame_next(&r, &m) == 1);
    CHECK(m.seq == i + 1 && choreo_str_eq(m.type, "T") && choreo_str_eq(m.source, "orders"));
    len[i] = m.raw_len;
  }
  CHECK(choreo_frame_next(&r, &m) == 0);
  choreo_frame_close(&r);

  /* The count limit, and `out` is cleared first. */
  CHECK(read_frame(s, "orders", 1, 2, 1 << 20, &buf) == 2);
  CHECK(choreo_frame_open(&r, buf.data, buf.size) == 0);
  CHECK(r.first == 2 && r.count == 2 && r.head == 5);
  CHECK(choreo_frame_next(&r, &m) == 1 && m.seq == 2);
  CHECK(choreo_frame_next(&r, &m) == 1 && m.seq == 3);
  CHECK(choreo_frame_next(&r, &m) == 0);
  choreo_frame_close(&r);

  /* The byte limit: messages fit exactly, and one more byte's worth does not. */
  CHECK(read_frame(s, "orders", 0, 100, len[0] + len[1], &buf) == 2);
  CHECK(read_frame(s, "orders", 0, 100, len[0] + len[1] - 1, &buf) == 1);
  /* A single message larger than the limit still goes out alone. */
  CHECK(read_frame(s, "orders", 2, 100, 1, &buf) == 1);
  CHECK(choreo_frame_open(&r, buf.data, buf.size) == 0);
  CHECK(r.first == 3 && r.count == 1 && r.head == 5);
  choreo_frame_close(&r);

  /* Past the head: an empty frame that still tells the head. */
  CHECK(read_frame(s, "orders", 5, 100, 1 << 20, &buf) == 0);
  CHECK(choreo_frame_open(&r, buf.data, buf.size) == 0);
  CHECK(r.count == 0 && r.head == 5);
  CHECK(choreo_frame_next(&r, &m) == 0);
  choreo_frame_close(&r);

  msgpack_sbuffer_destroy(&buf);
  choreo_store_close(s);
}

/* Whether read_frame's frame after `after` holds exactly the log's rows, read with SQL on the
 * store's own connection (so inside a transaction its uncommitted rows too). */
static bool frame_matches_log(choreo_store *s, int64_t after) {
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  int rows = read_frame(s, "orders", after, 100, 1 << 20, &buf);
  sqlite3_stmt *st = NULL;
  CHECK(sqlite3_prepare_v2(choreo_store_db(s),
                           "SELECT seq, msg FROM choreo_log WHERE seq > ? ORDER BY seq LIMIT 100",
                           -1, &st, NULL) == SQLITE_OK);
  sqlite3_bind_int64(st, 1, after);
  choreo_frame_reader r;
  bool same = rows >= 0 && choreo_frame_open(&r, buf.data, buf.size) == 0;
  int n = 0;
  choreo_msg m;
  while (same && sqlite3_step(st) == SQLITE_ROW) {
    same = choreo_frame_next(&r, &m) == 1 && m.seq == sqlite3_column_int64(st, 0) &&
           m.raw_len == (size_t)sqlite3_column_bytes(st, 1) &&
           memcmp(m.raw, sqlite3_column_blob(st, 1), m.raw_len) == 0;
    n++;
  }
  same = same && n == rows && choreo_frame_next(&r, &m) == 0;
  if (rows >= 0) choreo_frame_close(&r);
  sqlite3_finalize(st);
  msgpack_sbuffer_destroy(&buf);
  return same;
}

/* The frame published after a commit is served from the rows as appended: never a message a
 * rollback took back, whichever rollback it was. */
static void test_read_frame_after_rollbacks(void) {
  choreo_store *s = open_memory();
  char types[64];
  /* a message's savepoint rolled back */
  CHECK(choreo_store_begin(s) == 0);
  CHECK(append(s, "A") == 1);
  CHECK(choreo_store_savepoint(s) == 0);
  CHECK(append(s, "B") == 2);
  CHECK(choreo_store_rollback_savepoint(s) == 0);
  CHECK(append(s, "C") == 2);
  CHECK(choreo_store_commit(s) == 0);
  CHECK(frame_matches_log(s, 0) && frame_matches_log(s, 1));
  /* the last message of a batch rolled back by its savepoint */
  CHECK(choreo_store_begin(s) == 0);
  CHECK(choreo_store_savepoint(s) == 0);
  CHECK(append(s, "X") == 3);
  CHECK(choreo_store_rollback_savepoint(s) == 0);
  CHECK(choreo_store_commit(s) == 0);
  CHECK(frame_matches_log(s, 2));
  /* a whole batch rolled back, its seqs taken again */
  CHECK(choreo_store_begin(s) == 0);
  CHECK(append(s, "D") == 3);
  CHECK(append(s, "E") == 4);
  CHECK(choreo_store_rollback(s) == 0);
  CHECK(frame_matches_log(s, 2));
  CHECK(choreo_store_begin(s) == 0);
  CHECK(append(s, "F") == 3);
  CHECK(choreo_store_commit(s) == 0);
  CHECK(frame_matches_log(s, 0) && frame_matches_log(s, 2));
  /* inside a transaction the log is read, uncommitted rows and all */
  CHECK(choreo_store_begin(s) == 0);
  CHECK(append(s, "G") == 4);
  CHECK(frame_matches_log(s, 3));
  CHECK(choreo_store_commit(s) == 0);
  CHECK(frame_matches_log(s, 3));
  /* a script's savepoint rolled back, taking an appended row with it unseen */
  CHECK(choreo_store_begin(s) == 0);
  CHECK(append(s, "H") == 5);
  CHECK(sqlite3_exec(choreo_store_db(s), "SAVEPOINT mine", NULL, NULL, NULL) == SQLITE_OK);
  CHECK(append(s, "I") == 6);
  CHECK(sqlite3_exec(choreo_store_db(s), "ROLLBACK TO mine; RELEASE mine", NULL, NULL, NULL) ==
        SQLITE_OK);
  CHECK(choreo_store_commit(s) == 0);
  CHECK(frame_matches_log(s, 0) && frame_matches_log(s, 4));
  log_types(s, 0, types, sizeof types);
  CHECK(strcmp(types, "A C F G H") == 0);
  choreo_store_close(s);
}

/* The kept run of appends: contiguous seqs under one epoch, sliced by count and bytes. */
static void test_appended_run(void) {
  choreo_appended a;
  choreo_appended_init(&a);
  const char *p;
  size_t len;
  uint32_t count;
  CHECK(!choreo_appended_slice(&a, 0, 1, 10, 100, &p, &len, &count)); /* nothing kept */
  choreo_appended_add(&a, 7, 1, "aa", 2);
  choreo_appended_add(&a, 7, 2, "bbb", 3);
  choreo_appended_add(&a, 7, 3, "c", 1);
  CHECK(choreo_appended_slice(&a, 7, 1, 10, 100, &p, &len, &count));
  CHECK(count == 3 && len == 6 && memcmp(p, "aabbbc", 6) == 0);
  CHECK(choreo_appended_slice(&a, 7, 2, 1, 100, &p, &len, &count));
  CHECK(count == 1 && len == 3 && memcmp(p, "bbb", 3) == 0);
  CHECK(choreo_appended_slice(&a, 7, 1, 10, 5, &p, &len, &count) && count == 2 && len == 5);
  CHECK(choreo_appended_slice(&a, 7, 1, 10, 1, &p, &len, &count) && count == 1 && len == 2);
  CHECK(!choreo_appended_slice(&a, 8, 1, 10, 100, &p, &len, &count)); /* another epoch */
  CHECK(!choreo_appended_slice(&a, 7, 4, 10, 100, &p, &len, &count)); /* not appended yet */
  CHECK(!choreo_appended_slice(&a, 7, 0, 10, 100, &p, &len, &count));
  choreo_appended_add(&a, 7, 5, "e", 1); /* a gap: it starts over */
  CHECK(!choreo_appended_slice(&a, 7, 1, 10, 100, &p, &len, &count));
  CHECK(choreo_appended_slice(&a, 7, 5, 10, 100, &p, &len, &count) && count == 1);
  choreo_appended_add(&a, 8, 6, "f", 1); /* a new epoch: it starts over */
  CHECK(!choreo_appended_slice(&a, 8, 5, 10, 100, &p, &len, &count));
  CHECK(choreo_appended_slice(&a, 8, 6, 10, 100, &p, &len, &count) && count == 1);
  choreo_appended_trimmed(&a, 5); /* rows before the run: it stays */
  CHECK(choreo_appended_slice(&a, 8, 6, 10, 100, &p, &len, &count) && count == 1);
  choreo_appended_trimmed(&a, 6); /* rows of the run: it goes */
  CHECK(!choreo_appended_slice(&a, 8, 6, 10, 100, &p, &len, &count));
  choreo_appended_free(&a);
}

/* A decoded message to hand to retry_add and dead_add; it borrows from buf. */
static void make_msg(msgpack_sbuffer *buf, const char *type, int64_t seq,
                     choreo_msg *m) {
  choreo_msg_fields f = {.source = "payments", .type = type, .kind = "event", .seq = seq};
  buf->size = 0;
  CHECK(choreo_msg_encode(&f, buf) == 0);
  CHECK(choreo_msg_decode(buf->data, buf->size, m) == 0);
}

typedef struct seen {
  int n;
  int64_t id[8];
  int64_t seq[8];
  int attempts[8];
  int64_t dead_id[8];
} seen;

static int collect(void *ud, const choreo_retry_row *row) {
  seen *v = ud;
  choreo_msg m;
  CHECK(choreo_msg_decode(row->raw, row->len, &m) == 0);
  v->id[v->n] = row->id;
  v->seq[v->n] = m.seq;
  v->attempts[v->n] = row->attempts;
  v->dead_id[v->n] = row->dead_id;
  v->n++;
  return 0;
}

static int stop(void *ud, const choreo_retry_row *row) {
  (void)row;
  ++*(int *)ud;
  return CHOREO_ESCRIPT;
}

static void test_retries(void) {
  choreo_store *s = open_memory();
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  choreo_msg m;

  CHECK(retry_due_of(s) == -1);
  make_msg(&buf, "Late", 1, &m);
  CHECK(choreo_store_retry_add(s, &m, 3, 300, "boom", 0) == 0);
  make_msg(&buf, "Early", 2, &m);
  CHECK(choreo_store_retry_add(s, &m, 4, 100, "boom", 0) == 0);
  make_msg(&buf, "Middle", 3, &m);
  CHECK(choreo_store_retry_add(s, &m, 5, 200, NULL, 0) == 0);
  CHECK(retry_due_of(s) == 100);

  seen v = {0};
  CHECK(choreo_store_retry_each_due(s, 99, 10, collect, &v) == 0 && v.n == 0);
  CHECK(choreo_store_retry_each_due(s, 250, 10, collect, &v) == 0 && v.n == 2);
  CHECK(v.n == 2 && v.seq[0] == 2 && v.attempts[0] == 4 && v.seq[1] == 3 && v.attempts[1] == 5);
  v.n = 0;
  CHECK(choreo_store_retry_each_due(s, 1000, 1, collect, &v) == 0 && v.n == 1 && v.seq[0] == 2);
  int calls = 0;
  CHECK(choreo_store_retry_each_due(s, 1000, 10, stop, &calls) == CHOREO_ESCRIPT && calls == 1);

  /* Removing from inside the walk is what dispatch does. */
  v.n = 0;
  CHECK(choreo_store_retry_each_due(s, 250, 10, collect, &v) == 0 && v.n == 2);
  for (int i = 0; i < v.n; i++) CHECK(choreo_store_retry_remove(s, v.id[i]) == 0);
  CHECK(retry_due_of(s) == 300);
  v.n = 0;
  CHECK(choreo_store_retry_each_due(s, 1000, 10, collect, &v) == 0 && v.n == 1 && v.seq[0] == 1);
  CHECK(choreo_store_retry_remove(s, v.id[0]) == 0);
  CHECK(retry_due_of(s) == -1);

  msgpack_sbuffer_destroy(&buf);
  choreo_store_close(s);
}

/* The store remembers head, checkpoints and the next retry instead of asking SQLite after every
 * commit; a rollback must take the remembered values back with the rows. */
static void test_remembered_values_follow_rollbacks(void) {
  choreo_store *s = open_memory();
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  choreo_msg m;
  make_msg(&buf, "Later", 1, &m);
  CHECK(choreo_store_retry_add(s, &m, 3, 500, "boom", 0) == 0);
  CHECK(choreo_store_set_checkpoint(s, "payments", 6) == 0);
  CHECK(append(s, "A") == 1);
  CHECK(retry_due_of(s) == 500);
  uint64_t epoch = choreo_store_epoch(s);

  CHECK(choreo_store_begin(s) == 0);
  CHECK(choreo_store_in_transaction(s));
  CHECK(append(s, "B") == 2);
  CHECK(choreo_store_set_checkpoint(s, "payments", 9) == 0);
  CHECK(choreo_store_retry_add(s, &m, 3, 100, "boom", 0) == 0);
  CHECK(head_of(s) == 2 && checkpoint_of(s, "payments") == 9);
  CHECK(retry_due_of(s) == 100);
  CHECK(choreo_store_epoch(s) == epoch);
  CHECK(choreo_store_rollback(s) == 0);
  CHECK(!choreo_store_in_transaction(s));
  CHECK(choreo_store_epoch(s) != epoch);
  CHECK(head_of(s) == 1);
  CHECK(checkpoint_of(s, "payments") == 6);
  CHECK(retry_due_of(s) == 500);
  msgpack_sbuffer_destroy(&buf);
  choreo_store_close(s);
}

static void test_dead_letters(void) {
  choreo_store *s = open_memory();
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  choreo_msg m;

  dead_list list = {0};
  CHECK(choreo_store_dead_each(s, collect_dead, &list) == 0);
  CHECK(list.n == 0);

  make_msg(&buf, "PaymentRequested", 7, &m);
  CHECK(choreo_store_dead_add(s, &m, 4, "handler.lua:3: boom", "stack traceback: ...", 1000, 0) == 0);
  make_msg(&buf, "Refund", 8, &m);
  CHECK(choreo_store_dead_add(s, &m, 1, "no", NULL, 2000, 0) == 0);
  CHECK(dead_count_of(s) == 2);

  CHECK(choreo_store_dead_each(s, collect_dead, &list) == 0);
  CHECK(list.n == 2);
  dead_copy *d = &list.d[0];
  int64_t first_id = d->id;
  CHECK(strcmp(d->source, "payments") == 0);
  CHECK(d->seq == 7);
  CHECK(strcmp(d->type, "PaymentRequested") == 0);
  CHECK(d->attempts == 4);
  CHECK(strcmp(d->error, "handler.lua:3: boom") == 0);
  CHECK(d->has_traceback);
  CHECK(d->time[0] != '\0');
  CHECK(strcmp(d->msg_type, "PaymentRequested") == 0);
  CHECK(strcmp(d->msg_source, "payments") == 0 && d->msg_seq == 7);
  d = &list.d[1];
  int64_t second_id = d->id;
  CHECK(!d->has_traceback);

  /* A retry inside a transaction that rolls back leaves the dead letter where it was. */
  CHECK(choreo_store_begin(s) == 0);
  CHECK(choreo_store_dead_retry(s, first_id, 5000) == 0);
  CHECK(dead_count_of(s) == 1);
  CHECK(choreo_store_rollback(s) == 0);
  CHECK(dead_count_of(s) == 2);
  CHECK(retry_due_of(s) == -1);

  /* Sent back, the letter stays, marked retrying and no longer counted, and its retry knows
   * where it came from. */
  CHECK(choreo_store_dead_retry(s, first_id, 5000) == 0);
  CHECK(dead_count_of(s) == 1);
  CHECK(retry_due_of(s) == 5000);
  seen v = {0};
  CHECK(choreo_store_retry_each_due(s, 5000, 10, collect, &v) == 0 && v.n == 1);
  CHECK(v.seq[0] == 7 && v.attempts[0] == 0 && v.dead_id[0] == first_id);
  list.n = 0;
  CHECK(choreo_store_dead_each(s, collect_dead, &list) == 0 && list.n == 2);
  CHECK(list.d[0].id == first_id && list.d[0].retrying && list.d[0].revived == 1);
  CHECK(!list.d[1].retrying && list.d[1].revived == 0);
  CHECK(choreo_store_dead_retry(s, first_id, 5000) == CHOREO_EINVAL); /* under way already */

  /* It dies again: the same letter, with the new outcome, waiting again. */
  CHECK(choreo_store_retry_remove(s, v.id[0]) == 0);
  make_msg(&buf, "PaymentRequested", 7, &m);
  CHECK(choreo_store_dead_add(s, &m, 6, "boom again", "tb", 9000, first_id) == 0);
  CHECK(dead_count_of(s) == 2);
  list.n = 0;
  CHECK(choreo_store_dead_each(s, collect_dead, &list) == 0 && list.n == 2);
  CHECK(list.d[0].id == first_id && !list.d[0].retrying && list.d[0].revived == 1);
  CHECK(list.d[0].attempts == 6 && strcmp(list.d[0].error, "boom again") == 0);
  /* Sent back again and handled this time: the letter goes. */
  CHECK(choreo_store_dead_retry(s, first_id, 9000) == 0);
  CHECK(choreo_store_dead_resolved(s, first_id) == 0);
  CHECK(choreo_store_dead_retry(s, first_id, 5000) == CHOREO_ENOENT);
  /* Dropped while being retried, it dies as a new letter. */
  CHECK(choreo_store_dead_retry(s, second_id, 9000) == 0);
  CHECK(choreo_store_dead_drop(s, second_id) == 0);
  CHECK(choreo_store_dead_add(s, &m, 6, "boom", NULL, 9000, second_id) == 0);
  list.n = 0;
  CHECK(choreo_store_dead_each(s, collect_dead, &list) == 0 && list.n == 1);
  CHECK(list.d[0].id != second_id && list.d[0].revived == 0);

  CHECK(choreo_store_dead_retry(s, 999, 5000) == CHOREO_ENOENT);
  CHECK(choreo_store_dead_drop(s, 999) == CHOREO_ENOENT);
  CHECK(choreo_store_dead_drop(s, list.d[0].id) == 0);
  CHECK(dead_count_of(s) == 0);
  /* The failed retries left no savepoint behind: a transaction can start. */
  CHECK(choreo_store_begin(s) == 0);
  CHECK(choreo_store_commit(s) == 0);

  msgpack_sbuffer_destroy(&buf);
  choreo_store_close(s);
}

static void test_dead_retry_failure(void) {
  choreo_store *s = open_memory();
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  choreo_msg m;
  make_msg(&buf, "PaymentRequested", 7, &m);
  CHECK(choreo_store_dead_add(s, &m, 4, "boom", NULL, 1000, 0) == 0);
  /* With its target table gone, the move fails; the reason outlives the unwinding. */
  CHECK(sqlite3_exec(choreo_store_db(s), "DROP TABLE choreo_retries", NULL, NULL, NULL) == 0);
  CHECK(choreo_store_dead_retry(s, 1, 5000) == CHOREO_EIO);
  CHECK(strstr(choreo_store_errmsg(s), "choreo_retries") != NULL);
  CHECK(dead_count_of(s) == 1);
  CHECK(strstr(choreo_store_errmsg(s), "choreo_retries") == NULL);
  CHECK(choreo_store_begin(s) == 0);
  CHECK(choreo_store_commit(s) == 0);
  msgpack_sbuffer_destroy(&buf);
  choreo_store_close(s);
}

static int trim(choreo_store *s, choreo_trim t, int max_rows) {
  int deleted = -1;
  CHECK(choreo_store_begin(s) == 0);
  CHECK(choreo_store_trim(s, &t, max_rows, &deleted) == 0);
  CHECK(choreo_store_commit(s) == 0);
  return deleted;
}

/* Retention deletes a prefix of the log: rows both served (applied by every subscriber) and
 * older than the retention, or older than the longest retention whoever wants them; it stops
 * at the first row that must stay, and goes in batches. */
static void test_trim(void) {
  choreo_store *s = open_memory();
  for (int i = 1; i <= 10; i++) append_at(s, "T", i * 100); /* seq i appended at i * 100 ms */
  /* Served up to 6, retention reaching back to before 450 ms: seqs 1-4. */
  CHECK(trim(s, (choreo_trim){.served_upto = 6, .retain_before_ms = 450, .hard_upto = 9},
             100) == 4);
  int64_t oldest = -1;
  CHECK(choreo_store_oldest(s, &oldest) == 0 && oldest == 5);
  CHECK(frame_matches_log(s, 0)); /* the deleted rows are not served from memory */
  /* Old enough, but a subscriber has not applied 5 yet: nothing. */
  CHECK(trim(s, (choreo_trim){.served_upto = 4, .retain_before_ms = 10000, .hard_upto = 9},
             100) == 0);
  /* Past the longest retention (before 750 ms) it goes all the same: 5-7. */
  CHECK(trim(s, (choreo_trim){.served_upto = 4, .retain_before_ms = 10000, .hard_upto = 9,
                              .max_before_ms = 750},
             100) == 3);
  /* In batches, and never past hard_upto (the caller keeps the head row). */
  CHECK(trim(s, (choreo_trim){.served_upto = 9, .retain_before_ms = 10000, .hard_upto = 9}, 1) ==
        1);
  CHECK(trim(s, (choreo_trim){.served_upto = 9, .retain_before_ms = 10000, .hard_upto = 9}, 5) ==
        1);
  CHECK(choreo_store_oldest(s, &oldest) == 0 && oldest == 10);
  CHECK(head_of(s) == 10);
  /* Subscribers: the smallest progress of those seen since a time. */
  int64_t applied = -1;
  bool any = true;
  CHECK(choreo_store_subscribers_min(s, 0, &applied, &any) == 0 && !any);
  CHECK(choreo_store_subscriber_seen(s, "a", 7, 1000) == 0);
  CHECK(choreo_store_subscriber_seen(s, "b", 3, 2000) == 0);
  CHECK(choreo_store_subscriber_seen(s, "a", 8, 3000) == 0);
  CHECK(choreo_store_subscribers_min(s, 0, &applied, &any) == 0 && any && applied == 3);
  CHECK(choreo_store_subscribers_min(s, 2500, &applied, &any) == 0 && any && applied == 8);
  int64_t bytes = 0;
  CHECK(choreo_store_size(s, &bytes) == 0 && bytes > 0);
  choreo_store_close(s);
}

/* Request keys live as long as the row they appended; dead letters until retain_max. */
static void test_trim_takes_keys_and_old_dead_letters(void) {
  choreo_store *s = open_memory();
  int64_t seq = -1;
  bool found = false;
  for (int i = 1; i <= 4; i++) append_at(s, "T", i * 100);
  CHECK(choreo_store_request_record(s, "k2", 2) == 0);
  CHECK(choreo_store_request_record(s, "k4", 4) == 0);
  CHECK(trim(s, (choreo_trim){.served_upto = 3, .retain_before_ms = 10000, .hard_upto = 3},
             100) == 3);
  CHECK(choreo_store_request_find(s, "k2", &seq, &found) == 0 && !found);
  CHECK(choreo_store_request_find(s, "k4", &seq, &found) == 0 && found && seq == 4);

  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  choreo_msg m;
  make_msg(&buf, "Old", 1, &m);
  CHECK(choreo_store_dead_add(s, &m, 3, "boom", NULL, 1000, 0) == 0);
  CHECK(choreo_store_dead_add(s, &m, 3, "boom", NULL, 1000, 0) == 0);
  make_msg(&buf, "New", 2, &m);
  CHECK(choreo_store_dead_add(s, &m, 3, "boom", NULL, 5000, 0) == 0);
  dead_list list = {0};
  CHECK(choreo_store_dead_each(s, collect_dead, &list) == 0 && list.n == 3);
  CHECK(choreo_store_dead_retry(s, list.d[1].id, 6000) == 0); /* being retried: kept */
  int deleted = -1;
  CHECK(choreo_store_dead_expire(s, 2000, 100, &deleted) == 0 && deleted == 1);
  CHECK(choreo_store_dead_expire(s, 2000, 100, &deleted) == 0 && deleted == 0);
  list.n = 0;
  CHECK(choreo_store_dead_each(s, collect_dead, &list) == 0 && list.n == 2);
  CHECK(strcmp(list.d[0].type, "Old") == 0 && list.d[0].retrying);
  CHECK(strcmp(list.d[1].type, "New") == 0);
  msgpack_sbuffer_destroy(&buf);
  choreo_store_close(s);
}

/* A database made before the columns that retention and dead-letter history need: opening it
 * adds them, and its dead letters count their age from then, so none goes at once. */
static void test_old_database_is_migrated(void) {
  temp_db t;
  temp_db_make(&t);
  const char *path = t.path;
  sqlite3 *db = NULL;
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  CHECK(sqlite3_exec(db,
                     "CREATE TABLE choreo_log(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, "
                     "kind TEXT NOT NULL, to_host TEXT, msg BLOB NOT NULL);"
                     "CREATE TABLE choreo_retries(id INTEGER PRIMARY KEY, source TEXT, seq INTEGER,"
                     " msg BLOB NOT NULL, attempts INTEGER, due_ms INTEGER, error TEXT);"
                     "CREATE TABLE choreo_dead_letters(id INTEGER PRIMARY KEY, source TEXT, "
                     "seq INTEGER, type TEXT, msg BLOB NOT NULL, attempts INTEGER, error TEXT, "
                     "traceback TEXT, time TEXT);"
                     "INSERT INTO choreo_dead_letters(source, seq, type, msg, attempts, error) "
                     "VALUES ('a', 1, 'T', x'80', 3, 'boom');",
                     NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_close(db);
  char err[256] = "";
  choreo_store *s = NULL;
  CHECK(choreo_store_open(&s, path, 0, err, sizeof err) == 0);
  int deleted = -1;
  CHECK(choreo_store_dead_expire(s, 1000, 100, &deleted) == 0 && deleted == 0);
  CHECK(dead_count_of(s) == 1);
  CHECK(choreo_store_dead_retry(s, 1, 5000) == 0);
  CHECK(append(s, "T") == 1);
  /* The WAL is measured, and kept from growing for good. */
  CHECK(choreo_store_wal_size(s) > 0);
  sqlite3_stmt *st = NULL;
  CHECK(sqlite3_prepare_v2(choreo_store_db(s), "PRAGMA journal_size_limit", -1, &st, NULL) == 0);
  CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) == 64 << 20);
  sqlite3_finalize(st);
  choreo_store_close(s);
  CHECK(choreo_store_open(&s, path, 0, err, sizeof err) == 0); /* a second open adds nothing */
  choreo_store_close(s);
  remove_tree(t.dir);
}

static int page_size_of(const char *path) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  CHECK(sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK);
  CHECK(sqlite3_step(st) == SQLITE_ROW);
  int size = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return size;
}

/* A new database gets the page size asked for (16 KiB unless told), in the file itself; an
 * existing one keeps its own; a size SQLite would ignore is refused, naming the file. */
static void test_page_size(void) {
  temp_db t;
  temp_db_make(&t);
  char err[256] = "";
  choreo_store *s = NULL;
  CHECK(choreo_store_open(&s, t.path, 0, err, sizeof err) == 0);
  CHECK(choreo_store_page_size(s) == CHOREO_DEFAULT_PAGE_SIZE && CHOREO_DEFAULT_PAGE_SIZE == 16384);
  CHECK(append(s, "T") == 1);
  choreo_store_close(s);
  CHECK(page_size_of(t.path) == 16384);
  CHECK(choreo_store_open(&s, t.path, 4096, err, sizeof err) == 0);
  CHECK(choreo_store_page_size(s) == 16384);
  CHECK(append(s, "T") == 2);
  choreo_store_close(s);
  remove_tree(t.dir);

  temp_db_make(&t);
  CHECK(choreo_store_open(&s, t.path, 4096, err, sizeof err) == 0);
  CHECK(choreo_store_page_size(s) == 4096);
  choreo_store_close(s);
  CHECK(page_size_of(t.path) == 4096);
  remove_tree(t.dir);

  temp_db_make(&t);
  const int wrong[] = {256, 1000, 131072, -4096};
  for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
    s = (choreo_store *)&err;
    CHECK(choreo_store_open(&s, t.path, wrong[i], err, sizeof err) == CHOREO_EINVAL);
    CHECK(s == NULL);
    CHECK(strstr(err, t.path) != NULL && strstr(err, "power of two") != NULL);
  }
  struct stat st;
  CHECK(stat(t.path, &st) != 0); /* nothing was created */
  remove_tree(t.dir);
}

static void test_open_failure(void) {
  char err[256] = "";
  choreo_store *s = (choreo_store *)&err; /* must be reset to NULL */
  CHECK(choreo_store_open(&s, "/nonexistent-choreo-dir/sub/host.db", 0, err, sizeof err) ==
        CHOREO_EIO);
  CHECK(s == NULL);
  CHECK(strstr(err, "/nonexistent-choreo-dir/sub/host.db") != NULL);
  CHECK(strstr(err, "unable to open") != NULL);
}

int main(void) {
  RUN(test_append_assigns_seq);
  RUN(test_page_size);
  RUN(test_rollback_reuses_seq);
  RUN(test_savepoint_rolls_back_one_message);
  RUN(test_foreign_savepoint_rollback_keeps_seqs_contiguous);
  RUN(test_appends_wait_for_the_next_statement);
  RUN(test_pending_rows_check_their_seqs);
  RUN(test_checkpoints_survive_reopen);
  RUN(test_wal_is_checkpointed_while_open);
  RUN(test_wal_starts_over_under_unbroken_writes);
  RUN(test_begin_waits_for_the_write_lock);
  RUN(test_read_frame);
  RUN(test_read_frame_after_rollbacks);
  RUN(test_appended_run);
  RUN(test_retries);
  RUN(test_remembered_values_follow_rollbacks);
  RUN(test_dead_letters);
  RUN(test_dead_retry_failure);
  RUN(test_trim);
  RUN(test_trim_takes_keys_and_old_dead_letters);
  RUN(test_old_database_is_migrated);
  RUN(test_open_failure);
  return CHECK_DONE();
}
