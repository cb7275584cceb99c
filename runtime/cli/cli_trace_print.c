/* Printing a stitched trace (see trace.h): a text tree for people, flat JSON for scripts, and a
 * Mermaid sequence diagram. Every form walks the tree without recursion: a conversation may be
 * a chain of thousands of messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trace.h"

#define TRACE_INDENT_MAX 24 /* levels drawn; deeper ones are drawn there, with their depth */

static double trace_start(const trace *t) { return t->nroots ? t->nodes[t->roots[0]].at_ms : 0; }

static void trace_print_timeouts(const trace *t, const trace_node *n, const char *prefix) {
  for (int i = 0; i < t->nhosts; i++) {
    const cJSON *p;
    cJSON_ArrayForEach(p, t->hosts[i].timeouts) {
      const char *cause = trace_str(p, "causation");
      if (!cause || strcmp(cause, n->id) != 0) continue;
      printf("%s %-12s timeout %s pending, due in %.1f s\n", prefix, t->hosts[i].name,
             trace_str(p, "type") ? trace_str(p, "type") : "?", trace_num(p, "in_ms") / 1000.0);
    }
  }
}

static void trace_print_rows(const trace *t, const trace_node *n, const char *prefix) {
  for (int i = 0; i < n->nrows; i++) {
    const cJSON *r = n->rows[i];
    const char *error = trace_str(r, "error");
    int attempts = (int)trace_num(r, "attempts");
    printf("%s %-12s +%.0f ms  %-9s %.2f ms", prefix, trace_str(r, "host"),
           trace_num(r, "at_ms") - trace_start(t), trace_str(r, "outcome"),
           trace_num(r, "duration_us") / 1000.0);
    if (attempts > 1) printf(" after %d attempts", attempts);
    if (trace_str(r, "handler")) printf("  %s", trace_str(r, "handler"));
    if (error) printf("  error: %s", error);
    putchar('\n');
  }
  trace_print_timeouts(t, n, prefix);
  if (n->nrows) return;
  if (n->to && !trace_answered(t, n->to))
    printf("%s (not seen: %s did not answer)\n", prefix, n->to);
  else
    printf("%s (no host that answered handled it)\n", prefix);
}

/* The tree's lines: `open[d]` says whether level d still has siblings to come below. */
void trace_print_text(trace *t) {
  int answered = 0;
  for (int i = 0; i < t->nhosts; i++) answered += trace_answered(t, t->hosts[i].name);
  printf("conversation %s: %d message%s, %d of %d host%s answered\n", t->conversations[0],
         t->nnodes, t->nnodes == 1 ? "" : "s", answered, t->nhosts, t->nhosts == 1 ? "" : "s");
  for (int i = 1; i < t->nconversations; i++)
    printf("  and conversation %s, which it started\n", t->conversations[i]);
  for (int i = 0; i < t->nhosts; i++) {
    const trace_host *h = &t->hosts[i];
    if (h->failed) printf("  %s did not answer (%s): its part is missing\n", h->name, h->error);
    else if (!h->journal) printf("  %s keeps no journal (--no-journal): its part is missing\n", h->name);
    else if (h->more)
      printf("  %s has more of this conversation than one answer holds (10000 journal rows, 10000 "
             "messages emitted): the first are shown\n", h->name);
  }
  int *order = malloc(((size_t)t->nnodes + 1) * sizeof *order);
  int *depth = malloc(((size_t)t->nnodes + 1) * sizeof *depth);
  int n = order && depth ? trace_walk(t, order, depth) : 0;
  bool open[TRACE_INDENT_MAX + 1] = {false};
  for (int i = 0; i < n; i++) {
    const trace_node *node = &t->nodes[order[i]];
    int d = depth[i] < TRACE_INDENT_MAX ? depth[i] : TRACE_INDENT_MAX;
    /* Whether a sibling follows: the next message at this depth before any shallower one. */
    bool more = false;
    for (int j = i + 1; j < n && depth[j] >= depth[i]; j++)
      if (depth[j] == depth[i]) {
        more = true;
        break;
      }
    char prefix[TRACE_INDENT_MAX * 5 + 64] = "";
    size_t used = 0;
    for (int l = 1; l < d; l++) used += (size_t)snprintf(prefix + used, sizeof prefix - used, "%s", open[l] ? "│  " : "   ");
    printf("%s%s", prefix, d == 0 ? "" : more ? "├─ " : "└─ ");
    if (depth[i] > TRACE_INDENT_MAX) printf("[depth %d] ", depth[i]);
    printf("%s %s (%s", node->id, node->type ? node->type : "?", node->kind ? node->kind : "?");
    if (node->to) printf(" to %s", node->to);
    printf(")\n");
    if (d > 0) open[d] = more;
    /* Its rows, under it: a bar where children follow. */
    if (d > 0) used += (size_t)snprintf(prefix + used, sizeof prefix - used, "%s", more ? "│  " : "   ");
    snprintf(prefix + used, sizeof prefix - used, "%s", node->nchildren ? "│" : " ");
    trace_print_rows(t, node, prefix);
  }
  free(order);
  free(depth);
}

