/* The control socket (see control.h). A request that is not valid JSON gets an error answer,
 * never a crash: anything on this machine may write to the socket. */
#include "control.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "flows.h"
#include "host.h"
#include "json.h"
#include "tracecontext.h"

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

/* A stream version in a request: an integer from 0 to 2^53 (what a JSON number holds exactly). */
static bool control_version(const cJSON *v, int64_t *out) {
  double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
  if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(int64_t)d) return false;
  *out = (int64_t)d;
  return true;
}

#define CONTROL_BATCH_MAX 10000
#define CONTROL_KEY_MAX 200

/* Whether a command's destination is this host or one of the peers it knows (on the bus or
 * given with --peer): one it never heard of may simply not have started yet, so the command is
 * appended all the same, but the sender is told. */
static bool control_knows(choreo_host *h, const char *name) {
  if (strcmp(name, choreo_engine_name(choreo_host_engine(h))) == 0) return true;
  choreo_peer_status p;
  for (size_t i = 0; choreo_host_peer_get(h, i, &p) == 0; i++)
    if (strcmp(p.name, name) == 0) return true;
  return false;
}

/* publish/send: "type", optional "to" (send), either "data" or "batch" (an array of 1 to
 * 10,000 data: one message each, committed together), optional "subject", "traceparent" (W3C
 * trace context) and "expect" (the stream version a command's sender saw), and optional "key":
 * a request with a key seen before appends nothing and answers the first one's id, with
 * "repeated". A data is any JSON value; a string is JSON text, parsed in its turn (the form
 * clients used before values were taken: packing a value parsed with the request saves the
 * second parse on the way of every publish). */
static cJSON *control_emit(choreo_host *h, const cJSON *req, const char *body, size_t len,
                           const char *kind) {
  const char *type = control_string(req, "type");
  const char *to = control_string(req, "to");
  const char *key = control_string(req, "key"); /* a resent request appends nothing again */
  choreo_emit_opts opts = {.subject = control_string(req, "subject"),
                           .traceparent = control_string(req, "traceparent")};
  const cJSON *expect = cJSON_GetObjectItemCaseSensitive(req, "expect");
  choreo_trace_context trace;
  if (opts.traceparent &&
      !choreo_traceparent_parse((choreo_str){opts.traceparent, strlen(opts.traceparent)}, &trace))
    return control_error("%s", CHOREO_TRACEPARENT_EXPECTED);
  if (key && strlen(key) > CONTROL_KEY_MAX) return control_error("%s", "key over 200 bytes");
  if (expect && !(opts.has_expectedversion = control_version(expect, &opts.expectedversion)))
    return control_error("%s", "expect must be a stream version: an integer, 0 or more");
  const cJSON *batch = cJSON_GetObjectItemCaseSensitive(req, "batch");
  const cJSON *single = cJSON_GetObjectItemCaseSensitive(req, "data");
  if (!type) return control_error("%s needs a message type", kind);
  if (strcmp(kind, "command") == 0 && !to) return control_error("%s needs a destination", kind);
  if (to && !choreo_name_valid(to)) return control_error("invalid destination '%s'", to);
  int n = batch ? cJSON_GetArraySize(batch) : 1;
  if (batch && (!cJSON_IsArray(batch) || n < 1 || n > CONTROL_BATCH_MAX))
    return control_error("%s", "batch must be an array of 1 to 10000 data");
  /* the values' integers are read from the request's text: past the numbers before them */
  const cJSON *payload = batch ? batch : single;
  size_t numbers_before = 0;
  for (const cJSON *m = req->child; payload && m != payload; m = m->next)
    numbers_before += choreo_json_count_numbers(m);
  choreo_json_reader values;
  choreo_json_reader_init(&values, body, len, numbers_before);
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  size_t ends[n], lens[n];
  const char *datas[n];
  char err[256];
  int rc = 0, i;
  for (i = 0; i < n && !rc; i++) {
    const cJSON *item = batch ? cJSON_GetArrayItem(batch, i) : single;
    if (item)
      rc = cJSON_IsString(item) ? choreo_json_to_msgpack(item->valuestring, &sb, err, sizeof err)
                                : choreo_json_pack_value(&values, item, &sb, err, sizeof err);
    ends[i] = sb.size;
  }
  if (rc) {
    msgpack_sbuffer_destroy(&sb);
    char text[sizeof err + 32];
    if (batch) snprintf(text, sizeof text, "batch item %d: %s", i, err); /* counted from 1 */
    else snprintf(text, sizeof text, "data: %s", err);
    return control_error("%s", text);
  }
  for (i = 0; i < n; i++) { /* the buffer may have moved while growing: point in at the end */
    size_t start = i ? ends[i - 1] : 0;
    datas[i] = sb.data ? sb.data + start : NULL;
    lens[i] = ends[i] - start;
  }
  int64_t seq = 0;
  bool repeated = false;
  rc = choreo_host_append(h, kind, to, type, &opts, datas, lens, n, key, &seq, &repeated);
  msgpack_sbuffer_destroy(&sb);
  if (rc) return control_error("cannot append: %s", choreo_strerror(rc));
  cJSON *o = control_ok();
  cJSON_AddBoolToObject(o, "repeated", repeated);
  char id[CHOREO_NAME_MAX + 32];
  snprintf(id, sizeof id, "%s/%lld", choreo_engine_name(choreo_host_engine(h)), (long long)seq);
  cJSON_AddStringToObject(o, "id", id);
  cJSON_AddNumberToObject(o, "seq", (double)seq);
  if (to) cJSON_AddBoolToObject(o, "to_known", control_knows(h, to));
  return o;
}

