/* embed: a C service with one C handler and one Lua handler on the same choreo host.
 *
 * At start it publishes N OrderPlaced events. A C handler records each one in a table of its own
 * and publishes OrderRecorded; the Lua handler in scripts/orders.lua counts those and publishes
 * OrderCounted; a second C handler follows the counting and stops the host once Lua has counted
 * all N. Then it prints a summary from the host's status.
 *
 *   embed DIR [--name NAME] [--bus DIR] [--data FILE] [--count N]
 *
 * Exit codes are those of `choreo`: 0 ok, 1 runtime failure, 2 usage error; an error is one line
 * on stderr. Build: cc main.c $(pkg-config --cflags --libs choreo) -o embed */
#define _POSIX_C_SOURCE 200809L /* uv.h uses POSIX types (pthread_rwlock_t) that -std=c11 hides */

#include <choreo.h>
#include <sqlite3.h>
#include <uv.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE "usage: embed DIR [--name NAME] [--bus DIR] [--data FILE] [--count N]"
#define MAX_COUNT 1000000

typedef struct app {
  choreo_host *host;
  long want; /* orders to place */
  /* Handler calls in this process. A handler that failed and was retried would count twice;
   * here none is expected to fail. */
  long in_c, in_lua;
} app;

/* ---- the handlers: they run on the host's loop, inside the message's transaction ---- */

/* Writes one row through the host's connection. The database is only reachable from a handler,
 * so the table is created here: "if not exists" costs little once it does, and if the handler
 * fails the creation rolls back with everything else. */
static int record_row(sqlite3 *db, const char *id, const char *json) {
  int rc = sqlite3_exec(db, "create table if not exists recorded(id text primary key, data text)",
                        NULL, NULL, NULL);
  sqlite3_stmt *st = NULL;
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db, "insert into recorded values (?, ?)", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, json, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
  }
  sqlite3_finalize(st); /* keeps the step's error message for sqlite3_errmsg() */
  return rc;
}

/* OrderPlaced: the row, the OrderRecorded event and the host's progress commit together or not
 * at all. Returning non-zero rolls them back and has the message retried. */
static int record_order(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  app *a = ud;
  char *json = choreo_message_json(msg); /* the data as JSON text: stored as is, not parsed */
  if (!json) return choreo_ctx_fail(ctx, "out of memory");
  sqlite3 *db = choreo_ctx_db(ctx);
  int rc = record_row(db, msg->id, json);
  if (rc != SQLITE_OK) {
    rc = choreo_ctx_fail(ctx, sqlite3_errmsg(db));
  } else if ((rc = choreo_ctx_publish(ctx, "OrderRecorded", json)) != 0) {
    rc = choreo_ctx_fail(ctx, choreo_strerror(rc));
  } else {
    a->in_c++;
    printf("OrderPlaced #%lld %s: recorded in C\n", (long long)msg->seq, json);
  }
  free(json);
  return rc;
}

/* OrderCounted comes from the Lua handler, once per order it counted. */
static int follow_counting(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)ctx;
  app *a = ud;
  a->in_lua++;
  printf("OrderCounted #%lld: counted in Lua (%ld of %ld)\n", (long long)msg->seq, a->in_lua,
         a->want);
  /* Stopping from a handler is allowed: the host finishes (and commits) this batch first. */
  if (a->in_lua >= a->want) choreo_host_stop(a->host);
  return 0;
}

/* The host installs no signal handlers. Watching the signals on its loop, rather than with
 * signal(), runs this callback on the loop's thread, where calling into the host is safe. */
static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  app *a = sig->data;
  choreo_host_stop(a->host);
}

/* ---- the program ---- */

static int usage(const char *problem, const char *arg) {
  fprintf(stderr, "embed: %s%s; " USAGE "\n", problem, arg ? arg : "");
  return 2;
}

