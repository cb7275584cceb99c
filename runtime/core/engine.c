/* The engine (see engine.h): dispatch, retries and reload over one store, the C handlers and
 * one generation of scripts. Every path into a handler goes through engine_deliver(), so
 * retries, dead letters and the instruction/memory limits treat live, fetched, own and retried
 * messages alike. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "choreo.h"
#include "clock.h"
#include "engine.h"
#include "buildhistory.h"
#include "handlers.h"
#include "journal.h"
#include "sourcetypes.h"
#include "spans.h"
#include "stats.h"
#include "tracecontext.h"
#include "log.h"
#include "ownruns.h"
#include "timeouts.h"

/* README: three attempts at once, then after 1 s, 5 s and 30 s; past the last, a dead letter. */
const choreo_retry_policy choreo_default_retry_policy = {
    .attempts = 3, .nbackoff = 3, .backoff_ms = {1000, 5000, 30000}};
#define OWN_FRAME_BYTES (4u << 20)
#define PROGRESS_EVERY 1000 /* SQLite VM steps between two looks at the budget */
#define ENGINE_UNHANDLED_TYPES 64
#define ENGINE_WORKFLOW_DEFAULT 10000 /* instances cached; steps per history */

struct choreo_engine {
  char *name, *dir;
  choreo_store *store;
  choreo_timeouts *timeouts;
  choreo_sagas *sagas;
  choreo_workflows *workflows;
  int workflow_cache, workflow_history_max;
  choreo_journal *journal; /* NULL: --no-journal */
  choreo_spans *spans;     /* NULL: no --otlp-json */
  struct engine_handling *handling; /* of the message whose handlers run, while they run */
  choreo_stats stats;
  choreo_streams *streams;
  choreo_projections *projections;
  bool fetch_history; /* see choreo_engine_config */
  choreo_source_types *source_types; /* what each other host sent: whose history a build needs */
  uint64_t unseen_epoch; /* see choreo_engine_epoch */
  uint64_t appends_outside; /* streams appended to outside a handler: see choreo_engine_epoch */
  choreo_handlers *handlers;
  const choreo_scripts_ops *ops; /* NULL: no scripts */
  void *scripts;
  /* The generation before a reload that changed a projection's version, kept while the old
   * version's tables are live: it answers queries, and its handlers of that projection keep
   * those tables up to date, until the new version's build replaces them. */
  void *serving;
  unsigned generation;
  char reload_error[1024];
  uint64_t instruction_limit;
  size_t memory_limit;
  size_t max_message;
  choreo_unhandled unhandled[ENGINE_UNHANDLED_TYPES]; /* since the engine opened */
  int nunhandled;
  uint64_t unhandled_other; /* types past the table's size */
  int64_t budget;            /* left in the current handler call */
  int metered;               /* handler calls under way (nested) */
  atomic_bool interrupted;   /* choreo_engine_interrupt, from any thread */
  int64_t (*now_ms)(void *);
  void *clock_ud;
  /* Clock readings the handlings of one batch share (engine_handling_start, engine_wall_ms_at):
   * on a VM each read costs ~30 ns, three per message before. -1 when there is none. */
  int64_t chain_us;                   /* when the last handling ended, if the next starts then */
  int64_t wall_base_ms, wall_base_us; /* the wall clock, read once per batch, and when */
  const choreo_msg *current;
  struct engine_text { char *p; size_t cap; } cause_id, cause_correlation; /* engine_cause */
  uint64_t bad_frames;
  uint64_t handled; /* messages whose handlers ran and committed, since the engine opened */
  msgpack_sbuffer own_frame;
  choreo_own_runs own_runs; /* what was appended, for our own dispatch to pass over */
  /* The earliest timeout, remembered under the store's epoch: asked after every commit. */
  bool next_timeout_known;
  int64_t next_timeout;
  uint64_t next_timeout_epoch;
};

/* SQLite calls this every PROGRESS_EVERY VM steps; non-zero interrupts the statement. Only
 * handler calls are metered: choreo's own statements run free. */
static int engine_progress(void *ud) {
  choreo_engine *e = ud;
  return e->metered > 0 && !choreo_engine_spend(e, PROGRESS_EVERY);
}

static int64_t engine_wall_clock(void *ud) {
  (void)ud;
  return choreo_clock_ms();
}

/* A build's connection gets the tables of its history, and what a handler's statements get
 * on ours: the budget, and the guard against ending the transaction. Tables that cannot be
 * made fail the build's first step, which says so. */
static void engine_prepare_build(void *ud, sqlite3 *build) {
  choreo_engine *e = ud;
  if (choreo_build_history_setup(build))
    choreo_log(CHOREO_LOG_ERROR, e->name, "cannot add the history tables to a build: %s",
               sqlite3_errmsg(build));
  sqlite3_progress_handler(build, PROGRESS_EVERY, engine_progress, e);
  choreo_store_guard_connection(e->store, build);
}

#define ENGINE_PROJECTIONS_MAX 64

typedef struct engine_decls {
  choreo_projection_decl list[ENGINE_PROJECTIONS_MAX];
  int n;
  bool too_many;
} engine_decls;

static void engine_release_build(void *ud, sqlite3 *build) {
  choreo_engine *e = ud;
  if (!e->ops || !e->ops->release_build) return;
  if (e->scripts) e->ops->release_build(e->scripts, build);
  if (e->serving) e->ops->release_build(e->serving, build);
}

static void engine_collect_projection(void *ud, const choreo_projection_decl *d) {
  engine_decls *decls = ud;
  if (decls->n == ENGINE_PROJECTIONS_MAX) decls->too_many = true;
  else decls->list[decls->n++] = *d;
}

/* Stops at the first source applied from (returning 1). */
static int engine_any_source(void *ud, const char *source, int64_t seq) {
  (void)ud, (void)source, (void)seq;
  return 1;
}

/* Hands a generation's projections to the projections' table: their tables, their builds (a
 * new projection gets one when this host has streams, or has applied messages, its own or
 * other hosts', whose history its build may fetch). */
static int engine_sync_projections(choreo_engine *e, void *scripts, char *err, size_t errlen) {
  engine_decls decls = {.n = 0};
  if (!scripts || !e->ops->projections) return 0;
  int rc = e->ops->projections(scripts, engine_collect_projection, &decls);
  if (rc) {
    snprintf(err, errlen, "cannot list the projections");
    return rc;
  }
  if (decls.too_many) {
    snprintf(err, errlen, "more than %d projections are declared", ENGINE_PROJECTIONS_MAX);
    return CHOREO_ESCRIPT;
  }
  bool history = false;
  rc = choreo_streams_any(e->streams, &history);
  if (!rc && !history && e->fetch_history) {
    rc = choreo_store_checkpoints_each(e->store, engine_any_source, e);
    history = rc == 1;
    rc = rc == 1 ? 0 : rc;
  }
  return rc ? rc
            : choreo_projections_sync(e->projections, decls.list, decls.n, history,
                                      choreo_engine_now_ms(e), err, errlen);
}

/* Loads a generation of scripts, or none for an engine without a scripting language. */
static int engine_load_scripts(choreo_engine *e, void **out, char *err, size_t errlen) {
  *out = NULL;
  if (!e->ops) return 0;
  return e->ops->load(out, e, e->dir, e->instruction_limit, e->memory_limit, err, errlen);
}

static void engine_resume_stuck(choreo_engine *e);
static int engine_swap_scripts(choreo_engine *e, char *err, size_t errlen);