static void control_add_projection(void *ud, const choreo_projection_status *p);

static cJSON *control_status(choreo_host *h) {
  choreo_host_status s;
  int rc = choreo_host_status_get(h, &s);
  if (rc) return control_error("cannot read the status: %s", choreo_strerror(rc));
  cJSON *o = control_ok();
  cJSON_AddStringToObject(o, "name", s.name);
  cJSON_AddStringToObject(o, "version", CHOREO_VERSION);
  cJSON_AddStringToObject(o, "dir", s.dir);
  cJSON_AddNumberToObject(o, "generation", s.generation);
  cJSON_AddStringToObject(o, "reload_error", s.reload_error);
  cJSON_AddNumberToObject(o, "head", (double)s.head);
  cJSON_AddNumberToObject(o, "own_checkpoint", (double)s.own_applied);
  cJSON_AddNumberToObject(o, "dead_letters", (double)s.dead_letters);
  cJSON_AddNumberToObject(o, "retries_pending", (double)s.retries_pending);
  cJSON_AddNumberToObject(o, "timeouts_pending", (double)s.timeouts_pending);
  cJSON_AddNumberToObject(o, "sagas_running", (double)s.sagas_running);
  cJSON_AddNumberToObject(o, "workflows_running", (double)s.workflows_running);
  cJSON_AddNumberToObject(o, "workflows_stuck", (double)s.workflows_stuck);
  cJSON_AddNumberToObject(o, "uptime_s", s.uptime_s);
  cJSON_AddNumberToObject(o, "handled", (double)s.handled);
  cJSON_AddNumberToObject(o, "handled_per_s", s.handled_per_s);
  cJSON_AddNumberToObject(o, "bad_frames", (double)s.bad_frames);
  cJSON_AddNumberToObject(o, "oldest", (double)s.oldest);
  cJSON_AddNumberToObject(o, "db_bytes", (double)s.db_bytes);
  cJSON_AddNumberToObject(o, "wal_bytes", (double)s.wal_bytes);
  cJSON_AddNumberToObject(o, "subscribers", s.subscribers);
  const choreo_unhandled *unhandled;
  int types;
  uint64_t other;
  choreo_engine_unhandled(choreo_host_engine(h), &unhandled, &types, &other);
  cJSON *list = cJSON_AddArrayToObject(o, "unhandled");
  for (int i = 0; i < types; i++) {
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "type", unhandled[i].type);
    cJSON_AddNumberToObject(item, "count", (double)unhandled[i].count);
    cJSON_AddItemToArray(list, item);
  }
  cJSON_AddNumberToObject(o, "unhandled_other", (double)other);
  cJSON *peers = cJSON_AddArrayToObject(o, "peers");
  choreo_peer_status p;
  for (size_t i = 0; (rc = choreo_host_peer_get(h, i, &p)) != CHOREO_ENOENT; i++) {
    if (rc) {
      cJSON_Delete(o);
      return control_error("cannot read the status: %s", choreo_strerror(rc));
    }
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "name", p.name);
    cJSON_AddStringToObject(item, "url", p.url);
    cJSON_AddNumberToObject(item, "checkpoint", (double)p.applied);
    cJSON_AddNumberToObject(item, "head", (double)p.head);
    cJSON_AddNumberToObject(item, "lag", (double)p.lag);
    cJSON_AddBoolToObject(item, "up", p.up);
    cJSON_AddNumberToObject(item, "heard_ms_ago", (double)p.heard_ms_ago);
    cJSON_AddNumberToObject(item, "gone", (double)p.gone);
    cJSON_AddNumberToObject(item, "gone_first", (double)p.gone_first);
    cJSON_AddNumberToObject(item, "gone_last", (double)p.gone_last);
    cJSON_AddNumberToObject(item, "fetched", (double)p.fetched);
    cJSON_AddNumberToObject(item, "fetches", (double)p.fetches);
    cJSON_AddItemToArray(peers, item);
  }
  cJSON *projections = cJSON_AddArrayToObject(o, "projections");
  if (projections)
    choreo_engine_projections_each(choreo_host_engine(h), control_add_projection, projections);
  return o;
}

