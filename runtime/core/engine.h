/* The engine: one service's handlers, database and dispatch, without any transport. The host
 * feeds it frames from the bus; choreo.testing feeds it frames from specs. Dispatch here is the
 * only way a message reaches a handler: each frame is applied in one transaction with a
 * savepoint per message, together with the source's checkpoint and the messages emitted.
 *
 * Everything the layers above need of the database goes through these functions: the store,
 * timeouts and sagas tables are the engine's own. Values come back through out-parameters;
 * every function returns 0 or a negative CHOREO_E* code. */
#ifndef CHOREO_ENGINE_H
#define CHOREO_ENGINE_H

#include <msgpack.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "choreo.h"
#include "codec.h"
#include "journal.h"
#include "projections.h"
#include "sagas.h"
#include "workflows.h"
#include "store.h"
#include "stats.h"
#include "streams.h"
#include "timeouts.h"

typedef struct choreo_engine choreo_engine;

/* The scripting language the handlers are written in, seen from the engine: a generation of
 * scripts is loaded from a directory, asked whether it handles a type, and given messages.
 * bindings/ implements it for Lua; the engine never sees a Lua header. */
/* How a failing message is retried: `attempts` times at once, in its own batch, then once after
 * each delay of backoff_ms; past the last, it becomes a dead letter. Scripts may declare one
 * per handler (choreo.on's options); otherwise choreo_default_retry_policy applies. */
#define CHOREO_BACKOFF_MAX 16
#define CHOREO_ATTEMPTS_MAX 100
typedef struct choreo_retry_policy {
  int attempts;
  int nbackoff;
  int64_t backoff_ms[CHOREO_BACKOFF_MAX];
} choreo_retry_policy;
extern const choreo_retry_policy choreo_default_retry_policy;

typedef struct choreo_scripts_ops {
  /* Loads every script of dir into a new generation; on failure "file:line: message" in err. */
  int (*load)(void **out, choreo_engine *e, const char *dir, uint64_t instruction_limit,
              size_t memory_limit, char *err, size_t errlen);
  void (*free)(void *scripts);
  bool (*handles)(void *scripts, choreo_str type);
  /* Runs the handlers for m; on failure err gets the message and *traceback (malloc'd, may
   * stay NULL) the traceback. */
  int (*deliver)(void *scripts, const choreo_msg *m, char *err, size_t errlen, char **traceback);
  /* Where the handlers the last deliver ran were registered ("orders.lua:12, workflow"), for
   * the journal; valid until the next deliver. NULL: not known. */
  const char *(*handled_by)(void *scripts);
  /* Bytes the generation's Lua state holds. */
  size_t (*memory)(void *scripts);
  /* The retry policy the handlers of type declared, if any: true and *out filled. Asked only
   * once a message has failed. */
  bool (*policy)(void *scripts, choreo_str type, choreo_retry_policy *out);
  /* Runs the query `name` on args (msgpack, NULL/0 for nil) and appends its result to out
   * (msgpack); CHOREO_ENOENT when no script declared it, CHOREO_ESCRIPT (or CHOREO_ETOOBIG
   * past the memory limit) with the message in err when it failed. */
  int (*query)(void *scripts, const char *name, const char *args, size_t len,
               msgpack_sbuffer *out, char *err, size_t errlen);
  /* The projections the generation declares (choreo.projection), each passed to fn. */
  int (*projections)(void *scripts, void (*fn)(void *ud, const choreo_projection_decl *d),
                     void *ud);
  /* Runs projection `name`'s handler for m's type, if it has one, on a db object over build
   * (a build's connection); on failure the message in err. */
  int (*project)(void *scripts, const char *name, const choreo_msg *m, sqlite3 *build, char *err,
                 size_t errlen);
  /* Of an older generation kept while a projection is rebuilt: runs, for m, its handlers of the
   * projections whose live tables are of the version it declares and not the one declared
   * now (choreo_engine_projection_stale), as deliver does. */
  int (*deliver_stale)(void *scripts, const choreo_msg *m, char *err, size_t errlen,
                       char **traceback);
  /* A build's connection is about to close: let go of every statement prepared on it. */
  void (*release_build)(void *scripts, sqlite3 *build);
  /* Whether m belongs to a workflow instance of the generation's (choreo.workflow): a reply,
   * event or timeout of its conversation, which deliver then hands to the instance as well as
   * to the handlers of its type. NULL: none does. */
  bool (*for_workflow)(void *scripts, const choreo_msg *m);
  /* Before a reload swaps the generation in: whether its code keeps every running workflow
   * instance to the steps its history recorded (replayed without acting); if not, why in err
   * and the reload is refused. NULL: nothing to check. */
  int (*check_workflows)(void *scripts, char *err, size_t errlen);
} choreo_scripts_ops;

