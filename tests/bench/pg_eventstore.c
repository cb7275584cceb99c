/* The PostgreSQL peer of the "es_append" benchmark: an event store as users of Marten or
 * Commanded's EventStore have one, a table of events with a unique (stream, version), and a
 * client appending one event per command, each in a transaction of its own (a single INSERT
 * with the version the client expects the stream to take: a concurrent writer would make it
 * fail on the unique key, which is how those stores check an expected version). The commands
 * and their streams come from a file the runner wrote, the same one choreo's producer reads:
 * "stream expect" per line, the version the stream is at before the command. Prints commands/s, and how many events the table holds then. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

static const char usage[] = "--url CONNINFO --db STREAMS_FILE [--timeout S]";

static void must(PGconn *c, PGresult *r, ExecStatusType want, const char *what) {
  if (PQresultStatus(r) != want) bench_fail("%s: %s", what, PQerrorMessage(c));
  PQclear(r);
}

typedef struct es_command {
  long stream, expect;
} es_command;

/* The commands, one "stream expect" per line. */
static es_command *read_commands(const char *path, long *n) {
  FILE *f = fopen(path, "r");
  if (!f) bench_fail("cannot read %s", path);
  long cap = 1 << 16;
  es_command *v = malloc(sizeof *v * (size_t)cap), c;
  *n = 0;
  while (v && fscanf(f, "%ld %ld", &c.stream, &c.expect) == 2) {
    if (*n == cap) v = realloc(v, sizeof *v * (size_t)(cap *= 2));
    if (v) v[(*n)++] = c;
  }
  fclose(f);
  if (!v || *n == 0) bench_fail("%s: no commands", path);
  return v;
}

int main(int argc, char **argv) {
  bench_args a;
  bench_args_parse(&a, argc, argv, BENCH_ARG_URL | BENCH_ARG_DB, usage);
  bench_watchdog(a.timeout_s + 15);
  long n;
  es_command *commands = read_commands(a.db, &n);
  /* A server just started answers "starting up" for a moment. */
  for (double until = bench_now() + 30; PQping(a.url) != PQPING_OK && bench_now() < until;)
    nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
  PGconn *c = PQconnectdb(a.url);
  if (PQstatus(c) != CONNECTION_OK) bench_fail("cannot connect: %s", PQerrorMessage(c));
  must(c, PQexec(c, "CREATE TABLE events(stream text NOT NULL, version integer NOT NULL, "
                    "type text NOT NULL, data jsonb NOT NULL, created timestamptz NOT NULL "
                    "DEFAULT now(), PRIMARY KEY (stream, version))"),
       PGRES_COMMAND_OK, "create table");
  must(c, PQprepare(c, "append", "INSERT INTO events(stream, version, type, data) "
                                 "VALUES ($1, $2, 'Deposited', $3)", 3, NULL),
       PGRES_COMMAND_OK, "prepare");
  double deadline = bench_now() + a.timeout_s, t0 = bench_now();
  for (long i = 0; i < n; i++) {
    char stream[32], next[24], data[64];
    snprintf(stream, sizeof stream, "Account/%ld", commands[i].stream);
    snprintf(next, sizeof next, "%ld", commands[i].expect + 1);
    snprintf(data, sizeof data, "{\"amount\": %ld, \"n\": %ld}", i % 100 + 1, i + 1);
    const char *params[3] = {stream, next, data};
    must(c, PQexecPrepared(c, "append", 3, params, NULL, NULL, 0), PGRES_COMMAND_OK, "append");
    if ((i & 1023) == 0 && bench_now() > deadline) bench_fail("timed out after %ld commands", i);
  }
  double took = bench_now() - t0;
  PGresult *r = PQexec(c, "SELECT count(*) FROM events");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) bench_fail("count: %s", PQerrorMessage(c));
  long events = atol(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(c);
  printf("{\"commands_per_s\": %.0f, \"events\": %ld}\n", (double)n / took, events);
  free(commands);
  return events == n ? 0 : 1;
}
