/* OTLP/JSON spans (see spans.h), built with cJSON: only hosts that export pay for them. The
 * attributes follow OpenTelemetry's messaging conventions where one applies. */
#include "spans.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "choreo.h"

struct choreo_spans {
  int fd; /* O_APPEND: each line goes out in one write, whole, even with several writers */
  char *service;
  cJSON *spans; /* of the batch under way */
};

int choreo_spans_open(choreo_spans **out, const char *path, const char *service, char *err,
                      size_t errlen) {
  *out = NULL;
  char file[4096];
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    snprintf(file, sizeof file, "%s/%s.otlp.jsonl", path, service);
  else
    snprintf(file, sizeof file, "%s", path);
  choreo_spans *s = calloc(1, sizeof *s);
  if (!s) return CHOREO_ENOMEM;
  s->fd = -1;
  s->fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  s->service = strdup(service);
  s->spans = cJSON_CreateArray();
  if (s->fd < 0 || !s->service || !s->spans) {
    snprintf(err, errlen, "--otlp-json %s: %s", file, s->fd >= 0 ? "out of memory" : strerror(errno));
    choreo_spans_close(s);
    return CHOREO_EIO;
  }
  *out = s;
  return 0;
}

void choreo_spans_close(choreo_spans *s) {
  if (!s) return;
  if (s->fd >= 0) close(s->fd);
  free(s->service);
  cJSON_Delete(s->spans);
  free(s);
}

static char *spans_dup(choreo_str v) { return v.p ? strndup(v.p, v.n) : NULL; }

/* {"key": k, "value": {"stringValue": v}} into attrs, when v is there. */
static void spans_attr(cJSON *attrs, const char *key, const char *v) {
  if (!v) return;
  cJSON *a = cJSON_CreateObject();
  cJSON_AddStringToObject(a, "key", key);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(a, "value"), "stringValue", v);
  cJSON_AddItemToArray(attrs, a);
}

static void spans_attr_str(cJSON *attrs, const char *key, choreo_str v) {
  char *text = spans_dup(v);
  spans_attr(attrs, key, text);
  free(text);
}

/* OTLP/JSON writes 64-bit times as decimal strings. */
static void spans_time(cJSON *o, const char *key, int64_t us) {
  char text[32];
  snprintf(text, sizeof text, "%lld000", (long long)us);
  cJSON_AddStringToObject(o, key, text);
}

int choreo_spans_note(choreo_spans *s, const choreo_span *sp) {
  const choreo_msg *m = sp->msg;
  cJSON *o = cJSON_CreateObject();
  if (!o || !cJSON_AddItemToArray(s->spans, o)) {
    cJSON_Delete(o);
    return CHOREO_ENOMEM;
  }
  cJSON_AddStringToObject(o, "traceId", sp->context->trace_id);
  cJSON_AddStringToObject(o, "spanId", sp->context->span_id);
  if (sp->parent_span_id) cJSON_AddStringToObject(o, "parentSpanId", sp->parent_span_id);
  char name[256];
  snprintf(name, sizeof name, "process %.*s", (int)m->type.n, m->type.p);
  cJSON_AddStringToObject(o, "name", name);
  cJSON_AddNumberToObject(o, "kind", 5); /* SPAN_KIND_CONSUMER */
  spans_time(o, "startTimeUnixNano", sp->start_us);
  spans_time(o, "endTimeUnixNano", sp->end_us);
  cJSON *attrs = cJSON_AddArrayToObject(o, "attributes");
  spans_attr(attrs, "messaging.system", "choreo");
  spans_attr(attrs, "messaging.operation", "process");
  spans_attr_str(attrs, "messaging.message.id", m->id);
  spans_attr_str(attrs, "messaging.message.conversation_id",
                 m->correlationid.p ? m->correlationid : m->id);
  spans_attr_str(attrs, "choreo.type", m->type);
  spans_attr_str(attrs, "choreo.kind", m->kind);
  spans_attr_str(attrs, "choreo.source", m->source);
  spans_attr_str(attrs, "choreo.causation", m->causationid);
  spans_attr(attrs, "choreo.handler", sp->handler);
  spans_attr(attrs, "choreo.outcome", sp->outcome);
  cJSON *status = cJSON_AddObjectToObject(o, "status");
  cJSON_AddNumberToObject(status, "code", sp->error ? 2 : 1); /* STATUS_CODE_ERROR : _OK */
  if (sp->error) cJSON_AddStringToObject(status, "message", sp->error);
  return 0;
}

void choreo_spans_discard(choreo_spans *s) {
  if (!s->spans || !s->spans->child) return;
  cJSON_Delete(s->spans);
  s->spans = cJSON_CreateArray();
}

int choreo_spans_flush(choreo_spans *s) {
  if (!s->spans || !s->spans->child) return 0;
  cJSON *root = cJSON_CreateObject();
  cJSON *rs = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "resourceSpans"), rs);
  cJSON *resource_attrs = cJSON_AddArrayToObject(cJSON_AddObjectToObject(rs, "resource"),
                                                 "attributes");
  spans_attr(resource_attrs, "service.name", s->service);
  cJSON *ss = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(rs, "scopeSpans"), ss);
  cJSON *scope = cJSON_AddObjectToObject(ss, "scope");
  cJSON_AddStringToObject(scope, "name", "choreo");
  cJSON_AddStringToObject(scope, "version", CHOREO_VERSION);
  cJSON_AddItemToObject(ss, "spans", s->spans);
  s->spans = cJSON_CreateArray();
  char *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!text || !s->spans) {
    free(text);
    return CHOREO_ENOMEM;
  }
  size_t len = strlen(text);
  text[len] = '\n'; /* over the NUL: the line and its end in one write */
  ssize_t n = write(s->fd, text, len + 1);
  free(text);
  return n == (ssize_t)(len + 1) ? 0 : CHOREO_EIO;
}
