/* The command line (README.md, The command line): main.c parses the subcommand and the options every
 * subcommand shares, and hands over to one cli_*.c file per subcommand. Exit codes: 0 ok,
 * 1 runtime failure, 2 usage error; every error is one line on stderr. */
#ifndef CHOREO_CLI_H
#define CHOREO_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* A duration: a number with a unit, ms, s, m, h or d (7d, 12h, 90s); else a usage error for
 * flag. */
int cli_duration(const char *flag, const char *text, int64_t *ms);

/* cli_client.c: talking to a running host over its control socket. cli_request sends one
 * JSON request (consumed) to --host, or the only host on the bus; on success *answer is the
 * parsed answer with "ok": true, else the error is printed and CLI_FAIL or CLI_USAGE returned.
 * cli_read_json reads a JSON argument: the text itself, "-" (stdin) or "@FILE" (malloc'd; NULL
 * with the reason in err). cli_new_key makes a random key for an append the user named none. */
struct cJSON;
int cli_request(const cli_args *a, struct cJSON *request, struct cJSON **answer);
/* One request (JSON text) to host `name` on the bus directory `bus`, waiting wait_ms for the
 * answer; nothing printed. CLI_OK with *answer ("ok": true), or the reason in err and CLI_USAGE
 * (no such host), CLI_UNANSWERED (it did not answer in time) or CLI_FAIL (an error answer).
 * With wait_dial, a host that is not running is told at once; but NNG's dial then waits for a
 * host that is stopped (SIGSTOP: its kernel accepts, it never greets) as long as NNG likes,
 * so without it only wait_ms bounds the time, and a host not running does not answer either. */
enum { CLI_UNANSWERED = 3 };
int cli_ask(const char *bus, const char *name, const char *text, int wait_ms, bool wait_dial,
            struct cJSON **answer, char *err, size_t errlen);
/* The same request to a host on another machine, through the FETCH endpoint that goes with
 * the PUB endpoint pub_url (tcp://HOST:PORT, as the host's --listen): the journal's reads and
 * the status only. */
int cli_ask_peer(const char *pub_url, const char *text, int wait_ms, struct cJSON **answer,
                 char *err, size_t errlen);
char *cli_read_json(const char *arg, char *err, size_t errlen);
void cli_new_key(char *out, size_t size);

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
int cli_start(const cli_args *a);
int cli_signal(const cli_args *a);
int cli_workflows(const cli_args *a);
int cli_replay_check(const cli_args *a);
int cli_trace(const cli_args *a);
int cli_map(const cli_args *a);
int cli_ui(const cli_args *a);

#endif
