/* Counting a host's flows (see flows.h). The distinct flows are few (a service's message types
 * times its handlers), the entries many: a binary tree from libc (tsearch) counts them. */
#define _GNU_SOURCE /* tdestroy */
#include "flows.h"

#include <search.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct flows_edge {
  char *source, *type, *kind, *handler; /* handler "" when none */
  int64_t count, failed, dead;
} flows_edge;

typedef struct flows_count {
  void *root;
  int rc;
} flows_count;

static int flows_cmp_str(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : ""); }

static int flows_compare(const void *a, const void *b) {
  const flows_edge *x = a, *y = b;
  int c = flows_cmp_str(x->source, y->source);
  if (!c) c = flows_cmp_str(x->type, y->type);
  if (!c) c = flows_cmp_str(x->kind, y->kind);
  return c ? c : flows_cmp_str(x->handler, y->handler);
}

static void flows_free_edge(void *p) {
  flows_edge *e = p;
  free(e->source);
  free(e->type);
  free(e->kind);
  free(e->handler);
  free(e);
}

static int flows_on_entry(void *ud, const choreo_journal_row *row) {
  flows_count *c = ud;
  flows_edge key = {.source = (char *)row->source, .type = (char *)row->type,
                    .kind = (char *)row->kind, .handler = (char *)(row->handler ? row->handler : "")};
  void *found = tfind(&key, &c->root, flows_compare);
  flows_edge *e = found ? *(flows_edge **)found : NULL;
  if (!e) {
    e = calloc(1, sizeof *e);
    if (e) {
      e->source = strdup(key.source ? key.source : "");
      e->type = strdup(key.type ? key.type : "");
      e->kind = strdup(key.kind ? key.kind : "");
      e->handler = strdup(key.handler);
    }
    if (!e || !e->source || !e->type || !e->kind || !e->handler || !tsearch(e, &c->root, flows_compare)) {
      if (e) flows_free_edge(e);
      return c->rc = CHOREO_ENOMEM;
    }
  }
  e->count++;
  e->failed += strcmp(row->outcome, "retrying") == 0 || strcmp(row->outcome, "dead") == 0;
  e->dead += strcmp(row->outcome, "dead") == 0;
  return 0;
}

static cJSON *flows_list; /* twalk has no user pointer; the loop is the only caller */

static void flows_visit(const void *node, VISIT which, int depth) {
  (void)depth;
  if (which != postorder && which != leaf) return;
  const flows_edge *e = *(flows_edge *const *)node;
  cJSON *item = cJSON_CreateObject();
  if (!item || !cJSON_AddItemToArray(flows_list, item)) {
    cJSON_Delete(item);
    return;
  }
  cJSON_AddStringToObject(item, "source", e->source);
  cJSON_AddStringToObject(item, "type", e->type);
  cJSON_AddStringToObject(item, "kind", e->kind);
  cJSON_AddStringToObject(item, "handler", e->handler);
  cJSON_AddNumberToObject(item, "count", (double)e->count);
  cJSON_AddNumberToObject(item, "failed", (double)e->failed);
  cJSON_AddNumberToObject(item, "dead", (double)e->dead);
}

int choreo_flows_add(choreo_engine *e, int64_t window_ms, cJSON *answer) {
  flows_count c = {NULL, 0};
  bool more = false;
  int rc = choreo_engine_journal_recent(e, window_ms, CHOREO_FLOWS_MAX_ENTRIES, flows_on_entry,
                                        &c, &more);
  if (!rc) rc = c.rc;
  flows_list = cJSON_AddArrayToObject(answer, "flows");
  if (!rc && flows_list) twalk(c.root, flows_visit);
  flows_list = NULL;
  tdestroy(c.root, flows_free_edge);
  cJSON_AddBoolToObject(answer, "more", more);
  return rc;
}

/* ---- recent conversations ---- */

typedef struct flows_conversation {
  char *correlation;
  int64_t last_ms, first_ms, messages, failed;
} flows_conversation;

typedef struct flows_recent {
  flows_conversation list[CHOREO_FLOWS_CONVERSATIONS];
  int n;
  int rc;
} flows_recent;

static int flows_on_recent(void *ud, const choreo_journal_row *row) {
  flows_recent *r = ud;
  flows_conversation *c = NULL;
  for (int i = 0; !c && i < r->n; i++)
    if (strcmp(r->list[i].correlation, row->correlation) == 0) c = &r->list[i];
  if (!c) {
    if (r->n == CHOREO_FLOWS_CONVERSATIONS) return 0; /* the newest ones are known */
    c = &r->list[r->n];
    *c = (flows_conversation){.correlation = strdup(row->correlation), .last_ms = row->at_ms};
    if (!c->correlation) return r->rc = CHOREO_ENOMEM;
    r->n++;
  }
  c->first_ms = row->at_ms; /* entries come newest batch first */
  c->messages++;
  c->failed += strcmp(row->outcome, "ok") != 0 && strcmp(row->outcome, "unhandled") != 0;
  return 0;
}

int choreo_flows_conversations(choreo_engine *e, cJSON *answer) {
  flows_recent *r = calloc(1, sizeof *r);
  if (!r) return CHOREO_ENOMEM;
  bool more = false;
  int rc = choreo_engine_journal_recent(e, INT64_MAX / 2, CHOREO_FLOWS_RECENT_ENTRIES,
                                        flows_on_recent, r, &more);
  if (!rc) rc = r->rc;
  cJSON *list = cJSON_AddArrayToObject(answer, "conversations");
  for (int i = 0; i < r->n; i++) {
    cJSON *item = cJSON_CreateObject();
    if (!rc && item && cJSON_AddItemToArray(list, item)) {
      cJSON_AddStringToObject(item, "correlation", r->list[i].correlation);
      cJSON_AddNumberToObject(item, "first_ms", (double)r->list[i].first_ms);
      cJSON_AddNumberToObject(item, "last_ms", (double)r->list[i].last_ms);
      cJSON_AddNumberToObject(item, "messages", (double)r->list[i].messages);
      cJSON_AddNumberToObject(item, "failed", (double)r->list[i].failed);
    } else {
      cJSON_Delete(item);
    }
    free(r->list[i].correlation);
  }
  free(r);
  return rc;
}
