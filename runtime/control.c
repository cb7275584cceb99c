/* The control socket (ipc://BUS/NAME.ctl) the command line talks to. Requests and answers are
 * JSON objects: {"op": "publish"|"send"|"status"|"dead", ...}; every answer has "ok", and
 * "error" when ok is false. A request that is not valid JSON gets an error answer, never a
 * crash: anything on this machine may write to the socket. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "json.h"
#include "log.h"

static cJSON *control_error(const char *fmt, const char *arg) {
  char text[512];
  snprintf(text, sizeof text, fmt, arg);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "ok", 0);
  cJSON_AddStringToObject(o, "error", text);
  return o;
}

static cJSON *control_ok(void) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "ok", 1);
  return o;
}

static const char *control_string(const cJSON *req, const char *field) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, field);
  return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

#define CONTROL_BATCH_MAX 10000

/* publish/send: "type", optional "to" (send), and either "data" (one JSON text) or "batch" (an
 * array of JSON texts: one message each, committed together). */
static cJSON *control_emit(choreo_host *h, const cJSON *req, const char *kind) {
  const char *type = control_string(req, "type");
  const char *to = control_string(req, "to");
  const cJSON *batch = cJSON_GetObjectItemCaseSensitive(req, "batch");
  const cJSON *single = cJSON_GetObjectItemCaseSensitive(req, "data");
  if (!type) return control_error("%s needs a message type", kind);
  if (strcmp(kind, "command") == 0 && !to) return control_error("%s needs a destination", kind);
  if (to && !choreo_bus_valid_name(to)) return control_error("invalid destination '%s'", to);
  int n = batch ? cJSON_GetArraySize(batch) : 1;
  if (batch && (!cJSON_IsArray(batch) || n < 1 || n > CONTROL_BATCH_MAX))
    return control_error("%s", "batch must be an array of 1 to 10000 JSON texts");
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  size_t ends[n], lens[n];
  const char *datas[n];
  char err[256];
  int rc = 0;
  for (int i = 0; i < n && !rc; i++) {
    const cJSON *item = batch ? cJSON_GetArrayItem(batch, i) : single;
    if (item && !cJSON_IsString(item)) rc = CHOREO_EINVAL;
    if (!rc && item && choreo_json_to_msgpack(item->valuestring, &sb, err, sizeof err))
      rc = CHOREO_ESCRIPT;
    ends[i] = sb.size;
  }
  if (rc) {
    msgpack_sbuffer_destroy(&sb);
    return rc == CHOREO_EINVAL ? control_error("%s", "data must be JSON text in a string")
                               : control_error("%s", err);
  }
  for (int i = 0; i < n; i++) { /* the buffer may have moved while growing: point in at the end */
    size_t start = i ? ends[i - 1] : 0;
    datas[i] = sb.data ? sb.data + start : NULL;
    lens[i] = ends[i] - start;
  }
  int64_t seq = 0;
  rc = choreo_engine_emit_batch(h->engine, kind, to, type, datas, lens, n, &seq);
  msgpack_sbuffer_destroy(&sb);
  if (rc) return control_error("cannot append: %s", choreo_strerror(rc));
  choreo_host_committed(h);
  cJSON *o = control_ok();
  char id[CHOREO_NAME_MAX + 32];
  snprintf(id, sizeof id, "%s/%lld", h->opts->name, (long long)seq);
  cJSON_AddStringToObject(o, "id", id);
  cJSON_AddNumberToObject(o, "seq", (double)seq);
  return o;
}

static cJSON *control_status(choreo_host *h) {
  choreo_store *store = choreo_engine_store(h->engine);
  cJSON *o = control_ok();
  cJSON_AddStringToObject(o, "name", h->opts->name);
  cJSON_AddStringToObject(o, "version", CHOREO_VERSION);
  cJSON_AddStringToObject(o, "dir", h->opts->dir);
  cJSON_AddNumberToObject(o, "generation", choreo_engine_generation(h->engine));
  cJSON_AddStringToObject(o, "reload_error", choreo_engine_reload_error(h->engine));
  cJSON_AddNumberToObject(o, "head", (double)choreo_store_head(store));
  cJSON_AddNumberToObject(o, "own_checkpoint",
                          (double)choreo_store_checkpoint(store, h->opts->name));
  cJSON_AddNumberToObject(o, "dead_letters", (double)choreo_store_dead_count(store));
  cJSON_AddNumberToObject(o, "bad_frames", (double)choreo_engine_bad_frames(h->engine));
  choreo_peers_status(h, cJSON_AddArrayToObject(o, "peers"));
  return o;
}

