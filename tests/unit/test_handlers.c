/* Unit tests of the C handlers an embedding program registers on the engine
 * (choreo_engine_on, runtime/core/handlers.c) and of what they call while they run
 * (choreo_ctx_* and choreo_message_json, runtime/include/choreo.h).
 *
 * Each test opens an engine on ":memory:" with a fake clock and the Lua scripts of a fresh
 * /tmp directory, registers C handlers that record what they see into a struct passed as `ud`,
 * and feeds it frames from a peer built with the codec. They check: which messages reach a
 * handler (exact types, "Prefix*" patterns, commands for other hosts), the choreo_message it
 * gets, that C handlers run before the Lua ones in the same savepoint, what ctx publish/reply/
 * send append to the log (correlation and causation inherited, rolled back with a failure),
 * failures (rolled back, 3 immediate attempts, the reason in choreo_retries, back-off, then a
 * dead letter), registration staying across reloads, argument checks, a message without an id
 * (derived), and a failure reason that belongs to the handler that failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_fixture.h"
#include "choreo.h"
#include "engine.h"
#include "json.h"
#include "lua_scripts.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof *(a)))


/* c_rows is written by C handlers through choreo_ctx_db; the Lua handler for "Both" records in
 * lua_saw how many c_rows it sees, which tells whether the C handler ran before it. */
static const char handlers_lua[] =
    "local choreo = require 'choreo'\n"
    "choreo.db:exec('create table if not exists c_rows(n integer)')\n"
    "choreo.db:exec('create table if not exists lua_saw(c integer)')\n"
    "choreo.on('Both', function(msg, ctx)\n"
    "  local seen = ctx.db:one('select count(*) as c from c_rows').c\n"
    "  ctx.db:exec('insert into lua_saw values (?)', seen)\n"
    "end)\n"
    "choreo.on('BothFail', function() error('lua says no') end)\n";

/* A message of a test frame: kind NULL means "event"; json is its data (NULL: none). */
typedef struct test_msg {
  const char *type, *kind, *to, *json, *correlationid;
} test_msg;

/* Applies one frame from "peer" holding msgs with seq first, first + 1, ... */
static int apply_msgs(choreo_engine *e, int64_t first, const test_msg *msgs, int n,
                      choreo_apply_result *res) {
  msgpack_sbuffer frame, data;
  msgpack_sbuffer_init(&frame);
  msgpack_sbuffer_init(&data);
  CHECK(choreo_frame_header(&frame, "peer", first, (uint32_t)n, first + n - 1) == 0);
  for (int i = 0; i < n; i++) {
    char err[128];
    msgpack_sbuffer_clear(&data);
    if (msgs[i].json) CHECK(choreo_json_to_msgpack(msgs[i].json, &data, err, sizeof err) == 0);
    choreo_msg_fields f = {.source = "peer", .seq = first + i, .type = msgs[i].type,
                           .kind = msgs[i].kind ? msgs[i].kind : "event", .to = msgs[i].to,
                           .correlationid = msgs[i].correlationid,
                           .data = data.size ? data.data : NULL, .data_len = data.size};
    CHECK(choreo_msg_encode(&f, &frame) == 0);
  }
  int rc = choreo_engine_apply_frame(e, frame.data, frame.size, res);
  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_destroy(&frame);
  return rc;
}

/* ---- what a handler saw, or what a log row holds, as text ("<null>" for NULL) ---- */

typedef struct seen {
  int calls;
  char type[32], source[32], id[48], kind[16], to[32], correlationid[48], causationid[48];
  char json[64];  /* the data, through choreo_message_json */
  char types[128]; /* every type seen, space-separated */
  int64_t seq;
  bool has_data; /* msg->data != NULL */
  size_t data_len;
} seen;

static void put(char *dst, size_t size, const char *s) {
  snprintf(dst, size, "%s", s ? s : "<null>");
}

static void put_str(char *dst, size_t size, choreo_str s) {
  if (s.p)
    snprintf(dst, size, "%.*s", (int)s.n, s.p);
  else
    put(dst, size, NULL);
}

