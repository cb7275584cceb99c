/* choreo's entry point: picks the subcommand and the shared options (see cli.h). */
#include <errno.h>
#include <malloc.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "choreo.h"
#include "cli.h"

/* Each subcommand with its synopsis; `choreo help SUB` and `choreo SUB --help` print one. */
static const struct {
  const char *name;
  int (*fn)(const cli_args *);
  const char *synopsis;
} commands[] = {
    {"run", cli_run,
     "run DIR [--name NAME] [--data FILE] [--listen URL]... [--peer URL]...\n"
     "          [--instructions N] [--memory BYTES] [--max-message BYTES] [--cpu N]\n"
     "          [--page-size BYTES]\n"
     "          [--retain DURATION] [--retain-max DURATION] [--http http://HOST:PORT]\n"
     "          [--workflow-cache N] [--workflow-history-max N] [--no-journal]\n"
     "          [--otlp-json FILE|DIR] [--metrics http://HOST:PORT|PORT]"},
    {"test", cli_test, "test DIR [busted args]"},
    {"publish", cli_publish,
     "publish [--host NAME] [--id KEY] [--subject S] [--traceparent TP] TYPE [JSON | - | @FILE]"},
    {"send", cli_send,
     "send    [--host NAME] [--id KEY] [--subject S] [--traceparent TP] [--expect N] TO TYPE\n"
     "          [JSON | - | @FILE]"},
    {"tail", cli_tail,
     "tail    [--host NAME] [--count N] [--format json|text] [--source NAME]\n"
     "          [--correlation ID] [PATTERN]"},
    {"status", cli_status, "status  [--host NAME] [--json]"},
    {"trace", cli_trace,
     "trace   [--host NAME] [--peer URL]... [--json | --format text|json|mermaid] ID|CORRELATION"},
    {"map", cli_map, "map     [--peer URL]... [--since DURATION] [--format mermaid|dot|json]"},
    {"ui", cli_ui, "ui      [--listen http://HOST:PORT|PORT] [--peer URL]..."},
    {"dead", cli_dead, "dead    [--host NAME] list|show ID|retry ID|drop ID"},
    {"sagas", cli_sagas, "sagas   [--host NAME] list [SAGA] | show SAGA KEY"},
    {"stream", cli_stream, "stream  [--host NAME] [--format json|text] STREAM"},
    {"query", cli_query, "query   [--host NAME] QUERY [JSON | - | @FILE]"},
    {"projections", cli_projections,
     "projections [--host NAME] [--json] list | status [PROJECTION] | rebuild PROJECTION"},
    {"start", cli_start, "start   [--host NAME] [--id KEY] WORKFLOW ID [JSON | - | @FILE]"},
    {"signal", cli_signal, "signal  [--host NAME] [--id KEY] WORKFLOW ID SIGNAL [JSON | - | @FILE]"},
    {"workflows", cli_workflows,
     "workflows [--host NAME] [--json] list [WORKFLOW] [--status running|completed|failed|\n"
     "          cancelled|stuck] | show WORKFLOW ID | cancel WORKFLOW ID [REASON]"},
    {"replay-check", cli_replay_check, "replay-check DIR [--name NAME] [--data FILE]"},
};
#define NCOMMANDS (sizeof commands / sizeof *commands)

static void main_usage(FILE *out) {
  fputs("usage: choreo COMMAND [--bus DIR] [--host NAME] ...\n", out);
  for (size_t i = 0; i < NCOMMANDS; i++) fprintf(out, "  %s\n", commands[i].synopsis);
  fputs("JSON may be given as text, - (read from stdin) or @FILE.\n", out);
}

static int main_help(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++) {
    if (strcmp(name, commands[i].name) != 0) continue;
    printf("usage: choreo %s\nshared options: --bus DIR (default $XDG_RUNTIME_DIR/choreo, else "
           "/tmp/choreo-$UID)\n", commands[i].synopsis);
    return CLI_OK;
  }
  return cli_usage("unknown command '%s'", name);
}