/* A new object at the end of array; NULL when out of memory. */
static cJSON *control_new_item(cJSON *array) {
  cJSON *item = cJSON_CreateObject();
  if (item && cJSON_AddItemToArray(array, item)) return item;
  cJSON_Delete(item);
  return NULL;
}

/* The stored message in its CloudEvents JSON form; null if it no longer decodes, so one
 * damaged row cannot hide the others from `choreo dead list`. */
static cJSON *control_message(const char *raw, size_t len) {
  choreo_msg m;
  cJSON *v = raw && choreo_msg_decode(raw, len, &m) == 0 ? choreo_msg_to_cjson(&m) : NULL;
  return v ? v : cJSON_CreateNull();
}

/* A text column: a string, or null where the column is NULL. */
static void control_add_text(cJSON *o, const char *key, const char *text) {
  if (text) cJSON_AddStringToObject(o, key, text);
  else cJSON_AddNullToObject(o, key);
}

static int control_add_dead(void *ud, const choreo_dead_letter *d) {
  cJSON *o = cJSON_CreateObject();
  if (!o || !cJSON_AddItemToArray(ud, o)) {
    cJSON_Delete(o);
    return CHOREO_ENOMEM;
  }
  cJSON_AddNumberToObject(o, "id", (double)d->id);
  control_add_text(o, "source", d->source);
  cJSON_AddNumberToObject(o, "seq", (double)d->seq);
  control_add_text(o, "type", d->type);
  cJSON_AddNumberToObject(o, "attempts", d->attempts);
  cJSON_AddBoolToObject(o, "retrying", d->retrying);
  cJSON_AddNumberToObject(o, "revived", d->revived);
  control_add_text(o, "error", d->error);
  control_add_text(o, "traceback", d->traceback);
  control_add_text(o, "time", d->time);
  cJSON_AddItemToObject(o, "message", control_message(d->raw, d->raw_len));
  return 0;
}

static cJSON *control_dead(choreo_host *h, const cJSON *req) {
  choreo_engine *e = choreo_host_engine(h);
  const char *action = control_string(req, "action");
  if (action && strcmp(action, "list") == 0) {
    cJSON *o = control_ok();
    int rc = choreo_engine_dead_each(e, control_add_dead, cJSON_AddArrayToObject(o, "dead_letters"));
    if (rc) {
      cJSON_Delete(o);
      return control_error("cannot list dead letters: %s", choreo_strerror(rc));
    }
    return o;
  }
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
  if (!action || (strcmp(action, "retry") && strcmp(action, "drop")))
    return control_error("dead: unknown action '%s'", action ? action : "");
  if (!cJSON_IsNumber(id) || !(id->valuedouble >= 1 && id->valuedouble <= 9007199254740992.0))
    return control_error("dead %s needs an id between 1 and 2^53", action);
  int64_t n = (int64_t)id->valuedouble;
  int rc = strcmp(action, "retry") == 0 ? choreo_engine_dead_retry(e, n)
                                        : choreo_engine_dead_drop(e, n);
  char idtext[32];
  snprintf(idtext, sizeof idtext, "%lld", (long long)n);
  if (rc == CHOREO_ENOENT) return control_error("no dead letter with id %s", idtext);
  if (rc == CHOREO_EINVAL)
    return control_error("dead letter %s is being retried already", idtext);
  if (rc) return control_error("dead letter update failed: %s", choreo_strerror(rc));
  choreo_host_committed(h);
  return control_ok();
}

/* A wire-encoded value as JSON; NULL when absent or not one valid value, which
 * cJSON_AddItemToObject then leaves out. */
static cJSON *control_value(const char *blob, size_t len) {
  cJSON *v = NULL;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  if (blob && choreo_msgpack_check(blob, len, 1, CHOREO_MAX_DEPTH + 1) == 0 &&
      msgpack_unpack_next(&u, blob, len, NULL) == MSGPACK_UNPACK_SUCCESS)
    v = choreo_msgpack_to_cjson(&u.data);
  msgpack_unpacked_destroy(&u);
  return v;
}

static int control_add_saga(void *ud, const choreo_saga_row *row) {
  cJSON *item = control_new_item(ud);
  if (!item) return CHOREO_ENOMEM;
  cJSON_AddStringToObject(item, "name", row->name);
  cJSON_AddStringToObject(item, "key", row->key);
  cJSON_AddNumberToObject(item, "version", (double)row->version);
  cJSON_AddStringToObject(item, "updated", row->updated);
  cJSON_AddItemToObject(item, "state", control_value(row->state, row->state_len));
  return 0;
}

