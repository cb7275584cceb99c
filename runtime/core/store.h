/* The host's SQLite database (WAL): its log (the outbox), per-source checkpoints (the inbox),
 * delayed retries and dead letters, beside the tables the scripts create through ctx.db.
 * One loop thread owns the connection; statements are prepared once. */
#ifndef CHOREO_STORE_H
#define CHOREO_STORE_H

#include <msgpack.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "codec.h"

typedef struct choreo_store choreo_store;

/* 16 KiB rather than SQLite's 4 KiB: each page a transaction changes is one WAL frame, and
 * batches of messages fill many pages; when each frame was two write() calls, four times fewer
 * frames took a third of the hosts' system time (README, Performance). A commit's frames are
 * now one call (walwrites.c), and 4 KiB pages do about as well, except in dispatch (a twentieth
 * less). A transaction of one small row writes a whole page all the same, so a host seeing few
 * messages writes more bytes with larger pages. */
#define CHOREO_DEFAULT_PAGE_SIZE 16384

/* Opens (creating if needed) the database at path (":memory:" allowed) and its schema.
 * page_size: the page size of a database created now, a power of two from 512 to 65,536; 0:
 * CHOREO_DEFAULT_PAGE_SIZE. An existing database keeps the one it was created with. Returns 0,
 * CHOREO_EINVAL for a page size out of range, or CHOREO_EIO, with the reason in err. */
int choreo_store_open(choreo_store **out, const char *path, int page_size, char *err,
                      size_t errlen);
/* The database's page size in bytes. */
int choreo_store_page_size(choreo_store *s);
void choreo_store_close(choreo_store *s);
sqlite3 *choreo_store_db(choreo_store *s);

/* Transactions: one per batch (BEGIN IMMEDIATE) and a savepoint per message. */
int choreo_store_begin(choreo_store *s);
int choreo_store_commit(choreo_store *s);
int choreo_store_rollback(choreo_store *s);
int choreo_store_savepoint(choreo_store *s);
int choreo_store_release(choreo_store *s);
int choreo_store_rollback_savepoint(choreo_store *s); /* rolls back and releases */
/* False once SQLite has ended the transaction by itself (it rolls back on SQLITE_FULL, IOERR
 * or NOMEM) or a script ended it: whatever runs next would commit on its own. */
bool choreo_store_in_transaction(choreo_store *s);
/* While on (calls nest), statements prepared on the connection may not begin, commit or roll
 * back a transaction, nor use savepoints named choreo_*: the handlers' SQL runs so. */
void choreo_store_guard(choreo_store *s, bool on);
/* Puts another connection under the same guard (a projection build's: its handlers run in a
 * transaction of choreo's there too). */
void choreo_store_guard_connection(choreo_store *s, sqlite3 *other);
/* While on (calls nest), what is prepared on the connection may only read: the authorizer
 * refuses writes, schema changes, pragmas, ATTACH and transaction control. */
void choreo_store_guard_reads(choreo_store *s, bool on);
/* Changes whenever a rollback or a failed statement may have undone writes: a value read
 * before, under another epoch, may be stale. */
uint64_t choreo_store_epoch(choreo_store *s);
/* Whether the scripts ever prepared savepoints of their own: a ROLLBACK TO of theirs may undo
 * writes without changing the epoch. */
bool choreo_store_foreign_savepoints(const choreo_store *s);

/* The last seq applied from source (0 if none), and its update. */
int choreo_store_checkpoint(choreo_store *s, const char *source, int64_t *seq);
int choreo_store_set_checkpoint(choreo_store *s, const char *source, int64_t seq);
/* Calls fn with each seq of source in from..to, ascending, that waits for a retry or is a dead
 * letter: past the checkpoint, yet not applied. Stops as checkpoints_each does. */
int choreo_store_pending_seqs(choreo_store *s, const char *source, size_t len, int64_t from,
                              int64_t to, int (*fn)(void *ud, int64_t seq), void *ud);
/* Calls fn with each source applied from (seq > 0), by name, until fn returns non-zero, which
 * is returned. */
int choreo_store_checkpoints_each(choreo_store *s, int (*fn)(void *ud, const char *source,
                                                             int64_t seq), void *ud);

/* Appends a message to the log: seq = head + 1, source = the store's owner name given in f.
 * On success *seq_out holds the new seq; CHOREO_ETOOBIG, with nothing written, when the encoded
 * message would exceed the store's message limit. Inside a transaction the row may wait to be
 * written with the next ones: every other call into the store writes it first (a rollback
 * drops it), and so must choreo_store_write_pending before someone else's SQL on the
 * connection could read the log or take a savepoint. */
int choreo_store_append(choreo_store *s, const choreo_msg_fields *f, int64_t at_ms,
                        int64_t *seq_out);
/* Writes the appends still waiting; 0 or CHOREO_EIO (then they are dropped, and the
 * transaction must roll back). */
int choreo_store_write_pending(choreo_store *s);
/* The encoding of the message appended last: valid until the next call into the store. */
const msgpack_sbuffer *choreo_store_appended(const choreo_store *s);
/* The largest encoded message append accepts (CHOREO_DEFAULT_MAX_MESSAGE until set). */
void choreo_store_set_max_message(choreo_store *s, size_t bytes);

