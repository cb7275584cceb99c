/* choreo trace: one conversation across the hosts of a bus. Every host is asked for its
 * journal rows of the conversation (control op "journal"); the rows are stitched into the tree
 * of which message caused which (a row names its causation, and the messages its handlers
 * emitted), and printed as text, JSON or a Mermaid sequence diagram. A host that does not
 * answer is named, and what the others know is printed all the same. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "cli.h"

#define TRACE_WAIT_MS 3000 /* per host: one that hangs must not hold the whole trace */
#define TRACE_HOSTS_MAX 256

typedef struct trace_host {
  char name[CHOREO_NAME_MAX + 1];
  bool answered, journal, more; /* more: some answer held only its first 10,000 rows */
  char error[256];              /* why it did not answer */
  cJSON *rows;                  /* its rows of every conversation asked about */
  cJSON *timeouts;              /* and their pending timeouts, each with "in_ms" */
} trace_host;

/* A message of the conversation: handled somewhere (rows), emitted by a handler, or both. */
typedef struct trace_node {
  const char *id, *type, *kind, *source, *to, *causation;
  double at_ms; /* the earliest handling; an emitted-only message: its emitter's */
  const cJSON **rows;
  int nrows;
  int *children;
  int nchildren;
  int depth_mark; /* guards against a causation cycle in forged data */
} trace_node;

#define TRACE_CONVERSATIONS_MAX 32

typedef struct trace {
  trace_host hosts[TRACE_HOSTS_MAX];
  int nhosts;
  /* The conversation asked about first, then those its messages started (a workflow's). */
  char *conversations[TRACE_CONVERSATIONS_MAX];
  int nconversations;
  trace_node *nodes;
  int nnodes;
  int *roots;
  int nroots;
} trace;

static void trace_found(void *ud, const char *name) {
  trace *t = ud;
  if (t->nhosts == TRACE_HOSTS_MAX) return;
  trace_host *h = &t->hosts[t->nhosts++];
  snprintf(h->name, sizeof h->name, "%s", name);
  h->rows = cJSON_CreateArray();
  h->timeouts = cJSON_CreateArray();
}