static bool main_is_help(const char *arg) {
  return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

int cli_usage(const char *fmt, const char *arg) {
  fputs("choreo: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs(" (see choreo --help)\n", stderr);
  return CLI_USAGE;
}

int cli_fail(const char *fmt, const char *arg) {
  fputs("choreo: ", stderr);
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  return CLI_FAIL;
}

/* A duration: a number with a unit, ms, s, m, h or d (7d, 12h, 90s). */
int cli_duration(const char *flag, const char *text, int64_t *ms) {
  static const struct {
    const char *unit;
    int64_t ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
  char *end;
  errno = 0;
  long long n = strtoll(text, &end, 10);
  for (size_t i = 0; end != text && !errno && n > 0 && i < sizeof units / sizeof *units; i++) {
    if (strcmp(end, units[i].unit) == 0 && n <= INT64_MAX / units[i].ms) {
      *ms = n * units[i].ms;
      return CLI_OK;
    }
  }
  return cli_usage("%s needs a duration such as 7d, 12h, 30m or 90s", flag);
}

/* Each SQLite connection of ours is used by one thread only (the loop's, or the
 * checkpointer's), so the library's global mutexes and the memory statistics kept under one
 * are pure cost: a sixth of the CPU of a dispatch profile went to that bookkeeping. Set for
 * the whole process before SQLite initialises, which is the program's call to make, not the
 * library's: an embedding program may share its own connections between threads. */
static void main_configure_sqlite(void) {
  sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* A consumer behind its producer holds hundreds of received frames at once, allocated in NNG's
 * threads and freed in the loop's. With glibc's default 128 KiB of slack, those threads' heaps
 * grow (mprotect) and shrink (madvise) over and over, and each page given back is faulted in
 * afresh by the next frames: system time in NNG's threads, and colder frames for the loop to
 * read. 16 MiB of slack kept at the top of each heap stops the churn, for memory a host keeps
 * after a burst (the host gives back what it can once quiet). Setting the slack also stops
 * glibc from raising its mmap threshold as large blocks come and go, which would leave it at
 * 128 KiB: a frame of a thousand events is larger, and each would be mapped afresh and unmapped
 * when freed, every page faulted in again (a consumer that fell behind took 18 faults per
 * 1,000 events instead of 7). So the threshold is set too, to the 32 MiB glibc would raise it
 * to at most, above the largest frame. The program's call, as above. */
static void main_configure_malloc(void) {
#ifdef __GLIBC__
  mallopt(M_TOP_PAD, 16 << 20);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
#endif
}

int main(int argc, char **argv) {
  main_configure_malloc();
  main_configure_sqlite();
  if (argc < 2) {
    main_usage(stderr);
    return CLI_USAGE;
  }
  if (strcmp(argv[1], "help") == 0 && argc > 2) return main_help(argv[2]);
  if (main_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    main_usage(stdout);
    return CLI_OK;
  }
  if (strcmp(argv[1], "--version") == 0) {
    puts("choreo " CHOREO_VERSION);
    return CLI_OK;
  }
  for (size_t i = 0; i < NCOMMANDS; i++) {
    if (strcmp(argv[1], commands[i].name) != 0) continue;
    /* --bus and --host are taken out here; `test` passes everything after DIR to busted. */
    char *rest[argc];
    cli_args a = {.rest = rest};
    bool passthrough = strcmp(argv[1], "test") == 0;
    for (int j = 2; j < argc; j++) {
      if (main_is_help(argv[j]) && !(passthrough && a.nrest > 0)) return main_help(argv[1]);
      bool shared = strcmp(argv[j], "--bus") == 0 || strcmp(argv[j], "--host") == 0;
      if (shared && !(passthrough && a.nrest > 0)) {
        if (j + 1 >= argc) return cli_usage("%s needs a value", argv[j]);
        if (argv[j][2] == 'b') a.bus = argv[++j];
        else a.host = argv[++j];
      } else {
        rest[a.nrest++] = argv[j];
      }
    }
    return commands[i].fn(&a);
  }
  return cli_usage("unknown command '%s'", argv[1]);
}
