/* C handlers and their ctx (see handlers.h). A handler sees a choreo_message of NUL-terminated
 * strings; they are copied out of the frame once per message, and only for types that have a C
 * handler, so hosts without any pay nothing. */
#include "handlers.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "json.h"

typedef struct handler_entry {
  char *pattern;
  size_t len;  /* of the pattern without its '*' */
  bool prefix; /* the pattern ended in '*' */
  choreo_handler_fn fn;
  void *ud;
} handler_entry;

struct choreo_handlers {
  handler_entry *list;
  size_t n, cap;
};

struct choreo_ctx {
  struct choreo_engine *engine;
  const choreo_msg *msg;
  char error[512];
};

choreo_handlers *choreo_handlers_new(void) { return calloc(1, sizeof(choreo_handlers)); }

void choreo_handlers_free(choreo_handlers *hs) {
  if (!hs) return;
  for (size_t i = 0; i < hs->n; i++) free(hs->list[i].pattern);
  free(hs->list);
  free(hs);
}

int choreo_handlers_add(choreo_handlers *hs, const char *pattern, choreo_handler_fn fn,
                        void *ud) {
  size_t len = pattern ? strlen(pattern) : 0;
  if (len == 0 || !fn) return CHOREO_EINVAL;
  if (hs->n == hs->cap) {
    size_t cap = hs->cap ? hs->cap * 2 : 8;
    handler_entry *list = realloc(hs->list, cap * sizeof *list);
    if (!list) return CHOREO_ENOMEM;
    hs->list = list;
    hs->cap = cap;
  }
  char *copy = strdup(pattern);
  if (!copy) return CHOREO_ENOMEM;
  bool prefix = pattern[len - 1] == '*';
  hs->list[hs->n++] = (handler_entry){.pattern = copy, .len = prefix ? len - 1 : len,
                                      .prefix = prefix, .fn = fn, .ud = ud};
  return 0;
}

static bool handler_matches(const handler_entry *h, choreo_str type) {
  if (h->prefix ? type.n < h->len : type.n != h->len) return false;
  return choreo_bytes_eq(type.p, h->pattern, h->len);
}

bool choreo_handlers_match(const choreo_handlers *hs, choreo_str type) {
  for (size_t i = 0; i < hs->n; i++)
    if (handler_matches(&hs->list[i], type)) return true;
  return false;
}

/* The message's strings, NUL-terminated, one after another in one allocation. */
static char *handlers_copy_strings(const choreo_msg *m, choreo_message *out) {
  char time_text[CHOREO_TIME_TEXT];
  choreo_str time = choreo_msg_time(m, time_text);
  const choreo_str *from[] = {&m->id,   &m->source,  &m->type,          &m->kind,       &time,
                              &m->to,   &m->subject, &m->correlationid, &m->causationid};
  const char **to[] = {&out->id, &out->source,  &out->type,          &out->kind,        &out->time,
                       &out->to, &out->subject, &out->correlationid, &out->causationid};
  size_t total = 0;
  for (size_t i = 0; i < sizeof from / sizeof *from; i++) total += from[i]->n + 1;
  char *buf = malloc(total), *p = buf;
  if (!buf) return NULL;
  for (size_t i = 0; i < sizeof from / sizeof *from; i++) {
    *to[i] = from[i]->p ? p : NULL;
    memcpy(p, from[i]->p ? from[i]->p : "", from[i]->n);
    p[from[i]->n] = '\0';
    p += from[i]->n + 1;
  }
  return buf;
}

int choreo_handlers_run(const choreo_handlers *hs, struct choreo_engine *e, const choreo_msg *m,
                        char *err, size_t errlen) {
  if (!choreo_handlers_match(hs, m->type)) return 0;
  choreo_message msg = {.seq = m->seq};
  char *strings = handlers_copy_strings(m, &msg); /* the id too: the reader spelled it out */
  if (!strings) {
    snprintf(err, errlen, "out of memory");
    return CHOREO_ESCRIPT;
  }
  /* The data's own encoding, for the handler to decode with msgpack or choreo_message_json. */
  msg.data = m->data;
  msg.data_len = m->data_len;
  int rc = 0;
  choreo_ctx ctx = {.engine = e, .msg = m};
  for (size_t i = 0; i < hs->n && !rc; i++) {
    const handler_entry *h = &hs->list[i];
    if (!handler_matches(h, m->type)) continue;
    ctx.error[0] = '\0'; /* an earlier handler's reason is not this one's */
    if (h->fn(&ctx, &msg, h->ud) != 0) {
      snprintf(err, errlen, "%s", ctx.error[0] ? ctx.error : "C handler failed");
      rc = CHOREO_ESCRIPT;
    }
  }
  free(strings);
  return rc;
}

/* ---- what a C handler calls (choreo.h) ---- */

static int ctx_emit(choreo_ctx *ctx, const char *kind, const char *to, const char *type,
                    const char *json) {
  if (!ctx || !type || !type[0]) return CHOREO_EINVAL;
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  int rc = json ? choreo_json_to_msgpack(json, &sb, ctx->error, sizeof ctx->error) : 0;
  choreo_emit_opts opts = {0};
  if (!rc)
    rc = choreo_engine_emit_from_handler(ctx->engine, kind, to, type, sb.size ? sb.data : NULL,
                                         sb.size, &opts, NULL);
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

int choreo_ctx_publish(choreo_ctx *ctx, const char *type, const char *json) {
  return ctx_emit(ctx, "event", NULL, type, json);
}

int choreo_ctx_send(choreo_ctx *ctx, const char *to, const char *type, const char *json) {
  if (!to || !choreo_name_valid(to)) return CHOREO_EINVAL;
  return ctx_emit(ctx, "command", to, type, json);
}

int choreo_ctx_reply(choreo_ctx *ctx, const char *type, const char *json) {
  if (!ctx) return CHOREO_EINVAL;
  char *to = strndup(ctx->msg->source.p, ctx->msg->source.n);
  int rc = to ? ctx_emit(ctx, "reply", to, type, json) : CHOREO_ENOMEM;
  free(to);
  return rc;
}

struct sqlite3 *choreo_ctx_db(choreo_ctx *ctx) {
  return ctx ? choreo_engine_db(ctx->engine) : NULL;
}

int choreo_ctx_fail(choreo_ctx *ctx, const char *reason) {
  if (ctx) snprintf(ctx->error, sizeof ctx->error, "%s", reason ? reason : "C handler failed");
  return CHOREO_ESCRIPT;
}

char *choreo_message_json(const choreo_message *msg) {
  if (!msg || !msg->data) return strdup("null");
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  char *text = NULL;
  if (msgpack_unpack_next(&u, msg->data, msg->data_len, NULL) == MSGPACK_UNPACK_SUCCESS) {
    cJSON *tree = choreo_msgpack_to_cjson(&u.data);
    text = tree ? cJSON_PrintUnformatted(tree) : NULL;
    cJSON_Delete(tree);
  }
  msgpack_unpacked_destroy(&u);
  return text;
}