/* The C handler most tests register: copies the message into the seen struct `ud`. */
static int record(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)ctx;
  seen *s = ud;
  s->calls++;
  put(s->type, sizeof s->type, msg->type);
  put(s->source, sizeof s->source, msg->source);
  put(s->id, sizeof s->id, msg->id);
  put(s->kind, sizeof s->kind, msg->kind);
  put(s->to, sizeof s->to, msg->to);
  put(s->correlationid, sizeof s->correlationid, msg->correlationid);
  put(s->causationid, sizeof s->causationid, msg->causationid);
  s->seq = msg->seq;
  s->has_data = msg->data != NULL; /* the pointer itself does not outlive the call */
  s->data_len = msg->data_len;
  char *json = choreo_message_json(msg);
  put(s->json, sizeof s->json, json);
  free(json);
  size_t n = strlen(s->types);
  snprintf(s->types + n, sizeof s->types - n, "%s%s", n ? " " : "", msg->type);
  return 0;
}

/* Row seq of our log, decoded the way the codec reads it. */
static void log_row(choreo_engine *e, int64_t seq, seen *s) {
  memset(s, 0, sizeof *s);
  sqlite3_stmt *st = NULL;
  CHECK(sqlite3_prepare_v2(choreo_engine_db(e), "select msg from choreo_log where seq = ?", -1,
                           &st, NULL) == SQLITE_OK);
  sqlite3_bind_int64(st, 1, seq);
  if (sqlite3_step(st) == SQLITE_ROW) {
    choreo_msg m;
    CHECK(choreo_msg_decode(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                            &m) == 0);
    put_str(s->type, sizeof s->type, m.type);
    put_str(s->source, sizeof s->source, m.source);
    put_str(s->id, sizeof s->id, m.id);
    put_str(s->kind, sizeof s->kind, m.kind);
    put_str(s->to, sizeof s->to, m.to);
    put_str(s->correlationid, sizeof s->correlationid, m.correlationid);
    put_str(s->causationid, sizeof s->causationid, m.causationid);
    s->seq = m.seq;
    char *json = choreo_message_json(&(choreo_message){.data = m.data, .data_len = m.data_len});
    put(s->json, sizeof s->json, json ? json : "?");
    free(json);
  } else {
    fprintf(stderr, "no row %lld in choreo_log\n", (long long)seq);
    CHECK(!"log row present");
  }
  sqlite3_finalize(st);
}

/* ---- 1, 8: what a handler for an exact type receives ---- */

static void test_exact_type_receives_message(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  seen s = {0};
  CHECK(choreo_engine_on(e, "Ping", record, &s) == 0);
  choreo_apply_result res;
  /* Pong and PingX are other types: an exact pattern is not a prefix. */
  const test_msg msgs[] = {{.type = "Pong", .json = "{\"n\":0}"},
                           {.type = "Ping", .json = "{\"n\":1}"},
                           {.type = "PingX", .json = "{\"n\":2}"}};
  CHECK(apply_msgs(e, 1, msgs, COUNT(msgs), &res) == 0);
  CHECK(res.applied == 1 && res.skipped == 2 && res.failed == 0);
  CHECK(s.calls == 1);
  CHECK(strcmp(s.types, "Ping") == 0);
  CHECK(strcmp(s.type, "Ping") == 0);
  CHECK(strcmp(s.source, "peer") == 0);
  CHECK(s.seq == 2);
  CHECK(strcmp(s.id, "peer/2") == 0);
  CHECK(strcmp(s.kind, "event") == 0);
  CHECK(strcmp(s.to, "<null>") == 0); /* events have no destination */
  CHECK(strcmp(s.causationid, "<null>") == 0);
  CHECK(strcmp(s.json, "{\"n\":1}") == 0);
  CHECK(s.has_data && s.data_len > 0);
  /* The checkpoint covers all three, handled or not. */
  int64_t cp = -1;
  CHECK(choreo_engine_checkpoint(e, "peer", &cp) == 0 && cp == 3);
  choreo_engine_close(e);
}

