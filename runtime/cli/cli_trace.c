/* choreo trace: one conversation across the hosts of a bus. Every host is asked for its
 * journal rows of the conversation (control op "journal"); the rows are stitched into the tree
 * of which message caused which (a row names its causation, and the messages its handlers
 * emitted), and printed (cli_trace_print.c) as text, JSON or a Mermaid sequence diagram. A
 * host that does not answer within 3 s is named, not asked again, and what the others know is
 * printed all the same. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "cli.h"
#include "trace.h"

#define TRACE_WAIT_MS 3000 /* per host: one that hangs must not hold the whole trace */

static void trace_found(void *ud, const char *name) {
  trace *t = ud;
  if (t->nhosts == TRACE_HOSTS_MAX) return;
  trace_host *h = &t->hosts[t->nhosts++];
  snprintf(h->name, sizeof h->name, "%s", name);
  h->rows = cJSON_CreateArray();
  h->timeouts = cJSON_CreateArray();
}

const char *trace_str(const cJSON *o, const char *field) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

double trace_num(const cJSON *o, const char *field) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

bool trace_answered(const trace *t, const char *host) {
  for (int i = 0; host && i < t->nhosts; i++)
    if (strcmp(t->hosts[i].name, host) == 0) return t->hosts[i].asked && !t->hosts[i].failed;
  return false;
}

static void trace_move(cJSON *from, cJSON *to) {
  while (cJSON_GetArraySize(from) > 0) cJSON_AddItemToArray(to, cJSON_DetachItemFromArray(from, 0));
}

/* Asks host h with {"op": "journal", field: value}: its rows are added to h->rows; the answer's
 * "correlation" is returned (malloc'd; NULL when it did not answer). A host that failed once
 * is not asked again: its part is missing, and waiting for it again would only add up. */
static char *trace_ask(const char *bus, trace_host *h, const char *field, const char *value) {
  if (h->failed) return NULL;
  cJSON *req = cJSON_CreateObject(), *answer = NULL;
  cJSON_AddStringToObject(req, "op", "journal");
  cJSON_AddStringToObject(req, field, value);
  char *text = cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  if (!text) return NULL;
  h->asked = true;
  char error[sizeof h->error];
  int rc = h->peer ? cli_ask_peer(h->peer, text, TRACE_WAIT_MS, &answer, error, sizeof error)
                   : cli_ask(bus, h->name, text, TRACE_WAIT_MS, false, &answer, error, sizeof error);
  free(text);
  if (rc) {
    h->failed = true;
    snprintf(h->error, sizeof h->error, "%s",
             rc == CLI_UNANSWERED ? "no answer within 3 s"
             : rc == CLI_USAGE && !h->peer ? "not running"
                                  : error);
    return NULL;
  }
  const char *name = trace_str(answer, "host");
  if (h->peer && name && choreo_name_valid(name)) snprintf(h->name, sizeof h->name, "%s", name);
  h->journal = cJSON_IsTrue(cJSON_GetObjectItem(answer, "journal"));
  h->more |= cJSON_IsTrue(cJSON_GetObjectItem(answer, "more"));
  trace_move(cJSON_GetObjectItem(answer, "rows"), h->rows);
  cJSON *timeouts = cJSON_GetObjectItem(answer, "timeouts");
  double now = trace_num(answer, "now_ms");
  cJSON *p;
  cJSON_ArrayForEach(p, timeouts) {
    cJSON_AddNumberToObject(p, "in_ms", trace_num(p, "due_ms") - now);
    cJSON_AddStringToObject(p, "host", h->name);
  }
  trace_move(timeouts, h->timeouts);
  const char *c = trace_str(answer, "correlation");
  char *correlation = strdup(c ? c : "");
  cJSON_Delete(answer);
  return correlation;
}

static bool trace_asked(const trace *t, const char *correlation) {
  for (int i = 0; i < t->nconversations; i++)
    if (strcmp(t->conversations[i], correlation) == 0) return true;
  return false;
}

/* Asks every host for the rows of conversation c, then for those of each conversation that a
 * message of it started (one emitted with a correlation of its own: a workflow's steps). */