static const char *trace_str(const cJSON *o, const char *field) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double trace_num(const cJSON *o, const char *field) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* Asks host h with {"op": "journal", field: value}: its rows are added to h->rows; the answer's
 * "correlation" is returned (malloc'd; NULL when it did not answer). */
static char *trace_ask(const char *bus, trace_host *h, const char *field, const char *value) {
  cJSON *req = cJSON_CreateObject(), *answer = NULL;
  cJSON_AddStringToObject(req, "op", "journal");
  cJSON_AddStringToObject(req, field, value);
  char *text = cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  if (!text) return NULL;
  char error[sizeof h->error];
  int rc = cli_ask(bus, h->name, text, TRACE_WAIT_MS, &answer, error, sizeof error);
  free(text);
  if (rc) {
    snprintf(h->error, sizeof h->error, "%s", rc == CLI_USAGE ? "not running" : error);
    return NULL;
  }
  h->answered = true;
  h->journal = cJSON_IsTrue(cJSON_GetObjectItem(answer, "journal"));
  h->more |= cJSON_IsTrue(cJSON_GetObjectItem(answer, "more"));
  cJSON *rows = cJSON_GetObjectItem(answer, "rows");
  while (cJSON_GetArraySize(rows) > 0)
    cJSON_AddItemToArray(h->rows, cJSON_DetachItemFromArray(rows, 0));
  cJSON *timeouts = cJSON_GetObjectItem(answer, "timeouts");
  double now = trace_num(answer, "now_ms");
  while (cJSON_GetArraySize(timeouts) > 0) {
    cJSON *t = cJSON_DetachItemFromArray(timeouts, 0);
    cJSON_AddNumberToObject(t, "in_ms", trace_num(t, "due_ms") - now);
    cJSON_AddStringToObject(t, "host", h->name);
    cJSON_AddItemToArray(h->timeouts, t);
  }
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

static const trace *trace_sorting; /* qsort has no user pointer */

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

static bool trace_answered(const trace *t, const char *name) {
  for (int i = 0; name && i < t->nhosts; i++)
    if (strcmp(t->hosts[i].name, name) == 0) return t->hosts[i].answered;
  return false;
}

static double trace_start(const trace *t) {
  return t->nroots ? t->nodes[t->roots[0]].at_ms : 0;
}

/* ---- text ---- */

static void trace_print_node(const trace *t, int k, const char *indent, bool last, bool root) {
  trace_node *n = &t->nodes[k];
  if (n->depth_mark) return; /* a cycle: printed once */
  n->depth_mark = 1;
  printf("%s%s%s %s (%s", indent, root ? "" : last ? "└─ " : "├─ ", n->id, n->type ? n->type : "?",
         n->kind ? n->kind : "?");
  if (n->to) printf(" to %s", n->to);
  printf(")\n");
  char inner[1024];
  snprintf(inner, sizeof inner, "%s%s", indent, root ? "" : last ? "   " : "│  ");
  const char *bar = n->nchildren ? "│ " : "  ";
  for (int i = 0; i < n->nrows; i++) {
    const cJSON *r = n->rows[i];
    const char *error = trace_str(r, "error");
    int attempts = (int)trace_num(r, "attempts");
    printf("%s%s %-12s +%.0f ms  %-9s %.2f ms", inner, bar, trace_str(r, "host"),
           trace_num(r, "at_ms") - trace_start(t), trace_str(r, "outcome"),
           trace_num(r, "duration_us") / 1000.0);
    if (attempts > 1) printf(" after %d attempts", attempts);
    if (trace_str(r, "handler")) printf("  %s", trace_str(r, "handler"));
    if (error) printf("  error: %s", error);
    putchar('\n');
  }
  for (int i = 0; i < t->nhosts; i++) {
    const cJSON *p;
    cJSON_ArrayForEach(p, t->hosts[i].timeouts) {
      const char *cause = trace_str(p, "causation");
      if (!cause || strcmp(cause, n->id) != 0) continue;
      printf("%s%s %-12s timeout %s pending, due in %.1f s\n", inner, bar, t->hosts[i].name,
             trace_str(p, "type") ? trace_str(p, "type") : "?", trace_num(p, "in_ms") / 1000.0);
    }
  }
  if (n->nrows == 0) {
    const char *to = n->to;
    if (to && !trace_answered(t, to))
      printf("%s%s (not seen: %s did not answer)\n", inner, bar, to);
    else
      printf("%s%s (no host that answered handled it)\n", inner, bar);
  }
  for (int i = 0; i < n->nchildren; i++)
    trace_print_node(t, n->children[i], inner, i == n->nchildren - 1, false);
}

static void trace_print_text(const trace *t) {
  int answered = 0;
  for (int i = 0; i < t->nhosts; i++) answered += t->hosts[i].answered;
  printf("conversation %s: %d message%s, %d of %d host%s answered\n", t->conversations[0],
         t->nnodes, t->nnodes == 1 ? "" : "s", answered, t->nhosts, t->nhosts == 1 ? "" : "s");
  for (int i = 1; i < t->nconversations; i++)
    printf("  and conversation %s, which it started\n", t->conversations[i]);
  for (int i = 0; i < t->nhosts; i++) {
    const trace_host *h = &t->hosts[i];
    if (!h->answered) printf("  %s did not answer (%s): its part is missing\n", h->name, h->error);
    else if (!h->journal) printf("  %s keeps no journal (--no-journal): its part is missing\n", h->name);
    else if (h->more) printf("  %s has more than 10000 rows of one conversation: the first 10000 are shown\n", h->name);
  }
  for (int i = 0; i < t->nroots; i++) trace_print_node(t, t->roots[i], "", true, true);
}

/* ---- JSON ---- */

static cJSON *trace_json_node(const trace *t, int k) {
  trace_node *n = &t->nodes[k];
  cJSON *o = cJSON_CreateObject();
  if (n->depth_mark) return o;
  n->depth_mark = 1;
  cJSON_AddStringToObject(o, "id", n->id);
  if (n->type) cJSON_AddStringToObject(o, "type", n->type);
  if (n->kind) cJSON_AddStringToObject(o, "kind", n->kind);
  if (n->source) cJSON_AddStringToObject(o, "source", n->source);
  if (n->to) cJSON_AddStringToObject(o, "to", n->to);
  if (n->causation) cJSON_AddStringToObject(o, "causation", n->causation);
  cJSON *handled = cJSON_AddArrayToObject(o, "handled");
  for (int i = 0; i < n->nrows; i++) {
    cJSON *r = cJSON_Duplicate(n->rows[i], 1);
    cJSON_DeleteItemFromObject(r, "emitted");
    cJSON_DeleteItemFromObject(r, "correlation");
    cJSON_AddItemToArray(handled, r);
  }
  cJSON *pending = cJSON_AddArrayToObject(o, "timeouts");
  for (int i = 0; i < t->nhosts; i++) {
    const cJSON *p;
    cJSON_ArrayForEach(p, t->hosts[i].timeouts) {
      const char *cause = trace_str(p, "causation");
      if (cause && strcmp(cause, n->id) == 0) cJSON_AddItemToArray(pending, cJSON_Duplicate(p, 1));
    }
  }
  cJSON *children = cJSON_AddArrayToObject(o, "caused");
  for (int i = 0; i < n->nchildren; i++) cJSON_AddItemToArray(children, trace_json_node(t, n->children[i]));
  return o;
}

static void trace_print_json(const trace *t) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "correlation", t->conversations[0]);
  cJSON *started = cJSON_AddArrayToObject(o, "started");
  for (int i = 1; i < t->nconversations; i++)
    cJSON_AddItemToArray(started, cJSON_CreateString(t->conversations[i]));
  cJSON *hosts = cJSON_AddArrayToObject(o, "hosts");
  for (int i = 0; i < t->nhosts; i++) {
    const trace_host *h = &t->hosts[i];
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "name", h->name);
    cJSON_AddBoolToObject(item, "answered", h->answered);
    if (!h->answered) cJSON_AddStringToObject(item, "error", h->error);
    else {
      cJSON_AddBoolToObject(item, "journal", h->journal);
      cJSON_AddBoolToObject(item, "more", h->more);
    }
    cJSON_AddItemToArray(hosts, item);
  }
  cJSON *messages = cJSON_AddArrayToObject(o, "messages");
  for (int i = 0; i < t->nroots; i++) cJSON_AddItemToArray(messages, trace_json_node(t, t->roots[i]));
  char *text = cJSON_Print(o);
  if (text) puts(text);
  free(text);
  cJSON_Delete(o);
}