/* 8: no data in the message: data is NULL and choreo_message_json says "null". */
static void test_message_without_data(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  seen s = {0};
  CHECK(choreo_engine_on(e, "Ping", record, &s) == 0);
  choreo_apply_result res;
  const test_msg msgs[] = {{.type = "Ping"}, {.type = "Ping", .json = "[true,\"x\",null]"}};
  CHECK(apply_msgs(e, 1, msgs, 1, &res) == 0 && res.applied == 1);
  CHECK(s.calls == 1 && !s.has_data && s.data_len == 0);
  CHECK(strcmp(s.json, "null") == 0);
  /* The same handler then gets data again: nothing stale from the data-less message. */
  CHECK(apply_msgs(e, 2, msgs + 1, 1, &res) == 0 && res.applied == 1);
  CHECK(s.calls == 2 && s.has_data);
  CHECK(strcmp(s.json, "[true,\"x\",null]") == 0);
  /* choreo_message_json itself, on a message without data and on none at all. */
  choreo_message none = {.type = "T"};
  char *text = choreo_message_json(&none);
  CHECK(text && strcmp(text, "null") == 0);
  free(text);
  text = choreo_message_json(NULL);
  CHECK(text && strcmp(text, "null") == 0);
  free(text);
  choreo_engine_close(e);
}

/* ---- 2: prefix patterns ---- */

static void test_prefix_pattern(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  seen s = {0};
  CHECK(choreo_engine_on(e, "Order*", record, &s) == 0);
  choreo_apply_result res;
  /* "Order" itself matches (an empty rest); shorter types and other cases do not. */
  const test_msg msgs[] = {{.type = "OrderPlaced"}, {.type = "Ord"}, {.type = "Order"},
                           {.type = "order"},       {.type = "Orde"}, {.type = "XOrder"}};
  CHECK(apply_msgs(e, 1, msgs, COUNT(msgs), &res) == 0);
  CHECK(res.applied == 2 && res.skipped == 4 && res.failed == 0);
  CHECK(s.calls == 2);
  CHECK(strcmp(s.types, "OrderPlaced Order") == 0);
  choreo_engine_close(e);
}

/* ---- 3: C and Lua handlers for one type ---- */

/* Inserts one c_rows row through the ctx's connection. */
static int insert_row(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)msg;
  int *calls = ud;
  (*calls)++;
  char *err = NULL;
  if (sqlite3_exec(choreo_ctx_db(ctx), "insert into c_rows values (1)", NULL, NULL, &err)) {
    int rc = choreo_ctx_fail(ctx, err);
    sqlite3_free(err);
    return rc;
  }
  return 0;
}

static void test_c_runs_before_lua(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  int calls = 0;
  CHECK(choreo_engine_on(e, "Both", insert_row, &calls) == 0);
  CHECK(choreo_engine_on(e, "BothFail", insert_row, &calls) == 0);
  choreo_apply_result res;
  const test_msg msgs[] = {{.type = "Both"}, {.type = "Both"}};
  CHECK(apply_msgs(e, 1, msgs, COUNT(msgs), &res) == 0);
  CHECK(res.applied == 2 && res.failed == 0);
  CHECK(calls == 2);
  CHECK(query_int(e, "select count(*) from c_rows") == 2);
  /* The Lua handler saw the C handler's row each time: C ran first, in the same transaction.
   * Lua first would have recorded 0 then 1. */
  CHECK(query_int(e, "select group_concat(c, ',') = '1,2' from (select c from lua_saw "
                     "order by rowid)") == 1);

  /* When the Lua handler fails, the C handler's write rolls back with it (one savepoint). */
  const test_msg fail[] = {{.type = "BothFail"}};
  CHECK(apply_msgs(e, 3, fail, 1, &res) == 0);
  CHECK(res.applied == 0 && res.failed == 1);
  CHECK(strstr(res.last_error, "lua says no") != NULL);
  CHECK(calls == 2 + choreo_default_retry_policy.attempts);
  CHECK(query_int(e, "select count(*) from c_rows") == 2);
  choreo_engine_close(e);
}

/* ---- 4: what a handler emits ---- */

/* Return codes of everything the emitter tried; fail makes it fail after emitting. */
typedef struct emits {
  int publish, reply, send, send_null, send_empty, bad_json, no_type;
  bool fail;
} emits;

static int emitter(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)msg;
  emits *r = ud;
  r->publish = choreo_ctx_publish(ctx, "Published", "{\"x\":1}");
  r->reply = choreo_ctx_reply(ctx, "Answered", NULL);
  r->send = choreo_ctx_send(ctx, "other", "Cmd", "[1,2]");
  r->send_null = choreo_ctx_send(ctx, NULL, "Cmd", NULL);
  r->send_empty = choreo_ctx_send(ctx, "", "Cmd", NULL);
  r->bad_json = choreo_ctx_publish(ctx, "Broken", "{bad");
  r->no_type = choreo_ctx_publish(ctx, "", NULL);
  return r->fail ? choreo_ctx_fail(ctx, "changed my mind") : 0;
}

