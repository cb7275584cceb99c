/* choreo's entry point: picks the subcommand and the shared options (see cli.h). */
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "choreo.h"
#include "cli.h"

static const char usage[] =
    "usage: choreo COMMAND [--bus DIR] [--host NAME] ...\n"
    "  run DIR [--name NAME] [--data FILE] [--listen URL]... [--peer URL]...\n"
    "          [--instructions N] [--memory BYTES] [--max-message BYTES] [--cpu N]\n"
    "  test DIR [busted args]\n"
    "  publish [--host NAME] TYPE [JSON]\n"
    "  send    [--host NAME] TO TYPE [JSON]\n"
    "  tail    [--host NAME] [PATTERN]\n"
    "  status  [--host NAME]\n"
    "  dead    [--host NAME] list|retry ID|drop ID\n"
    "  sagas   [--host NAME] list [SAGA] | show SAGA KEY\n";

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

static const struct {
  const char *name;
  int (*fn)(const cli_args *);
} commands[] = {
    {"run", cli_run},       {"test", cli_test},     {"publish", cli_publish},
    {"send", cli_send},     {"status", cli_status}, {"dead", cli_dead},
    {"tail", cli_tail},     {"sagas", cli_sagas},
};

/* Each SQLite connection of ours is used by one thread only (the loop's, or the
 * checkpointer's), so the library's global mutexes and the memory statistics kept under one
 * are pure cost: a sixth of the CPU of a dispatch profile went to that bookkeeping. Set for
 * the whole process before SQLite initialises, which is the program's call to make, not the
 * library's: an embedding program may share its own connections between threads. */
static void main_configure_sqlite(void) {
  sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int main(int argc, char **argv) {
  main_configure_sqlite();
  if (argc < 2) {
    fputs(usage, stderr);
    return CLI_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    fputs(usage, stdout);
    return CLI_OK;
  }
  if (strcmp(argv[1], "--version") == 0) {
    puts("choreo " CHOREO_VERSION);
    return CLI_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
    if (strcmp(argv[1], commands[i].name) != 0) continue;
    /* --bus and --host are taken out here; `test` passes everything after DIR to busted. */
    char *rest[argc];
    cli_args a = {.rest = rest};
    bool passthrough = strcmp(argv[1], "test") == 0;
    for (int j = 2; j < argc; j++) {
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
