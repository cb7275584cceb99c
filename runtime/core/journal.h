/* The journal: what this host did with every message it handled, written in the transaction
 * that handled it, so that after a crash it lists exactly what was applied. An entry says what
 * the message was (id, type, source, kind, its conversation: correlation and causation), which
 * handlers took it (file:line of their registration), how it went (ok, a failed attempt now
 * waiting for a retry, dead, no handler), how long the handlers ran, and which rows of this
 * host's log they emitted. `choreo trace` stitches the entries of every host into the
 * conversation's tree.
 *
 * A row per message doubled what a handled message cost, so entries are noted in memory while
 * a batch runs and written with it as one row (choreo_journal: the batch's entries, encoded),
 * plus one row per conversation the batch touched (choreo_journal_conversations: correlation
 * and batch, the key a trace looks up). This file owns both tables and every statement on
 * them. */
#ifndef CHOREO_JOURNAL_H
#define CHOREO_JOURNAL_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "codec.h"

typedef struct choreo_journal choreo_journal;

int choreo_journal_open(choreo_journal **out, sqlite3 *db);
void choreo_journal_close(choreo_journal *j);

/* What became of a message. */
typedef enum choreo_journal_outcome {
  CHOREO_JOURNAL_OK,        /* its handlers ran and committed */
  CHOREO_JOURNAL_RETRYING,  /* it failed every immediate attempt and waits for a delayed one */
  CHOREO_JOURNAL_DEAD,      /* it failed every attempt: a dead letter */
  CHOREO_JOURNAL_UNHANDLED, /* addressed to this host, and no handler takes its type */
} choreo_journal_outcome;

const char *choreo_journal_outcome_name(choreo_journal_outcome o);

typedef struct choreo_journal_entry {
  const choreo_msg *msg;   /* id spelled out */
  const char *handler;     /* who took it ("orders.lua:12, C"), NULL when none */
  choreo_journal_outcome outcome;
  int attempts;            /* in this handling */
  int64_t at_ms;           /* when handling began */
  int64_t duration_us;     /* the handlers' time, all attempts */
  int64_t emitted_first, emitted_last; /* this host's log rows its handlers emitted; 0, 0: none */
  const char *error;       /* the last failure, NULL when ok */
} choreo_journal_entry;

/* Notes an entry for the batch under way (strings copied). CHOREO_ENOMEM leaves the batch's
 * entries unusable: the caller rolls the batch back (the next begin discards them). */
int choreo_journal_note(choreo_journal *j, const choreo_journal_entry *entry);
/* Writes the entries noted since the last flush or discard, if any, as one batch: call it in
 * the batch's transaction, before it commits. */
int choreo_journal_flush(choreo_journal *j, int64_t now_ms);
/* Forgets the entries noted: the batch rolled back. */
void choreo_journal_discard(choreo_journal *j);

/* An entry as read back; strings valid during the callback only. */
typedef struct choreo_journal_row {
  int64_t at_ms, seq, attempts, duration_us, emitted_first, emitted_last;
  const char *id, *source, *type, *kind, *correlation, *causation, *handler, *outcome, *error;
} choreo_journal_row;
typedef int (*choreo_journal_fn)(void *ud, const choreo_journal_row *row);

/* Calls fn for each entry of the conversation `correlation`, oldest first, at most max. A
 * non-zero result of fn stops the walk and is returned. */
int choreo_journal_each(choreo_journal *j, const char *correlation, int max, choreo_journal_fn fn,
                        void *ud);
/* Calls fn for the entries of the batches written since since_ms, newest batch first, at most
 * max (then *more); a non-zero result of fn stops the walk and is returned. */
int choreo_journal_recent(choreo_journal *j, int64_t since_ms, int max, choreo_journal_fn fn,
                          void *ud, bool *more);
/* Deletes batches written before before_ms, oldest first, with their conversations' rows, in
 * at most about max statements; *deleted counts the statements. */
int choreo_journal_expire(choreo_journal *j, int64_t before_ms, int max, int *deleted);

#endif