static void test_emit_from_handler(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  emits r = {0};
  seen own = {0};
  CHECK(choreo_engine_on(e, "Order", emitter, &r) == 0);
  CHECK(choreo_engine_on(e, "Published", record, &own) == 0);
  choreo_apply_result res;
  const test_msg msgs[] = {{.type = "Order", .correlationid = "corr-7"}};
  CHECK(apply_msgs(e, 1, msgs, 1, &res) == 0 && res.applied == 1);
  CHECK(r.publish == 0 && r.reply == 0 && r.send == 0);
  CHECK(r.send_null == CHOREO_EINVAL && r.send_empty == CHOREO_EINVAL);
  CHECK(r.bad_json == CHOREO_EINVAL); /* choreo_json_to_msgpack's code for unparsable text */
  CHECK(r.no_type == CHOREO_EINVAL);
  /* Exactly the three good messages, in order; nothing for the refused ones. */
  int64_t head = -1;
  CHECK(choreo_engine_head(e, &head) == 0 && head == 3);
  CHECK(query_int(e, "select count(*) from choreo_log where type in ('Broken', '')") == 0);
  seen row;
  log_row(e, 1, &row);
  CHECK(strcmp(row.type, "Published") == 0 && strcmp(row.kind, "event") == 0);
  CHECK(strcmp(row.source, "svc") == 0 && strcmp(row.id, "svc/1") == 0);
  CHECK(strcmp(row.to, "<null>") == 0);
  CHECK(strcmp(row.correlationid, "corr-7") == 0); /* inherited */
  CHECK(strcmp(row.causationid, "peer/1") == 0);   /* the handled message's id */
  CHECK(strcmp(row.json, "{\"x\":1}") == 0);
  log_row(e, 2, &row);
  CHECK(strcmp(row.type, "Answered") == 0 && strcmp(row.kind, "reply") == 0);
  CHECK(strcmp(row.to, "peer") == 0); /* back to the source */
  CHECK(strcmp(row.correlationid, "corr-7") == 0 && strcmp(row.causationid, "peer/1") == 0);
  CHECK(strcmp(row.json, "null") == 0);
  log_row(e, 3, &row);
  CHECK(strcmp(row.type, "Cmd") == 0 && strcmp(row.kind, "command") == 0);
  CHECK(strcmp(row.to, "other") == 0 && strcmp(row.json, "[1,2]") == 0);
  CHECK(strcmp(row.causationid, "peer/1") == 0);
  CHECK(query_int(e, "select count(*) from choreo_log where kind = 'reply' and "
                     "to_host = 'peer'") == 1);

  /* A failing handler's emissions roll back with it: the log does not grow. */
  r.fail = true;
  const test_msg again[] = {{.type = "Order"}};
  CHECK(apply_msgs(e, 2, again, 1, &res) == 0 && res.failed == 1 && res.applied == 0);
  CHECK(r.publish == 0); /* it did publish, then failed */
  CHECK(choreo_engine_head(e, &head) == 0 && head == 3);

  /* Without a correlation id, the handled message's id becomes the correlation. */
  r.fail = false;
  CHECK(apply_msgs(e, 3, again, 1, &res) == 0 && res.applied == 1);
  CHECK(choreo_engine_head(e, &head) == 0 && head == 6);
  log_row(e, 4, &row);
  CHECK(strcmp(row.type, "Published") == 0);
  CHECK(strcmp(row.correlationid, "peer/3") == 0 && strcmp(row.causationid, "peer/3") == 0);

  /* Our own dispatch delivers what we published to our own C handler, with its lineage. */
  bool pending = true;
  CHECK(choreo_engine_apply_own(e, 100, &pending, &res) == 0);
  CHECK(!pending && res.applied == 2 && own.calls == 2);
  CHECK(strcmp(own.source, "svc") == 0 && own.seq == 4 && strcmp(own.id, "svc/4") == 0);
  CHECK(strcmp(own.causationid, "peer/3") == 0 && strcmp(own.correlationid, "peer/3") == 0);
  CHECK(strcmp(own.json, "{\"x\":1}") == 0);

  /* Without a ctx (as outside a handler) every call is refused. */
  CHECK(choreo_ctx_publish(NULL, "T", NULL) == CHOREO_EINVAL);
  CHECK(choreo_ctx_reply(NULL, "T", NULL) == CHOREO_EINVAL);
  CHECK(choreo_ctx_send(NULL, "other", "T", NULL) == CHOREO_EINVAL);
  CHECK(choreo_ctx_db(NULL) == NULL);
  choreo_engine_close(e);
}