/* ---- JSON: flat, each message naming its cause and what it caused ---- */

cJSON *trace_json(trace *t) {
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
    cJSON_AddBoolToObject(item, "answered", trace_answered(t, h->name));
    if (h->failed) cJSON_AddStringToObject(item, "error", h->error);
    else {
      cJSON_AddBoolToObject(item, "journal", h->journal);
      cJSON_AddBoolToObject(item, "more", h->more);
    }
    cJSON_AddItemToArray(hosts, item);
  }
  cJSON *roots = cJSON_AddArrayToObject(o, "roots");
  for (int i = 0; i < t->nroots; i++)
    cJSON_AddItemToArray(roots, cJSON_CreateString(t->nodes[t->roots[i]].id));
  cJSON *messages = cJSON_AddArrayToObject(o, "messages");
  int *order = malloc(((size_t)t->nnodes + 1) * sizeof *order);
  int *depth = malloc(((size_t)t->nnodes + 1) * sizeof *depth);
  int n = order && depth ? trace_walk(t, order, depth) : 0;
  for (int i = 0; i < n; i++) {
    const trace_node *node = &t->nodes[order[i]];
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToArray(messages, m);
    cJSON_AddStringToObject(m, "id", node->id);
    if (node->type) cJSON_AddStringToObject(m, "type", node->type);
    if (node->kind) cJSON_AddStringToObject(m, "kind", node->kind);
    if (node->source) cJSON_AddStringToObject(m, "source", node->source);
    if (node->to) cJSON_AddStringToObject(m, "to", node->to);
    if (node->causation) cJSON_AddStringToObject(m, "causation", node->causation);
    cJSON *handled = cJSON_AddArrayToObject(m, "handled");
    for (int r = 0; r < node->nrows; r++) {
      cJSON *row = cJSON_Duplicate(node->rows[r], 1);
      cJSON_DeleteItemFromObject(row, "emitted");
      cJSON_DeleteItemFromObject(row, "correlation");
      cJSON_AddItemToArray(handled, row);
    }
    cJSON *pending = cJSON_AddArrayToObject(m, "timeouts");
    for (int h = 0; h < t->nhosts; h++) {
      const cJSON *p;
      cJSON_ArrayForEach(p, t->hosts[h].timeouts) {
        const char *cause = trace_str(p, "causation");
        if (cause && strcmp(cause, node->id) == 0) cJSON_AddItemToArray(pending, cJSON_Duplicate(p, 1));
      }
    }
    cJSON *caused = cJSON_AddArrayToObject(m, "caused");
    for (int c = 0; c < node->nchildren; c++)
      cJSON_AddItemToArray(caused, cJSON_CreateString(t->nodes[node->children[c]].id));
  }
  free(order);
  free(depth);
  return o;
}

