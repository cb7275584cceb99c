/* Unit tests of runtime/core/engine.c's dispatch: frames built with the codec and applied to an
 * engine whose scripts live in a fresh /tmp directory. They check what the host relies on:
 * applied/skipped counts, the per-source checkpoint (duplicates skipped, gaps reported),
 * malformed frames counted and refused, commands for other hosts ignored, failures deferred to
 * choreo_retries, emitted messages in our log and applied to our own handlers (or passed over
 * when none takes them), a handler
 * registered while messages flow, and a reload that fails keeping the running generation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_fixture.h"
#include "choreo.h"
#include "clock.h"
#include "engine.h"
#include "json.h"
#include "lua_scripts.h"


static const char handlers_lua[] =
    "local choreo = require 'choreo'\n"
    "choreo.db:exec('create table if not exists got(type text, n integer, source text)')\n"
    "local function record(msg, ctx)\n"
    "  ctx.db:exec('insert into got values (?, ?, ?)', msg.type, msg.data and msg.data.n,\n"
    "              msg.source)\n"
    "end\n"
    "choreo.on('Ping', function(msg, ctx)\n"
    "  record(msg, ctx)\n"
    "  ctx:publish('Pinged', { n = msg.data.n })\n"
    "end)\n"
    "choreo.on('Pinged', record)\n"
    "choreo.on('Do', record)\n"
    "choreo.on('Fail', function(msg, ctx)\n"
    "  record(msg, ctx)\n"
    "  ctx:publish('Pinged', { n = -1 })\n"
    "  error('boom ' .. msg.data.n)\n"
    "end)\n"
    "choreo.on('Emit', function(msg, ctx)\n"
    "  for _, what in ipairs(msg.data.what) do\n"
    "    if what == 'Bill' then ctx:send('other', 'Bill', {}) else ctx:publish(what, { n = 0 }) end\n"
    "  end\n"
    "end)\n"
    "local grown = false\n"
    "choreo.on('Grow', function(msg, ctx)\n"
    "  record(msg, ctx)\n"
    "  if grown then return end\n"
    "  grown = true\n"
    "  choreo.on('Grow', function(m, c)\n"
    "    c.db:exec(\"insert into got values ('Grown', ?, ?)\", m.data.n, m.source)\n"
    "  end)\n"
    "end)\n"
    /* data of many shapes one after the other: each arrives as sent, whatever the keys the
     * message before had at the same places (choreo_lua_push_data keeps them) */
    "local function canon(v)\n"
    "  if type(v) ~= 'table' then return string.format('%q', v) end\n"
    "  local keys, out = {}, {}\n"
    "  for k in pairs(v) do keys[#keys + 1] = k end\n"
    "  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)\n"
    "  for _, k in ipairs(keys) do out[#out + 1] = canon(k) .. '=' .. canon(v[k]) end\n"
    "  return '{' .. table.concat(out, ',') .. '}'\n"
    "end\n"
    "local many = {}\n"
    "for i = 1, 10 do many['k' .. i] = i end\n"
    "local shapes = { {a = 1, b = 2}, {a = 3, c = 4}, {b = 5, a = 6}, {a = 7},\n"
    "  {[string.rep('k', 33)] = 8, a = 9}, {[string.rep('j', 32)] = 10}, {[string.rep('j', 32)] = 11},\n"
    "  {[string.rep('j', 31)] = 12}, {a = {a = 1, b = {c = 2}}}, many, {1, 2, 3}, 'text', {},\n"
    "  {['a\\0b'] = 13}, {['a\\0c'] = 14}, {a = 1, b = 2} }\n"
    "choreo.db:exec('create table if not exists shapes(sent text, got text)')\n"
    "choreo.on('Shapes', function(msg, ctx)\n"
    "  for _, data in ipairs(shapes) do ctx:publish('Shape', data) end\n"
    "end)\n"
    /* published at seq 2 on, after the Shapes message (the first in a fresh log) */
    "choreo.on('Shape', function(msg, ctx)\n"
    "  ctx.db:exec('insert into shapes values (?, ?)', canon(shapes[msg.seq - 1]),\n"
    "              canon(msg.data))\n"
    "end)\n";

/* A frame of `count` messages from source starting at first; types[i] (or "Ping" past the
 * end of types / when types is NULL), all events with n = seq. */