/* ---- 5: failures ---- */

/* Writes a row, checks it is the only one (earlier attempts rolled back), then fails, naming
 * `reason` with choreo_ctx_fail, or just returning non-zero when reason is NULL. */
typedef struct failing {
  int calls, rows_seen_max;
  const char *reason;
} failing;

static int fail_after_write(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)msg;
  failing *f = ud;
  f->calls++;
  sqlite3 *db = choreo_ctx_db(ctx);
  sqlite3_stmt *st = NULL;
  int rows = -1;
  if (sqlite3_exec(db, "insert into c_rows values (2)", NULL, NULL, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "select count(*) from c_rows", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    rows = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  if (rows > f->rows_seen_max) f->rows_seen_max = rows;
  return f->reason ? choreo_ctx_fail(ctx, f->reason) : 1;
}

/* A dead letter as choreo_engine_dead_each reports it. */
typedef struct dead_seen {
  int n;
  char types[64], errors[128];
  int attempts[4];
} dead_seen;

static int collect_dead(void *ud, const choreo_dead_letter *d) {
  dead_seen *ds = ud;
  size_t t = strlen(ds->types), x = strlen(ds->errors);
  snprintf(ds->types + t, sizeof ds->types - t, "%s%s", t ? " " : "", d->type);
  snprintf(ds->errors + x, sizeof ds->errors - x, "%s%s", x ? "|" : "", d->error);
  if (ds->n < COUNT(ds->attempts)) ds->attempts[ds->n] = d->attempts;
  ds->n++;
  return 0;
}

static void test_failure_retries_then_dead(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  failing named = {.reason = "no such order 42"}, mute = {0};
  CHECK(choreo_engine_on(e, "Named", fail_after_write, &named) == 0);
  CHECK(choreo_engine_on(e, "Mute", fail_after_write, &mute) == 0);
  choreo_apply_result res;
  const test_msg msgs[] = {{.type = "Named"}, {.type = "Mute"}};
  CHECK(apply_msgs(e, 1, msgs, COUNT(msgs), &res) == 0);
  CHECK(res.applied == 0 && res.failed == 2);
  CHECK(strcmp(res.last_error, "C handler failed") == 0); /* Mute, the last to fail */
  /* Three immediate attempts each; every attempt saw only its own row: rolled back between. */
  CHECK(named.calls == 3 && mute.calls == 3);
  CHECK(named.rows_seen_max == 1 && mute.rows_seen_max == 1);
  CHECK(query_int(e, "select count(*) from c_rows") == 0);
  /* Both wait in choreo_retries with the reason; the frame itself is done. */
  CHECK(query_int(e, "select count(*) from choreo_retries") == 2);
  CHECK(query_int(e, "select count(*) from choreo_retries where seq = 1 and attempts = 3 and "
                     "error like '%no such order 42%'") == 1);
  CHECK(query_int(e, "select count(*) from choreo_retries where seq = 2 and attempts = 3 and "
                     "error = 'C handler failed'") == 1);
  int64_t cp = -1;
  CHECK(choreo_engine_checkpoint(e, "peer", &cp) == 0 && cp == 2);

  /* Not due yet: nothing runs. */
  fake_now += 999;
  CHECK(choreo_engine_run_retries(e, &res) == 0 && res.failed == 0 && res.applied == 0);
  CHECK(named.calls == 3);
  /* Each back-off step (1 s, 5 s, 30 s) runs one more attempt; after the last, dead. */
  static const int64_t steps[] = {1, 5000, 30000};
  for (int i = 0; i < COUNT(steps); i++) {
    fake_now += steps[i];
    CHECK(choreo_engine_run_retries(e, &res) == 0);
    CHECK(res.failed == 2 && res.applied == 0);
    CHECK(named.calls == 4 + i && mute.calls == 4 + i);
    CHECK(query_int(e, "select count(*) from choreo_retries") == (i < 2 ? 2 : 0));
  }
  CHECK(query_int(e, "select count(*) from c_rows") == 0);
  int64_t due = 0, dead = 0;
  CHECK(choreo_engine_next_retry(e, &due) == 0 && due == -1);
  CHECK(choreo_engine_dead_count(e, &dead) == 0 && dead == 2);
  dead_seen ds = {0};
  CHECK(choreo_engine_dead_each(e, collect_dead, &ds) == 0);
  CHECK(ds.n == 2);
  CHECK(strcmp(ds.types, "Named Mute") == 0);
  CHECK(strcmp(ds.errors, "no such order 42|C handler failed") == 0);
  CHECK(ds.attempts[0] == 6 && ds.attempts[1] == 6);
  choreo_engine_close(e);
}

/* ---- 6: reloads keep C handlers ---- */

static void test_reload_keeps_c_handlers(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  seen s = {0};
  CHECK(choreo_engine_on(e, "Ping", record, &s) == 0); /* no Lua handler for Ping */
  char err[512] = "";
  choreo_apply_result res;
  const test_msg ping[] = {{.type = "Ping"}};
  CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
  CHECK(choreo_engine_generation(e) == 2);
  CHECK(apply_msgs(e, 1, ping, 1, &res) == 0 && res.applied == 1 && s.calls == 1);
  /* A failed reload changes nothing either. */
  write_file("zz_broken.lua", "local x = = 1\n");
  CHECK(choreo_engine_reload(e, err, sizeof err) == CHOREO_ESCRIPT);
  remove_file("zz_broken.lua");
  CHECK(apply_msgs(e, 2, ping, 1, &res) == 0 && res.applied == 1 && s.calls == 2);
  /* A reload adding a Lua handler for the same type: both run, C first. */
  write_file("zz_ping.lua", "local choreo = require 'choreo'\n"
                            "choreo.on('Ping', function(msg, ctx)\n"
                            "  ctx.db:exec('insert into lua_saw values (?)', msg.seq)\n"
                            "end)\n");
  CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
  remove_file("zz_ping.lua");
  CHECK(choreo_engine_generation(e) == 3);
  CHECK(apply_msgs(e, 3, ping, 1, &res) == 0 && res.applied == 1 && s.calls == 3);
  CHECK(query_int(e, "select count(*) from lua_saw where c = 3") == 1);
  choreo_engine_close(e);
}

/* ---- 7: registration arguments ---- */

static void test_on_rejects_bad_arguments(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  seen s = {0};
  CHECK(choreo_engine_on(e, "", record, &s) == CHOREO_EINVAL);
  CHECK(choreo_engine_on(e, NULL, record, &s) == CHOREO_EINVAL);
  CHECK(choreo_engine_on(e, "Nul", NULL, &s) == CHOREO_EINVAL);
  /* Nothing was registered: a Nul message finds no handler (a NULL one would crash). */
  choreo_apply_result res;
  const test_msg msgs[] = {{.type = "Nul"}};
  CHECK(apply_msgs(e, 1, msgs, 1, &res) == 0);
  CHECK(res.skipped == 1 && res.applied == 0 && res.failed == 0 && s.calls == 0);
  choreo_engine_close(e);
}

/* ---- 9: commands for other hosts ---- */

static void test_commands_for_other_hosts(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  seen s = {0};
  CHECK(choreo_engine_on(e, "Do", record, &s) == 0);
  choreo_apply_result res;
  const test_msg msgs[] = {{.type = "Do", .kind = "command", .to = "other", .json = "1"},
                           {.type = "Do", .kind = "reply", .to = "other", .json = "2"},
                           {.type = "Do", .kind = "command", .to = "svc", .json = "3"}};
  CHECK(apply_msgs(e, 1, msgs, COUNT(msgs), &res) == 0);
  CHECK(res.applied == 1 && res.skipped == 2 && res.failed == 0);
  /* Only the command for us arrived, with its destination. */
  CHECK(s.calls == 1 && s.seq == 3);
  CHECK(strcmp(s.kind, "command") == 0 && strcmp(s.to, "svc") == 0 && strcmp(s.json, "3") == 0);
  choreo_engine_close(e);
}

/* choreo_ctx_db is inside the batch's transaction: a C handler may not end it (it would commit
 * the batch piecemeal, or fail it for ever), as Lua's ctx.db may not; its own savepoints are
 * fine. */
static int try_commit(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)msg;
  int *refused = ud;
  sqlite3 *db = choreo_ctx_db(ctx);
  static const char *const forbidden[] = {"COMMIT", "ROLLBACK", "BEGIN", "SAVEPOINT choreo_x"};
  for (int i = 0; i < COUNT(forbidden); i++)
    *refused += sqlite3_exec(db, forbidden[i], NULL, NULL, NULL) == SQLITE_AUTH;
  CHECK(sqlite3_exec(db, "SAVEPOINT mine; INSERT INTO c_rows VALUES (1); RELEASE mine", NULL,
                     NULL, NULL) == SQLITE_OK);
  return 0;
}