/* The highest seq in the log (0 when empty). */
int choreo_store_head(choreo_store *s, int64_t *head);

/* Writes a frame of log rows with seq > after into out (cleared first): at most max_count
 * rows and roughly max_bytes. *count gets the number of rows (0 is a valid, empty frame). */
int choreo_store_read_frame(choreo_store *s, const char *source, int64_t after, int max_count,
                            size_t max_bytes, msgpack_sbuffer *out, int *count);

/* Delayed retries: a message that failed its immediate attempts waits here until due_ms
 * (milliseconds since the epoch). dead_id (0: none) is the dead letter it came back from. */
int choreo_store_retry_add(choreo_store *s, const choreo_msg *m, int attempts, int64_t due_ms,
                           const char *error, int64_t dead_id);
/* The earliest due time, or -1 if there are no retries. */
int choreo_store_retry_next_due(choreo_store *s, int64_t *due_ms);
/* Calls fn for each retry due at now_ms (at most max), in due order. A negative result of fn
 * stops the walk and is returned. */
typedef struct choreo_retry_row {
  int64_t id;
  const char *raw; /* the message */
  size_t len;
  int attempts;    /* failed so far */
  int64_t dead_id; /* the dead letter it came back from, or 0 */
} choreo_retry_row;
typedef int (*choreo_retry_fn)(void *ud, const choreo_retry_row *row);
int choreo_store_retry_each_due(choreo_store *s, int64_t now_ms, int max, choreo_retry_fn fn,
                                void *ud);
int choreo_store_retry_remove(choreo_store *s, int64_t id);
/* How many messages wait for a delayed retry. */
int choreo_store_retry_count(choreo_store *s, int64_t *count);

/* Dead letters. A message sent back by hand (dead_id > 0) that dies again takes its letter's
 * row and id back. */
int choreo_store_dead_add(choreo_store *s, const choreo_msg *m, int attempts, const char *error,
                          const char *traceback, int64_t now_ms, int64_t dead_id);
/* A letter sent back by hand was handled at last: it goes. */
int choreo_store_dead_resolved(choreo_store *s, int64_t dead_id);
/* Deletes up to max_rows letters that died before before_ms (not those being retried). */
int choreo_store_dead_expire(choreo_store *s, int64_t before_ms, int max_rows, int *deleted);
/* A dead letter as stored; strings are NUL-terminated, valid during the callback only, and
 * NULL where the column is (a traceback, when none was stored). */
typedef struct choreo_dead_letter {
  int64_t id, seq;
  const char *source, *type, *error, *traceback, *time;
  int attempts;
  bool retrying; /* sent back by hand (choreo dead retry), not handled yet */
  int revived;   /* times it was sent back */
  const char *raw; /* the message as it was stored in its sender's log */
  size_t raw_len;
} choreo_dead_letter;
/* Calls fn for each dead letter in id order; a negative result of fn stops and is returned. */
typedef int (*choreo_dead_fn)(void *ud, const choreo_dead_letter *d);
int choreo_store_dead_each(choreo_store *s, choreo_dead_fn fn, void *ud);
/* Sends a dead letter back to the retries, due now; the letter stays, marked retrying.
 * CHOREO_ENOENT if there is no such id, CHOREO_EINVAL if it is being retried already. */
int choreo_store_dead_retry(choreo_store *s, int64_t id, int64_t now_ms);
int choreo_store_dead_drop(choreo_store *s, int64_t id);
/* Letters waiting for someone (not those being retried). */
int choreo_store_dead_count(choreo_store *s, int64_t *count);

/* Keys of appends asked for from outside: the first seq appended under key, if any (inside the
 * transaction that would append again), and its record, in the transaction that appends. */
int choreo_store_request_find(choreo_store *s, const char *key, int64_t *seq, bool *found);
int choreo_store_request_record(choreo_store *s, const char *key, int64_t seq);

/* Retention. The hosts that fetch from our log say, with each FETCH, what they have applied;
 * the smallest of those seen since seen_since_ms (*any false when none) bounds what may go. */
int choreo_store_subscriber_seen(choreo_store *s, const char *name, int64_t applied,
                                 int64_t now_ms);
int choreo_store_subscribers_min(choreo_store *s, int64_t seen_since_ms, int64_t *applied,
                                 bool *any);
/* Deletes the oldest log rows (at most max_rows, in the caller's transaction) while each is
 * either served (seq <= served_upto and appended before retain_before_ms) or expired
 * (seq <= hard_upto and appended before max_before_ms); the first row that is neither stays,
 * with everything after it. *deleted gets how many went. */
typedef struct choreo_trim {
  int64_t served_upto, retain_before_ms;
  int64_t hard_upto, max_before_ms;
} choreo_trim;
int choreo_store_trim(choreo_store *s, const choreo_trim *t, int max_rows, int *deleted);
/* The oldest seq kept (0 when the log is empty) and the database's size in bytes. */
int choreo_store_oldest(choreo_store *s, int64_t *seq);
int choreo_store_size(choreo_store *s, int64_t *bytes);
/* The size of the database's WAL file in bytes (0 in memory). */
int64_t choreo_store_wal_size(choreo_store *s);

/* The last SQLite error message of the connection. */
const char *choreo_store_errmsg(choreo_store *s);

#endif