int main(int argc, char **argv) {
  app a = {.want = 3};
  /* Named, since the default, the directory's base name, would be "scripts"; every field left
   * out (NULL or 0) takes the default that `choreo run` uses. */
  choreo_host_config cfg = {.name = "embed"};
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (arg[0] != '-') {
      if (cfg.dir) return usage("one scripts directory only, got also ", arg);
      cfg.dir = arg;
      continue;
    }
    if (strcmp(arg, "--name") && strcmp(arg, "--bus") && strcmp(arg, "--data") &&
        strcmp(arg, "--count"))
      return usage("unknown option ", arg);
    if (i + 1 == argc) return usage("a value is missing after ", arg);
    const char *value = argv[++i];
    if (!strcmp(arg, "--name")) cfg.name = value;
    else if (!strcmp(arg, "--bus")) cfg.bus = value;
    else if (!strcmp(arg, "--data")) cfg.data = value;
    else {
      char *end;
      a.want = strtol(value, &end, 10);
      if (end == value || *end || a.want < 1 || a.want > MAX_COUNT)
        return usage("--count needs a number from 1 to 1000000, got ", value);
    }
  }
  if (!cfg.dir) return usage("the scripts directory is missing", NULL);

  char err[512] = "";
  int rc = choreo_host_open(&a.host, &cfg, err, sizeof err); /* loads scripts/orders.lua */
  if (rc) {
    fprintf(stderr, "embed: %s\n", err[0] ? err : choreo_strerror(rc));
    return 1;
  }
  char failed[600] = ""; /* the error line, once something failed */
  rc = choreo_host_on(a.host, "OrderPlaced", record_order, &a);
  if (!rc) rc = choreo_host_on(a.host, "OrderCounted", follow_counting, &a);
  if (rc) snprintf(failed, sizeof failed, "registering the handlers: %s", choreo_strerror(rc));

  /* Each publish is appended to the log (and so durable) at once, and handled once the loop
   * runs: the host hears its own events, through the same path as every subscriber. */
  for (long i = 1; !rc && i <= a.want; i++) {
    char json[32];
    snprintf(json, sizeof json, "{\"order\":%ld}", i);
    if ((rc = choreo_host_publish(a.host, "OrderPlaced", json, NULL)) != 0)
      snprintf(failed, sizeof failed, "publishing: %s", choreo_strerror(rc));
  }

  uv_loop_t *loop = choreo_host_loop(a.host);
  uv_signal_t signals[2];
  const int signums[2] = {SIGINT, SIGTERM};
  size_t nsignals = 0;
  for (; !rc && nsignals < 2; nsignals++) {
    if ((rc = uv_signal_init(loop, &signals[nsignals])) != 0) {
      snprintf(failed, sizeof failed, "watching signals: %s", uv_strerror(rc));
      break;
    }
    signals[nsignals].data = &a;
    uv_signal_start(&signals[nsignals], on_signal, signums[nsignals]);
    uv_unref((uv_handle_t *)&signals[nsignals]); /* the host's handles decide when the loop ends */
  }

  if (!rc && (rc = choreo_host_run(a.host)) != 0)
    snprintf(failed, sizeof failed, "running the host: %s", choreo_strerror(rc));

  /* choreo_host_close() frees the loop, so our handles must be closed first; one turn of the
   * loop, which the stopped host no longer uses, completes their closing. */
  for (size_t i = 0; i < nsignals; i++) uv_close((uv_handle_t *)&signals[i], NULL);
  uv_run(loop, UV_RUN_NOWAIT);

  choreo_host_status st;
  if (!rc && (rc = choreo_host_status_get(a.host, &st)) != 0)
    snprintf(failed, sizeof failed, "reading the status: %s", choreo_strerror(rc));
  if (!rc)
    printf("handled %ld orders in C and %ld in Lua; log head %lld; generation %u\n", a.in_c,
           a.in_lua, (long long)st.head, st.generation);
  choreo_host_close(a.host);

  if (!rc && a.in_lua < a.want) /* a signal stopped the host first */
    snprintf(failed, sizeof failed, "stopped before Lua counted all %ld orders", a.want);
  if (failed[0]) {
    fprintf(stderr, "embed: %s\n", failed);
    return 1;
  }
  return 0;
}