int choreo_engine_open(choreo_engine **out, const choreo_engine_config *cfg, char *err,
                       size_t errlen) {
  struct stat st;
  *out = NULL;
  if (cfg->scripts && (!cfg->dir || stat(cfg->dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
    snprintf(err, errlen, "%s: no such directory", cfg->dir ? cfg->dir : "(none)");
    return CHOREO_ENOENT;
  }
  int rc = choreo_name_check(cfg->name, err, errlen);
  if (rc) return rc;
  if (cfg->max_message > CHOREO_MAX_MESSAGE_LIMIT) {
    snprintf(err, errlen, "the message limit may be at most %u bytes", CHOREO_MAX_MESSAGE_LIMIT);
    return CHOREO_EINVAL;
  }
  choreo_engine *e = calloc(1, sizeof *e);
  if (!e) return CHOREO_ENOMEM;
  atomic_init(&e->interrupted, false);
  e->name = strdup(cfg->name);
  e->dir = strdup(cfg->dir ? cfg->dir : "");
  e->ops = cfg->scripts;
  e->handlers = choreo_handlers_new();
  e->instruction_limit = cfg->instruction_limit ? cfg->instruction_limit : CHOREO_DEFAULT_INSTRUCTIONS;
  e->memory_limit = cfg->memory_limit ? cfg->memory_limit : CHOREO_DEFAULT_MEMORY;
  e->max_message = cfg->max_message ? cfg->max_message : CHOREO_DEFAULT_MAX_MESSAGE;
  e->workflow_cache = cfg->workflow_cache > 0 ? cfg->workflow_cache : ENGINE_WORKFLOW_DEFAULT;
  e->workflow_history_max =
      cfg->workflow_history_max > 0 ? cfg->workflow_history_max : ENGINE_WORKFLOW_DEFAULT;
  e->now_ms = cfg->now_ms ? cfg->now_ms : engine_wall_clock;
  e->clock_ud = cfg->clock_ud;
  e->chain_us = e->wall_base_ms = -1;
  e->fetch_history = cfg->fetch_history;
  msgpack_sbuffer_init(&e->own_frame);
  rc = e->name && e->dir && e->handlers
           ? choreo_store_open(&e->store, cfg->data, cfg->page_size, err, errlen)
           : CHOREO_ENOMEM;
  if (!rc) {
    int page_size = choreo_store_page_size(e->store);
    if (cfg->page_size && page_size > 0 && page_size != cfg->page_size &&
        strcmp(cfg->data, ":memory:") != 0)
      choreo_log(CHOREO_LOG_WARN, e->name,
                 "%s was created with %d-byte pages and keeps them: a page size applies to a new "
                 "database only",
                 cfg->data, page_size);
    choreo_store_set_max_message(e->store, e->max_message);
    sqlite3_progress_handler(choreo_store_db(e->store), PROGRESS_EVERY, engine_progress, e);
  }
  if (!rc && (rc = choreo_source_types_open(&e->source_types, choreo_store_db(e->store))))
    snprintf(err, errlen, "%s: cannot prepare the table of what other hosts sent", cfg->data);
  if (!rc && (rc = choreo_timeouts_open(&e->timeouts, choreo_store_db(e->store))))
    snprintf(err, errlen, "%s: cannot prepare the timeouts table", cfg->data);
  if (!rc && (rc = choreo_sagas_open(&e->sagas, choreo_store_db(e->store))))
    snprintf(err, errlen, "%s: cannot prepare the sagas tables", cfg->data);
  if (!rc && (rc = choreo_workflows_open(&e->workflows, choreo_store_db(e->store))))
    snprintf(err, errlen, "%s: cannot prepare the workflows tables", cfg->data);
  if (!rc && !cfg->no_journal && (rc = choreo_journal_open(&e->journal, choreo_store_db(e->store))))
    snprintf(err, errlen, "%s: cannot prepare the journal table", cfg->data);
  if (!rc && cfg->otlp_json) rc = choreo_spans_open(&e->spans, cfg->otlp_json, cfg->name, err, errlen);
  if (!rc && (rc = choreo_streams_open(&e->streams, choreo_store_db(e->store))))
    snprintf(err, errlen, "%s: cannot prepare the streams tables", cfg->data);
  if (!rc && (rc = choreo_projections_open(&e->projections, choreo_store_db(e->store), cfg->data,
                                           engine_prepare_build, engine_release_build, e)))
    snprintf(err, errlen, "%s: cannot prepare the projections table", cfg->data);
  if (!rc) rc = engine_load_scripts(e, &e->scripts, err, errlen);
  if (!rc) rc = engine_sync_projections(e, e->scripts, err, errlen);
  if (rc) {
    choreo_engine_close(e);
    return rc;
  }
  e->generation = 1;
  engine_resume_stuck(e); /* a restart with fixed code resumes them as a reload does */
  *out = e;
  return 0;
}

void choreo_engine_close(choreo_engine *e) {
  if (!e) return;
  if (e->ops && e->scripts) e->ops->free(e->scripts);
  if (e->ops && e->serving) e->ops->free(e->serving);
  e->scripts = e->serving = NULL;
  choreo_projections_close(e->projections); /* after the scripts: they may hold a build's statements */
  choreo_handlers_free(e->handlers);
  choreo_sagas_close(e->sagas);
  choreo_journal_close(e->journal);
  choreo_source_types_close(e->source_types);
  choreo_spans_close(e->spans);
  choreo_stats_free(&e->stats);
  choreo_workflows_close(e->workflows);
  choreo_streams_close(e->streams);
  choreo_timeouts_close(e->timeouts);
  choreo_store_close(e->store);
  msgpack_sbuffer_destroy(&e->own_frame);
  free(e->cause_id.p);
  free(e->cause_correlation.p);
  free(e->name);
  free(e->dir);
  free(e);
}

const char *choreo_engine_name(choreo_engine *e) { return e->name; }

void choreo_engine_meter_start(choreo_engine *e) {
  e->budget = (int64_t)e->instruction_limit;
  e->metered++;
}

void choreo_engine_meter_stop(choreo_engine *e) { e->metered--; }

bool choreo_engine_spend(choreo_engine *e, int64_t n) {
  e->budget -= n;
  return e->budget > 0 && !atomic_load_explicit(&e->interrupted, memory_order_relaxed);
}

uint64_t choreo_engine_instruction_limit(choreo_engine *e) { return e->instruction_limit; }
void choreo_engine_interrupt(choreo_engine *e) { atomic_store(&e->interrupted, true); }
bool choreo_engine_interrupted(choreo_engine *e) { return atomic_load(&e->interrupted); }
size_t choreo_engine_max_message(choreo_engine *e) { return e->max_message; }

void choreo_engine_unhandled(choreo_engine *e, const choreo_unhandled **list, int *n,
                             uint64_t *other) {
  *list = e->unhandled;
  *n = e->nunhandled;
  *other = e->unhandled_other;
}
void choreo_engine_guard(choreo_engine *e, bool on) { choreo_store_guard(e->store, on); }

int choreo_engine_write_pending(choreo_engine *e) { return choreo_store_write_pending(e->store); }

void choreo_engine_guard_reads(choreo_engine *e, bool on) { choreo_store_guard_reads(e->store, on); }

int choreo_engine_query(choreo_engine *e, const char *name, const char *args, size_t len,
                        msgpack_sbuffer *out, char *err, size_t errlen) {
  if (e->current) return CHOREO_EINVAL; /* the scripts' state is in use */
  if (!e->ops || !e->ops->query) return CHOREO_ENOENT;
  /* While a projection is rebuilt, the code that matches its live tables answers first. */
  int rc = e->serving ? e->ops->query(e->serving, name, args, len, out, err, errlen) : CHOREO_ENOENT;
  if (rc == CHOREO_ENOENT) rc = e->ops->query(e->scripts, name, args, len, out, err, errlen);
  return rc;
}
sqlite3 *choreo_engine_db(choreo_engine *e) { return choreo_store_db(e->store); }
const choreo_msg *choreo_engine_current(choreo_engine *e) { return e ? e->current : NULL; }
unsigned choreo_engine_generation(choreo_engine *e) { return e->generation; }
const char *choreo_engine_reload_error(choreo_engine *e) { return e->reload_error; }
uint64_t choreo_engine_bad_frames(choreo_engine *e) { return e->bad_frames; }
uint64_t choreo_engine_handled(choreo_engine *e) { return e->handled; }
int64_t choreo_engine_now_ms(choreo_engine *e) { return e->now_ms(e->clock_ud); }

int choreo_engine_on(choreo_engine *e, const char *pattern, choreo_handler_fn fn, void *ud) {
  return choreo_handlers_add(e->handlers, pattern, fn, ud);
}

void choreo_engine_report(choreo_engine *e, const char *from, int rc,
                          const choreo_apply_result *r) {
  if (rc && rc != CHOREO_EINVAL)
    choreo_log(CHOREO_LOG_ERROR, e->name, "applying messages from %s failed: %s", from,
               choreo_strerror(rc));
  if (r->applied || r->failed)
    choreo_log(CHOREO_LOG_DEBUG, e->name, "from %s: %d applied, %d failed, %d skipped", from,
               r->applied, r->failed, r->skipped);
}

typedef struct engine_serves_call {
  choreo_engine *e;
  bool serves;
} engine_serves_call;

static void engine_serves_one(void *ud, const choreo_projection_decl *d) {
  engine_serves_call *call = ud;
  call->serves = call->serves || choreo_engine_projection_stale(call->e, d->name, d->version);
}

/* Whether a generation declares the version of some projection's live tables that the current
 * one no longer declares: its code is what matches those tables. */
static bool engine_serves(choreo_engine *e, void *scripts) {
  engine_serves_call call = {e, false};
  if (scripts && e->ops->projections) e->ops->projections(scripts, engine_serves_one, &call);
  return call.serves;
}

/* After a reload or a swap: the generation kept for old tables is the one that matches them,
 * as long as one does. */
static void engine_keep_serving(choreo_engine *e, void *leaving) {
  if (e->serving && engine_serves(e, e->serving)) {
    if (leaving) e->ops->free(leaving);
    return;
  }
  if (e->serving) e->ops->free(e->serving);
  e->serving = NULL;
  if (leaving && engine_serves(e, leaving)) e->serving = leaving;
  else if (leaving) e->ops->free(leaving);
}

/* Workflow instances left stuck by code that no longer matched their histories get another try
 * under the new code: a command to this host (its own dispatch carries it out, in a transaction
 * of its own, as it would any). */
static void engine_resume_stuck(choreo_engine *e) {
  int64_t stuck = 0;
  if (choreo_workflows_count(e->workflows, "stuck", &stuck) || stuck == 0) return;
  const char *data[1] = {NULL};
  size_t len[1] = {0};
  int64_t seq;
  bool repeated;
  int rc = choreo_engine_emit_batch(e, "command", e->name, "choreo.ResumeWorkflows", NULL, data,
                                    len, 1, NULL, &seq, &repeated);
  if (rc)
    choreo_log(CHOREO_LOG_ERROR, e->name, "cannot ask for the %lld stuck workflow instances to be "
               "resumed: %s", (long long)stuck, choreo_strerror(rc));
  else
    choreo_log(CHOREO_LOG_INFO, e->name, "resuming %lld stuck workflow instances under the new "
               "code", (long long)stuck);
}

int choreo_engine_reload(choreo_engine *e, char *err, size_t errlen) {
  int64_t started_us = choreo_clock_monotonic_us();
  int rc = engine_swap_scripts(e, err, errlen);
  e->stats.reloads++;
  e->stats.reload_failures += rc != 0;
  e->stats.last_reload_seconds = (double)(choreo_clock_monotonic_us() - started_us) / 1e6;
  return rc;
}

static int engine_swap_scripts(choreo_engine *e, char *err, size_t errlen) {
  void *fresh;
  int rc = engine_load_scripts(e, &fresh, err, errlen);
  if (!rc && e->ops->check_workflows && (rc = e->ops->check_workflows(fresh, err, errlen)))
    e->ops->free(fresh);
  if (!rc && (rc = engine_sync_projections(e, fresh, err, errlen))) e->ops->free(fresh);
  if (rc) {
    snprintf(e->reload_error, sizeof e->reload_error, "%s", err);
    return CHOREO_ESCRIPT;
  }
  void *leaving = e->scripts;
  e->scripts = fresh;
  engine_keep_serving(e, leaving);
  e->generation++;
  e->reload_error[0] = '\0';
  engine_resume_stuck(e);
  return 0;
}

/* Commands and replies are addressed; events go to everyone who handles them. */
static bool engine_is_for_us(choreo_engine *e, const choreo_msg *m) {
  if (choreo_str_eq(m->kind, "event")) return true;
  if (choreo_str_eq(m->kind, "command") || choreo_str_eq(m->kind, "reply") ||
      choreo_str_eq(m->kind, "timeout"))
    return choreo_str_eq(m->to, e->name);
  return false;
}

static bool engine_handles(choreo_engine *e, const choreo_msg *m) {
  return choreo_handlers_match(e->handlers, m->type) ||
         (e->scripts && (e->ops->handles(e->scripts, m->type) ||
                         (e->ops->for_workflow && e->ops->for_workflow(e->scripts, m)))) ||
         (e->serving && e->ops->handles(e->serving, m->type));
}

/* The handling of one message: when it began and from which log head (the journal's duration
 * and emitted rows are measured from there), and the span of a trace it is, if any (what it
 * emits continues that trace). */
typedef struct engine_handling {
  int64_t at_ms, started_us, head;
  int64_t start_unix_us;     /* for its span */
  bool traced;
  choreo_trace_context span; /* its trace, its own id, the trace's flags */
  char parent[17];           /* the span whose message it handles; "" for a root */
  char handled_by[320];      /* who took it, at its last attempt (engine_handled_by) */
} engine_handling;

/* Who took m: C handlers, then, if the scripts' handlers ran, where they were registered. */
static void engine_handled_by(choreo_engine *e, const choreo_msg *m, bool scripts_ran, char *out,
                              size_t outlen) {
  const char *lua = scripts_ran && e->ops->handled_by ? e->ops->handled_by(e->scripts) : "";
  size_t used = 0;
  if (choreo_handlers_match(e->handlers, m->type)) {
    memcpy(out, lua[0] ? "C, " : "C", lua[0] ? 4 : 2);
    used = lua[0] ? 3 : 1;
  }
  size_t n = strlen(lua); /* copied by hand: this runs per message */
  if (n >= outlen - used) n = outlen - used - 1;
  memcpy(out + used, lua, n);
  out[used + n] = '\0';
}

/* One attempt, inside its own savepoint unless the batch runs without (engine_apply): on
 * failure only this message's effects roll back. *limited says the failure was the
 * instruction budget or the memory limit cutting it off. */
static int engine_attempt(choreo_engine *e, const choreo_msg *m, bool savepoint, char *err,
                          size_t errlen, char **traceback, bool *ok, bool *limited) {
  int rc = savepoint ? choreo_store_savepoint(e->store) : 0;
  if (rc) return rc;
  e->current = m;
  choreo_store_guard(e->store, true);
  choreo_engine_meter_start(e);
  int scripts_rc = 0;
  bool c_ok = choreo_handlers_run(e->handlers, e, m, err, errlen) == 0;
  *ok = c_ok &&
        (!e->scripts ||
         (scripts_rc = e->ops->deliver(e->scripts, m, err, errlen, traceback)) == 0) &&
        (!e->serving ||
         (scripts_rc = e->ops->deliver_stale(e->serving, m, err, errlen, traceback)) == 0);
  if (e->handling && (e->journal || e->spans)) /* only they name the handlers */
    engine_handled_by(e, m, c_ok && e->scripts, e->handling->handled_by,
                      sizeof e->handling->handled_by);
  *limited = !*ok && (e->budget <= 0 || scripts_rc == CHOREO_ETOOBIG);
  choreo_engine_meter_stop(e);
  choreo_store_guard(e->store, false);
  e->current = NULL;
  /* Stopped, not failed: the whole batch rolls back and comes again at the next start. */
  if (choreo_engine_interrupted(e)) return CHOREO_ESTOPPED;
  /* The batch is gone (SQLite rolled it back after a disk or memory error, or the script ran
   * COMMIT or ROLLBACK): carrying on would commit the rest piecemeal. */
  if (!choreo_store_in_transaction(e->store)) return CHOREO_EIO;
  if (!savepoint) return 0;
  return *ok ? choreo_store_release(e->store) : choreo_store_rollback_savepoint(e->store);
}

static void engine_policy(choreo_engine *e, choreo_str type, choreo_retry_policy *p) {
  if (!e->scripts || !e->ops->policy || !e->ops->policy(e->scripts, type, p))
    *p = choreo_default_retry_policy;
}

/* A message that failed `attempts` times by now: wait for the policy's next delay, or die. A
 * policy changed by a reload meanwhile applies from where the message is. */
static int engine_defer(choreo_engine *e, const choreo_msg *m, const choreo_retry_policy *p,
                        int attempts, int64_t dead_id, const char *err, const char *traceback,
                        bool *dead) {
  int step = attempts > p->attempts ? attempts - p->attempts : 0;
  int64_t now = choreo_engine_now_ms(e);
  if (step < p->nbackoff) {
    choreo_log(CHOREO_LOG_WARN, e->name, "%.*s %.*s failed (attempt %d), retrying in %.3gs: %s",
               (int)m->type.n, m->type.p, (int)m->id.n, m->id.p, attempts,
               (double)p->backoff_ms[step] / 1000, err);
    return choreo_store_retry_add(e->store, m, attempts, now + p->backoff_ms[step], err, dead_id);
  }
  *dead = true;
  choreo_log(CHOREO_LOG_ERROR, e->name, "%.*s %.*s dead-lettered after %d attempt%s: %s",
             (int)m->type.n, m->type.p, (int)m->id.n, m->id.p, attempts, attempts == 1 ? "" : "s",
             err);
  return choreo_store_dead_add(e->store, m, attempts, err, traceback ? traceback : "", now,
                               dead_id);
}

/* When a handling starts: when the one before it in the batch ended, or now. */
static int64_t engine_handling_start(choreo_engine *e) {
  int64_t at = e->chain_us >= 0 ? e->chain_us : choreo_clock_monotonic_us();
  e->chain_us = -1;
  return at;
}

/* The wall clock's milliseconds at the monotonic at_us of this batch: read once per batch and
 * carried on by the readings handlings take anyway (a batch lasts milliseconds). A clock the
 * host was given (tests) is asked each time. */
static int64_t engine_wall_ms_at(choreo_engine *e, int64_t at_us) {
  if (e->now_ms != engine_wall_clock) return choreo_engine_now_ms(e);
  if (e->wall_base_ms < 0) {
    e->wall_base_ms = choreo_clock_ms();
    e->wall_base_us = at_us;
  }
  return e->wall_base_ms + (at_us - e->wall_base_us) / 1000;
}

static void engine_handling_begin(choreo_engine *e, const choreo_msg *m, engine_handling *h) {
  h->started_us = h->head = 0;
  h->at_ms = -1; /* read when first needed (engine_row_time) */
  h->handled_by[0] = '\0';
  choreo_trace_context incoming;
  h->traced = choreo_traceparent_parse(m->traceparent, &incoming);
  if (h->traced) {
    h->span = incoming;
    memcpy(h->parent, incoming.span_id, sizeof h->parent);
  } else if (e->spans) { /* an exporting host starts a trace for what comes without one */
    h->traced = true;
    choreo_trace_id_new(h->span.trace_id);
    memcpy(h->span.flags, "01", 3); /* sampled */
    h->parent[0] = '\0';
  }
  /* A span of its own only where it is written: elsewhere what it emits names the same parent,
   * so that exported spans never point at one nobody wrote. */
  if (h->traced && e->spans) choreo_span_id_new(h->span.span_id);
  e->handling = h;
  h->started_us = engine_handling_start(e);
  if (e->spans) h->start_unix_us = (int64_t)(choreo_clock_seconds() * 1e6);
  if (!e->journal) return;
  h->at_ms = engine_wall_ms_at(e, h->started_us);
  if (choreo_store_head(e->store, &h->head)) h->head = -1; /* emitted rows unknown */
}

/* The handling of m has ended: its counts, journal entry and span, which go with the batch
 * (engine_commit_batch). Its end is when the next handling starts, unless something else
 * comes between (engine_deliver). */
static int engine_record_handling(choreo_engine *e, const choreo_msg *m, engine_handling *h,
                          choreo_journal_outcome outcome, int attempts, const char *error) {
  e->handling = NULL;
  int64_t ended_us = choreo_clock_monotonic_us();
  int64_t duration_us = ended_us - h->started_us;
  e->chain_us = ended_us;
  if (outcome != CHOREO_JOURNAL_UNHANDLED &&
      choreo_stats_note(&e->stats, m->type,
                        outcome == CHOREO_JOURNAL_OK     ? CHOREO_STATS_OK
                        : outcome == CHOREO_JOURNAL_DEAD ? CHOREO_STATS_DEAD
                                                         : CHOREO_STATS_FAILED,
                        (double)duration_us / 1e6))
    return CHOREO_ENOMEM;
  if (!e->journal && !(e->spans && h->traced)) return 0;
  const char *handled_by = outcome != CHOREO_JOURNAL_UNHANDLED ? h->handled_by : "";
  int rc = 0;
  /* Spans of sampled traces only (flags bit 0), as W3C trace context asks. */
  bool sampled = h->traced && (choreo_traceparent_flags(&h->span) & 1);
  if (e->spans && sampled) {
    choreo_span span = {.context = &h->span,
                        .parent_span_id = h->parent[0] ? h->parent : NULL,
                        .msg = m,
                        .start_us = h->start_unix_us,
                        .end_us = h->start_unix_us + duration_us,
                        .handler = handled_by[0] ? handled_by : NULL,
                        .outcome = choreo_journal_outcome_name(outcome),
                        .error = error};
    rc = choreo_spans_note(e->spans, &span);
  }
  if (rc || !e->journal) return rc;
  int64_t head = h->head;
  if (outcome == CHOREO_JOURNAL_OK && h->head >= 0 && choreo_store_head(e->store, &head))
    head = h->head;
  choreo_journal_entry entry = {
      .msg = m,
      .handler = handled_by[0] ? handled_by : NULL,
      .outcome = outcome,
      .attempts = attempts,
      .at_ms = h->at_ms,
      .duration_us = duration_us,
      .emitted_first = head > h->head && h->head >= 0 ? h->head + 1 : 0,
      .emitted_last = head > h->head && h->head >= 0 ? head : 0,
      .error = error,
  };
  return choreo_journal_note(e->journal, &entry);
}

/* How a message's first attempt went when it ran without a savepoint (engine_apply). */
typedef struct engine_first_try {
  bool failed;
  int64_t seq;
  bool limited;
  int64_t duration_us; /* of the failed attempt */
  char handled_by[320];  /* and who took it */
  char err[512];
  char *traceback;
} engine_first_try;

/* Tries m, which failed `attempts` times before: again at once while the policy's immediate
 * attempts last, then it waits for a delayed retry or dies (engine_defer). A dead letter sent
 * back by hand comes with 0 and so gets the whole schedule again. A handler cut off by a limit
 * is not tried again at once: it would hold the loop as long again, for the same end. It
 * counts as all of its immediate attempts. `first`, if not NULL, is the failed attempt m
 * already had in an optimistic batch: it counts as the first. */
static int engine_try(choreo_engine *e, const choreo_msg *m, int attempts, int64_t dead_id,
                      engine_first_try *first, choreo_apply_result *res) {
  engine_handling handling;
  engine_handling_begin(e, m, &handling);
  if (first) {
    handling.started_us -= first->duration_us;
    handling.start_unix_us -= first->duration_us;
    memcpy(handling.handled_by, first->handled_by, sizeof handling.handled_by);
  }
  int attempted = attempts;
  char err[512];
  char *traceback = NULL;
  bool ok = false, limited = false;
  choreo_retry_policy policy;
  bool policy_known = false; /* asked for only once the message has failed */
  int rc = 0;
  if (first) {
    snprintf(err, sizeof err, "%s", first->err);
    traceback = first->traceback;
    first->traceback = NULL;
    limited = first->limited;
  }
  for (;;) {
    if (!first) {
      free(traceback);
      traceback = NULL;
      rc = engine_attempt(e, m, true, err, sizeof err, &traceback, &ok, &limited);
    }
    first = NULL;
    attempts++;
    if (rc || ok) break;
    if (!policy_known) engine_policy(e, m->type, &policy);
    policy_known = true;
    if (limited && attempts < policy.attempts) {
      choreo_log(CHOREO_LOG_WARN, e->name, "%.*s %.*s was cut off by a limit: not tried again at once",
                 (int)m->type.n, m->type.p, (int)m->id.n, m->id.p);
      attempts = policy.attempts;
    }
    if (attempts >= policy.attempts) break;
  }
  e->handling = NULL;
  if (!rc && ok) {
    res->applied++;
    if (dead_id > 0) rc = choreo_store_dead_resolved(e->store, dead_id);
    if (!rc) rc = engine_record_handling(e, m, &handling, CHOREO_JOURNAL_OK, attempts - attempted, NULL);
  }
  if (!rc && !ok) {
    res->failed++;
    snprintf(res->last_error, sizeof res->last_error, "%s", err);
    bool dead = false;
    rc = engine_defer(e, m, &policy, attempts, dead_id, err, traceback, &dead);
    if (!rc)
      rc = engine_record_handling(e, m, &handling, dead ? CHOREO_JOURNAL_DEAD : CHOREO_JOURNAL_RETRYING,
                          attempts - attempted, err);
  }
  free(traceback);
  return rc;
}

/* A message for us that no handler takes: counted per type, never silently. Commands, replies
 * and timeouts were meant for us alone, so the first of each type is logged as well. */
static void engine_unhandled(choreo_engine *e, const choreo_msg *m, uint64_t n) {
  for (int i = 0; i < e->nunhandled; i++) {
    if (choreo_str_eq(m->type, e->unhandled[i].type)) {
      e->unhandled[i].count += n;
      return;
    }
  }
  if (e->nunhandled == ENGINE_UNHANDLED_TYPES || m->type.n >= sizeof e->unhandled[0].type) {
    e->unhandled_other += n;
    return;
  }
  choreo_unhandled *u = &e->unhandled[e->nunhandled++];
  memcpy(u->type, m->type.p, m->type.n);
  u->type[m->type.n] = '\0';
  u->count = n;
  if (!choreo_str_eq(m->kind, "event"))
    choreo_log(CHOREO_LOG_WARN, e->name, "no handler takes %.*s %s (first: %.*s): dropped",
               (int)m->kind.n, m->kind.p, u->type, (int)m->id.n, m->id.p);
}

/* This host's own stream events are noted under no type: a build reads them from the streams,
 * not from the log, yet the record starts at seq 1 all the same. */
static int engine_note_source_type(choreo_engine *e, const choreo_msg *m) {
  bool own_stream = m->streamversion > 0 && choreo_str_eq(m->source, e->name);
  return choreo_source_types_note(e->source_types, m->source,
                                  own_stream ? (choreo_str){"", 0} : m->type, m->seq,
                                  choreo_store_epoch(e->store));
}

/* A frame's message. An optimistic batch (careful false) runs its handlers without a savepoint
 * and notes the first that fails in *first; the careful run of the same batch that follows
 * counts that failure as the message's first attempt. */
static int engine_deliver(choreo_engine *e, const choreo_msg *m, bool careful,
                          engine_first_try *first, choreo_apply_result *res) {
  {
    int rc = engine_note_source_type(e, m);
    if (rc) return rc;
  }
  if (!engine_is_for_us(e, m)) {
    res->skipped++;
    e->chain_us = -1; /* however many pass by until the next handling: not its time */
    return 0;
  }
  engine_handling handling;
  if (!engine_handles(e, m)) {
    res->skipped++;
    if (!careful || m->seq > first->seq) engine_unhandled(e, m, 1); /* counted once */
    if (choreo_str_eq(m->kind, "event")) {
      e->chain_us = -1;
      return 0; /* whoever wants one: not a loss */
    }
    engine_handling_begin(e, m, &handling);
    return engine_record_handling(e, m, &handling, CHOREO_JOURNAL_UNHANDLED, 0, NULL);
  }
  if (careful) return engine_try(e, m, 0, 0, m->seq == first->seq ? first : NULL, res);
  engine_handling_begin(e, m, &handling);
  bool ok = false;
  int rc = engine_attempt(e, m, false, first->err, sizeof first->err, &first->traceback, &ok,
                          &first->limited);
  e->handling = NULL;
  if (!rc && ok) {
    res->applied++;
    rc = engine_record_handling(e, m, &handling, CHOREO_JOURNAL_OK, 1, NULL);
  }
  if (!rc && !ok) {
    first->failed = true;
    first->seq = m->seq;
    first->duration_us = choreo_clock_monotonic_us() - handling.started_us;
    memcpy(first->handled_by, handling.handled_by, sizeof first->handled_by);
  }
  return rc;
}

/* The frame's messages after checkpoint, in the open transaction; *last gets the last seq
 * delivered, *bad whether a message was malformed. An optimistic run stops at the first
 * failure. */
static int engine_run_frame(choreo_engine *e, choreo_frame_reader *r, int64_t checkpoint,
                            bool careful, engine_first_try *first, choreo_apply_result *res,
                            int64_t *last, bool *bad) {
  choreo_msg m;
  int more = 0, rc = 0;
  *last = checkpoint;
  while (!rc && (careful || !first->failed) && (more = choreo_frame_next(r, &m)) == 1) {
    if (m.seq <= checkpoint) { /* applied before: passed by, as engine_deliver passes by */
      res->skipped++;
      e->chain_us = -1;
      continue;
    }
    rc = engine_deliver(e, &m, careful, first, res);
    *last = m.seq;
  }
  *bad = !rc && more < 0;
  return rc;
}

/* A batch of messages to handle: its journal entries go with it, or with its rollback. */
static int engine_begin_batch(choreo_engine *e) {
  e->chain_us = e->wall_base_ms = -1;
  choreo_stats_discard(&e->stats);
  if (e->journal) choreo_journal_discard(e->journal);
  if (e->spans) choreo_spans_discard(e->spans);
  return choreo_store_begin(e->store);
}

static int engine_commit_batch(choreo_engine *e) {
  int rc = e->journal ? choreo_journal_flush(e->journal, choreo_engine_now_ms(e)) : 0;
  if (!rc) rc = choreo_store_commit(e->store);
  if (!rc) choreo_stats_commit(&e->stats);
  /* Spans only of what committed; one that cannot be written is not worth the batch. */
  if (!rc && e->spans && choreo_spans_flush(e->spans))
    choreo_log(CHOREO_LOG_WARN, e->name, "--otlp-json: cannot write spans");
  return rc;
}

static int engine_fail_batch(choreo_engine *e, int rc) {
  if (rc == CHOREO_ESTOPPED)
    choreo_log(CHOREO_LOG_INFO, e->name, "stopping: the batch under way rolled back");
  else
    choreo_log(CHOREO_LOG_ERROR, e->name, "batch rolled back: %s", choreo_store_errmsg(e->store));
  choreo_store_rollback(e->store);
  return rc;
}

/* Whether every message of ours from..to is one a frame's delivery would pass over (not for
 * us, or an event no handler here takes), as the runs of what we appended tell without
 * reading them back; *first and *n get the runs. The handlers are asked now: a reload since
 * the append counts. A script's own savepoints could take appended rows away unseen. */
static bool engine_own_passable(choreo_engine *e, int64_t from, int64_t to, int *first, int *n) {
  if (choreo_store_foreign_savepoints(e->store)) return false;
  *n = choreo_own_runs_cover(&e->own_runs, choreo_store_epoch(e->store), from, to, first);
  if (*n == 0) return false;
  for (int i = *first; i < *first + *n; i++) {
    choreo_msg m;
    choreo_own_run_msg(&e->own_runs.run[i], e->name, &m);
    if (engine_is_for_us(e, &m) && (!choreo_str_eq(m.kind, "event") || engine_handles(e, &m)))
      return false;
  }
  return true;
}

/* Passes over our own messages from..to (engine_own_passable) as delivery would, run by run:
 * noted by type, counted as unhandled when they were for us, and the checkpoint moved. */
static int engine_pass_over_own(choreo_engine *e, int64_t from, int64_t to, int first, int n,
                                choreo_apply_result *res) {
  int rc = engine_begin_batch(e);
  for (int i = first; !rc && i < first + n; i++) {
    const choreo_own_run *run = &e->own_runs.run[i];
    choreo_msg m;
    choreo_own_run_msg(run, e->name, &m);
    m.seq = run->first > from ? run->first : from;
    int64_t last = run->last < to ? run->last : to;
    rc = engine_note_source_type(e, &m);
    res->skipped += (int)(last - m.seq + 1);
    if (!rc && engine_is_for_us(e, &m)) engine_unhandled(e, &m, (uint64_t)(last - m.seq + 1));
  }
  if (!rc) rc = choreo_store_set_checkpoint(e->store, e->name, to);
  if (!rc) rc = engine_commit_batch(e);
  if (rc) return engine_fail_batch(e, rc);
  choreo_own_runs_drop_through(&e->own_runs, to);
  return 0;
}

/* own: the frame was read from our own log. Anyone else using our name is forging it, and
 * applying that would move our own checkpoint past messages our handlers never saw. */
static int engine_apply(choreo_engine *e, const char *buf, size_t len, bool own,
                        choreo_apply_result *res) {
  memset(res, 0, sizeof *res);
  choreo_frame_reader r;
  if (choreo_frame_open(&r, buf, len)) {
    e->bad_frames++;
    return CHOREO_EINVAL;
  }
  if (r.source.n == 0 || r.source.n >= sizeof res->source) {
    choreo_frame_close(&r);
    e->bad_frames++;
    return CHOREO_EINVAL;
  }
  const char *source = res->source;
  memcpy(res->source, r.source.p, r.source.n);
  res->source[r.source.n] = '\0';
  if (own != (strcmp(source, e->name) == 0)) {
    choreo_frame_close(&r);
    e->bad_frames++;
    return CHOREO_EINVAL;
  }
  res->first = r.first;
  res->head = r.head;
  res->count = r.count;
  int64_t checkpoint;
  int rc = choreo_store_checkpoint(e->store, source, &checkpoint);
  if (rc) {
    choreo_frame_close(&r);
    return rc;
  }
  /* first - 1 + count cannot overflow (the header was checked); first + count could. */
  if (r.count == 0 || r.first - 1 + (int64_t)r.count <= checkpoint) {
    res->skipped = (int)r.count;
    choreo_frame_close(&r);
    return 0;
  }
  if (r.first > checkpoint + 1) {
    res->gap = true;
    choreo_frame_close(&r);
    return 0;
  }
  int first_run, runs;
  if (own && engine_own_passable(e, checkpoint + 1, r.first - 1 + (int64_t)r.count, &first_run,
                                 &runs)) {
    choreo_frame_close(&r);
    return engine_pass_over_own(e, checkpoint + 1, r.first - 1 + (int64_t)r.count, first_run,
                                runs, res);
  }
  /* A savepoint per message costs two statements. A batch runs without them until a handler
   * fails; then it rolls back and runs again with them, so that only the failed message's
   * effects are undone (its handlers see the same messages before it, in the same order). */
  engine_first_try first = {.failed = false};
  bool careful = false, bad = false;
  int64_t last = checkpoint;
  for (;;) {
    rc = engine_begin_batch(e);
    if (!rc) rc = engine_run_frame(e, &r, checkpoint, careful, &first, res, &last, &bad);
    if (rc || bad || careful || !first.failed) break;
    choreo_store_rollback(e->store);
    res->applied = res->skipped = 0;
    choreo_frame_close(&r);
    choreo_frame_open(&r, buf, len); /* opened before: cannot fail */
    careful = true;
  }
  free(first.traceback);
  choreo_frame_close(&r);
  if (bad) {
    e->bad_frames++;
    choreo_store_rollback(e->store);
    return CHOREO_EINVAL;
  }
  if (!rc) rc = choreo_store_set_checkpoint(e->store, source, last);
  if (!rc) rc = engine_commit_batch(e);
  if (rc) return engine_fail_batch(e, rc);
  if (own) choreo_own_runs_drop_through(&e->own_runs, last);
  e->handled += (uint64_t)res->applied;
  return 0;
}

int choreo_engine_apply_frame(choreo_engine *e, const char *buf, size_t len,
                              choreo_apply_result *res) {
  return engine_apply(e, buf, len, false, res);
}

int choreo_engine_own_pending(choreo_engine *e, bool *pending) {
  int64_t head, checkpoint;
  int rc = choreo_store_head(e->store, &head);
  if (!rc) rc = choreo_store_checkpoint(e->store, e->name, &checkpoint);
  *pending = !rc && head > checkpoint;
  return rc;
}

bool choreo_engine_own_passable_pending(choreo_engine *e, int most) {
  int64_t head, checkpoint;
  int first, n;
  return !choreo_store_head(e->store, &head) &&
         !choreo_store_checkpoint(e->store, e->name, &checkpoint) && head > checkpoint &&
         head - checkpoint <= most && engine_own_passable(e, checkpoint + 1, head, &first, &n);
}

int choreo_engine_apply_own(choreo_engine *e, int max, bool *pending, choreo_apply_result *res) {
  memset(res, 0, sizeof *res);
  int64_t checkpoint;
  int rc = choreo_engine_own_pending(e, pending);
  if (!rc && *pending) rc = choreo_store_checkpoint(e->store, e->name, &checkpoint);
  if (rc || !*pending) return rc;
  int rows;
  rc = choreo_store_read_frame(e->store, e->name, checkpoint, max, OWN_FRAME_BYTES, &e->own_frame,
                               &rows);
  if (rc) return rc;
  return choreo_engine_apply_own_frame(e, e->own_frame.data, e->own_frame.size, pending, res);
}

int choreo_engine_apply_own_frame(choreo_engine *e, const char *buf, size_t len, bool *pending,
                                  choreo_apply_result *res) {
  int rc = engine_apply(e, buf, len, true, res);
  int pending_rc = choreo_engine_own_pending(e, pending);
  return rc ? rc : pending_rc;
}

typedef struct retry_run {
  choreo_engine *e;
  choreo_apply_result *res;
} retry_run;

static int engine_retry_one(void *ud, const choreo_retry_row *row) {
  retry_run *run = ud;
  choreo_engine *e = run->e;
  choreo_msg m;
  /* A row we cannot decode cannot happen for rows we wrote ourselves: drop rather than loop. */
  int rc = choreo_msg_decode(row->raw, row->len, &m) ? 0
           : engine_try(e, &m, row->attempts, row->dead_id, NULL, run->res);
  if (!rc) rc = choreo_store_retry_remove(e->store, row->id);
  return rc;
}

int choreo_engine_next_retry(choreo_engine *e, int64_t *due_ms) {
  return choreo_store_retry_next_due(e->store, due_ms);
}

int choreo_engine_run_retries(choreo_engine *e, choreo_apply_result *res) {
  memset(res, 0, sizeof *res);
  int64_t now = choreo_engine_now_ms(e), due;
  int rc = choreo_store_retry_next_due(e->store, &due);
  if (rc || due < 0 || due > now) return rc;
  retry_run run = {e, res};
  rc = engine_begin_batch(e);
  if (!rc) rc = choreo_store_retry_each_due(e->store, now, 100, engine_retry_one, &run);
  if (!rc) rc = engine_commit_batch(e);
  if (rc) return engine_fail_batch(e, rc);
  e->handled += (uint64_t)res->applied;
  return 0;
}

/* The time of the log rows a handling appends: its own, read once (a clock read showed in
 * profiles of handlers that emit bursts: ~30 ns on this VM); outside handlers, now. */
static int64_t engine_row_time(choreo_engine *e) {
  engine_handling *h = e->handling;
  if (!h) return choreo_engine_now_ms(e);
  if (h->at_ms < 0) h->at_ms = engine_wall_ms_at(e, h->started_us);
  return h->at_ms;
}

static int engine_append(choreo_engine *e, const choreo_msg_fields *f, int64_t *seq_out) {
  int64_t seq;
  int rc = choreo_store_append(e->store, f, engine_row_time(e), &seq);
  if (!rc) choreo_own_runs_add(&e->own_runs, choreo_store_epoch(e->store), seq, f);
  if (!rc && seq_out) *seq_out = seq;
  return rc;
}

int choreo_engine_head(choreo_engine *e, int64_t *head) {
  return choreo_store_head(e->store, head);
}

int choreo_engine_checkpoint(choreo_engine *e, const char *source, int64_t *seq) {
  return choreo_store_checkpoint(e->store, source, seq);
}

int choreo_engine_read_log(choreo_engine *e, int64_t after, int max_rows, size_t max_bytes,
                           msgpack_sbuffer *out, int *rows) {
  return choreo_store_read_frame(e->store, e->name, after, max_rows, max_bytes, out, rows);
}

typedef struct engine_sparse {
  msgpack_sbuffer body;
  size_t max_bytes;
  uint32_t count;
  int64_t last;
} engine_sparse;

static int engine_sparse_add(void *ud, int64_t seq, const char *msg, size_t len) {
  engine_sparse *sp = ud;
  /* within max_bytes unless one message alone is larger, as a log frame */
  if (sp->count > 0 && sp->body.size + len > sp->max_bytes) return 1;
  if (msgpack_sbuffer_write(&sp->body, msg, len)) return CHOREO_ENOMEM;
  sp->count++;
  sp->last = seq;
  return 0;
}

int choreo_engine_read_history(choreo_engine *e, int64_t after, int max_rows, size_t max_bytes,
                               msgpack_sbuffer *out, int *rows) {
  int64_t oldest, head;
  int rc = choreo_store_oldest(e->store, &oldest);
  if (!rc) rc = choreo_store_head(e->store, &head);
  if (rc) return rc;
  if (after < 0) return CHOREO_EINVAL;
  if (after > head) after = head; /* beyond our log: answered with our head, and no overflow */
  if (oldest == 0 || after + 1 >= oldest)
    return choreo_store_read_frame(e->store, e->name, after, max_rows, max_bytes, out, rows);
  /* Retention deleted the log before oldest: the stream events stay (choreo_streams). */
  engine_sparse sp = {.max_bytes = max_bytes, .last = after};
  msgpack_sbuffer_init(&sp.body);
  int n = 0;
  rc = choreo_streams_since(e->streams, after, oldest - 1, max_rows, engine_sparse_add, &sp, &n);
  bool cut = rc == 1 || (int)sp.count == max_rows;
  if (rc == 1) rc = 0;
  out->size = 0;
  if (!rc) rc = choreo_frame_header_sparse(out, e->name, after + 1, sp.count, head,
                                           cut ? sp.last : oldest - 1);
  if (!rc && msgpack_sbuffer_write(out, sp.body.data, sp.body.size)) rc = CHOREO_ENOMEM;
  msgpack_sbuffer_destroy(&sp.body);
  *rows = rc ? 0 : (int)sp.count;
  return rc;
}

bool choreo_engine_journaling(choreo_engine *e) { return e->journal != NULL; }

const choreo_stats *choreo_engine_stats(choreo_engine *e) { return &e->stats; }

size_t choreo_engine_lua_memory(choreo_engine *e) {
  if (!e->ops || !e->ops->memory) return 0;
  return (e->scripts ? e->ops->memory(e->scripts) : 0) + (e->serving ? e->ops->memory(e->serving) : 0);
}

int choreo_engine_journal_each(choreo_engine *e, const char *correlation, int max,
                               choreo_journal_fn fn, void *ud) {
  return e->journal ? choreo_journal_each(e->journal, correlation, max, fn, ud) : 0;
}

int choreo_engine_timeouts_of(choreo_engine *e, const char *correlation, int max,
                              choreo_timeout_fn fn, void *ud) {
  return choreo_timeouts_of(e->timeouts, correlation, max, fn, ud);
}

int choreo_engine_journal_recent(choreo_engine *e, int64_t window_ms, int max,
                                 choreo_journal_fn fn, void *ud, bool *more) {
  *more = false;
  if (!e->journal) return 0;
  return choreo_journal_recent(e->journal, choreo_engine_now_ms(e) - window_ms, max, fn, ud, more);
}

#define ENGINE_LOG_PAGE 256

int choreo_engine_log_each(choreo_engine *e, int64_t first, int64_t last, choreo_log_msg_fn fn,
                           void *ud) {
  msgpack_sbuffer page;
  msgpack_sbuffer_init(&page);
  int rc = 0;
  for (int64_t after = first - 1; !rc && after < last;) {
    int rows = 0;
    page.size = 0;
    int64_t wanted = last - after < ENGINE_LOG_PAGE ? last - after : ENGINE_LOG_PAGE;
    rc = choreo_store_read_frame(e->store, e->name, after, (int)wanted, 1u << 20, &page, &rows);
    if (rc || rows == 0) break;
    choreo_frame_reader r;
    if ((rc = choreo_frame_open(&r, page.data, page.size))) break;
    choreo_msg m;
    while (!rc && choreo_frame_next(&r, &m) == 1 && m.seq <= last) {
      after = m.seq;
      rc = fn(ud, &m);
    }
    if (!rc && after < r.first - 1 + (int64_t)r.count) after = last; /* passed last */
    choreo_frame_close(&r);
  }
  msgpack_sbuffer_destroy(&page);
  return rc;
}

static int engine_found_correlation(void *ud, const choreo_msg *m) {
  choreo_str c = m->correlationid.p ? m->correlationid : m->id;
  *(char **)ud = strndup(c.p, c.n);
  return *(char **)ud ? 1 : CHOREO_ENOMEM;
}

int choreo_engine_conversation_of(choreo_engine *e, const char *id, char **out) {
  *out = NULL;
  size_t own = strlen(e->name);
  if (strncmp(id, e->name, own) != 0 || id[own] != '/') return 0;
  char *end;
  long long seq = strtoll(id + own + 1, &end, 10);
  if (*end || seq < 1) return 0;
  int rc = choreo_engine_log_each(e, seq, seq, engine_found_correlation, out);
  return rc > 0 ? 0 : rc;
}

int choreo_engine_subscriber_seen(choreo_engine *e, const char *name, int64_t applied) {
  return choreo_store_subscriber_seen(e->store, name, applied, choreo_engine_now_ms(e));
}

int choreo_engine_trim(choreo_engine *e, int64_t retain_ms, int64_t retain_max_ms, int max_rows,
                       int *deleted) {
  int64_t now = choreo_engine_now_ms(e), own, head, wanted = 0;
  bool any = false;
  *deleted = 0;
  int rc = choreo_store_begin(e->store);
  if (!rc) rc = choreo_store_checkpoint(e->store, e->name, &own);
  if (!rc) rc = choreo_store_head(e->store, &head);
  if (!rc) rc = choreo_store_subscribers_min(e->store, now - retain_max_ms, &wanted, &any);
  if (!rc) {
    int64_t hard = own < head - 1 ? own : head - 1;
    choreo_trim t = {.served_upto = any && wanted < hard ? wanted : hard,
                     .retain_before_ms = now - retain_ms,
                     .hard_upto = hard,
                     .max_before_ms = now - retain_max_ms};
    rc = choreo_store_trim(e->store, &t, max_rows, deleted);
  }
  /* Dead letters nobody looked at within retain_max go too, in what is left of this round. */
  int dead = 0;
  if (!rc && *deleted < max_rows)
    rc = choreo_store_dead_expire(e->store, now - retain_max_ms, max_rows - *deleted, &dead);
  /* And workflow instances that ended that long ago, with their histories. */
  int ended = 0;
  if (!rc && *deleted + dead < max_rows)
    rc = choreo_workflows_expire(e->workflows, now - retain_max_ms, max_rows - *deleted - dead,
                                 &ended);
  /* And the journal's rows older than the log's retention. */
  int journaled = 0;
  if (!rc && e->journal && *deleted + dead + ended < max_rows)
    rc = choreo_journal_expire(e->journal, now - retain_ms, max_rows - *deleted - dead - ended,
                               &journaled);
  /* And the inputs kept for projections' builds of types no projection has named that long. */
  int inputs = 0;
  if (!rc && *deleted + dead + ended + journaled < max_rows)
    rc = choreo_projections_expire(e->projections, now - retain_max_ms,
                                   max_rows - *deleted - dead - ended - journaled, &inputs);
  if (!rc) rc = choreo_store_commit(e->store);
  if (rc) return engine_fail_batch(e, rc);
  if (dead)
    choreo_log(CHOREO_LOG_WARN, e->name, "retention deleted %d dead letters older than %llds",
               dead, (long long)(retain_max_ms / 1000));
  if (ended)
    choreo_log(CHOREO_LOG_INFO, e->name, "retention deleted %d workflow instances that ended "
               "over %llds ago", ended, (long long)(retain_max_ms / 1000));
  if (inputs)
    choreo_log(CHOREO_LOG_INFO, e->name, "retention deleted %d inputs kept for projections, of "
               "types no projection has named for %llds", inputs, (long long)(retain_max_ms / 1000));
  *deleted += dead + ended + journaled + inputs;
  return 0;
}

int choreo_engine_log_extent(choreo_engine *e, int64_t *oldest, int64_t *bytes,
                             int64_t *wal_bytes) {
  *wal_bytes = choreo_store_wal_size(e->store);
  int rc = choreo_store_oldest(e->store, oldest);
  return rc ? rc : choreo_store_size(e->store, bytes);
}

int choreo_engine_skip_gone(choreo_engine *e, const char *source, int64_t upto, int64_t *lost) {
  int64_t checkpoint;
  *lost = 0;
  int rc = choreo_store_checkpoint(e->store, source, &checkpoint);
  if (rc || checkpoint >= upto) return rc;
  rc = choreo_store_begin(e->store);
  if (!rc) rc = choreo_store_set_checkpoint(e->store, source, upto);
  if (!rc) rc = choreo_store_commit(e->store);
  if (rc) return engine_fail_batch(e, rc);
  *lost = upto - checkpoint;
  choreo_log(CHOREO_LOG_WARN, e->name,
             "messages %lld to %lld of %s are gone from its log (its retention ran before we "
             "fetched them): skipped",
             (long long)checkpoint + 1, (long long)upto, source);
  return 0;
}

int choreo_engine_dead_each(choreo_engine *e, choreo_dead_fn fn, void *ud) {
  return choreo_store_dead_each(e->store, fn, ud);
}

int choreo_engine_dead_retry(choreo_engine *e, int64_t id) {
  return choreo_store_dead_retry(e->store, id, choreo_engine_now_ms(e));
}

int choreo_engine_dead_drop(choreo_engine *e, int64_t id) {
  return choreo_store_dead_drop(e->store, id);
}

int choreo_engine_retry_count(choreo_engine *e, int64_t *count) {
  return choreo_store_retry_count(e->store, count);
}

choreo_workflows *choreo_engine_workflows(choreo_engine *e) { return e->workflows; }

int choreo_engine_workflow_cache(choreo_engine *e) { return e->workflow_cache; }
int choreo_engine_workflow_history_max(choreo_engine *e) { return e->workflow_history_max; }

int choreo_engine_check_workflows(choreo_engine *e, char *err, size_t errlen) {
  if (!e->scripts || !e->ops->check_workflows) return 0;
  return e->ops->check_workflows(e->scripts, err, errlen);
}

int choreo_engine_saga_count(choreo_engine *e, int64_t *count) {
  return choreo_sagas_count(e->sagas, count);
}

int choreo_engine_dead_count(choreo_engine *e, int64_t *count) {
  return choreo_store_dead_count(e->store, count);
}

int choreo_engine_sagas_each(choreo_engine *e, const char *name, const char *key,
                             choreo_saga_fn fn, void *ud) {
  return choreo_sagas_each(e->sagas, name, key, fn, ud);
}

int choreo_engine_emit(choreo_engine *e, const char *kind, const char *to, const char *type,
                       const char *data, size_t data_len, int64_t *seq_out) {
  return choreo_engine_emit_batch(e, kind, to, type, NULL, &data, &data_len, 1, NULL, seq_out,
                                  NULL);
}

int choreo_engine_emit_batch(choreo_engine *e, const char *kind, const char *to, const char *type,
                             const choreo_emit_opts *opts, const char *const *data,
                             const size_t *len, int n, const char *key, int64_t *first_seq,
                             bool *repeated) {
  static const choreo_emit_opts none = {0};
  if (!opts) opts = &none;
  int64_t first = 0;
  bool found = false;
  int rc = choreo_store_begin(e->store);
  if (!rc && key) rc = choreo_store_request_find(e->store, key, &first, &found);
  for (int i = 0; !rc && !found && i < n; i++) {
    choreo_msg_fields f = {.source = e->name, .type = type, .kind = kind, .to = to,
                           .subject = opts->subject, .correlationid = opts->correlationid,
                           .traceparent = opts->traceparent,
                           .has_expectedversion = opts->has_expectedversion,
                           .expectedversion = opts->expectedversion,
                           .data = len[i] ? data[i] : NULL, .data_len = len[i]};
    rc = engine_append(e, &f, i == 0 ? &first : NULL);
  }
  if (!rc && key && !found) rc = choreo_store_request_record(e->store, key, first);
  if (!rc) rc = choreo_store_commit(e->store);
  if (rc) return engine_fail_batch(e, rc);
  if (first_seq) *first_seq = first;
  if (repeated) *repeated = found;
  return 0;
}

/* s as a C string in t, whose buffer is kept for the next one; NULL for none, or no memory. */
static const char *engine_text_of(struct engine_text *t, choreo_str s) {
  if (!s.p) return NULL;
  if (s.n >= t->cap) {
    char *p = realloc(t->p, s.n + 1);
    if (!p) return NULL;
    t->p = p;
    t->cap = s.n + 1;
  }
  memcpy(t->p, s.p, s.n);
  t->p[s.n] = '\0';
  return t->p;
}

/* The current message's id and correlation (its own id when it starts a conversation), as
 * what it causes names them. In buffers the engine keeps: a handler emitting a burst copied
 * and freed both for every message. False when there is no memory. */
static bool engine_cause(choreo_engine *e, const char **id, const char **correlation) {
  const choreo_msg *m = e->current;
  *id = engine_text_of(&e->cause_id, m->id);
  *correlation = engine_text_of(&e->cause_correlation,
                                m->correlationid.p ? m->correlationid : m->id);
  return *id && *correlation;
}

/* Appends f as a message the handled one caused: it continues that one's conversation (its
 * correlation, unless f names one), names it as the cause, and is a child of its handling's
 * span when that is part of a trace. */
static int engine_append_caused(choreo_engine *e, choreo_msg_fields f, int64_t *seq) {
  const char *id, *correlation;
  if (!engine_cause(e, &id, &correlation)) return CHOREO_ENOMEM;
  char traceparent[CHOREO_TRACEPARENT_LEN + 1];
  if (e->handling && e->handling->traced) choreo_traceparent_format(&e->handling->span, traceparent);
  if (!f.correlationid) f.correlationid = correlation;
  f.causationid = id;
  f.traceparent = e->handling && e->handling->traced ? traceparent : NULL;
  return engine_append(e, &f, seq);
}

int choreo_engine_emit_from_handler(choreo_engine *e, const char *kind, const char *to,
                                    const char *type, const char *data, size_t data_len,
                                    const choreo_emit_opts *opts, int64_t *seq) {
  if (!e->current) return CHOREO_EINVAL;
  choreo_msg_fields f = {.source = e->name, .type = type, .kind = kind, .to = to,
                         .subject = opts->subject, .correlationid = opts->correlationid,
                         .has_expectedversion = opts->has_expectedversion,
                         .expectedversion = opts->expectedversion,
                         .data = data, .data_len = data_len};
  return engine_append_caused(e, f, seq);
}

static choreo_msg_fields engine_timeout_message(choreo_engine *e, const choreo_timeout *t) {
  return (choreo_msg_fields){.source = e->name, .type = t->type, .kind = "timeout", .to = e->name,
                             .correlationid = t->correlationid, .causationid = t->causationid,
                             .subject = t->subject, .data = t->data, .data_len = t->data_len};
}

/* A timeout becomes a log row when it fires, long after its handler: one too big for the log
 * must be refused now, while the handler can still fail. */
static int engine_timeout_fits(choreo_engine *e, const choreo_timeout *t) {
  choreo_msg_fields f = engine_timeout_message(e, t);
  f.seq = INT64_MAX; /* the longest id it could get */
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  int rc = choreo_msg_encode(&f, &sb);
  if (!rc && sb.size > e->max_message) rc = CHOREO_ETOOBIG;
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

int choreo_engine_timeout_from_handler(choreo_engine *e, double seconds, const char *type,
                                       const char *data, size_t data_len, const char *subject) {
  const char *id, *correlation;
  if (!e->current) return CHOREO_EINVAL;
  if (!engine_cause(e, &id, &correlation)) return CHOREO_ENOMEM;
  choreo_timeout t = {.due_ms = choreo_engine_now_ms(e) + (int64_t)(seconds * 1000),
                      .type = type, .correlationid = correlation, .causationid = id,
                      .subject = subject, .data = data, .data_len = data_len};
  int rc = engine_timeout_fits(e, &t);
  if (!rc) rc = choreo_timeouts_add(e->timeouts, &t);
  if (!rc && e->next_timeout_known && (e->next_timeout < 0 || t.due_ms < e->next_timeout))
    e->next_timeout = t.due_ms;
  return rc;
}

int choreo_engine_cancel_timeouts(choreo_engine *e, const char *subject) {
  if (!e->current) return CHOREO_EINVAL;
  e->next_timeout_known = false;
  return choreo_timeouts_cancel(e->timeouts, subject);
}

int choreo_engine_next_timeout(choreo_engine *e, int64_t *due_ms) {
  uint64_t epoch = choreo_store_epoch(e->store);
  if (e->next_timeout_known && e->next_timeout_epoch == epoch) {
    *due_ms = e->next_timeout;
    return 0;
  }
  int rc = choreo_timeouts_next_due(e->timeouts, &e->next_timeout);
  e->next_timeout_known = rc == 0;
  e->next_timeout_epoch = epoch;
  *due_ms = e->next_timeout;
  return rc;
}

int choreo_engine_pending_timeouts(choreo_engine *e, int64_t *count) {
  return choreo_timeouts_count(e->timeouts, count);
}

static int engine_fire_one(void *ud, const choreo_timeout *t) {
  choreo_engine *e = ud;
  choreo_msg_fields f = engine_timeout_message(e, t);
  return engine_append(e, &f, NULL);
}

int choreo_engine_fire_timeouts(choreo_engine *e) {
  int64_t due, now = choreo_engine_now_ms(e);
  int rc = choreo_engine_next_timeout(e, &due);
  if (rc || due < 0 || due > now) return rc;
  e->next_timeout_known = false;
  rc = choreo_store_begin(e->store);
  if (!rc) rc = choreo_timeouts_take_due(e->timeouts, now, 1000, engine_fire_one, e);
  if (!rc) rc = choreo_store_commit(e->store);
  return rc ? engine_fail_batch(e, rc) : 0;
}

/* ---- event streams ---- */

int choreo_engine_stream_append(choreo_engine *e, const char *stream, int64_t expect,
                                const choreo_stream_event *events, int n, int64_t *version,
                                bool *conflict, choreo_stream_fn appended, void *ud) {
  bool own = !e->current; /* outside a handler: a transaction of its own */
  int64_t v = 0;
  *conflict = false;
  int rc = own ? choreo_store_begin(e->store) : 0;
  if (!rc) rc = choreo_streams_version(e->streams, stream, &v);
  if (!rc && expect >= 0 && expect != v) *conflict = true;
  for (int i = 0; !rc && !*conflict && i < n; i++) {
    choreo_msg_fields f = {.source = e->name, .type = events[i].type, .kind = "event",
                           .subject = stream, .streamversion = v + 1,
                           .dataschema = events[i].schema,
                           .data = events[i].len ? events[i].data : NULL,
                           .data_len = events[i].len};
    int64_t seq;
    rc = own ? engine_append(e, &f, &seq) : engine_append_caused(e, f, &seq);
    const msgpack_sbuffer *encoded = choreo_store_appended(e->store);
    if (!rc) rc = choreo_streams_add(e->streams, stream, v + 1, seq, encoded->data, encoded->size);
    if (!rc && appended) rc = appended(ud, v + 1, encoded->data, encoded->size);
    if (!rc) v++;
  }
  if (own && !rc && !*conflict) {
    rc = choreo_store_commit(e->store);
    e->appends_outside++;
  } else if (own && !rc) {
    choreo_store_rollback(e->store);
  }
  if (own && rc) return engine_fail_batch(e, rc);
  *version = v;
  return rc;
}

uint64_t choreo_engine_epoch(choreo_engine *e) {
  if (choreo_store_foreign_savepoints(e->store)) return ++e->unseen_epoch | (1ull << 63);
  /* Both only grow, so their sum changes whenever either does. */
  return choreo_store_epoch(e->store) + e->appends_outside;
}

int choreo_engine_stream_version(choreo_engine *e, const char *stream, int64_t *version) {
  return choreo_streams_version(e->streams, stream, version);
}

int choreo_engine_stream_each(choreo_engine *e, const char *stream, int64_t after,
                              choreo_stream_fn fn, void *ud) {
  return choreo_streams_each(e->streams, stream, after, fn, ud);
}

int choreo_engine_snapshot_load(choreo_engine *e, const char *stream, const char *fingerprint,
                                msgpack_sbuffer *state, int64_t *version, bool *found) {
  return choreo_streams_snapshot_load(e->streams, stream, fingerprint, state, version, found);
}

int choreo_engine_snapshot_save(choreo_engine *e, const char *stream, int64_t version,
                                const char *fingerprint, const char *state, size_t len) {
  return choreo_streams_snapshot_save(e->streams, stream, version, fingerprint, state, len);
}

int choreo_engine_snapshots_drop_stale(choreo_engine *e, const char *prefix,
                                       const char *fingerprint, int *dropped) {
  return choreo_streams_snapshots_drop_stale(e->streams, prefix, fingerprint, dropped);
}

/* ---- sagas: only while a handler runs, in its transaction ---- */

int choreo_engine_saga_load(choreo_engine *e, const char *name, const char *key,
                            msgpack_sbuffer *state, int64_t *version, bool *found) {
  if (!e->current) return CHOREO_EINVAL;
  return choreo_sagas_load(e->sagas, name, key, state, version, found);
}

int choreo_engine_saga_save(choreo_engine *e, const char *name, const char *key,
                            const char *state, size_t state_len, int64_t version) {
  if (!e->current) return CHOREO_EINVAL;
  return choreo_sagas_save(e->sagas, name, key, state, state_len, version);
}

int choreo_engine_saga_remove(choreo_engine *e, const char *name, const char *key) {
  if (!e->current) return CHOREO_EINVAL;
  return choreo_sagas_remove(e->sagas, name, key);
}

int choreo_engine_saga_miss(choreo_engine *e, const char *name, const char *type) {
  if (!e->current) return CHOREO_EINVAL;
  return choreo_sagas_miss(e->sagas, name, type);
}

/* ---- projections ---- */

typedef struct engine_build_call {
  choreo_engine *e;
  const char *name;
  sqlite3 *build;
  enum { BUILD_HISTORY, BUILD_STREAMS, BUILD_INPUTS } from;
  const choreo_build_history *history;
  sqlite3_stmt *holds; /* whether the history holds a kept input (choreo_build_history_holds) */
  int64_t last;       /* the last stream event applied */
  int64_t last_input; /* the last kept input applied */
  char last_source[CHOREO_NAME_MAX + 1]; /* the last message of the history applied */
  int64_t last_seq;
  int skipped; /* kept inputs the history covered */
  char err[512];
} engine_build_call;

/* One message of the history, stream event (seq) or kept input (id) into the build. */
static int engine_build_one(void *ud, int64_t at, const char *buf, size_t len) {
  engine_build_call *call = ud;
  choreo_engine *e = call->e;
  choreo_msg m;
  char why[400];
  static const char *const what[] = {"history message", "stream event at seq", "kept input"};
  if (choreo_msg_decode(buf, len, &m)) {
    snprintf(call->err, sizeof call->err, "%s %lld is not a message", what[call->from],
             (long long)at);
    return CHOREO_EINVAL;
  }
  int held = call->from == BUILD_INPUTS && call->holds
                 ? choreo_build_history_holds(call->history, call->holds, m.source, m.seq)
                 : 0;
  if (held < 0) {
    snprintf(call->err, sizeof call->err, "cannot read the history it fetched");
    return held;
  }
  if (held) {
    call->last_input = at; /* applied with the history already */
    call->skipped++;
    return 0;
  }
  int rc = e->ops->project(e->scripts, call->name, &m, call->build, why, sizeof why);
  if (choreo_engine_interrupted(e)) return CHOREO_ESTOPPED;
  /* SQLite ended the build's transaction (ON CONFLICT ROLLBACK, a disk error a handler caught):
   * what came before is gone, and what would follow would commit piecemeal. */
  if (!rc && sqlite3_get_autocommit(call->build)) {
    snprintf(why, sizeof why, "the handler's SQL ended the build's transaction (a ROLLBACK "
             "conflict clause, or an I/O error); the build starts afresh next time");
    rc = CHOREO_EIO;
  }
  if (rc && call->from != BUILD_STREAMS) {
    snprintf(call->err, sizeof call->err, "%.*s/%lld (%.*s): %s", (int)m.source.n, m.source.p,
             (long long)m.seq, (int)m.type.n, m.type.p, why);
    return rc;
  }
  if (rc) {
    snprintf(call->err, sizeof call->err, "%.*s event %lld (%.*s): %s", (int)m.subject.n,
             m.subject.p, (long long)m.streamversion, (int)m.type.n, m.type.p, why);
    return rc;
  }
  if (call->from == BUILD_HISTORY) {
    snprintf(call->last_source, sizeof call->last_source, "%.*s", (int)m.source.n, m.source.p);
    call->last_seq = m.seq;
  } else if (call->from == BUILD_INPUTS) {
    call->last_input = at;
  } else {
    call->last = at;
  }
  return 0;
}

typedef struct engine_plan {
  choreo_engine *e;
  const char *projection;
  choreo_history_source *list;
  int n;
} engine_plan;

static bool engine_plan_takes(void *ud, const char *type, size_t len) {
  engine_plan *plan = ud;
  return choreo_projections_takes(plan->e->projections, plan->projection, type, len);
}

/* A source is planned unless it never sent a type the projection takes. (This host is one:
 * its plain events older than what was kept are in its own log.) */
static int engine_plan_source(void *ud, const char *source, int64_t seq) {
  engine_plan *plan = ud;
  if (strlen(source) > CHOREO_NAME_MAX) return 0;
  bool may = true;
  int rc = choreo_source_types_may_have_sent(plan->e->source_types, source, engine_plan_takes,
                                             plan, &may);
  if (rc || !may) return rc;
  choreo_history_source *grown = realloc(plan->list, (size_t)(plan->n + 1) * sizeof *grown);
  if (!grown) return CHOREO_ENOMEM;
  plan->list = grown;
  grown[plan->n++] = (choreo_history_source){.upto = seq};
  snprintf(grown[plan->n - 1].name, sizeof grown->name, "%s", source);
  return 0;
}

/* Reads the history of a build, planning it first if it has none yet: a build that has not
 * started fetches, from each other host it applied messages from that may have sent a type the
 * projection takes, that host's history up to its checkpoint now. (A build file from before
 * history, under way already, goes on without.) */
static int engine_build_history(choreo_engine *e, const char *name, sqlite3 *build,
                                int64_t position, int64_t inputs, choreo_build_history *h) {
  int rc = choreo_build_history_read(build, h);
  if (rc || h->planned) return rc;
  engine_plan plan = {.e = e, .projection = name};
  if (e->fetch_history && position == 0 && inputs == 0)
    rc = choreo_store_checkpoints_each(e->store, engine_plan_source, &plan);
  if (!rc) rc = choreo_build_history_plan(build, plan.list, plan.n);
  free(plan.list);
  choreo_build_history_free(h);
  return rc ? rc : choreo_build_history_read(build, h);
}

/* The build to step: which, its file, its positions, its history (freed by the caller). */
typedef struct engine_build {
  const char *name;
  sqlite3 *file;
  int64_t position, inputs;
  choreo_build_history h;
} engine_build;

/* The build to step, with its history; false when there is none (or it cannot be read: then
 * the build has stopped, saying why), or a handler runs. */
static bool engine_next_build(choreo_engine *e, engine_build *b) {
  if (e->current) return false;
  while (choreo_projections_next_build(e->projections, &b->name, &b->file, &b->position,
                                       &b->inputs)) {
    if (!engine_build_history(e, b->name, b->file, b->position, b->inputs, &b->h)) return true;
    choreo_projections_fail(e->projections, b->name, "cannot read or plan the history it fetches");
  }
  return false;
}

static void engine_said_given_up(const char *name, const choreo_history_source *s) {
  choreo_log(CHOREO_LOG_WARN, "projections", "%s: building without %s's history: %s (what this "
             "host kept of it is applied)", name, s->name, s->why);
}

typedef struct engine_history_page {
  choreo_history_page page;
  const char *source;
  int64_t last; /* the last kept input merged */
  int64_t *pending; /* seqs of the source this host has not applied (retries, dead letters) */
  size_t npending, cap;
} engine_history_page;

static int engine_history_keep_one(void *ud, int64_t seq, const char *msg, size_t len) {
  engine_history_page *p = ud;
  p->last = seq;
  return choreo_build_history_store_kept(&p->page, (choreo_str){p->source, strlen(p->source)}, seq,
                                         msg, len);
}

/* Merges a batch of what this host kept of s (up to its plan) into the history. */
static int engine_history_merge(choreo_engine *e, sqlite3 *build, const choreo_history_source *s,
                                int max) {
  choreo_history_source next = *s;
  engine_history_page p = {.source = s->name, .last = s->merged};
  int n = 0, rc = choreo_build_history_begin(build, &p.page);
  if (rc) return rc;
  rc = choreo_projections_inputs_of(e->projections, s->name, s->merged, s->upto, max,
                                    engine_history_keep_one, &p, &n);
  next.merged = n < max ? s->upto : p.last;
  if (!rc) rc = choreo_build_history_progress(&p.page, &next);
  return choreo_build_history_end(&p.page, rc);
}

/* A page of this host's own history after `after`, taken as a peer's answer would be. */
static int engine_history_own_page(choreo_engine *e, int64_t after) {
  msgpack_sbuffer page;
  msgpack_sbuffer_init(&page);
  int rows;
  int rc = choreo_engine_read_history(e, after, CHOREO_FETCH_ROWS, CHOREO_FETCH_BYTES, &page,
                                      &rows);
  if (!rc) rc = choreo_engine_history_take(e, page.data, page.size, after);
  msgpack_sbuffer_destroy(&page);
  return rc;
}

int choreo_engine_projections_step(choreo_engine *e, int max, bool *pending) {
  engine_build b;
  int64_t target;
  *pending = false;
  if (e->current) return CHOREO_EINVAL;
  if (!e->scripts || !e->ops->project || !engine_next_build(e, &b)) return 0;
  const char *name = b.name;
  sqlite3 *build = b.file;
  int64_t position = b.position, inputs = b.inputs;
  choreo_build_history h = b.h;
  const choreo_history_source *wanted = choreo_build_history_wanted(&h);
  if (wanted && strcmp(wanted->name, e->name) == 0) { /* our own log: read here, a page a step */
    int rc = engine_history_own_page(e, wanted->fetched);
    choreo_build_history_free(&h);
    if (rc) choreo_projections_fail(e->projections, name, "cannot read this host's own history");
    *pending = choreo_projections_next_build(e->projections, &name, &build, &position, &inputs);
    return 0;
  }
  if (wanted) { /* the host fetches it; each page it takes wakes us */
    choreo_build_history_free(&h);
    return 0;
  }
  const choreo_history_source *merging = choreo_build_history_merging(&h);
  if (merging) {
    int rc = engine_history_merge(e, build, merging, max * 10);
    choreo_build_history_free(&h);
    if (rc) choreo_projections_fail(e->projections, name, "cannot merge what this host kept into "
                                                          "the history it fetched");
    *pending = choreo_projections_next_build(e->projections, &name, &build, &position, &inputs);
    return 0;
  }
  int rc = choreo_store_checkpoint(e->store, e->name, &target);
  if (!rc && sqlite3_get_autocommit(build) &&
      sqlite3_exec(build, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
    choreo_projections_fail(e->projections, name, sqlite3_errmsg(build));
    choreo_build_history_free(&h);
    *pending = choreo_projections_next_build(e->projections, &name, &build, &position, &inputs);
    return 0;
  }
  /* The history fetched from other hosts, then this host's stream events it has seen itself,
   * then what was kept of the rest. */
  engine_build_call call = {.e = e, .name = name, .build = build, .history = &h,
                            .last = position, .last_input = inputs, .last_seq = h.replay_seq};
  snprintf(call.last_source, sizeof call.last_source, "%s", h.replay_source);
  int replayed = 0, n = 0, kept = 0;
  if (!rc && h.planned && !h.replayed) {
    call.from = BUILD_HISTORY;
    rc = choreo_build_history_replay(build, h.replay_source, h.replay_seq, max, engine_build_one,
                                     &call, &replayed);
    if (!rc)
      rc = choreo_build_history_advance(build, call.last_source, call.last_seq, replayed < max);
  }
  if (!rc && replayed < max) {
    call.from = BUILD_STREAMS;
    rc = choreo_streams_since(e->streams, position, target, max - replayed, engine_build_one,
                              &call, &n);
  }
  if (!rc && replayed + n < max) {
    call.from = BUILD_INPUTS;
    if (h.n > 0) rc = choreo_build_history_holds_prepare(build, &call.holds);
    if (!rc)
      rc = choreo_projections_inputs_since(e->projections, inputs, max - replayed - n,
                                           engine_build_one, &call, &kept);
    sqlite3_finalize(call.holds);
  }
  choreo_build_history_free(&h);
  if (rc == CHOREO_ESTOPPED) { /* what the build had not committed goes; it resumes from its file */
    choreo_projections_put_down(e->projections, name);
    return rc;
  }
  int done = replayed + n + kept;
  bool caught_up = done < max;
  if (rc) {
    choreo_projections_fail(e->projections, name, call.err[0] ? call.err : "cannot read the streams");
  } else if (!choreo_projections_advance(e->projections, name, call.last, call.last_input,
                                         done - call.skipped, caught_up) &&
             caught_up) {
    choreo_projections_swap(e->projections, name);
    engine_keep_serving(e, NULL);
  }
  *pending = choreo_projections_next_build(e->projections, &name, &build, &position, &inputs);
  return 0;
}

bool choreo_engine_history_wanted(choreo_engine *e, char *source, size_t len, int64_t *after) {
  engine_build b;
  if (!engine_next_build(e, &b)) return false;
  const choreo_history_source *s = choreo_build_history_wanted(&b.h);
  if (s) {
    snprintf(source, len, "%s", s->name);
    *after = s->fetched;
  }
  choreo_build_history_free(&b.h);
  return s != NULL;
}

static int engine_history_note_pending(void *ud, int64_t seq) {
  engine_history_page *p = ud;
  if (p->npending == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 16;
    int64_t *grown = realloc(p->pending, cap * sizeof *grown);
    if (!grown) return CHOREO_ENOMEM;
    p->pending = grown;
    p->cap = cap;
  }
  p->pending[p->npending++] = seq;
  return 0;
}

/* Stores what the build takes of one page of s's history (r), and how far s is fetched. */
static int engine_history_store_page(choreo_engine *e, const char *name, engine_history_page *p,
                                     choreo_history_source *s, choreo_frame_reader *r) {
  /* What the page covers: of a log page, its rows (starting later than asked when retention
   * was quicker than our build); of a sparse one, everything up to through, of which only the
   * stream events are left. Seqs in it that are not in it are gone. */
  int64_t from = s->fetched, to = r->sparse ? r->through : r->first - 1 + (int64_t)r->count;
  if (to > s->upto) to = s->upto;
  int rc = to > from ? choreo_store_pending_seqs(e->store, s->name, strlen(s->name), from + 1, to,
                                                 engine_history_note_pending, p)
                     : 0;
  int64_t seen = 0;
  size_t next_pending = 0;
  choreo_msg m;
  int got = 0;
  while (!rc && (got = choreo_frame_next(r, &m)) == 1 && m.seq <= to) {
    if (m.seq <= from) continue;
    seen++;
    while (next_pending < p->npending && p->pending[next_pending] < m.seq) next_pending++;
    if (next_pending < p->npending && p->pending[next_pending] == m.seq) continue; /* not applied */
    if (m.streamversion > 0 && choreo_str_eq(m.source, e->name)) continue; /* in the streams */
    if (engine_is_for_us(e, &m) && choreo_projections_takes(e->projections, name, m.type.p, m.type.n))
      rc = choreo_build_history_store(&p->page, m.source, m.seq, m.raw, m.raw_len);
  }
  if (!rc && got < 0) rc = got;
  if (to > from) {
    s->gone += to - from - seen;
    s->fetched = to;
  }
  if (s->fetched >= s->upto) {
    s->state = CHOREO_HISTORY_FETCHED;
  } else if (to <= from) { /* nothing new, which a log that holds upto cannot give: said, and
                            * ended, so a build does not ask for ever */
    s->state = CHOREO_HISTORY_GIVEN_UP;
    snprintf(s->why, sizeof s->why, "its answer after seq %lld held nothing (its log reaches "
             "seq %lld)", (long long)from, (long long)r->head);
  }
  return rc;
}

int choreo_engine_history_take(choreo_engine *e, const char *frame, size_t len, int64_t after) {
  engine_build b;
  if (e->current) return CHOREO_EINVAL;
  if (!engine_next_build(e, &b)) return 0;
  const char *name = b.name;
  choreo_build_history h = b.h;
  choreo_frame_reader r;
  const choreo_history_source *wanted = choreo_build_history_wanted(&h);
  int rc = choreo_frame_open_sparse(&r, frame, len);
  /* An answer to an older ask (another build's, one before a restart of this one) is left. */
  if (rc || !wanted || !choreo_str_eq(r.source, wanted->name) || after != wanted->fetched) {
    if (!rc) choreo_frame_close(&r);
    choreo_build_history_free(&h);
    return rc;
  }
  choreo_history_source *s = choreo_build_history_find(&h, r.source.p, r.source.n);
  engine_history_page p = {.source = s->name};
  rc = choreo_build_history_begin(b.file, &p.page);
  bool begun = !rc;
  if (!rc && r.head < s->upto) { /* not the log this host applied: the host was replaced */
    s->state = CHOREO_HISTORY_GIVEN_UP;
    snprintf(s->why, sizeof s->why, "its log ends at seq %lld, before the %lld this host applied "
             "(was its database replaced?)", (long long)r.head, (long long)s->upto);
  } else if (!rc) {
    rc = engine_history_store_page(e, name, &p, s, &r);
  }
  if (!rc) rc = choreo_build_history_progress(&p.page, s);
  if (begun) rc = choreo_build_history_end(&p.page, rc);
  free(p.pending);
  choreo_frame_close(&r);
  if (!rc && s->state == CHOREO_HISTORY_GIVEN_UP)
    engine_said_given_up(name, s);
  else if (!rc && s->state == CHOREO_HISTORY_FETCHED && s->gone)
    choreo_log(CHOREO_LOG_WARN, "projections", "%s: fetched %s's history through seq %lld; %lld "
               "of its messages were gone from its log (what this host kept of them is applied)",
               name, s->name, (long long)s->upto, (long long)s->gone);
  else if (!rc && s->state == CHOREO_HISTORY_FETCHED)
    choreo_log(CHOREO_LOG_INFO, "projections", "%s: fetched %s's history through seq %lld", name,
               s->name, (long long)s->upto);
  choreo_build_history_free(&h);
  return rc;
}

int choreo_engine_history_give_up(choreo_engine *e, const char *source, const char *why) {
  engine_build b;
  if (e->current) return CHOREO_EINVAL;
  if (!engine_next_build(e, &b)) return 0;
  choreo_history_source *s = choreo_build_history_find(&b.h, source, strlen(source));
  int rc = 0;
  if (s && s->state == CHOREO_HISTORY_FETCHING) {
    s->state = CHOREO_HISTORY_GIVEN_UP;
    snprintf(s->why, sizeof s->why, "%s", why);
    choreo_history_page page;
    rc = choreo_build_history_begin(b.file, &page);
    if (!rc) rc = choreo_build_history_end(&page, choreo_build_history_progress(&page, s));
    if (!rc) engine_said_given_up(b.name, s);
  }
  choreo_build_history_free(&b.h);
  return rc;
}

int choreo_engine_projection_keep(choreo_engine *e) {
  const choreo_msg *m = e->current;
  if (!m || !m->raw) return 0;
  if (m->streamversion > 0 && choreo_str_eq(m->source, e->name)) return 0; /* in the streams */
  return choreo_projections_keep(e->projections, m->source.p, m->source.n, m->seq, m->type.p,
                                 m->type.n, m->raw, m->raw_len);
}

bool choreo_engine_projections_building(choreo_engine *e) {
  return choreo_projections_building(e->projections);
}

int choreo_engine_projection_rebuild(choreo_engine *e, const char *name, char *err,
                                     size_t errlen) {
  if (e->current) return CHOREO_EINVAL;
  return choreo_projections_rebuild(e->projections, name, err, errlen);
}

bool choreo_engine_projection_applies(choreo_engine *e, const char *name, int64_t version) {
  const choreo_msg *m = e->current;
  bool own_stream = m && m->streamversion > 0 && choreo_str_eq(m->source, e->name);
  return choreo_projections_applies(e->projections, name, version, own_stream ? m->seq : 0);
}

typedef struct engine_each_projection {
  choreo_engine *e;
  choreo_projection_fn fn;
  void *ud;
} engine_each_projection;

/* Says how a build's history goes: the source it fetches, those it went on without, those whose
 * retention deleted some of it first. */
static void engine_describe_history(const choreo_build_history *h, char *out, size_t len) {
  size_t at = 0;
  const choreo_history_source *fetching = choreo_build_history_wanted(h);
  out[0] = '\0';
  for (int i = 0; i < h->n && at < len; i++) {
    const choreo_history_source *s = &h->sources[i];
    const char *sep = at ? "; " : "";
    int wrote = 0;
    if (s == fetching) /* (those after it wait their turn) */
      wrote = snprintf(out + at, len - at, "%sfetching %s's history: through seq %lld of %lld",
                       sep, s->name, (long long)s->fetched, (long long)s->upto);
    else if (s->state == CHOREO_HISTORY_GIVEN_UP)
      wrote = snprintf(out + at, len - at, "%swithout %s's history: %s", sep, s->name, s->why);
    else if (s->gone)
      wrote = snprintf(out + at, len - at, "%s%lld of %s's messages were gone from its log", sep,
                       (long long)s->gone, s->name);
    if (wrote > 0) at += (size_t)wrote;
  }
}

/* Adds what a build has still to go through (its history, the stream events up to what the
 * host has seen, the kept inputs) and how its history goes. */
static void engine_count_remaining(void *ud, const choreo_projection_status *s) {
  engine_each_projection *each = ud;
  choreo_projection_status with = *s;
  int64_t seen, kept = 0, replay = 0;
  char history[600] = "";
  sqlite3 *build = s->building ? choreo_projections_build_of(each->e->projections, s->name) : NULL;
  choreo_build_history h;
  if (build && !choreo_build_history_read(build, &h)) {
    engine_describe_history(&h, history, sizeof history);
    if (choreo_build_history_remaining(build, &h, &replay)) replay = 0;
    choreo_build_history_free(&h);
  }
  with.history = history;
  if (s->building && !choreo_store_checkpoint(each->e->store, each->e->name, &seen) &&
      !choreo_streams_count_since(each->e->streams, s->position, seen, &with.remaining) &&
      !choreo_projections_inputs_after(each->e->projections, s->inputs, &kept))
    with.remaining += kept + replay;
  each->fn(each->ud, &with);
}

bool choreo_engine_projection_stale(choreo_engine *e, const char *name, int64_t version) {
  return choreo_projections_live(e->projections, name, version) &&
         !choreo_projections_declared(e->projections, name, version);
}

void choreo_engine_projections_each(choreo_engine *e, choreo_projection_fn fn, void *ud) {
  engine_each_projection each = {e, fn, ud};
  choreo_projections_each(e->projections, engine_count_remaining, &each);
}