int trace_print_json(trace *t) {
  cJSON *o = trace_json(t);
  char *text = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!text) return cli_fail("%s", "out of memory printing the trace");
  puts(text);
  free(text);
  return CLI_OK;
}

/* ---- Mermaid ---- */

/* Mermaid's message text ends at a newline and treats ';' and '#' specially. */
static void trace_mermaid_text(const char *s) {
  for (; s && *s; s++) putchar(*s == '\n' || *s == ';' || *s == '#' ? ' ' : *s);
}

/* Participants are numbered (p0, p1, ...) and named with `as`: a host name may be a keyword
 * of the diagram's syntax (end, loop, note) or differ from another only in '-' and '.'. */
typedef struct trace_participants {
  const char *names[TRACE_HOSTS_MAX * 2];
  int n;
} trace_participants;

static int trace_participant(trace_participants *p, const char *name) {
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->names[i], name) == 0) return i;
  if (p->n == TRACE_HOSTS_MAX * 2) return 0;
  p->names[p->n] = name;
  return p->n++;
}

void trace_print_mermaid(trace *t) {
  trace_participants p = {.n = 0};
  for (int i = 0; i < t->nhosts; i++) trace_participant(&p, t->hosts[i].name);
  int *order = malloc(((size_t)t->nnodes + 1) * sizeof *order);
  int *depth = malloc(((size_t)t->nnodes + 1) * sizeof *depth);
  int n = order && depth ? trace_walk(t, order, depth) : 0;
  for (int i = 0; i < n; i++) { /* every sender too, before the first arrow */
    const trace_node *node = &t->nodes[order[i]];
    if (node->source) trace_participant(&p, node->source);
    if (node->to) trace_participant(&p, node->to);
  }
  puts("sequenceDiagram");
  for (int i = 0; i < p.n; i++) {
    printf("  participant p%d as ", i);
    trace_mermaid_text(p.names[i]);
    putchar('\n');
  }
  for (int i = 0; i < t->nhosts; i++)
    if (t->hosts[i].failed) printf("  Note over p%d: did not answer\n", trace_participant(&p, t->hosts[i].name));
  for (int i = 0; i < n; i++) {
    const trace_node *node = &t->nodes[order[i]];
    int from = node->source ? trace_participant(&p, node->source) : 0;
    const char *arrow = node->kind && strcmp(node->kind, "event") == 0 ? "-)" : "->>";
    if (!node->nrows && !node->to) {
      printf("  Note over p%d: ", from);
      trace_mermaid_text(node->type);
      puts(" (no host that answered handled it)");
    } else if (!node->nrows) {
      printf("  p%d%sp%d: ", from, arrow, trace_participant(&p, node->to));
      trace_mermaid_text(node->type);
      puts(" (not seen)");
    }
    for (int r = 0; r < node->nrows; r++) {
      const char *outcome = trace_str(node->rows[r], "outcome");
      const char *error = trace_str(node->rows[r], "error");
      int to = trace_participant(&p, trace_str(node->rows[r], "host"));
      printf("  p%d%sp%d: ", from, arrow, to);
      trace_mermaid_text(node->type);
      if (outcome && strcmp(outcome, "ok") != 0) printf(" (%s)", outcome);
      putchar('\n');
      if (!error) continue;
      printf("  Note over p%d: ", to);
      trace_mermaid_text(error);
      putchar('\n');
    }
  }
  for (int i = 0; i < t->nhosts; i++) {
    const cJSON *pt;
    cJSON_ArrayForEach(pt, t->hosts[i].timeouts) {
      printf("  Note over p%d: timeout ", trace_participant(&p, t->hosts[i].name));
      trace_mermaid_text(trace_str(pt, "type"));
      printf(" pending, due in %.1f s\n", trace_num(pt, "in_ms") / 1000.0);
    }
  }
  free(order);
  free(depth);
}