static void build_frame(msgpack_sbuffer *frame, const char *source, int64_t first,
                        uint32_t count, const char *const *types) {
  msgpack_sbuffer_clear(frame);
  CHECK(choreo_frame_header(frame, source, first, count, first + count - 1) == 0);
  for (uint32_t i = 0; i < count; i++) {
    const char *type = types && types[i] ? types[i] : "Ping";
    add_msg(frame, source, first + i, type, "event", NULL, first + i);
  }
}

static int apply(choreo_engine *e, const msgpack_sbuffer *frame, choreo_apply_result *res) {
  return choreo_engine_apply_frame(e, frame->data, frame->size, res);
}

static int64_t checkpoint(choreo_engine *e, const char *source) {
  int64_t seq = -99;
  CHECK(choreo_engine_checkpoint(e, source, &seq) == 0);
  return seq;
}

static int64_t head(choreo_engine *e) {
  int64_t seq = -99;
  CHECK(choreo_engine_head(e, &seq) == 0);
  return seq;
}

/* Runs the due retries, and returns the next due time. */
static int64_t run_retries(choreo_engine *e, choreo_apply_result *res) {
  int64_t due = -99;
  CHECK(choreo_engine_run_retries(e, res) == 0);
  CHECK(choreo_engine_next_retry(e, &due) == 0);
  return due;
}