static cJSON *control_dead(choreo_host *h, const cJSON *req) {
  choreo_store *store = choreo_engine_store(h->engine);
  const char *action = control_string(req, "action");
  if (action && strcmp(action, "list") == 0) {
    char *list = choreo_store_dead_list_json(store);
    cJSON *o = control_ok();
    cJSON *items = list ? cJSON_Parse(list) : NULL;
    free(list);
    cJSON_AddItemToObject(o, "dead_letters", items ? items : cJSON_CreateArray());
    return o;
  }
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
  if (!action || (strcmp(action, "retry") && strcmp(action, "drop")))
    return control_error("dead: unknown action '%s'", action ? action : "");
  if (!cJSON_IsNumber(id) || !(id->valuedouble >= 1 && id->valuedouble <= 9007199254740992.0))
    return control_error("dead %s needs an id between 1 and 2^53", action);
  int64_t n = (int64_t)id->valuedouble;
  int rc = strcmp(action, "retry") == 0
               ? choreo_store_dead_retry(store, n, choreo_engine_now_ms(h->engine))
               : choreo_store_dead_drop(store, n);
  char idtext[32];
  snprintf(idtext, sizeof idtext, "%lld", (long long)n);
  if (rc == CHOREO_ENOENT) return control_error("no dead letter with id %s", idtext);
  if (rc) return control_error("dead letter update failed: %s", choreo_strerror(rc));
  choreo_host_committed(h);
  return control_ok();
}

/* sagas: "action" list (optional "name") or show ("name", "key"). The table exists once a
 * script has defined a saga; before that there is simply nothing to list. */
static cJSON *control_sagas(choreo_host *h, const cJSON *req) {
  const char *action = control_string(req, "action");
  const char *name = control_string(req, "name");
  const char *key = control_string(req, "key");
  bool show = action && strcmp(action, "show") == 0;
  if (!action || (!show && strcmp(action, "list") != 0))
    return control_error("sagas: unknown action '%s'", action ? action : "");
  if (show && (!name || !key)) return control_error("%s", "sagas show needs a saga name and a key");
  const char *sql = show ? "SELECT name, key, version, updated, state FROM choreo_sagas "
                           "WHERE name = ?1 AND key = ?2"
                         : "SELECT name, key, version, updated, NULL FROM choreo_sagas "
                           "WHERE ?1 IS NULL OR name = ?1 ORDER BY name, key LIMIT 10000";
  sqlite3_stmt *st = NULL;
  cJSON *o = control_ok();
  cJSON *list = cJSON_AddArrayToObject(o, "sagas");
  if (sqlite3_prepare_v2(choreo_engine_db(h->engine), sql, -1, &st, NULL) != SQLITE_OK) {
    sqlite3_finalize(st);
    return o; /* no saga defined yet */
  }
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  if (show) sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "name", (const char *)sqlite3_column_text(st, 0));
    cJSON_AddStringToObject(item, "key", (const char *)sqlite3_column_text(st, 1));
    cJSON_AddNumberToObject(item, "version", (double)sqlite3_column_int64(st, 2));
    cJSON_AddStringToObject(item, "updated", (const char *)sqlite3_column_text(st, 3));
    if (show) {
      const char *blob = sqlite3_column_blob(st, 4);
      size_t n = (size_t)sqlite3_column_bytes(st, 4);
      msgpack_unpacked u;
      msgpack_unpacked_init(&u);
      if (blob && choreo_msgpack_check(blob, n, 1, CHOREO_MAX_DEPTH + 1) == 0 &&
          msgpack_unpack_next(&u, blob, n, NULL) == MSGPACK_UNPACK_SUCCESS)
        cJSON_AddItemToObject(item, "state", choreo_msgpack_to_cjson(&u.data));
      msgpack_unpacked_destroy(&u);
    }
    cJSON_AddItemToArray(list, item);
  }
  sqlite3_finalize(st);
  if (show && cJSON_GetArraySize(list) == 0) {
    cJSON_Delete(o);
    return control_error("no running instance with that key (%s)", key);
  }
  return o;
}

static cJSON *control_answer(choreo_host *h, const char *body, size_t len) {
  cJSON *req = cJSON_ParseWithLength(body, len);
  if (!cJSON_IsObject(req)) {
    cJSON_Delete(req);
    return control_error("%s", "request is not a JSON object");
  }
  const char *op = control_string(req, "op");
  cJSON *answer;
  if (!op)
    answer = control_error("%s", "request has no op");
  else if (strcmp(op, "publish") == 0)
    answer = control_emit(h, req, "event");
  else if (strcmp(op, "send") == 0)
    answer = control_emit(h, req, "command");
  else if (strcmp(op, "status") == 0)
    answer = control_status(h);
  else if (strcmp(op, "dead") == 0)
    answer = control_dead(h, req);
  else if (strcmp(op, "sagas") == 0)
    answer = control_sagas(h, req);
  else
    answer = control_error("unknown op '%s'", op);
  cJSON_Delete(req);
  return answer;
}

void choreo_control_serve(void *host, nng_msg *request) {
  choreo_host *h = host;
  cJSON *answer = control_answer(h, nng_msg_body(request), nng_msg_len(request));
  char *text = answer ? cJSON_PrintUnformatted(answer) : NULL;
  cJSON_Delete(answer);
  nng_msg_clear(request);
  if (!text || nng_msg_append(request, text, strlen(text) + 1) != 0 ||
      nng_sendmsg(h->ctl, request, 0) != 0)
    nng_msg_free(request);
  free(text);
}
