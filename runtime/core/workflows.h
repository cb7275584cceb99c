/* Durable workflows (choreo.workflow, scripts/choreo/workflow.lua): the tables
 * choreo_workflows (one row per instance: its status, input, result, what it waits for),
 * choreo_workflow_history (every step it took, in order: what it did and, once known, what came
 * of it) and choreo_workflow_inbox (events correlated to an instance that came while it was not
 * waiting for them, kept for a later wf:wait) and choreo_workflow_signals (the signals an
 * instance took, with the step it was waiting in). This file owns the four and every statement
 * on them; scripts reach them through the engine while a handler runs, inside the transaction of
 * the message that moves the instance, so a step and its effects commit together. */
#ifndef CHOREO_WORKFLOWS_H
#define CHOREO_WORKFLOWS_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct choreo_workflows choreo_workflows;

int choreo_workflows_open(choreo_workflows **out, sqlite3 *db);
void choreo_workflows_close(choreo_workflows *w);

/* An instance. Strings and blobs are valid during a callback only; NULL where SQL has NULL.
 * The blobs are wire-encoded values (input, result). */
typedef struct choreo_workflow_row {
  const char *name, *id;
  const char *status;  /* running, completed, failed, cancelled, stuck */
  const char *error;   /* why it failed or is stuck */
  const char *waiting; /* what it waits for, for people ("reply to ReserveStock from warehouse") */
  const char *wait_op; /* call, wait or sleep: the step it is suspended in */
  const char *wait_ref; /* the command id a call waits a reply to, the type a wait waits for */
  int64_t wait_step, steps, rev, started_ms, updated_ms;
  bool wait_timer;      /* a timer may be pending for the step it waits in */
  const char *input, *result;
  size_t input_len, result_len;
} choreo_workflow_row;
typedef int (*choreo_workflow_fn)(void *ud, const choreo_workflow_row *row);

/* Calls fn with the instance; *found says whether there is one. */
int choreo_workflows_get(choreo_workflows *w, const char *name, const char *id,
                         choreo_workflow_fn fn, void *ud, bool *found);
/* Writes the instance: every field of row but started_ms, kept from its first write, and input
 * when NULL (an update that leaves it). */
int choreo_workflows_put(choreo_workflows *w, const choreo_workflow_row *row);
/* Calls fn for the instances of workflow `name` (all when NULL) with `status` (any when
 * NULL), without their blobs, newest first, at most `limit`. */
int choreo_workflows_each(choreo_workflows *w, const char *name, const char *status, int limit,
                          choreo_workflow_fn fn, void *ud);
/* How many instances have `status`. */
int choreo_workflows_count(choreo_workflows *w, const char *status, int64_t *count);

/* One step of an instance's history; result is NULL while a call, wait or sleep waits. */
typedef struct choreo_workflow_step {
  int64_t step, at_ms, done_ms; /* done_ms 0 while waiting */
  const char *op, *what, *ref;
  const char *result;
  size_t result_len;
} choreo_workflow_step;
typedef int (*choreo_workflow_step_fn)(void *ud, const choreo_workflow_step *s);

int choreo_workflows_record(choreo_workflows *w, const char *name, const char *id,
                            const choreo_workflow_step *s);
/* Fills in the result of a waiting step. CHOREO_ENOENT when there is no such step. */
int choreo_workflows_complete(choreo_workflows *w, const char *name, const char *id, int64_t step,
                              const char *result, size_t len, int64_t now_ms);
/* Calls fn with each step, in order. */
int choreo_workflows_history(choreo_workflows *w, const char *name, const char *id,
                             choreo_workflow_step_fn fn, void *ud);
/* Whether a step of any instance has ref `ref` (the id of a message a workflow emitted). */
int choreo_workflows_emitted(choreo_workflows *w, const char *ref, bool *found);
/* Forgets an instance's kept events (it ended) and/or its history and signals
 * (continue_as_new). */
int choreo_workflows_forget(choreo_workflows *w, const char *name, const char *id, bool inbox,
                            bool history);

/* Retention: deletes up to max instances that ended (completed, failed or cancelled) before
 * before_ms, with their histories and signals; *deleted gets how many. */

/* A signal the instance took while waiting in step `during` (data wire-encoded); and all of
 * them, in the order they came. */
int choreo_workflows_signal(choreo_workflows *w, const char *name, const char *id, int64_t during,
                            const char *signal, const char *data, size_t len);
typedef int (*choreo_workflow_signal_fn)(void *ud, int64_t during, const char *signal,
                                         const char *data, size_t len);
int choreo_workflows_signals(choreo_workflows *w, const char *name, const char *id,
                             choreo_workflow_signal_fn fn, void *ud);
int choreo_workflows_expire(choreo_workflows *w, int64_t before_ms, int max, int *deleted);

/* Keeps an event (wire-encoded) for the instance; at most CHOREO_WORKFLOW_INBOX_MAX each, the
 * oldest going first. */
#define CHOREO_WORKFLOW_INBOX_MAX 1000
int choreo_workflows_inbox_put(choreo_workflows *w, const char *name, const char *id,
                               const char *type, const char *msg, size_t len);
/* Takes the oldest kept event of `type` for the instance: fn gets it (key 0), then it goes.
 * *found says whether there was one. */
int choreo_workflows_inbox_take(choreo_workflows *w, const char *name, const char *id,
                                const char *type,
                                int (*fn)(void *ud, int64_t key, const char *msg, size_t len),
                                void *ud, bool *found);

#endif