/* sagas: "action" list (optional "name") or show ("name", "key"). */
static cJSON *control_sagas(choreo_host *h, const cJSON *req) {
  const char *action = control_string(req, "action");
  const char *name = control_string(req, "name");
  const char *key = control_string(req, "key");
  bool show = action && strcmp(action, "show") == 0;
  if (!action || (!show && strcmp(action, "list") != 0))
    return control_error("sagas: unknown action '%s'", action ? action : "");
  if (show && (!name || !key)) return control_error("%s", "sagas show needs a saga name and a key");
  cJSON *o = control_ok();
  cJSON *list = cJSON_AddArrayToObject(o, "sagas");
  int rc = choreo_engine_sagas_each(choreo_host_engine(h), name, show ? key : NULL,
                                    control_add_saga, list);
  if (rc) {
    cJSON_Delete(o);
    return control_error("cannot read the sagas: %s", choreo_strerror(rc));
  }
  if (show && cJSON_GetArraySize(list) == 0) {
    cJSON_Delete(o);
    return control_error("no running instance with that key (%s)", key);
  }
  return o;
}

static int control_add_workflow(void *ud, const choreo_workflow_row *row) {
  cJSON *item = control_new_item(ud);
  if (!item) return CHOREO_ENOMEM;
  control_add_text(item, "name", row->name);
  control_add_text(item, "id", row->id);
  control_add_text(item, "status", row->status);
  control_add_text(item, "waiting", row->waiting);
  control_add_text(item, "error", row->error);
  cJSON_AddNumberToObject(item, "steps", (double)row->steps);
  cJSON_AddNumberToObject(item, "started_ms", (double)row->started_ms);
  cJSON_AddNumberToObject(item, "updated_ms", (double)row->updated_ms);
  cJSON_AddItemToObject(item, "input", control_value(row->input, row->input_len));
  cJSON_AddItemToObject(item, "result", control_value(row->result, row->result_len));
  return 0;
}

static int control_add_step(void *ud, const choreo_workflow_step *s) {
  cJSON *item = control_new_item(ud);
  if (!item) return CHOREO_ENOMEM;
  cJSON_AddNumberToObject(item, "step", (double)s->step);
  control_add_text(item, "op", s->op);
  control_add_text(item, "what", s->what);
  control_add_text(item, "ref", s->ref);
  cJSON_AddNumberToObject(item, "at_ms", (double)s->at_ms);
  if (s->done_ms) cJSON_AddNumberToObject(item, "done_ms", (double)s->done_ms);
  cJSON_AddItemToObject(item, "outcome", control_value(s->result, s->result_len));
  return 0;
}

#define CONTROL_WORKFLOWS_MAX 1000

/* workflows: "action" list (optional "name", "status") or show ("name", "id": the instance
 * with its history). */
static cJSON *control_workflows(choreo_host *h, const cJSON *req) {
  const char *action = control_string(req, "action");
  const char *name = control_string(req, "name"), *id = control_string(req, "id");
  const char *status = control_string(req, "status");
  bool show = action && strcmp(action, "show") == 0;
  if (!action || (!show && strcmp(action, "list") != 0))
    return control_error("workflows: unknown action '%s' (list or show)", action ? action : "");
  if (show && (!name || !id)) return control_error("%s", "workflows show needs a workflow and an id");
  choreo_workflows *w = choreo_engine_workflows(choreo_host_engine(h));
  cJSON *o = control_ok();
  cJSON *list = cJSON_AddArrayToObject(o, "workflows");
  bool found = true;
  int rc = show ? choreo_workflows_get(w, name, id, control_add_workflow, list, &found)
                : choreo_workflows_each(w, name, status, CONTROL_WORKFLOWS_MAX,
                                        control_add_workflow, list);
  if (!rc && show && found) {
    cJSON *history = cJSON_AddArrayToObject(cJSON_GetArrayItem(list, 0), "history");
    rc = history ? choreo_workflows_history(w, name, id, control_add_step, history)
                 : CHOREO_ENOMEM;
  }
  if (rc || !found) {
    cJSON_Delete(o);
    return rc ? control_error("cannot read the workflows: %s", choreo_strerror(rc))
              : control_error("no instance with that id (%s)", id);
  }
  return o;
}

/* start, cancel, signal: a command to this host that scripts/choreo/workflow.lua carries out
 * on the instance named by "workflow" and "id": choreo.StartWorkflow (optional "input", JSON
 * text), choreo.CancelWorkflow (optional "reason") or choreo.SignalWorkflow ("signal" and
 * optional "data", JSON text). Optional "key" as for send: at most one append per key. */