typedef struct choreo_engine_config {
  const char *name;            /* this service; the source of what it emits */
  const char *dir;             /* scripts directory */
  const char *data;            /* database path or ":memory:" */
  const choreo_scripts_ops *scripts; /* NULL: C handlers only */
  uint64_t instruction_limit;  /* per handler call; 0 = CHOREO_DEFAULT_INSTRUCTIONS */
  size_t memory_limit;         /* per Lua state; 0 = CHOREO_DEFAULT_MEMORY */
  size_t max_message;          /* largest encoded message appended; 0 = CHOREO_DEFAULT_MAX_MESSAGE,
                                  at most CHOREO_MAX_MESSAGE_LIMIT */
  int page_size;               /* of a database created now; 0 = CHOREO_DEFAULT_PAGE_SIZE */
  int workflow_cache;          /* suspended workflow instances kept in memory; 0 = 10,000 */
  int workflow_history_max;    /* steps of one workflow history; 0 = 10,000 */
  bool no_journal;             /* keep no journal of the messages handled (choreo_journal) */
  /* The caller fetches other hosts' logs for projections' builds (choreo_engine_history_*):
   * a build first gets what this host applied from each of them. */
  bool fetch_history;
  const char *otlp_json;       /* write spans here (a file, or a directory); NULL: none */
  int64_t (*now_ms)(void *ud); /* clock for retries and timeouts; NULL = wall clock */
  void *clock_ud;
} choreo_engine_config;

#define CHOREO_DEFAULT_INSTRUCTIONS 100000000u
#define CHOREO_DEFAULT_MEMORY (256u << 20)

/* What applying a frame did. */
typedef struct choreo_apply_result {
  int applied;   /* messages whose handlers ran and committed */
  int skipped;   /* duplicates, or not for this host, or no handler */
  int failed;    /* messages that failed every immediate attempt (now retried later or dead) */
  bool gap;      /* the frame starts after checkpoint + 1: nothing applied, FETCH the gap */
  char source[128]; /* the frame's header, for the caller's bookkeeping */
  int64_t first, head;
  uint32_t count;
  char last_error[512];
} choreo_apply_result;

/* Opens the database and loads the scripts. A script that fails to load fails the open, with
 * "file:line: message" in err. */
int choreo_engine_open(choreo_engine **out, const choreo_engine_config *cfg, char *err,
                       size_t errlen);
void choreo_engine_close(choreo_engine *e);

const char *choreo_engine_name(choreo_engine *e);
size_t choreo_engine_max_message(choreo_engine *e);
int64_t choreo_engine_now_ms(choreo_engine *e);
uint64_t choreo_engine_bad_frames(choreo_engine *e);
/* Messages whose handlers ran and committed, since the engine opened. */
uint64_t choreo_engine_handled(choreo_engine *e);
/* Messages for this host that no handler took, per type, since the engine opened: *n types in
 * *list (valid until the next dispatch); *other counts those of further types. */
typedef struct choreo_unhandled {
  char type[64];
  uint64_t count;
} choreo_unhandled;
void choreo_engine_unhandled(choreo_engine *e, const choreo_unhandled **list, int *n,
                             uint64_t *other);

/* Logs what an apply did when it failed or dead-lettered something; `from` names the input. */
void choreo_engine_report(choreo_engine *e, const char *from, int rc, const choreo_apply_result *r);

/* The budget of a handler call (instruction_limit), spent alike by Lua instructions (the
 * bindings' count hook) and SQLite VM steps (a progress handler on the connection), so that
 * neither a Lua loop nor a runaway query can hold the loop. start gives a fresh budget and
 * turns metering on (calls nest); spend takes n and says whether the call may go on: false
 * once the budget is gone or the engine was interrupted. */