/* ---- Mermaid ---- */

/* Mermaid's message text ends at a newline and treats ';' and '#' specially. */
static void trace_mermaid_text(const char *s) {
  for (; s && *s; s++) putchar(*s == '\n' || *s == ';' || *s == '#' ? ' ' : *s);
}

/* A participant's id: a host name with what Mermaid would read as syntax ('-', '.') made '_'. */
static void trace_mermaid_id(const char *name) {
  for (; *name; name++) putchar((*name >= 'a' && *name <= 'z') || (*name >= 'A' && *name <= 'Z') ||
                                        (*name >= '0' && *name <= '9') ? *name : '_');
}

typedef struct trace_step {
  const trace_node *n;
  const cJSON *row; /* NULL: emitted, not handled by a host that answered */
} trace_step;

/* The steps in causal order: a message's handlings, then what it caused, siblings by time. */
static void trace_mermaid_walk(const trace *t, int k, trace_step *steps, int *n) {
  trace_node *node = &t->nodes[k];
  if (node->depth_mark) return; /* a cycle in forged data: once */
  node->depth_mark = 1;
  for (int j = 0; j < node->nrows; j++)
    steps[(*n)++] = (trace_step){node, node->rows[j]};
  if (!node->nrows) steps[(*n)++] = (trace_step){node, NULL};
  for (int i = 0; i < node->nchildren; i++) trace_mermaid_walk(t, node->children[i], steps, n);
}