static cJSON *control_workflow_command(choreo_host *h, const cJSON *req, const char *op) {
  const char *workflow = control_string(req, "workflow"), *id = control_string(req, "id");
  const char *key = control_string(req, "key");
  const char *type = strcmp(op, "start") == 0    ? "choreo.StartWorkflow"
                     : strcmp(op, "cancel") == 0 ? "choreo.CancelWorkflow"
                                                 : "choreo.SignalWorkflow";
  if (!workflow || !id) return control_error("%s needs a workflow and an id", op);
  if (strcmp(op, "signal") == 0 && !control_string(req, "signal"))
    return control_error("%s", "signal needs the signal's name");
  if (key && strlen(key) > CONTROL_KEY_MAX) return control_error("%s", "key over 200 bytes");
  cJSON *data = cJSON_CreateObject();
  cJSON_AddStringToObject(data, "workflow", workflow);
  cJSON_AddStringToObject(data, "id", id);
  static const char *const texts[] = {"reason", "signal"}, *const values[] = {"input", "data"};
  for (int i = 0; i < 2; i++)
    if (control_string(req, texts[i]))
      cJSON_AddStringToObject(data, texts[i], control_string(req, texts[i]));
  for (int i = 0; i < 2; i++) {
    const char *json = control_string(req, values[i]);
    cJSON *value = json ? cJSON_Parse(json) : NULL;
    if (json && !value) {
      cJSON_Delete(data);
      return control_error("%s is not valid JSON", values[i]);
    }
    if (value) cJSON_AddItemToObject(data, values[i], value);
  }
  char *text = cJSON_PrintUnformatted(data);
  cJSON_Delete(data);
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  char err[256];
  int rc = text ? choreo_json_to_msgpack(text, &sb, err, sizeof err) : CHOREO_ENOMEM;
  free(text);
  const char *name = choreo_engine_name(choreo_host_engine(h));
  const char *datas[1] = {sb.data};
  size_t lens[1] = {sb.size};
  choreo_emit_opts opts = {0};
  int64_t seq = 0;
  bool repeated = false;
  if (!rc) rc = choreo_host_append(h, "command", name, type, &opts, datas, lens, 1, key, &seq,
                                   &repeated);
  msgpack_sbuffer_destroy(&sb);
  if (rc) return control_error("cannot append: %s", choreo_strerror(rc));
  cJSON *o = control_ok();
  char sent[CHOREO_NAME_MAX + 32];
  snprintf(sent, sizeof sent, "%s/%lld", name, (long long)seq);
  cJSON_AddStringToObject(o, "id", sent);
  cJSON_AddBoolToObject(o, "repeated", repeated);
  return o;
}

#define CONTROL_STREAM_PAGE 1000

typedef struct control_page {
  cJSON *events;
  int n;
  bool more;
} control_page;

static int control_add_event(void *ud, int64_t version, const char *msg, size_t len) {
  (void)version;
  control_page *p = ud;
  if (p->n == CONTROL_STREAM_PAGE) {
    p->more = true;
    return 1;
  }
  cJSON *event = control_message(msg, len);
  if (!event || !cJSON_AddItemToArray(p->events, event)) {
    cJSON_Delete(event);
    return CHOREO_ENOMEM;
  }
  p->n++;
  return 0;
}

/* stream: "stream", optional "after" (a version): its next events, at most 1000, with "more"
 * when further ones follow. */
static cJSON *control_stream(choreo_host *h, const cJSON *req) {
  const char *stream = control_string(req, "stream");
  const cJSON *after = cJSON_GetObjectItemCaseSensitive(req, "after");
  if (!stream) return control_error("%s", "stream needs a stream name");
  int64_t from = 0;
  if (after && !control_version(after, &from))
    return control_error("%s", "after must be a stream version, an integer 0 or more");
  cJSON *o = control_ok();
  control_page page = {.events = cJSON_AddArrayToObject(o, "events")};
  int64_t version = 0;
  choreo_engine *e = choreo_host_engine(h);
  int rc = choreo_engine_stream_version(e, stream, &version);
  if (!rc) rc = choreo_engine_stream_each(e, stream, from, control_add_event, &page);
  if (rc < 0) {
    cJSON_Delete(o);
    return control_error("cannot read the stream: %s", choreo_strerror(rc));
  }
  cJSON_AddNumberToObject(o, "version", (double)version);
  cJSON_AddBoolToObject(o, "more", page.more);
  return o;
}