void choreo_engine_meter_start(choreo_engine *e);
void choreo_engine_meter_stop(choreo_engine *e);
bool choreo_engine_spend(choreo_engine *e, int64_t n);
uint64_t choreo_engine_instruction_limit(choreo_engine *e);
/* Ends every handler call as soon as it can, for good: what is under way rolls back and
 * dispatch answers CHOREO_ESTOPPED. Any thread, and a signal handler, may call it. */
void choreo_engine_interrupt(choreo_engine *e);
bool choreo_engine_interrupted(choreo_engine *e);

/* Registers a C handler (see choreo_host_on in choreo.h). */
int choreo_engine_on(choreo_engine *e, const char *pattern, choreo_handler_fn fn, void *ud);

/* Builds a fresh generation of scripts and swaps it in if every script loads; otherwise keeps
 * the running one, remembers the error and returns CHOREO_ESCRIPT. */
int choreo_engine_reload(choreo_engine *e, char *err, size_t errlen);
unsigned choreo_engine_generation(choreo_engine *e);
const char *choreo_engine_reload_error(choreo_engine *e); /* "" when the last reload succeeded */

/* ---- dispatch ---- */

/* Whether our own messages not applied yet, at most `most` of them, are all ones our own
 * dispatch passes over (not for us, or events no handler loaded now takes) without reading
 * them: that pass can wait. */
bool choreo_engine_own_passable_pending(choreo_engine *e, int most);
/* Applies one frame from a peer in one transaction. Returns 0, CHOREO_EINVAL for a malformed
 * frame or one claiming to come from this engine (nothing applied, counted), or CHOREO_EIO. */
int choreo_engine_apply_frame(choreo_engine *e, const char *buf, size_t len,
                              choreo_apply_result *res);
/* Applies up to max messages of our own log that our handlers have not seen yet.
 * *pending is set when more remain. */
int choreo_engine_apply_own(choreo_engine *e, int max, bool *pending, choreo_apply_result *res);
/* The same with a frame of our own log already in hand (the host's last published one), which
 * spares reading those rows again. A frame that is not next in line changes nothing. */
int choreo_engine_apply_own_frame(choreo_engine *e, const char *buf, size_t len, bool *pending,
                                  choreo_apply_result *res);
/* Whether our own handlers have rows of our log still to see. */
int choreo_engine_own_pending(choreo_engine *e, bool *pending);

/* Runs the delayed retries that are due. */
int choreo_engine_run_retries(choreo_engine *e, choreo_apply_result *res);
/* The earliest delayed retry's due time in ms since the epoch, or -1. */
int choreo_engine_next_retry(choreo_engine *e, int64_t *due_ms);

/* Moves the timeouts due now into the log (kind "timeout", to this host), in one transaction;
 * the host's own dispatch then delivers them. */
int choreo_engine_fire_timeouts(choreo_engine *e);
/* The earliest pending timeout in ms since the epoch, or -1. */
int choreo_engine_next_timeout(choreo_engine *e, int64_t *due_ms);
int choreo_engine_pending_timeouts(choreo_engine *e, int64_t *count);

/* ---- the log ---- */

/* What a message may carry beyond its type and data: a subject, a correlation id (handlers
 * only; by default the one of the message being handled), and the stream version the sender
 * saw (a command to an aggregate; see codec.h). */
typedef struct choreo_emit_opts {
  const char *subject;
  const char *correlationid;
  const char *traceparent; /* a valid W3C traceparent (choreo_traceparent_parse), or NULL */
  bool has_expectedversion;
  int64_t expectedversion;
} choreo_emit_opts;

/* Appends a message from outside any handler (choreo publish/send), in its own transaction.
 * data is msgpack (NULL for nil). */
int choreo_engine_emit(choreo_engine *e, const char *kind, const char *to, const char *type,
                       const char *data, size_t data_len, int64_t *seq_out);
/* The same for n messages of one type, committed together, each with opts (NULL: none);
 * *first_seq is the first one's. With a key (NULL: none), the append happens once: a later
 * call with the same key appends nothing and answers the first one's seq, with *repeated set. */
int choreo_engine_emit_batch(choreo_engine *e, const char *kind, const char *to, const char *type,
                             const choreo_emit_opts *opts, const char *const *data,
                             const size_t *len, int n, const char *key, int64_t *first_seq,
                             bool *repeated);
