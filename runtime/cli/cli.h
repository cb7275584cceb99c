/* The command line (README.md, The command line): main.c parses the subcommand and the options every
 * subcommand shares, and hands over to one cli_*.c file per subcommand. Exit codes: 0 ok,
 * 1 runtime failure, 2 usage error; every error is one line on stderr. */
#ifndef CHOREO_CLI_H
#define CHOREO_CLI_H

#include <stddef.h>

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* What main.c found before handing over: --bus and --host (NULL when absent), and the
 * remaining arguments in order. */
typedef struct cli_args {
  const char *bus;
  const char *host;
  char **rest;
  int nrest;
} cli_args;

int cli_usage(const char *fmt, const char *arg); /* prints "choreo: ..." and returns CLI_USAGE */
int cli_fail(const char *fmt, const char *arg);  /* prints "choreo: ..." and returns CLI_FAIL */

int cli_run(const cli_args *a);
int cli_test(const cli_args *a);
int cli_publish(const cli_args *a);
int cli_send(const cli_args *a);
int cli_status(const cli_args *a);
int cli_dead(const cli_args *a);
int cli_tail(const cli_args *a);
int cli_stream(const cli_args *a);
int cli_query(const cli_args *a);
int cli_sagas(const cli_args *a);
int cli_projections(const cli_args *a);

#endif