static void control_add_projection(void *ud, const choreo_projection_status *p) {
  cJSON *item = control_new_item(ud);
  if (!item) return;
  cJSON_AddStringToObject(item, "name", p->name);
  cJSON_AddNumberToObject(item, "version", (double)p->declared);
  cJSON_AddNumberToObject(item, "live", (double)p->live);
  cJSON *tables = cJSON_AddArrayToObject(item, "tables");
  for (const char *at = p->objects; tables && *at;) {
    const char *end = strchr(at, '\n');
    cJSON *name = cJSON_CreateString("");
    char *text = name ? malloc((size_t)(end - at) + 1) : NULL;
    if (text) {
      memcpy(text, at, (size_t)(end - at));
      text[end - at] = '\0';
      cJSON_SetValuestring(name, text);
      free(text);
    }
    if (name) cJSON_AddItemToArray(tables, name);
    at = end + 1;
  }
  if (!p->building) return;
  cJSON *build = cJSON_AddObjectToObject(item, "build");
  if (!build) return;
  cJSON_AddNumberToObject(build, "version", (double)p->building);
  cJSON_AddNumberToObject(build, "position", (double)p->position);
  cJSON_AddNumberToObject(build, "applied", (double)p->applied);
  cJSON_AddNumberToObject(build, "remaining", (double)p->remaining);
  cJSON_AddNumberToObject(build, "rate", p->rate);
  if (p->error[0]) cJSON_AddStringToObject(build, "error", p->error);
  if (p->history[0]) cJSON_AddStringToObject(build, "history", p->history);
}

/* projections: "action" list (the default) or rebuild ("name"); both answer the list. */
static cJSON *control_projections(choreo_host *h, const cJSON *req) {
  const char *action = control_string(req, "action");
  const char *name = control_string(req, "name");
  choreo_engine *e = choreo_host_engine(h);
  if (action && strcmp(action, "list") && strcmp(action, "rebuild"))
    return control_error("projections: unknown action '%s' (list or rebuild)", action);
  if (action && strcmp(action, "rebuild") == 0) {
    char err[512];
    if (!name) return control_error("%s", "projections rebuild needs a projection's name");
    if (choreo_engine_projection_rebuild(e, name, err, sizeof err))
      return control_error("%s", err);
    choreo_host_committed(h); /* the build starts stepping */
  }
  cJSON *o = control_ok();
  cJSON *list = cJSON_AddArrayToObject(o, "projections");
  choreo_engine_projections_each(e, control_add_projection, list);
  return o;
}

int choreo_control_query(choreo_host *h, const char *name, const char *args, cJSON **result,
                         char *err, size_t errlen) {
  msgpack_sbuffer in, out;
  msgpack_sbuffer_init(&in);
  msgpack_sbuffer_init(&out);
  *result = NULL;
  int rc = args && choreo_json_to_msgpack(args, &in, err, errlen) ? CHOREO_EINVAL : 0;
  if (!rc)
    rc = choreo_engine_query(choreo_host_engine(h), name, in.size ? in.data : NULL, in.size, &out,
                             err, errlen);
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  /* What Lua packed is well-formed: it can only fail to unpack for want of memory. */
  if (!rc && msgpack_unpack_next(&u, out.data, out.size, NULL) != MSGPACK_UNPACK_SUCCESS)
    rc = CHOREO_ENOMEM;
  if (!rc && !(*result = choreo_msgpack_to_cjson(&u.data))) rc = CHOREO_ENOMEM;
  if (rc == CHOREO_ENOMEM) snprintf(err, errlen, "out of memory");
  /* A stop asked for from another thread cuts every call short, this one too. */
  if (rc && choreo_engine_interrupted(choreo_host_engine(h))) {
    rc = CHOREO_ESTOPPED;
    snprintf(err, errlen, "the host is stopping");
  }
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&in);
  msgpack_sbuffer_destroy(&out);
  return rc;
}

/* query: "name" and optional "args" (any JSON value): {"result": ...}. */
static cJSON *control_query(choreo_host *h, const cJSON *req) {
  const char *name = control_string(req, "name");
  if (!name) return control_error("%s", "query needs a query name");
  const cJSON *args = cJSON_GetObjectItemCaseSensitive(req, "args");
  char *text = args ? cJSON_PrintUnformatted(args) : NULL;
  if (args && !text) return control_error("%s", "out of memory");
  cJSON *result;
  char err[1024] = "";
  int rc = choreo_control_query(h, name, text, &result, err, sizeof err);
  free(text);
  if (rc) return control_error("%s", err[0] ? err : choreo_strerror(rc));
  cJSON *o = control_ok();
  cJSON_AddItemToObject(o, "result", result);
  return o;
}

#define CONTROL_JOURNAL_MAX 10000

typedef struct control_journal {
  choreo_engine *e;
  cJSON *rows;
  /* The emitted messages listed, over all rows, at most CONTROL_JOURNAL_MAX: one handler that
   * published a million would otherwise hold the loop for seconds, reading its log. */
  int64_t emitted_left;
  bool cut; /* some were left out */
} control_journal;

/* A message's attribute: a string, left out where the message has none. */
static void control_add_attr(cJSON *o, const char *key, choreo_str v) {
  char *text = v.p ? strndup(v.p, v.n) : NULL;
  if (text) cJSON_AddStringToObject(o, key, text);
  free(text);
}

static int control_add_emitted(void *ud, const choreo_msg *m) {
  cJSON *item = control_new_item(ud);
  if (!item) return CHOREO_ENOMEM;
  control_add_attr(item, "id", m->id);
  control_add_attr(item, "type", m->type);
  control_add_attr(item, "kind", m->kind);
  control_add_attr(item, "to", m->to);
  control_add_attr(item, "correlation", m->correlationid.p ? m->correlationid : m->id);
  return 0;
}