static void test_applies_in_order(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  build_frame(&frame, "peer", 1, 3, NULL);
  choreo_apply_result res;
  CHECK(apply(e, &frame, &res) == 0);
  CHECK(res.applied == 3 && res.skipped == 0 && res.failed == 0 && !res.gap);
  CHECK(strcmp(res.source, "peer") == 0 && res.first == 1 && res.count == 3 && res.head == 3);
  CHECK(checkpoint(e, "peer") == 3);
  CHECK(query_int(e, "select count(*) from got where type = 'Ping' and source = 'peer'") == 3);
  CHECK(query_int(e, "select group_concat(n, '') from (select n from got order by rowid)") == 123);
  /* Each Ping published one Pinged: our log holds them, our own handlers have not run yet. */
  CHECK(head(e) == 3);
  CHECK(query_int(e, "select count(*) from choreo_log where type = 'Pinged'") == 3);
  CHECK(checkpoint(e, "svc") == 0);
  CHECK(choreo_engine_bad_frames(e) == 0);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

static void test_duplicates_are_skipped(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  choreo_apply_result res;
  build_frame(&frame, "peer", 1, 3, NULL);
  CHECK(apply(e, &frame, &res) == 0 && res.applied == 3);
  /* The same frame again: every message is a duplicate. */
  CHECK(apply(e, &frame, &res) == 0);
  CHECK(res.applied == 0 && res.skipped == 3 && res.failed == 0 && !res.gap);
  CHECK(checkpoint(e, "peer") == 3);
  CHECK(query_int(e, "select count(*) from got") == 3);
  CHECK(head(e) == 3);
  /* Overlapping: 2 and 3 are duplicates, 4 and 5 are new. */
  build_frame(&frame, "peer", 2, 4, NULL);
  CHECK(apply(e, &frame, &res) == 0);
  CHECK(res.applied == 2 && res.skipped == 2 && !res.gap);
  CHECK(checkpoint(e, "peer") == 5);
  CHECK(query_int(e, "select count(*) from got") == 5);
  CHECK(query_int(e, "select count(distinct n) from got") == 5);
  /* An older frame, entirely before the checkpoint. */
  build_frame(&frame, "peer", 1, 2, NULL);
  CHECK(apply(e, &frame, &res) == 0 && res.applied == 0 && res.skipped == 2);
  CHECK(checkpoint(e, "peer") == 5);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

static void test_gap_applies_nothing(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  choreo_apply_result res;
  build_frame(&frame, "peer", 1, 2, NULL);
  CHECK(apply(e, &frame, &res) == 0 && res.applied == 2);
  build_frame(&frame, "peer", 4, 2, NULL); /* 3 is missing */
  CHECK(apply(e, &frame, &res) == 0);
  CHECK(res.gap && res.applied == 0 && res.failed == 0);
  CHECK(res.first == 4 && res.count == 2 && strcmp(res.source, "peer") == 0);
  CHECK(checkpoint(e, "peer") == 2);
  CHECK(query_int(e, "select count(*) from got") == 2);
  CHECK(head(e) == 2);
  /* A source we have never heard from must start at 1. */
  build_frame(&frame, "newcomer", 2, 1, NULL);
  CHECK(apply(e, &frame, &res) == 0 && res.gap && res.applied == 0);
  CHECK(checkpoint(e, "newcomer") == 0);
  /* Once the gap is filled, the frame applies. */
  build_frame(&frame, "peer", 3, 3, NULL);
  CHECK(apply(e, &frame, &res) == 0 && !res.gap && res.applied == 3);
  CHECK(checkpoint(e, "peer") == 5);
  CHECK(choreo_engine_bad_frames(e) == 0);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

static void test_malformed_frames(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  choreo_apply_result res;
  uint64_t bad = 0;
  /* Random bytes. 0xc1 is never used by msgpack, so starting with it keeps every buffer
   * invalid whatever the generator draws. */
  srand(20261127);
  char buf[512];
  for (int i = 0; i < 200; i++) {
    size_t len = 1 + (size_t)rand() % sizeof buf;
    for (size_t j = 0; j < len; j++) buf[j] = (char)(rand() & 0xff);
    if (i % 2 == 0) buf[0] = (char)0xc1;
    int rc = choreo_engine_apply_frame(e, buf, len, &res);
    CHECK(rc == CHOREO_EINVAL);
    if (rc == CHOREO_EINVAL) bad++;
  }
  CHECK(choreo_engine_bad_frames(e) == bad);
  CHECK(choreo_engine_apply_frame(e, buf, 0, &res) == CHOREO_EINVAL);
  bad++;
  CHECK(choreo_engine_bad_frames(e) == bad);

  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  /* A valid frame cut short. */
  build_frame(&frame, "peer", 1, 3, NULL);
  CHECK(choreo_engine_apply_frame(e, frame.data, frame.size - 1, &res) == CHOREO_EINVAL);
  CHECK(choreo_engine_bad_frames(e) == ++bad);
  /* A header claiming more messages than follow. */
  msgpack_sbuffer_clear(&frame);
  CHECK(choreo_frame_header(&frame, "peer", 1, 3, 3) == 0);
  add_msg(&frame, "peer", 1, "Ping", "event", NULL, 1);
  add_msg(&frame, "peer", 2, "Ping", "event", NULL, 2);
  CHECK(apply(e, &frame, &res) == CHOREO_EINVAL);
  CHECK(choreo_engine_bad_frames(e) == ++bad);
  /* Well-formed msgpack, but the second message's seq does not follow the first: the frame
   * is refused as a whole, even the message before the bad one. */
  msgpack_sbuffer_clear(&frame);
  CHECK(choreo_frame_header(&frame, "peer", 1, 2, 2) == 0);
  add_msg(&frame, "peer", 1, "Ping", "event", NULL, 1);
  add_msg(&frame, "peer", 3, "Ping", "event", NULL, 3);
  CHECK(apply(e, &frame, &res) == CHOREO_EINVAL);
  CHECK(choreo_engine_bad_frames(e) == ++bad);
  /* Well-formed msgpack where a message should be, but not a message map. */
  msgpack_sbuffer_clear(&frame);
  CHECK(choreo_frame_header(&frame, "peer", 1, 1, 1) == 0);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &frame, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 2); /* not a message map */
  msgpack_pack_int(&pk, 1);
  msgpack_pack_int(&pk, 2);
  CHECK(apply(e, &frame, &res) == CHOREO_EINVAL);
  CHECK(choreo_engine_bad_frames(e) == ++bad);
  /* Good messages, then bytes the header does not count: found only after the last message
   * was read (and handled), and the whole frame is refused all the same. */
  build_frame(&frame, "peer", 1, 2, NULL);
  msgpack_sbuffer_write(&frame, "\xc0", 1);
  CHECK(apply(e, &frame, &res) == CHOREO_EINVAL);
  CHECK(choreo_engine_bad_frames(e) == ++bad);

  /* None of it left a trace, and a good frame still applies. */
  CHECK(checkpoint(e, "peer") == 0);
  CHECK(query_int(e, "select count(*) from got") == 0);
  CHECK(head(e) == 0);
  build_frame(&frame, "peer", 1, 2, NULL);
  CHECK(apply(e, &frame, &res) == 0 && res.applied == 2);
  CHECK(choreo_engine_bad_frames(e) == bad);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

/* A frame is one source's log: a message in it that claims another source is forged, and the
 * whole frame is refused (a peer could otherwise pose as any service to our handlers). */
static void test_message_from_another_source(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  CHECK(choreo_frame_header(&frame, "peer", 1, 2, 2) == 0);
  add_msg(&frame, "peer", 1, "Ping", "event", NULL, 1);
  add_msg(&frame, "payments", 2, "Ping", "event", NULL, 2);
  choreo_apply_result res;
  CHECK(apply(e, &frame, &res) == CHOREO_EINVAL);
  CHECK(choreo_engine_bad_frames(e) == 1);
  CHECK(checkpoint(e, "peer") == 0 && checkpoint(e, "payments") == 0);
  CHECK(query_int(e, "select count(*) from got") == 0);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

/* The last seq of a frame may be INT64_MAX: its arithmetic must not overflow (UBSan watches the
 * sanitizer build), and it is a gap like any frame past the checkpoint. */
static void test_frame_ending_at_int64_max(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  CHECK(choreo_frame_header(&frame, "peer", INT64_MAX, 1, INT64_MAX) == 0);
  add_msg(&frame, "peer", INT64_MAX, "Ping", "event", NULL, 1);
  choreo_apply_result res;
  CHECK(apply(e, &frame, &res) == 0);
  CHECK(res.gap && res.applied == 0);
  CHECK(checkpoint(e, "peer") == 0);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

static void test_commands_for_other_hosts(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  choreo_apply_result res;
  CHECK(choreo_frame_header(&frame, "peer", 1, 6, 6) == 0);
  add_msg(&frame, "peer", 1, "Do", "command", "other", 1);  /* not ours */
  add_msg(&frame, "peer", 2, "Do", "command", "svc", 2);    /* ours */
  add_msg(&frame, "peer", 3, "Do", "reply", "other", 3);    /* not ours */
  add_msg(&frame, "peer", 4, "Do", "reply", "svc", 4);      /* ours */
  add_msg(&frame, "peer", 5, "Unhandled", "event", NULL, 5); /* nobody handles it */
  add_msg(&frame, "peer", 6, "Do", "event", NULL, 6);       /* events are for everyone */
  CHECK(apply(e, &frame, &res) == 0);
  CHECK(res.applied == 3 && res.skipped == 3 && res.failed == 0);
  CHECK(query_int(e, "select group_concat(n, ',') = '2,4,6' from "
                     "(select n from got order by rowid)") == 1);
  /* Skipped messages are still past: the checkpoint covers them. */
  CHECK(checkpoint(e, "peer") == 6);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

static void test_failing_handler_is_deferred(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  choreo_apply_result res;
  static const char *const types[] = {"Ping", "Fail", "Ping"};
  build_frame(&frame, "peer", 1, 3, types);
  CHECK(apply(e, &frame, &res) == 0);
  CHECK(res.applied == 2 && res.failed == 1 && res.skipped == 0);
  CHECK(strstr(res.last_error, "boom 2") != NULL);
  CHECK(strstr(res.last_error, "handlers.lua:16:") != NULL);
  /* The failing message's effects are gone (its savepoint), its neighbours' are kept. */
  CHECK(query_int(e, "select count(*) from got where type = 'Fail'") == 0);
  CHECK(query_int(e, "select count(*) from got where type = 'Ping'") == 2);
  CHECK(query_int(e, "select count(*) from choreo_log where type = 'Pinged'") == 2);
  /* It waits in choreo_retries, due after the first back-off step; the frame is done. */
  CHECK(query_int(e, "select count(*) from choreo_retries") == 1);
  CHECK(query_int(e, "select count(*) from choreo_retries where source = 'peer' and seq = 2 "
                     "and attempts = 3 and error like '%boom 2%'") == 1);
  CHECK(query_int(e, "select due_ms from choreo_retries") == fake_now + 1000);
  CHECK(checkpoint(e, "peer") == 3);
  CHECK(query_int(e, "select count(*) from choreo_dead_letters") == 0);

  /* Not due yet: nothing runs. */
  CHECK(run_retries(e, &res) == fake_now + 1000);
  CHECK(res.applied == 0 && res.failed == 0);
  /* Due: the retry runs, fails again and waits for the next step (5 s). */
  fake_now += 1000;
  int64_t next = run_retries(e, &res);
  CHECK(res.failed == 1 && res.applied == 0);
  CHECK(next == fake_now + 5000);
  CHECK(query_int(e, "select attempts from choreo_retries") == 4);
  CHECK(query_int(e, "select count(*) from choreo_retries") == 1);
  CHECK(query_int(e, "select count(*) from got where type = 'Fail'") == 0);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

/* A batch runs without a savepoint per message until a handler fails, then again with them:
 * what the first run saw must not count twice. */
static void test_batch_run_again_counts_once(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  choreo_apply_result res;
  static const char *const types[] = {"Ping", "Nobody", "Fail", "Nobody"};
  build_frame(&frame, "peer", 1, 4, types);
  CHECK(apply(e, &frame, &res) == 0);
  CHECK(res.applied == 1 && res.failed == 1 && res.skipped == 2);
  const choreo_unhandled *list;
  int n;
  uint64_t other;
  choreo_engine_unhandled(e, &list, &n, &other);
  CHECK(n == 1 && strcmp(list[0].type, "Nobody") == 0 && list[0].count == 2 && other == 0);
  CHECK(query_int(e, "select count(*) from got") == 1);
  CHECK(query_int(e, "select count(*) from choreo_log where type = 'Pinged'") == 1);
  CHECK(query_int(e, "select attempts from choreo_retries where seq = 3") == 3);
  CHECK(checkpoint(e, "peer") == 4);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

/* Appends s to the words in out (joined with spaces). */
static void add_word(char *out, size_t size, choreo_str s) {
  size_t n = strlen(out);
  snprintf(out + n, size - n, "%s%.*s", n ? " " : "", (int)s.n, s.p);
}

/* The types of our own log rows after `after`, read as a frame, joined with spaces; and their
 * causation and correlation ids, likewise (each buffer `size` bytes). */
static void own_log(choreo_engine *e, int64_t after, char *types, char *causes,
                    char *correlations, size_t size) {
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  types[0] = causes[0] = correlations[0] = '\0';
  int rows;
  CHECK(choreo_engine_read_log(e, after, 100, 1 << 20, &buf, &rows) == 0);
  choreo_frame_reader r;
  CHECK(choreo_frame_open(&r, buf.data, buf.size) == 0);
  choreo_msg m;
  while (choreo_frame_next(&r, &m) == 1) {
    add_word(types, size, m.type);
    add_word(causes, size, m.causationid);
    add_word(correlations, size, m.correlationid);
  }
  choreo_frame_close(&r);
  msgpack_sbuffer_destroy(&buf);
}

static void test_own_events(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  choreo_apply_result res;
  bool pending = true;
  /* Nothing emitted yet: nothing to apply. */
  CHECK(choreo_engine_apply_own(e, 100, &pending, &res) == 0);
  CHECK(!pending && res.applied == 0);

  build_frame(&frame, "peer", 1, 3, NULL);
  CHECK(apply(e, &frame, &res) == 0 && res.applied == 3);
  CHECK(head(e) == 3);
  char types[256], causes[256], correlations[256];
  own_log(e, 0, types, causes, correlations, sizeof types);
  CHECK(strcmp(types, "Pinged Pinged Pinged") == 0);
  /* each names its own cause, and continues its conversation (one it started: its own id); the
   * copies the engine keeps from one emit to the next are never stale */
  CHECK(strcmp(causes, "peer/1 peer/2 peer/3") == 0);
  CHECK(strcmp(correlations, "peer/1 peer/2 peer/3") == 0);

  /* Our own handlers get what we published, a bounded batch at a time. */
  CHECK(choreo_engine_apply_own(e, 2, &pending, &res) == 0);
  CHECK(res.applied == 2 && pending && strcmp(res.source, "svc") == 0);
  CHECK(checkpoint(e, "svc") == 2);
  CHECK(choreo_engine_apply_own(e, 2, &pending, &res) == 0);
  CHECK(res.applied == 1 && !pending);
  CHECK(checkpoint(e, "svc") == 3);
  CHECK(query_int(e, "select count(*) from got where type = 'Pinged' and source = 'svc'") == 3);
  CHECK(query_int(e, "select group_concat(n, '') from "
                     "(select n from got where type = 'Pinged' order by rowid)") == 123);
  /* Applied once only. */
  CHECK(choreo_engine_apply_own(e, 100, &pending, &res) == 0);
  CHECK(res.applied == 0 && !pending);
  CHECK(query_int(e, "select count(*) from got where type = 'Pinged'") == 3);
  /* Pinged handlers emit nothing, so the log did not grow. */
  CHECK(head(e) == 3);

  /* choreo_engine_emit (choreo publish) appends outside any handler; own dispatch delivers it. */
  msgpack_sbuffer data;
  msgpack_sbuffer_init(&data);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  msgpack_pack_str_with_body(&pk, "n", 1);
  msgpack_pack_int(&pk, 9);
  int64_t seq = 0;
  CHECK(choreo_engine_emit(e, "event", NULL, "Ping", data.data, data.size, &seq) == 0);
  CHECK(seq == 4);
  CHECK(choreo_engine_apply_own(e, 100, &pending, &res) == 0);
  CHECK(res.applied == 1 && pending); /* the Ping published a Pinged */
  CHECK(choreo_engine_apply_own(e, 100, &pending, &res) == 0);
  CHECK(res.applied == 1 && !pending);
  CHECK(query_int(e, "select count(*) from got where n = 9") == 2);
  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

/* A frame from peer of one Emit message: its handler publishes the types in `what` (comma
 * separated) in order, and sends a Bill command to another host for "Bill". */
static void apply_emit(choreo_engine *e, int64_t seq, const char *what) {
  char json[256] = "{\"what\":[", *p = json + strlen(json);
  for (const char *w = what; *w;) {
    size_t n = strcspn(w, ",");
    p += snprintf(p, sizeof json - (size_t)(p - json), "%s\"%.*s\"", w == what ? "" : ",",
                  (int)n, w);
    w += n + (w[n] == ',');
  }
  snprintf(p, sizeof json - (size_t)(p - json), "]}");
  msgpack_sbuffer frame, data;
  msgpack_sbuffer_init(&frame);
  msgpack_sbuffer_init(&data);
  char err[128];
  CHECK(choreo_json_to_msgpack(json, &data, err, sizeof err) == 0);
  CHECK(choreo_frame_header(&frame, "peer", seq, 1, seq) == 0);
  choreo_msg_fields f = {.source = "peer", .seq = seq, .type = "Emit", .kind = "event",
                         .data = data.data, .data_len = data.size};
  CHECK(choreo_msg_encode(&f, &frame) == 0);
  choreo_apply_result res;
  CHECK(apply(e, &frame, &res) == 0 && res.applied == 1);
  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_destroy(&frame);
}

static uint64_t unhandled_count(choreo_engine *e, const char *type) {
  const choreo_unhandled *list;
  int n;
  uint64_t other;
  choreo_engine_unhandled(e, &list, &n, &other);
  for (int i = 0; i < n; i++)
    if (strcmp(list[i].type, type) == 0) return list[i].count;
  return 0;
}

/* Our own messages that no handler here takes (events nobody subscribed to, commands to other
 * hosts) are passed over by what was noted as they were appended, without being read back:
 * counted, noted by type and checkpointed exactly as a delivery that reads them. A handler
 * added by a reload in between takes them all the same. */
static void test_own_messages_no_handler_takes(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  choreo_apply_result res;
  bool pending;
  CHECK(!choreo_engine_own_passable_pending(e, 100)); /* nothing pending */
  /* Runs of which one (Pinged) is taken here: every message is read. */
  apply_emit(e, 1, "Nobody,Nobody,Nobody,Bill,Pinged,Nobody,Nobody");
  CHECK(head(e) == 7);
  CHECK(!choreo_engine_own_passable_pending(e, 100)); /* Pinged waits for a handler */
  CHECK(choreo_engine_apply_own(e, 100, &pending, &res) == 0);
  CHECK(res.applied == 1 && res.skipped == 6 && !pending);
  CHECK(checkpoint(e, "svc") == 7);
  CHECK(unhandled_count(e, "Nobody") == 5);
  CHECK(unhandled_count(e, "Bill") == 0); /* not for us: not ours to handle */
  /* None taken here, in a bounded batch and then the rest. */
  apply_emit(e, 2, "Nobody,Bill,Bill,Nobody,Quiet");
  CHECK(head(e) == 12);
  /* A pass that can wait, unless more than `most` wait. */
  CHECK(choreo_engine_own_passable_pending(e, 5) && !choreo_engine_own_passable_pending(e, 4));
  CHECK(choreo_engine_apply_own(e, 3, &pending, &res) == 0);
  CHECK(res.applied == 0 && res.skipped == 3 && pending);
  CHECK(checkpoint(e, "svc") == 10);
  CHECK(choreo_engine_apply_own(e, 100, &pending, &res) == 0);
  CHECK(res.applied == 0 && res.skipped == 2 && !pending);
  CHECK(checkpoint(e, "svc") == 12);
  CHECK(unhandled_count(e, "Nobody") == 7 && unhandled_count(e, "Quiet") == 1);
  CHECK(query_int(e, "select count(*) from choreo_source_types where source = 'svc' and "
                     "type in ('Nobody', 'Bill', 'Quiet', 'Pinged')") == 4);
  CHECK(query_int(e, "select first_seq from choreo_source_types where source = 'svc' and "
                     "type = 'Quiet'") == 12);
  /* Appended with no handler for Nobody, applied after a reload that added one. */
  apply_emit(e, 3, "Nobody,Nobody");
  write_file("zz_nobody.lua", "local choreo = require 'choreo'\n"
                              "choreo.on('Nobody', function(msg, ctx)\n"
                              "  ctx.db:exec(\"insert into got values ('Nobody', 0, 'svc')\")\n"
                              "end)\n");
  CHECK(choreo_engine_own_passable_pending(e, 100));
  char err[256];
  CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
  CHECK(!choreo_engine_own_passable_pending(e, 100)); /* the handler loaded now takes them */
  CHECK(choreo_engine_apply_own(e, 100, &pending, &res) == 0);
  CHECK(res.applied == 2 && !pending);
  CHECK(query_int(e, "select count(*) from got where type = 'Nobody'") == 2);
  remove_file("zz_nobody.lua");
  choreo_engine_close(e);
}

/* A handler registered while messages flow takes the next message of its type: the list of
 * the last type's handlers, kept from one message to the next, is dropped when choreo.on
 * changes the handlers. */
static void test_handler_added_while_running(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  const char *types[] = {"Grow", "Grow", "Ping", "Grow"};
  build_frame(&frame, "peer", 1, 4, types);
  choreo_apply_result res;
  CHECK(apply(e, &frame, &res) == 0);
  CHECK(res.applied == 4 && res.failed == 0);
  CHECK(query_int(e, "select count(*) from got where type = 'Grow'") == 3);
  /* the second and the fourth message, not the first (which registered it) */
  CHECK(query_int(e, "select group_concat(n, '') from got where type = 'Grown'") == 24);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

static void test_data_of_changing_shapes_arrives_as_sent(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  int64_t seq = 0;
  CHECK(choreo_engine_emit(e, "event", NULL, "Shapes", "\x80", 1, &seq) == 0);
  CHECK(seq == 1);
  choreo_apply_result res;
  bool pending = true;
  for (int i = 0; i < 10 && pending; i++) CHECK(choreo_engine_apply_own(e, 100, &pending, &res) == 0);
  CHECK(!pending);
  CHECK(query_int(e, "select count(*) from shapes") == 16);
  CHECK(query_int(e, "select count(*) from shapes where sent = got") == 16);
  CHECK(query_int(e, "select count(*) from shapes where got like '%\"jjjj%=11%'") == 1);
  choreo_engine_close(e);
}

static void test_reload(void) {
  choreo_engine *e = open_engine();
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  choreo_apply_result res;
  char err[512] = "";
  CHECK(choreo_engine_generation(e) == 1);
  CHECK(strcmp(choreo_engine_reload_error(e), "") == 0);

  /* A good reload makes a new generation. */
  CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
  CHECK(choreo_engine_generation(e) == 2);

  /* A broken file: the reload fails with file:line, generation 2 keeps running. */
  write_file("zz_broken.lua", "-- fine\nlocal x = = 1\n");
  CHECK(choreo_engine_reload(e, err, sizeof err) == CHOREO_ESCRIPT);
  CHECK(strstr(err, "zz_broken.lua:2:") != NULL);
  CHECK(strstr(choreo_engine_reload_error(e), "zz_broken.lua:2:") != NULL);
  CHECK(choreo_engine_generation(e) == 2);
  build_frame(&frame, "peer", 1, 1, NULL);
  CHECK(apply(e, &frame, &res) == 0 && res.applied == 1 && res.failed == 0);

  /* A file raising at load time fails the same way. */
  write_file("zz_broken.lua", "\n\nerror('refusing')\n");
  CHECK(choreo_engine_reload(e, err, sizeof err) == CHOREO_ESCRIPT);
  CHECK(strstr(choreo_engine_reload_error(e), "zz_broken.lua:3: refusing") != NULL);
  CHECK(choreo_engine_generation(e) == 2);

  /* Fixed: the next reload succeeds and clears the error. */
  remove_file("zz_broken.lua");
  CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
  CHECK(choreo_engine_generation(e) == 3);
  CHECK(strcmp(choreo_engine_reload_error(e), "") == 0);
  build_frame(&frame, "peer", 2, 1, NULL);
  CHECK(apply(e, &frame, &res) == 0 && res.applied == 1);
  CHECK(query_int(e, "select count(*) from got") == 2);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

typedef struct journal_times {
  int n;
  int64_t at_ms[8], duration_us[8], seq[8];
} journal_times;

static int note_times(void *ud, const choreo_journal_row *row) {
  journal_times *t = ud;
  if (strcmp(row->source, "peer") != 0 || t->n == 8) return 0;
  t->at_ms[t->n] = row->at_ms;
  t->duration_us[t->n] = row->duration_us;
  t->seq[t->n++] = row->seq;
  return 0;
}

/* With the wall clock (no clock given), the handlings of a batch share clock readings: one
 * starts when the one before it ended, the journal's time is carried on from one reading per
 * batch. What that must not do: stamp a time outside the batch, or count the idle time
 * between two batches into the next one's first handling. */
static void test_journal_times_on_the_wall_clock(void) {
  choreo_engine_config cfg = {.name = "svc", .dir = dir, .data = ":memory:",
                              .scripts = &choreo_lua_scripts};
  char err[512] = "";
  choreo_engine *e = NULL;
  CHECK(choreo_engine_open(&e, &cfg, err, sizeof err) == 0 && e != NULL);
  if (!e) return;
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  choreo_apply_result res;
  int64_t before[2], after[2];
  const char *const types[] = {"Do", "Nobody", "Do", NULL}; /* Nobody: passed over */
  for (int i = 0; i < 2; i++) {
    if (i) usleep(300 * 1000);
    build_frame(&frame, "peer", 1 + 3 * i, 3, types);
    before[i] = choreo_clock_ms();
    CHECK(apply(e, &frame, &res) == 0 && res.applied == 2 && res.skipped == 1);
    after[i] = choreo_clock_ms();
  }
  journal_times t = {0};
  bool more = false;
  CHECK(choreo_engine_journal_recent(e, 60 * 1000, 100, note_times, &t, &more) == 0);
  CHECK(t.n == 4);
  for (int i = 0; i < t.n; i++) {
    int batch = t.seq[i] > 3;
    CHECK(t.at_ms[i] >= before[batch] && t.at_ms[i] <= after[batch]);
    /* the 300 ms between the batches belong to no handling */
    CHECK(t.duration_us[i] >= 0 && t.duration_us[i] < 300 * 1000);
  }
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
}

static void test_open_with_broken_script(void) {
  write_file("zz_broken.lua", "local choreo = require 'choreo'\nchoreo.on('X', function(\n");
  choreo_engine_config cfg = {.name = "svc", .dir = dir, .data = ":memory:",
                              .scripts = &choreo_lua_scripts};
  char err[512] = "";
  choreo_engine *e = NULL;
  CHECK(choreo_engine_open(&e, &cfg, err, sizeof err) == CHOREO_ESCRIPT);
  CHECK(strstr(err, "zz_broken.lua:") != NULL);
  CHECK(e == NULL);
  remove_file("zz_broken.lua");

  cfg.dir = "/nonexistent/choreo/dir";
  CHECK(choreo_engine_open(&e, &cfg, err, sizeof err) == CHOREO_ENOENT);
  CHECK(e == NULL);
}

int main(void) {
  setenv("CHOREO_LOG", "error", 0); /* the failures below are expected */
  snprintf(dir, sizeof dir, "/tmp/choreo-test-dispatch-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  write_file("handlers.lua", handlers_lua);
  RUN(test_applies_in_order);
  RUN(test_duplicates_are_skipped);
  RUN(test_gap_applies_nothing);
  RUN(test_malformed_frames);
  RUN(test_message_from_another_source);
  RUN(test_frame_ending_at_int64_max);
  RUN(test_commands_for_other_hosts);
  RUN(test_failing_handler_is_deferred);
  RUN(test_batch_run_again_counts_once);
  RUN(test_own_events);
  RUN(test_own_messages_no_handler_takes);
  RUN(test_handler_added_while_running);
  RUN(test_data_of_changing_shapes_arrives_as_sent);
  RUN(test_reload);
  RUN(test_journal_times_on_the_wall_clock);
  RUN(test_open_with_broken_script);
  remove_file("handlers.lua");
  remove_file("zz_broken.lua");
  CHECK(rmdir(dir) == 0);
  return CHECK_DONE();
}
