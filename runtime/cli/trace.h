/* choreo trace, shared between collecting and stitching (cli_trace.c) and printing
 * (cli_trace_print.c). */
#ifndef CHOREO_CLI_TRACE_H
#define CHOREO_CLI_TRACE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "codec.h"

#define TRACE_HOSTS_MAX 256
#define TRACE_CONVERSATIONS_MAX 32

typedef struct trace_host {
  char name[CHOREO_NAME_MAX + 1]; /* a peer's URL until it answers with its name */
  const char *peer;                  /* its PUB endpoint, for a host given with --peer */
  bool asked, failed, journal, more; /* more: an answer held only its first 10,000 rows */
  char error[256];                   /* why it did not answer, once it failed */
  cJSON *rows;                       /* its rows of every conversation asked about */
  cJSON *timeouts;                   /* and their pending timeouts, each with "in_ms" */
} trace_host;

/* A message of the conversation: handled somewhere (rows), emitted by a handler, or both. */
typedef struct trace_node {
  const char *id, *type, *kind, *source, *to, *causation;
  double at_ms; /* the earliest handling; an emitted-only message: its emitter's */
  const cJSON **rows;
  int nrows;
  int *children; /* by time */
  int nchildren;
  bool visited; /* a walk's mark: a causation cycle in forged data is walked once */
} trace_node;

typedef struct trace {
  trace_host hosts[TRACE_HOSTS_MAX];
  int nhosts;
  /* The conversation asked about first, then those its messages started (a workflow's). */
  char *conversations[TRACE_CONVERSATIONS_MAX];
  int nconversations;
  trace_node *nodes; /* sorted by id */
  int nnodes;
  int *roots; /* by time */
  int nroots;
} trace;

/* Asks the hosts of the bus (or only `host`, if not NULL) and the peers (other machines'
 * hosts, by their --listen endpoint) and stitches the trace of arg (a conversation's id or a
 * message's); *out for trace_destroy. On failure one line in err, and
 * CLI_USAGE or CLI_FAIL. */
int trace_build(const char *bus, const char *host, const char *const *peers, int npeers,
                const char *arg, trace **out, char *err, size_t errlen);
void trace_destroy(trace *t);

const char *trace_str(const cJSON *o, const char *field);
double trace_num(const cJSON *o, const char *field);
bool trace_answered(const trace *t, const char *host);
/* The messages of the walk from the roots, each once, parents before children, siblings by
 * time: n indexes into out (room for t->nnodes), with each one's depth in depth. */
int trace_walk(trace *t, int *out, int *depth);

void trace_print_text(trace *t);
/* The trace as `choreo trace --json` prints it; NULL when out of memory. */
cJSON *trace_json(trace *t);
int trace_print_json(trace *t);
void trace_print_mermaid(trace *t);

#endif