/* The last seq of our log, and the last seq applied from a source (ours included). */
int choreo_engine_head(choreo_engine *e, int64_t *head);
int choreo_engine_checkpoint(choreo_engine *e, const char *source, int64_t *seq);
/* A frame of our log after `after` (at most max_rows rows, about max_bytes) into out;
 * *rows gets the number of rows. */
int choreo_engine_read_log(choreo_engine *e, int64_t after, int max_rows, size_t max_bytes,
                           msgpack_sbuffer *out, int *rows);
/* A page of our log for another host (FETCH, history requests), and of our own history for a
 * build here: at most so many rows, and about so many bytes. */
#define CHOREO_FETCH_ROWS 2000
#define CHOREO_FETCH_BYTES (4u << 20)
/* The answer to another host's history request (choreo_history_decode): our log after `after`
 * as read_log gives it, or, when retention deleted the log past `after`, a sparse frame of the
 * stream events from there up to the log's oldest row (choreo_frame_open_sparse). */
int choreo_engine_read_history(choreo_engine *e, int64_t after, int max_rows, size_t max_bytes,
                               msgpack_sbuffer *out, int *rows);

/* ---- the journal (journal.h) ---- */

/* Bytes the scripts' Lua states hold (the current generation's, and one kept serving). */
size_t choreo_engine_lua_memory(choreo_engine *e);
/* The counters for metrics (stats.h), valid while the engine is open. */
const choreo_stats *choreo_engine_stats(choreo_engine *e);
/* Whether the engine keeps a journal (not with no_journal). */
bool choreo_engine_journaling(choreo_engine *e);
int choreo_engine_journal_each(choreo_engine *e, const char *correlation, int max,
                               choreo_journal_fn fn, void *ud);
/* The journal's entries of the last window_ms, newest first, at most max (then *more). */
int choreo_engine_journal_recent(choreo_engine *e, int64_t window_ms, int max,
                                 choreo_journal_fn fn, void *ud, bool *more);
/* The conversation (correlation id) of the message `id` if it is one of our log's rows
 * ("<name>/<seq>") still retained, malloc'd into *out; NULL otherwise. A seek, not a scan of
 * the journal. */
int choreo_engine_conversation_of(choreo_engine *e, const char *id, char **out);
/* The pending timeouts (ctx:timeout) of a conversation, at most max, earliest first. */
int choreo_engine_timeouts_of(choreo_engine *e, const char *correlation, int max,
                              choreo_timeout_fn fn, void *ud);
/* Calls fn for each retained row of our log with a seq from first to last, in order; a
 * non-zero result of fn stops the walk and is returned. */
typedef int (*choreo_log_msg_fn)(void *ud, const choreo_msg *m);
int choreo_engine_log_each(choreo_engine *e, int64_t first, int64_t last, choreo_log_msg_fn fn,
                           void *ud);

/* ---- retention ---- */

/* A host that fetches from our log said it has applied everything up to `applied`. */
int choreo_engine_subscriber_seen(choreo_engine *e, const char *name, int64_t applied);
/* Deletes, in one transaction, up to max_rows of the oldest log rows that every host known to
 * fetch from us (seen within retain_max_ms) has applied and that are older than retain_ms, and
 * those older than retain_max_ms whoever still wants them. Never a row our own handlers have
 * not seen, nor the last one (it holds the head). The keys of requests that appended deleted
 * rows go with them, and so do dead letters older than retain_max_ms and workflow instances
 * that ended before then (with their histories), within the same max_rows.
 * *deleted gets how many rows went. */
int choreo_engine_trim(choreo_engine *e, int64_t retain_ms, int64_t retain_max_ms, int max_rows,
                       int *deleted);
/* The oldest seq the log still holds (0 when empty), the database's size in bytes and its
 * WAL file's. */
int choreo_engine_log_extent(choreo_engine *e, int64_t *oldest, int64_t *bytes,
                             int64_t *wal_bytes);
/* A source's rows up to `upto` are gone from its log (its retention ran before we fetched
 * them): move our checkpoint past them, in a transaction of its own, and log the range. *lost
 * gets how many were skipped (0 when the checkpoint was already there). */
int choreo_engine_skip_gone(choreo_engine *e, const char *source, int64_t upto, int64_t *lost);

/* ---- dead letters and sagas, for the control socket and specs ---- */