static int control_add_journal_row(void *ud, const choreo_journal_row *row) {
  control_journal *j = ud;
  cJSON *item = control_new_item(j->rows);
  if (!item) return CHOREO_ENOMEM;
  cJSON_AddNumberToObject(item, "at_ms", (double)row->at_ms);
  control_add_text(item, "id", row->id);
  control_add_text(item, "source", row->source);
  cJSON_AddNumberToObject(item, "seq", (double)row->seq);
  control_add_text(item, "type", row->type);
  control_add_text(item, "kind", row->kind);
  control_add_text(item, "correlation", row->correlation);
  control_add_text(item, "causation", row->causation);
  control_add_text(item, "handler", row->handler);
  control_add_text(item, "outcome", row->outcome);
  cJSON_AddNumberToObject(item, "attempts", (double)row->attempts);
  cJSON_AddNumberToObject(item, "duration_us", (double)row->duration_us);
  control_add_text(item, "error", row->error);
  cJSON *emitted = cJSON_AddArrayToObject(item, "emitted");
  if (!emitted) return CHOREO_ENOMEM;
  if (row->emitted_first <= 0) return 0;
  int64_t last = row->emitted_last;
  if (last - row->emitted_first >= j->emitted_left) {
    last = row->emitted_first + j->emitted_left - 1;
    j->cut = true;
  }
  if (last < row->emitted_first) return 0;
  j->emitted_left -= last - row->emitted_first + 1;
  return choreo_engine_log_each(j->e, row->emitted_first, last, control_add_emitted, emitted);
}

static int control_add_timeout(void *ud, const choreo_timeout *t) {
  cJSON *item = control_new_item(ud);
  if (!item) return CHOREO_ENOMEM;
  control_add_text(item, "type", t->type);
  cJSON_AddNumberToObject(item, "due_ms", (double)t->due_ms);
  control_add_text(item, "causation", t->causationid);
  return 0;
}

/* journal: "correlation", or "id" (a message of this host's log: its conversation, "" when it
 * is not one or no longer retained): the rows of this host's journal in that conversation, oldest first, at
 * most 10,000, each with the messages it emitted, at most 10,000 of those in all ("more" when
 * either was cut); and the conversation's pending timeouts. */
static cJSON *control_conversation(choreo_engine *e, const char *correlation) {
  cJSON *o = control_ok();
  cJSON_AddStringToObject(o, "host", choreo_engine_name(e));
  cJSON_AddBoolToObject(o, "journal", choreo_engine_journaling(e));
  cJSON_AddStringToObject(o, "correlation", correlation);
  control_journal j = {.e = e, .rows = cJSON_AddArrayToObject(o, "rows"),
                       .emitted_left = CONTROL_JOURNAL_MAX};
  int rc = correlation[0] ? choreo_engine_journal_each(e, correlation, CONTROL_JOURNAL_MAX + 1,
                                                       control_add_journal_row, &j)
                          : 0;
  if (rc) {
    cJSON_Delete(o);
    return control_error("cannot read the journal: %s", choreo_strerror(rc));
  }
  cJSON *timeouts = cJSON_AddArrayToObject(o, "timeouts");
  if (!rc && correlation[0])
    rc = choreo_engine_timeouts_of(e, correlation, CONTROL_JOURNAL_MAX, control_add_timeout,
                                   timeouts);
  if (rc) {
    cJSON_Delete(o);
    return control_error("cannot read the timeouts: %s", choreo_strerror(rc));
  }
  cJSON_AddNumberToObject(o, "now_ms", (double)choreo_engine_now_ms(e));
  bool more = cJSON_GetArraySize(j.rows) > CONTROL_JOURNAL_MAX;
  if (more) cJSON_DeleteItemFromArray(j.rows, CONTROL_JOURNAL_MAX);
  more |= j.cut;
  cJSON_AddBoolToObject(o, "more", more);
  return o;
}

static cJSON *control_journal_rows(choreo_host *h, const cJSON *req) {
  choreo_engine *e = choreo_host_engine(h);
  const char *correlation = control_string(req, "correlation");
  const char *id = control_string(req, "id");
  if (!correlation == !id) return control_error("%s", "journal needs a correlation or an id");
  if (correlation) return control_conversation(e, correlation);
  char *found = NULL;
  int rc = choreo_engine_conversation_of(e, id, &found);
  if (rc) return control_error("cannot read the journal: %s", choreo_strerror(rc));
  cJSON *o = control_conversation(e, found ? found : "");
  free(found);
  return o;
}

#define CONTROL_WINDOW_MAX_MS (366LL * 86400 * 1000)