static void trace_follow(trace *t, const char *bus, const char *c) {
  while (c && t->nconversations < TRACE_CONVERSATIONS_MAX) {
    char *asking = strdup(c);
    if (!asking) return;
    t->conversations[t->nconversations++] = asking;
    for (int i = 0; i < t->nhosts; i++) free(trace_ask(bus, &t->hosts[i], "correlation", asking));
    c = NULL;
    for (int i = 0; !c && i < t->nhosts; i++) {
      const cJSON *row, *m;
      cJSON_ArrayForEach(row, t->hosts[i].rows) cJSON_ArrayForEach(m, cJSON_GetObjectItem(row, "emitted")) {
        const char *mc = trace_str(m, "correlation");
        if (!c && mc && !trace_asked(t, mc)) c = mc;
      }
    }
  }
}

static int trace_rows(const trace *t) {
  int n = 0;
  for (int i = 0; i < t->nhosts; i++) n += cJSON_GetArraySize(t->hosts[i].rows);
  return n;
}

/* The conversation `arg` names: itself when some host has rows of it; else, when it is a
 * message id "<source>/<seq>", the conversation its source's log gives it. */
static void trace_collect(trace *t, const char *bus, const char *arg) {
  trace_follow(t, bus, arg);
  if (trace_rows(t)) return;
  const char *slash = strrchr(arg, '/');
  for (int i = 0; slash && i < t->nhosts; i++) {
    trace_host *h = &t->hosts[i];
    if (strlen(h->name) != (size_t)(slash - arg) || strncmp(h->name, arg, (size_t)(slash - arg)))
      continue;
    char *c = trace_ask(bus, h, "id", arg);
    cJSON_Delete(h->rows); /* asked again below with the others */
    cJSON_Delete(h->timeouts);
    h->rows = cJSON_CreateArray();
    h->timeouts = cJSON_CreateArray();
    if (c && c[0] && strcmp(c, arg) != 0) {
      free(t->conversations[0]);
      t->nconversations = 0;
      trace_follow(t, bus, c);
    }
    free(c);
    return;
  }
}

static int trace_by_id(const void *a, const void *b) {
  return strcmp(((const trace_node *)a)->id, ((const trace_node *)b)->id);
}

static int trace_find(const trace *t, const char *id) {
  if (!id) return -1;
  trace_node key = {.id = id};
  const trace_node *n = bsearch(&key, t->nodes, (size_t)t->nnodes, sizeof key, trace_by_id);
  return n ? (int)(n - t->nodes) : -1;
}

/* Fills the fields of `into` that are still unknown from `from`. */
static void trace_merge(trace_node *into, const trace_node *from) {
  if (!into->type) into->type = from->type;
  if (!into->kind) into->kind = from->kind;
  if (!into->source) into->source = from->source;
  if (!into->to) into->to = from->to;
  if (!into->causation) into->causation = from->causation;
  if (from->nrows && (!into->nrows || from->at_ms < into->at_ms)) into->at_ms = from->at_ms;
  into->nrows += from->nrows;
}

/* Every message once, sorted by id: a row's message and each message its handlers emitted. */
static int trace_build_nodes(trace *t) {
  int cap = 0;
  for (int i = 0; i < t->nhosts; i++) {
    const cJSON *row;
    cJSON_ArrayForEach(row, t->hosts[i].rows)
      cap += 1 + cJSON_GetArraySize(cJSON_GetObjectItem(row, "emitted"));
  }
  t->nodes = calloc((size_t)cap + 1, sizeof *t->nodes);
  if (!t->nodes) return CLI_FAIL;
  for (int i = 0; i < t->nhosts; i++) {
    cJSON *row;
    cJSON_ArrayForEach(row, t->hosts[i].rows) {
      if (!trace_str(row, "id")) continue;
      cJSON_AddStringToObject(row, "host", t->hosts[i].name);
      t->nodes[t->nnodes++] = (trace_node){
          .id = trace_str(row, "id"), .type = trace_str(row, "type"), .kind = trace_str(row, "kind"),
          .source = trace_str(row, "source"), .causation = trace_str(row, "causation"),
          .at_ms = trace_num(row, "at_ms"), .nrows = 1};
      const cJSON *m;
      cJSON_ArrayForEach(m, cJSON_GetObjectItem(row, "emitted")) {
        if (!trace_str(m, "id")) continue;
        t->nodes[t->nnodes++] = (trace_node){
            .id = trace_str(m, "id"), .type = trace_str(m, "type"), .kind = trace_str(m, "kind"),
            .to = trace_str(m, "to"), .source = t->hosts[i].name,
            .causation = trace_str(row, "id"), .at_ms = trace_num(row, "at_ms")};
      }
    }
  }
  qsort(t->nodes, (size_t)t->nnodes, sizeof *t->nodes, trace_by_id);
  int n = 0;
  for (int i = 0; i < t->nnodes; i++) {
    if (n && strcmp(t->nodes[n - 1].id, t->nodes[i].id) == 0) trace_merge(&t->nodes[n - 1], &t->nodes[i]);
    else t->nodes[n++] = t->nodes[i];
  }
  t->nnodes = n;
  for (int i = 0; i < n; i++) { /* room for its rows and its children, counted first */
    int parent = trace_find(t, t->nodes[i].causation);
    if (parent >= 0 && parent != i) t->nodes[parent].nchildren++;
  }
  for (int i = 0; i < n; i++) {
    t->nodes[i].rows = calloc((size_t)t->nodes[i].nrows + 1, sizeof *t->nodes[i].rows);
    t->nodes[i].children = calloc((size_t)t->nodes[i].nchildren + 1, sizeof(int));
    if (!t->nodes[i].rows || !t->nodes[i].children) return CLI_FAIL;
    t->nodes[i].nrows = t->nodes[i].nchildren = 0;
  }
  t->roots = calloc((size_t)n + 1, sizeof *t->roots);
  return t->roots ? CLI_OK : CLI_FAIL;
}