int choreo_engine_dead_each(choreo_engine *e, choreo_dead_fn fn, void *ud);
/* Sends a dead letter back to the retries, due now, to be tried by the policy's schedule from
 * the start; it keeps its id (and shows as retrying) until it is handled or dies again.
 * CHOREO_ENOENT if there is no such id, CHOREO_EINVAL if it is being retried already. */
int choreo_engine_dead_retry(choreo_engine *e, int64_t id);
int choreo_engine_dead_drop(choreo_engine *e, int64_t id);
int choreo_engine_dead_count(choreo_engine *e, int64_t *count);
/* Messages waiting for a delayed retry, and running saga instances. */
int choreo_engine_retry_count(choreo_engine *e, int64_t *count);
int choreo_engine_saga_count(choreo_engine *e, int64_t *count);
/* The workflow settings of the engine's configuration (0s replaced by their defaults). */
int choreo_engine_workflow_cache(choreo_engine *e);
int choreo_engine_workflow_history_max(choreo_engine *e);
/* Whether the current scripts keep every running workflow instance to its history (see
 * choreo_scripts_ops.check_workflows): 0, or CHOREO_ESCRIPT with the first that would not in err. */
int choreo_engine_check_workflows(choreo_engine *e, char *err, size_t errlen);
/* The workflows' tables (see workflows.h): the control socket and specs read them; scripts
 * write them only while a handler runs, in its transaction. */
choreo_workflows *choreo_engine_workflows(choreo_engine *e);
/* See choreo_sagas_each. */
int choreo_engine_sagas_each(choreo_engine *e, const char *name, const char *key,
                             choreo_saga_fn fn, void *ud);

/* ---- what a handler calls while it runs (CHOREO_EINVAL outside one) ---- */


/* Emits a message that inherits correlation and causation from the one being handled and
 * commits with it. kind is "event", "command" or "reply". *seq (if not NULL) gets its seq in
 * this host's log: its id is "<this host>/<seq>". */
int choreo_engine_emit_from_handler(choreo_engine *e, const char *kind, const char *to,
                                    const char *type, const char *data, size_t data_len,
                                    const choreo_emit_opts *opts, int64_t *seq);
/* ctx:timeout: a durable timer set inside the handler's transaction; when due, a message of
 * kind "timeout" with this type, data and subject comes back to this host. */
int choreo_engine_timeout_from_handler(choreo_engine *e, double seconds, const char *type,
                                       const char *data, size_t data_len, const char *subject);
/* Cancels the pending timeouts with this subject, inside the handler's transaction. */
int choreo_engine_cancel_timeouts(choreo_engine *e, const char *subject);
/* A saga instance's state and version (see sagas.h), inside the handler's transaction. */
int choreo_engine_saga_load(choreo_engine *e, const char *name, const char *key,
                            msgpack_sbuffer *state, int64_t *version, bool *found);
int choreo_engine_saga_save(choreo_engine *e, const char *name, const char *key,
                            const char *state, size_t state_len, int64_t version);
int choreo_engine_saga_remove(choreo_engine *e, const char *name, const char *key);
int choreo_engine_saga_miss(choreo_engine *e, const char *name, const char *type);

/* ---- event streams: in the handler's transaction, or outside one in a transaction of their
 * own (specs, the control socket) ---- */

/* One event to append: its type, data (msgpack, NULL/0 for nil) and schema ("v<N>", or NULL). */
typedef struct choreo_stream_event {
  const char *type;
  const char *data;
  size_t len;
  const char *schema;
} choreo_stream_event;

/* Appends n events to the stream if it is at version `expect` (any version when expect < 0):
 * each a log row as well, an event with subject = stream and streamversion set, published
 * like any. Otherwise *conflict is set and nothing is appended. *version gets the stream's
 * version after. `appended` (may be NULL) sees each event as stored, right after it is: what a
 * later read of the stream gives, so a folded state can take it in without that read. */
int choreo_engine_stream_append(choreo_engine *e, const char *stream, int64_t expect,
                                const choreo_stream_event *events, int n, int64_t *version,
                                bool *conflict, choreo_stream_fn appended, void *ud);