/* flows: "window_ms": what this host handled in that window, counted by source, type, kind and
 * handler (see flows.h). */
static cJSON *control_flows(choreo_host *h, const cJSON *req) {
  const cJSON *w = cJSON_GetObjectItemCaseSensitive(req, "window_ms");
  double window = cJSON_IsNumber(w) ? w->valuedouble : -1;
  if (!(window > 0 && window <= (double)CONTROL_WINDOW_MAX_MS))
    return control_error("%s", "flows needs window_ms: milliseconds, more than 0, at most a year");
  choreo_engine *e = choreo_host_engine(h);
  cJSON *o = control_ok();
  cJSON_AddStringToObject(o, "host", choreo_engine_name(e));
  cJSON_AddBoolToObject(o, "journal", choreo_engine_journaling(e));
  int rc = choreo_flows_add(e, (int64_t)window, o);
  if (rc) {
    cJSON_Delete(o);
    return control_error("cannot read the journal: %s", choreo_strerror(rc));
  }
  return o;
}

/* conversations: the newest this host took part in (see flows.h). */
static cJSON *control_conversations(choreo_host *h) {
  choreo_engine *e = choreo_host_engine(h);
  cJSON *o = control_ok();
  cJSON_AddStringToObject(o, "host", choreo_engine_name(e));
  int rc = choreo_flows_conversations(e, o);
  if (rc) {
    cJSON_Delete(o);
    return control_error("cannot read the journal: %s", choreo_strerror(rc));
  }
  return o;
}

static cJSON *control_answer_tree(choreo_host *h, const char *body, size_t len) {
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
    answer = control_emit(h, req, body, len, "event");
  else if (strcmp(op, "send") == 0)
    answer = control_emit(h, req, body, len, "command");
  else if (strcmp(op, "status") == 0)
    answer = control_status(h);
  else if (strcmp(op, "dead") == 0)
    answer = control_dead(h, req);
  else if (strcmp(op, "sagas") == 0)
    answer = control_sagas(h, req);
  else if (strcmp(op, "stream") == 0)
    answer = control_stream(h, req);
  else if (strcmp(op, "query") == 0)
    answer = control_query(h, req);
  else if (strcmp(op, "projections") == 0)
    answer = control_projections(h, req);
  else if (strcmp(op, "workflows") == 0)
    answer = control_workflows(h, req);
  else if (strcmp(op, "journal") == 0)
    answer = control_journal_rows(h, req);
  else if (strcmp(op, "flows") == 0)
    answer = control_flows(h, req);
  else if (strcmp(op, "conversations") == 0)
    answer = control_conversations(h);
  else if (strcmp(op, "start") == 0 || strcmp(op, "cancel") == 0 || strcmp(op, "signal") == 0)
    answer = control_workflow_command(h, req, op);
  else
    answer = control_error("unknown op '%s'", op);
  cJSON_Delete(req);
  return answer;
}

char *choreo_control_answer_remote(choreo_host *h, const char *body, size_t len) {
  static const char *const reads[] = {"journal", "flows", "conversations", "status"};
  cJSON *req = cJSON_ParseWithLength(body, len);
  const char *op = cJSON_IsObject(req) ? control_string(req, "op") : NULL;
  bool allowed = false;
  for (size_t i = 0; op && i < sizeof reads / sizeof *reads; i++) allowed |= strcmp(op, reads[i]) == 0;
  cJSON_Delete(req);
  if (allowed) return choreo_control_answer(h, body, len);
  cJSON *error = control_error("%s", "over the network only journal, flows, conversations and "
                                     "status are answered");
  char *text = cJSON_PrintUnformatted(error);
  cJSON_Delete(error);
  return text;
}

char *choreo_control_answer(choreo_host *h, const char *body, size_t len) {
  cJSON *answer = control_answer_tree(h, body, len);
  char *text = answer ? cJSON_PrintUnformatted(answer) : NULL;
  cJSON_Delete(answer);
  return text;
}

static void control_on_request(void *ud, nng_msg *request) {
  choreo_control *c = ud;
  char *text = choreo_control_answer(c->host, nng_msg_body(request), nng_msg_len(request));
  if (text) choreo_bus_server_reply(&c->server, request, text, strlen(text) + 1);
  else nng_msg_free(request);
  free(text);
}

int choreo_control_start(choreo_control *c, uv_loop_t *loop, choreo_host *host, const char *url,
                         char *err, size_t errlen) {
  *c = (choreo_control){.host = host};
  return choreo_bus_server_start(&c->server, loop, choreo_engine_name(choreo_host_engine(host)),
                                 &url, 1, control_on_request, c, "control", err, errlen);
}

void choreo_control_drain(choreo_control *c) { choreo_bus_server_drain(&c->server); }

void choreo_control_stop(choreo_control *c) { choreo_bus_server_stop(&c->server); }