static void test_ctx_db_cannot_end_the_transaction(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  int refused = 0;
  CHECK(choreo_engine_on(e, "Commit", try_commit, &refused) == 0);
  choreo_apply_result res;
  const test_msg msgs[] = {{.type = "Commit"}};
  CHECK(apply_msgs(e, 1, msgs, 1, &res) == 0 && res.applied == 1 && res.failed == 0);
  CHECK(refused == 4);
  CHECK(query_int(e, "select count(*) from c_rows") == 1);
  int64_t cp = -1; /* the batch committed whole, checkpoint included */
  CHECK(choreo_engine_checkpoint(e, "peer", &cp) == 0 && cp == 1);
  choreo_engine_close(e);
}

/* A message map without "id" (our writers leave it out: "<source>/<seq>") reaching a C handler:
 * the handler sees the id the reader derived (this once read through a NULL pointer, so any
 * peer could crash a host with a C handler for the type). */
static void test_message_without_id(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  seen s = {0};
  CHECK(choreo_engine_on(e, "Ping", record, &s) == 0);
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  CHECK(choreo_frame_header(&frame, "peer", 1, 1, 1) == 0);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &frame, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 4);
  const char *kv[] = {"source", "peer", "type", "Ping", "kind", "event"};
  for (int i = 0; i < 6; i++) msgpack_pack_str_with_body(&pk, kv[i], strlen(kv[i]));
  msgpack_pack_str_with_body(&pk, "seq", 3);
  msgpack_pack_int64(&pk, 1);
  choreo_apply_result res;
  CHECK(choreo_engine_apply_frame(e, frame.data, frame.size, &res) == 0);
  CHECK(res.applied == 1 && s.calls == 1 && strcmp(s.id, "peer/1") == 0);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