static const trace *trace_sorting; /* qsort has no user pointer; the CLI has one thread */

static int trace_by_time(const void *a, const void *b) {
  const trace_node *x = &trace_sorting->nodes[*(const int *)a];
  const trace_node *y = &trace_sorting->nodes[*(const int *)b];
  if (x->at_ms != y->at_ms) return x->at_ms < y->at_ms ? -1 : 1;
  return strcmp(x->id, y->id);
}

static int trace_row_by_time(const void *a, const void *b) {
  double x = trace_num(*(const cJSON *const *)a, "at_ms"), y = trace_num(*(const cJSON *const *)b, "at_ms");
  return x < y ? -1 : x > y;
}

/* Each row to its message, each message under its cause (a root when the cause is unknown). */
static void trace_link(trace *t) {
  for (int i = 0; i < t->nhosts; i++) {
    const cJSON *row;
    cJSON_ArrayForEach(row, t->hosts[i].rows) {
      int k = trace_find(t, trace_str(row, "id"));
      if (k >= 0) t->nodes[k].rows[t->nodes[k].nrows++] = row;
    }
  }
  for (int i = 0; i < t->nnodes; i++) {
    trace_node *n = &t->nodes[i];
    qsort(n->rows, (size_t)n->nrows, sizeof *n->rows, trace_row_by_time);
    /* A command or reply from outside names no destination in any emitter's row: its
     * handler's host is it. */
    if (!n->to && n->nrows && n->kind && strcmp(n->kind, "event") != 0)
      n->to = trace_str(n->rows[0], "host");
    int parent = trace_find(t, n->causation);
    if (parent >= 0 && parent != i) t->nodes[parent].children[t->nodes[parent].nchildren++] = i;
    else t->roots[t->nroots++] = i;
  }
  trace_sorting = t;
  qsort(t->roots, (size_t)t->nroots, sizeof *t->roots, trace_by_time);
  for (int i = 0; i < t->nnodes; i++)
    qsort(t->nodes[i].children, (size_t)t->nodes[i].nchildren, sizeof(int), trace_by_time);
}


int trace_walk(trace *t, int *out, int *depth) {
  for (int i = 0; i < t->nnodes; i++) t->nodes[i].visited = false;
  int n = 0, top = 0;
  int *stack = malloc(((size_t)t->nnodes + 1) * 2 * sizeof *stack); /* (node, depth) pairs */
  if (!stack) return 0;
  for (int r = t->nroots - 1; r >= 0; r--) {
    stack[top++] = t->roots[r];
    stack[top++] = 0;
  }
  while (top) {
    int d = stack[--top], k = stack[--top];
    trace_node *node = &t->nodes[k];
    if (node->visited) continue;
    node->visited = true;
    out[n] = k;
    depth[n++] = d;
    for (int c = node->nchildren - 1; c >= 0; c--) {
      if (t->nodes[node->children[c]].visited) continue;
      stack[top++] = node->children[c];
      stack[top++] = d + 1;
    }
  }
  free(stack);
  return n;
}

