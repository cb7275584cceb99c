/* The engine: one service's scripts, database and dispatch, without any transport. The host
 * feeds it frames from the bus; choreo.testing feeds it frames from specs. Dispatch here is the
 * only way a message reaches Lua (DESIGN.md §2): each frame is applied in one transaction with a
 * savepoint per message, together with the source's checkpoint and the messages emitted. */
#ifndef CHOREO_ENGINE_H
#define CHOREO_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"
#include "store.h"

typedef struct choreo_engine choreo_engine;

typedef struct choreo_engine_config {
  const char *name;            /* this service; the source of what it emits */
  const char *dir;             /* scripts directory */
  const char *data;            /* database path or ":memory:" */
  uint64_t instruction_limit;  /* per handler call; 0 = CHOREO_DEFAULT_INSTRUCTIONS */
  size_t memory_limit;         /* per Lua state; 0 = CHOREO_DEFAULT_MEMORY */
  int64_t (*now_ms)(void *ud); /* clock for retries; NULL = wall clock */
  void *clock_ud;
} choreo_engine_config;

#define CHOREO_DEFAULT_INSTRUCTIONS 100000000u
#define CHOREO_DEFAULT_MEMORY (256u << 20)
#define CHOREO_IMMEDIATE_ATTEMPTS 3

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
choreo_store *choreo_engine_store(choreo_engine *e);

/* Builds a fresh Lua state from the scripts directory and swaps it in if every script loads;
 * otherwise keeps the running state, remembers the error and returns CHOREO_ESCRIPT. */
int choreo_engine_reload(choreo_engine *e, char *err, size_t errlen);
unsigned choreo_engine_generation(choreo_engine *e);
const char *choreo_engine_reload_error(choreo_engine *e); /* "" when the last reload succeeded */

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

/* Runs the delayed retries that are due; returns the earliest next due time in ms or -1. */
int64_t choreo_engine_run_retries(choreo_engine *e, choreo_apply_result *res);

/* Moves the timeouts due now into the log (kind "timeout", to this host), in one transaction;
 * the host's own dispatch then delivers them. Returns the next due time in ms or -1. */
int64_t choreo_engine_fire_timeouts(choreo_engine *e);
/* The earliest pending timeout in ms since the epoch, or -1. */
int64_t choreo_engine_next_timeout(choreo_engine *e);

/* Appends a message from outside any handler (choreo publish/send), in its own transaction.
 * data is msgpack (NULL for nil). */
int choreo_engine_emit(choreo_engine *e, const char *kind, const char *to, const char *type,
                       const char *data, size_t data_len, int64_t *seq_out);

/* The same for n messages in one transaction (a client publishing in batches); data[i] is
 * msgpack of len[i] bytes. *first_seq gets the seq of the first. */
int choreo_engine_emit_batch(choreo_engine *e, const char *kind, const char *to, const char *type,
                             const char *const *data, const size_t *len, int n,
                             int64_t *first_seq);

/* Count of frames rejected as malformed since open. */
uint64_t choreo_engine_bad_frames(choreo_engine *e);
int64_t choreo_engine_now_ms(choreo_engine *e);

/* ---- for the bindings: the delivery a handler is running in ---- */

/* Options accepted by ctx:publish/send (subject, correlationid). */
typedef struct choreo_emit_opts {
  const char *subject;
  const char *correlationid;
} choreo_emit_opts;

/* Emits from inside a handler: the message inherits correlation and causation from the one
 * being handled and commits with it. kind is "event", "command" or "reply". Returns 0 or a
 * negative error; CHOREO_EINVAL when called outside a delivery. */
int choreo_engine_emit_from_handler(choreo_engine *e, const char *kind, const char *to,
                                    const char *type, const char *data, size_t data_len,
                                    const choreo_emit_opts *opts);
/* ctx:timeout: a durable timer set inside the handler's transaction; when due, a message of
 * kind "timeout" with this type, data and subject comes back to this host. */
int choreo_engine_timeout_from_handler(choreo_engine *e, double seconds, const char *type,
                                       const char *data, size_t data_len, const char *subject);
/* Cancels the pending timeouts with this subject, inside the handler's transaction. */
int choreo_engine_cancel_timeouts(choreo_engine *e, const char *subject);

/* The message being handled, or NULL outside a handler. */
const choreo_msg *choreo_engine_current(choreo_engine *e);
sqlite3 *choreo_engine_db(choreo_engine *e);

#endif
