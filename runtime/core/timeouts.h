/* Durable timeouts (ctx:timeout): rows in the host's database, written in the transaction of
 * the handler that set them. When one comes due it is moved into the log as a message of kind
 * "timeout" addressed to this host, in one transaction, so it reaches the handlers through the
 * same dispatch path as every other message and fires exactly once, even across a crash. */
#ifndef CHOREO_TIMEOUTS_H
#define CHOREO_TIMEOUTS_H

#include <sqlite3.h>
#include <stdint.h>

#include "codec.h"

typedef struct choreo_timeouts choreo_timeouts;

/* Creates the table if needed and prepares the statements. Returns 0 or CHOREO_EIO. */
int choreo_timeouts_open(choreo_timeouts **out, sqlite3 *db);
void choreo_timeouts_close(choreo_timeouts *t);

/* What a timeout becomes when it fires (source, kind, to and seq are the firing host's). */
typedef struct choreo_timeout {
  int64_t due_ms;
  const char *type, *correlationid, *causationid, *subject;
  const char *data; /* msgpack, NULL for nil */
  size_t data_len;
} choreo_timeout;

int choreo_timeouts_add(choreo_timeouts *t, const choreo_timeout *timeout);
/* Deletes the pending timeouts set with this subject (a saga instance that completed). */
int choreo_timeouts_cancel(choreo_timeouts *t, const char *subject);
/* The earliest due time in ms since the epoch, or -1 if none. */
int choreo_timeouts_next_due(choreo_timeouts *t, int64_t *due_ms);
/* Hands each timeout due at now_ms (at most max, earliest first) to fn, then deletes it.
 * Returns 0, or the first negative result of fn or of SQLite. */
typedef int (*choreo_timeout_fn)(void *ud, const choreo_timeout *timeout);
int choreo_timeouts_take_due(choreo_timeouts *t, int64_t now_ms, int max, choreo_timeout_fn fn,
                             void *ud);
/* Hands the pending timeouts of one conversation (at most max, earliest first, without their
 * data) to fn; a non-zero result of fn stops the walk and is returned. */
int choreo_timeouts_of(choreo_timeouts *t, const char *correlation, int max, choreo_timeout_fn fn,
                       void *ud);
/* How many are pending. */
int choreo_timeouts_count(choreo_timeouts *t, int64_t *count);

#endif