static void trace_free(trace *t) {
  for (int i = 0; i < t->nnodes; i++) {
    free(t->nodes[i].rows);
    free(t->nodes[i].children);
  }
  free(t->nodes);
  free(t->roots);
  for (int i = 0; i < t->nhosts; i++) {
    cJSON_Delete(t->hosts[i].rows);
    cJSON_Delete(t->hosts[i].timeouts);
  }
  for (int i = 0; i < t->nconversations; i++) free(t->conversations[i]);
}

int trace_build(const char *bus, const char *host, const char *const *peers, int npeers,
                const char *arg, trace **out, char *err, size_t errlen) {
  *out = NULL;
  trace *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "out of memory");
    return CLI_FAIL;
  }
  int rc = CLI_OK;
  if (host) {
    if (choreo_name_valid(host)) trace_found(t, host);
    else rc = CLI_USAGE, snprintf(err, errlen, "invalid host name '%s'", host);
  } else if (bus[0] && choreo_bus_each_host(bus, "ctl", trace_found, t)) {
    rc = CLI_FAIL, snprintf(err, errlen, "cannot read the bus directory %s", bus);
  }
  for (int i = 0; !rc && i < npeers && t->nhosts < TRACE_HOSTS_MAX; i++) {
    trace_found(t, peers[i]); /* its URL, until it answers with its name */
    t->hosts[t->nhosts - 1].peer = peers[i];
  }
  if (!rc && t->nhosts == 0) rc = CLI_FAIL, snprintf(err, errlen, "no host is running on bus %s", bus);
  if (!rc) {
    trace_collect(t, bus, arg);
    if (trace_build_nodes(t)) rc = CLI_FAIL, snprintf(err, errlen, "out of memory");
  }
  if (!rc && t->nnodes == 0) {
    size_t used = (size_t)snprintf(err, errlen, "no host that answered knows %s", arg);
    for (int i = 0; i < t->nhosts && used < errlen; i++) {
      const trace_host *h = &t->hosts[i];
      if (h->failed)
        used += (size_t)snprintf(err + used, errlen - used, "; %s did not answer (%s)", h->name, h->error);
      else if (!h->journal)
        used += (size_t)snprintf(err + used, errlen - used, "; %s keeps no journal", h->name);
    }
    rc = CLI_FAIL;
  }
  if (rc) {
    trace_destroy(t);
    return rc;
  }
  trace_link(t);
  *out = t;
  return CLI_OK;
}

void trace_destroy(trace *t) {
  if (!t) return;
  trace_free(t);
  free(t);
}

/* trace [--format text|json|mermaid] [--json] [--peer URL]... ID|CORRELATION */
int cli_trace(const cli_args *a) {
  const char *format = "text", *arg = NULL, *peers[a->nrest + 1];
  int npeers = 0;
  for (int i = 0; i < a->nrest; i++) {
    const char *s = a->rest[i];
    if (strcmp(s, "--json") == 0) format = "json";
    else if (strcmp(s, "--format") == 0) {
      if (i + 1 >= a->nrest) return cli_usage("%s", "--format needs text, json or mermaid");
      format = a->rest[++i];
    } else if (strcmp(s, "--peer") == 0) {
      if (i + 1 >= a->nrest) return cli_usage("%s", "--peer needs a URL: tcp://HOST:PORT");
      peers[npeers++] = a->rest[++i];
    } else if (s[0] == '-') return cli_usage("trace: unknown option '%s'", s);
    else if (arg) return cli_usage("trace takes one message id or correlation id, got also '%s'", s);
    else arg = s;
  }
  if (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "mermaid"))
    return cli_usage("--format must be text, json or mermaid, not '%s'", format);
  if (!arg) return cli_usage("%s", "trace needs a message id or a correlation id: choreo trace ID");
  char bus[PATH_MAX], err[4096];
  /* With --peer only, this machine may have no bus at all. */
  if (choreo_bus_dir(a->bus, false, bus, sizeof bus, err, sizeof err)) {
    if (!npeers || a->host) return cli_fail("%s", err);
    bus[0] = '\0';
  }
  trace *t;
  int rc = trace_build(bus, a->host, peers, npeers, arg, &t, err, sizeof err);
  if (rc == CLI_USAGE) return cli_usage("%s", err);
  if (rc) return cli_fail("%s", err);
  if (strcmp(format, "json") == 0) rc = trace_print_json(t);
  else if (strcmp(format, "mermaid") == 0) trace_print_mermaid(t);
  else trace_print_text(t);
  trace_destroy(t);
  return rc;
}