int choreo_engine_stream_version(choreo_engine *e, const char *stream, int64_t *version);
/* Changes whenever a rollback may have undone writes (choreo_store_epoch), and whenever a
 * stream was appended to outside a handler (choreo.testing's given): what was read or folded
 * under another epoch may be gone or behind. Once the scripts used savepoints of their own,
 * whose rollbacks go unseen, it changes at every call. */
uint64_t choreo_engine_epoch(choreo_engine *e);
/* See choreo_streams_each. */
int choreo_engine_stream_each(choreo_engine *e, const char *stream, int64_t after,
                              choreo_stream_fn fn, void *ud);
/* See choreo_streams_snapshot_load and the functions after it. */
int choreo_engine_snapshot_load(choreo_engine *e, const char *stream, const char *fingerprint,
                                msgpack_sbuffer *state, int64_t *version, bool *found);
int choreo_engine_snapshot_save(choreo_engine *e, const char *stream, int64_t version,
                                const char *fingerprint, const char *state, size_t len);
int choreo_engine_snapshots_drop_stale(choreo_engine *e, const char *prefix,
                                       const char *fingerprint, int *dropped);

/* ---- queries: between batches, outside any handler ---- */

/* Runs a read-only query the scripts declared (choreo.query) under the instruction budget: see
 * choreo_scripts_ops.query. CHOREO_EINVAL inside a handler. */
int choreo_engine_query(choreo_engine *e, const char *name, const char *args, size_t len,
                        msgpack_sbuffer *out, char *err, size_t errlen);
/* What is prepared while on may only read (see choreo_store_guard_reads). Calls nest. */
void choreo_engine_guard_reads(choreo_engine *e, bool on);

/* ---- projections (see projections.h): between batches, outside any handler ---- */

/* Takes the next build a step: up to max stream events this host's handlers have seen, in
 * one transaction of the build's file; a build that has caught up replaces the live tables.
 * *pending says whether a build still has work. */
int choreo_engine_projections_step(choreo_engine *e, int max, bool *pending);
/* Fetching other hosts' history for the build under way (choreo_engine_config.fetch_history,
 * core/buildhistory.h), between batches: the source whose history it wants next and after
 * which seq (false: none); the answer to a history request for it after `after`, stored (one
 * from another source, or to another `after`, is ignored; a malformed one is CHOREO_EINVAL);
 * a source that cannot be asked, given up with why: the build goes on with what this host
 * kept of it. */
bool choreo_engine_history_wanted(choreo_engine *e, char *source, size_t len, int64_t *after);
int choreo_engine_history_take(choreo_engine *e, const char *frame, size_t len, int64_t after);
int choreo_engine_history_give_up(choreo_engine *e, const char *source, const char *why);
/* Whether a build has work (one that stopped on a failure has none). */
bool choreo_engine_projections_building(choreo_engine *e);
/* Starts the build of a declared projection afresh (CHOREO_ENOENT: none of that name). */
int choreo_engine_projection_rebuild(choreo_engine *e, const char *name, char *err,
                                     size_t errlen);
/* Keeps the message being handled for projections' builds, unless it is one of this host's
 * stream events (see choreo_projections_keep). */
int choreo_engine_projection_keep(choreo_engine *e);
/* Whether the handlers of name's version write its live tables for the message being handled
 * (see choreo_projections_applies). */
bool choreo_engine_projection_applies(choreo_engine *e, const char *name, int64_t version);
/* Whether they are of version while another is declared now: an older generation's handlers
 * keep them up to date until the new version replaces them. */
bool choreo_engine_projection_stale(choreo_engine *e, const char *name, int64_t version);
void choreo_engine_projections_each(choreo_engine *e, choreo_projection_fn fn, void *ud);

/* Guards what the scripts prepare outside a handler too (choreo.db at load time, a spec's
 * host.db), as handlers always are: see choreo_store_guard. Calls nest. */
void choreo_engine_guard(choreo_engine *e, bool on);
/* Writes what the handlers appended that still waits to be (choreo_store_write_pending), before
 * their own SQL runs; 0 or CHOREO_EIO. */
int choreo_engine_write_pending(choreo_engine *e);

/* The message being handled, or NULL outside a handler. */
const choreo_msg *choreo_engine_current(choreo_engine *e);
/* The database connection, for the scripts' own tables (ctx.db, choreo_ctx_db): it runs in the
 * transaction of the message being handled. */
sqlite3 *choreo_engine_db(choreo_engine *e);

#endif