static void trace_print_mermaid(const trace *t) {
  int cap = 0;
  for (int i = 0; i < t->nnodes; i++) cap += t->nodes[i].nrows + 1;
  trace_step *steps = calloc((size_t)cap + 1, sizeof *steps);
  if (!steps) return;
  int n = 0;
  for (int i = 0; i < t->nroots; i++) trace_mermaid_walk(t, t->roots[i], steps, &n);
  puts("sequenceDiagram");
  for (int i = 0; i < t->nhosts; i++) {
    printf("  participant ");
    trace_mermaid_id(t->hosts[i].name);
    printf(" as %s\n", t->hosts[i].name);
  }
  for (int i = 0; i < t->nhosts; i++) {
    if (t->hosts[i].answered) continue;
    printf("  Note over ");
    trace_mermaid_id(t->hosts[i].name);
    puts(": did not answer");
  }
  for (int i = 0; i < n; i++) {
    const trace_step *s = &steps[i];
    const char *from = s->n->source ? s->n->source : "outside";
    const char *to = s->row ? trace_str(s->row, "host") : s->n->to;
    const char *outcome = s->row ? trace_str(s->row, "outcome") : NULL;
    const char *error = s->row ? trace_str(s->row, "error") : NULL;
    printf("  ");
    if (!to) {
      printf("Note over ");
      trace_mermaid_id(from);
      printf(": ");
      trace_mermaid_text(s->n->type);
      puts(" (no host that answered handled it)");
      continue;
    }
    trace_mermaid_id(from);
    printf("%s", s->n->kind && strcmp(s->n->kind, "event") == 0 ? "-)" : "->>");
    trace_mermaid_id(to);
    printf(": ");
    trace_mermaid_text(s->n->type);
    if (outcome && strcmp(outcome, "ok") != 0) printf(" (%s)", outcome);
    if (!s->row) printf(" (not seen)");
    putchar('\n');
    if (error) {
      printf("  Note over ");
      trace_mermaid_id(to);
      printf(": ");
      trace_mermaid_text(error);
      putchar('\n');
    }
  }
  for (int i = 0; i < t->nhosts; i++) {
    const cJSON *p;
    cJSON_ArrayForEach(p, t->hosts[i].timeouts) {
      printf("  Note over ");
      trace_mermaid_id(t->hosts[i].name);
      printf(": timeout ");
      trace_mermaid_text(trace_str(p, "type"));
      printf(" pending, due in %.1f s\n", trace_num(p, "in_ms") / 1000.0);
    }
  }
  free(steps);
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

/* trace [--format text|json|mermaid] [--json] ID|CORRELATION */
int cli_trace(const cli_args *a) {
  const char *format = "text", *arg = NULL;
  for (int i = 0; i < a->nrest; i++) {
    const char *s = a->rest[i];
    if (strcmp(s, "--json") == 0) format = "json";
    else if (strcmp(s, "--format") == 0) {
      if (i + 1 >= a->nrest) return cli_usage("%s", "--format needs text, json or mermaid");
      format = a->rest[++i];
    } else if (s[0] == '-') return cli_usage("trace: unknown option '%s'", s);
    else if (arg) return cli_usage("trace takes one message id or correlation id, got also '%s'", s);
    else arg = s;
  }
  if (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "mermaid"))
    return cli_usage("--format must be text, json or mermaid, not '%s'", format);
  if (!arg) return cli_usage("%s", "trace needs a message id or a correlation id: choreo trace ID");
  char bus[PATH_MAX], err[PATH_MAX + 64];
  if (choreo_bus_dir(a->bus, false, bus, sizeof bus, err, sizeof err)) return cli_fail("%s", err);
  trace *t = calloc(1, sizeof *t);
  if (!t) return cli_fail("%s", "out of memory");
  if (a->host) {
    if (!choreo_name_valid(a->host)) {
      free(t);
      return cli_usage("invalid host name '%s'", a->host);
    }
    trace_found(t, a->host);
  } else if (choreo_bus_each_host(bus, "ctl", trace_found, t)) {
    free(t);
    return cli_fail("cannot read the bus directory %s", bus);
  }
  if (t->nhosts == 0) {
    free(t);
    return cli_fail("no host is running on bus %s", bus);
  }
  trace_collect(t, bus, arg);
  int rc = trace_build_nodes(t);
  if (!rc && t->nnodes == 0) {
    fprintf(stderr, "choreo: no host that answered knows %s", arg);
    for (int i = 0; i < t->nhosts; i++) {
      const trace_host *h = &t->hosts[i];
      if (!h->answered) fprintf(stderr, "; %s did not answer (%s)", h->name, h->error);
      else if (!h->journal)
        fprintf(stderr, "; %s keeps no journal", h->name);
    }
    fputc('\n', stderr);
    rc = CLI_FAIL;
  }
  if (!rc) {
    trace_link(t);
    if (strcmp(format, "json") == 0) trace_print_json(t);
    else if (strcmp(format, "mermaid") == 0) trace_print_mermaid(t);
    else trace_print_text(t);
  }
  trace_free(t);
  free(t);
  return rc;
}