/* The ctx, and its error buffer, is shared by every C handler of a message: a reason left there
 * by a handler that then succeeded (choreo_ctx_fail, or a refused choreo_ctx_publish writing
 * "invalid JSON ...") must not become the reason of the next handler's failure. */
static int note_then_succeed(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)msg;
  (void)ud;
  choreo_ctx_fail(ctx, "stale reason");
  return 0;
}

static int fail_silently(choreo_ctx *ctx, const choreo_message *msg, void *ud) {
  (void)ctx;
  (void)msg;
  (void)ud;
  return 1;
}

static void test_stale_fail_reason(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  CHECK(choreo_engine_on(e, "Two", note_then_succeed, NULL) == 0);
  CHECK(choreo_engine_on(e, "Two", fail_silently, NULL) == 0);
  choreo_apply_result res;
  const test_msg msgs[] = {{.type = "Two"}};
  CHECK(apply_msgs(e, 1, msgs, 1, &res) == 0 && res.failed == 1);
  CHECK(strcmp(res.last_error, "C handler failed") == 0);
  choreo_engine_close(e);
}

int main(void) {
  setenv("CHOREO_LOG", "error", 0); /* the failures below are expected */
  snprintf(dir, sizeof dir, "/tmp/choreo-test-handlers-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  write_file("handlers.lua", handlers_lua);
  RUN(test_exact_type_receives_message);
  RUN(test_message_without_data);
  RUN(test_prefix_pattern);
  RUN(test_c_runs_before_lua);
  RUN(test_emit_from_handler);
  RUN(test_failure_retries_then_dead);
  RUN(test_reload_keeps_c_handlers);
  RUN(test_on_rejects_bad_arguments);
  RUN(test_commands_for_other_hosts);
  RUN(test_ctx_db_cannot_end_the_transaction);
  RUN(test_message_without_id);
  RUN(test_stale_fail_reason);
  remove_file("handlers.lua");
  remove_file("zz_broken.lua");
  remove_file("zz_ping.lua");
  CHECK(rmdir(dir) == 0);
  return CHECK_DONE();
}
