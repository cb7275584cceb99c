/* Unit tests of a projection build's history fetched from other hosts (runtime/core/
 * buildhistory.c through the engine's choreo_engine_history_*): which source it wants and
 * after what, answers from the wrong source or malformed, a page with a gap (retention's),
 * messages not for this host or of types the projection does not take left out, what this host
 * kept merged in seq order and applied once, a source given up, and what the status says;
 * which types each host sent (runtime/core/sourcetypes.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_fixture.h"
#include "choreo.h"
#include "engine.h"
#include "lua_scripts.h"
#include "sourcetypes.h"

static const char projection_lua[] =
    "local choreo = require 'choreo'\n"
    "choreo.projection('tot', { version = %d,\n"
    "  tables = 'create table tot(id integer primary key, source text, n integer, v integer)',\n"
    "  on = { Paid = function(msg, db)\n"
    "    db:exec('insert into tot(source, n, v) values (?, ?, %d)', msg.source, msg.data.n)\n"
    "  end } })\n";

static void write_projection(int version) {
  char text[sizeof projection_lua + 32];
  snprintf(text, sizeof text, projection_lua, version, version);
  write_file("tot.lua", text);
}

/* A frame of source's seqs first.. with these types; "Cmd" is a command to another host. Its
 * head is 100: a page of a longer log. */
static void frame_of(msgpack_sbuffer *frame, const char *source, int64_t first, int count,
                     const char *const *types) {
  msgpack_sbuffer_clear(frame);
  CHECK(choreo_frame_header(frame, source, first, (uint32_t)count, 100) == 0);
  for (int i = 0; i < count; i++) {
    bool command = strcmp(types[i], "Cmd") == 0;
    add_msg(frame, source, first + i, command ? "Paid" : types[i], command ? "command" : "event",
            command ? "other" : NULL, first + i);
  }
}

static void apply(choreo_engine *e, const msgpack_sbuffer *frame) {
  choreo_apply_result r;
  CHECK(choreo_engine_apply_frame(e, frame->data, frame->size, &r) == 0);
  CHECK(r.failed == 0 && !r.gap);
}

static void query_text(choreo_engine *e, const char *sql, char *out, size_t len) {
  sqlite3_stmt *st = NULL;
  out[0] = '\0';
  if (sqlite3_prepare_v2(choreo_engine_db(e), sql, -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
}

static void history_of(void *ud, const choreo_projection_status *s) {
  if (strcmp(s->name, "tot") == 0) snprintf(ud, 600, "%s", s->history ? s->history : "(null)");
}

static void check_wanted(choreo_engine *e, const char *source, int64_t after) {
  char got[CHOREO_NAME_MAX + 1] = "";
  int64_t at = -1;
  bool wanted = choreo_engine_history_wanted(e, got, sizeof got, &at);
  if (!source) {
    CHECK(!wanted);
    return;
  }
  CHECK(wanted);
  CHECK_STR(got, source);
  CHECK(at == after);
}

/* Answers a's history request (after 0) with no message from a log whose head is `head`: the
 * source is given up, and the status says why. */
static void check_given_up_on_empty_answer(choreo_engine *e, msgpack_sbuffer *frame, int64_t head,
                                           const char *why) {
  msgpack_sbuffer_clear(frame);
  CHECK(choreo_frame_header(frame, "a", 1, 0, head) == 0);
  CHECK(choreo_engine_history_take(e, frame->data, frame->size, 0) == 0);
  check_wanted(e, NULL, 0);
  char status[600] = "";
  choreo_engine_projections_each(e, history_of, status);
  CHECK(strstr(status, why) != NULL);
}

/* Steps the build to its end, as the host does after each answer; returns the steps taken. */
static int build_to_end(choreo_engine *e) {
  bool pending = true;
  int steps = 0;
  while (pending && steps++ < 50) CHECK(choreo_engine_projections_step(e, 3, &pending) == 0);
  CHECK(!pending);
  return steps;
}

static void rows_of(choreo_engine *e, char *out, size_t len) {
  query_text(e, "select group_concat(source || n || 'v' || v, ',') from "
                "(select source, n, v from tot order by id)", out, len);
}

static void test_history_is_fetched_merged_and_applied_once(void) {
  write_projection(1);
  char err[512] = "";
  choreo_engine *e = open_engine_fetching(true);
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  /* Version 1 live: a's Paid events and b's kept as they are handled. */
  static const char *const a1[] = {"Paid", "Paid", "Cmd", "Other", "Paid", "Paid"};
  frame_of(&frame, "a", 1, 6, a1);
  apply(e, &frame);
  static const char *const b1[] = {"Paid", "Paid"};
  frame_of(&frame, "b", 1, 2, b1);
  apply(e, &frame);
  CHECK(query_int(e, "select count(*) from tot") == 6);

  /* Version 2: a build that wants a's log through 6, then b's through 2. */
  write_projection(2);
  CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
  check_wanted(e, "a", 0);
  char status[600] = "";
  choreo_engine_projections_each(e, history_of, status);
  CHECK_STR(status, "fetching a's history: through seq 0 of 6");
  bool pending = true;
  CHECK(choreo_engine_projections_step(e, 100, &pending) == 0);
  CHECK(!pending); /* it waits for the history */

  /* An answer from another source, and a malformed one, change nothing. */
  frame_of(&frame, "b", 1, 2, b1);
  CHECK(choreo_engine_history_take(e, frame.data, frame.size, 0) == 0);
  CHECK(choreo_engine_history_take(e, "\x93junk", 5, 0) == CHOREO_EINVAL);
  check_wanted(e, "a", 0);

  /* a's retention deleted 1..2; 3 is a command to another host, 4 a type tot does not take. */
  static const char *const a2[] = {"Cmd", "Other"};
  frame_of(&frame, "a", 3, 2, a2);
  CHECK(choreo_engine_history_take(e, frame.data, frame.size, 0) == 0);
  check_wanted(e, "a", 4);

  /* Live meanwhile: a's 7, into the live tables and kept. */
  static const char *const a3[] = {"Paid"};
  frame_of(&frame, "a", 7, 1, a3);
  apply(e, &frame);

  /* The last page goes past what the build wants (7 is after the plan's 6). */
  static const char *const a4[] = {"Paid", "Paid", "Paid"};
  frame_of(&frame, "a", 5, 3, a4);
  CHECK(choreo_engine_history_take(e, frame.data, frame.size, 5) == 0); /* an older ask's */
  check_wanted(e, "a", 4);
  CHECK(choreo_engine_history_take(e, frame.data, frame.size, 4) == 0);
  check_wanted(e, "b", 0);
  CHECK(choreo_engine_history_give_up(e, "b", "no answer") == 0);
  check_wanted(e, NULL, 0);
  choreo_engine_projections_each(e, history_of, status);
  CHECK_STR(status, "2 of a's messages were gone from its log; without b's history: no answer");

  CHECK(build_to_end(e) > 1);
  /* a's history (what was kept of 1..2 filling retention's gap, 5 and 6 once) in seq order, then
   * b's kept inputs (its history given up), then what came after the plan. */
  char got[256];
  rows_of(e, got, sizeof got);
  CHECK_STR(got, "a1v2,a2v2,a5v2,a6v2,b1v2,b2v2,a7v2");
  /* the history's tables stayed in the build's file, which went */
  CHECK(query_int(e, "select count(*) from sqlite_master where name like 'choreo_build%'") == 0);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
  remove_file("tot.lua");
}


/* A projection whose v1 handler fails on n = 2 while the table `block` exists. */
static const char blocking_lua[] =
    "local choreo = require 'choreo'\n"
    "choreo.projection('tot', { version = %d,\n"
    "  tables = 'create table tot(id integer primary key, source text, n integer, v integer)',\n"
    "  on = { Paid = function(msg, db)\n"
    "    local blocked = db:one(\"select count(*) as c from sqlite_master where name = 'block'\").c\n"
    "    if msg.data.n == 2 and blocked > 0 then error('blocked') end\n"
    "    db:exec('insert into tot(source, n, v) values (?, ?, %d)', msg.source, msg.data.n)\n"
    "  end } })\n";

static void write_blocking(int version) {
  char text[sizeof blocking_lua + 32];
  snprintf(text, sizeof text, blocking_lua, version, version);
  write_file("tot.lua", text);
}

static void exec(choreo_engine *e, const char *sql) {
  CHECK(sqlite3_exec(choreo_engine_db(e), sql, NULL, NULL, NULL) == SQLITE_OK);
}

/* A message this host has not applied (waiting for a retry) is left out of the history: the
 * retry that succeeds applies it once, whether before the kept inputs are merged in (then in
 * seq order), after (then among the kept inputs), or after the swap (live). */
/* A host applying a1..a3 (in *frame) with a2 failing, left waiting for a retry. */
static choreo_engine *open_engine_failing_a2(msgpack_sbuffer *frame) {
  static const char *const paid[] = {"Paid", "Paid", "Paid"};
  write_blocking(1);
  choreo_engine *e = open_engine_fetching(true);
  exec(e, "create table block(x)");
  msgpack_sbuffer_init(frame);
  frame_of(frame, "a", 1, 3, paid);
  choreo_apply_result r;
  CHECK(choreo_engine_apply_frame(e, frame->data, frame->size, &r) == 0 && r.failed == 1);
  return e;
}

static void test_messages_not_applied_are_left_out(void) {
  static const char *const want[] = {"a1v2,a2v2,a3v2", "a1v2,a3v2,a2v2", "a1v2,a3v2,a2v2"};
  for (int when = 0; when < 3; when++) {
    char err[512] = "", got[256];
    msgpack_sbuffer frame;
    choreo_engine *e = open_engine_failing_a2(&frame);
    choreo_apply_result r;
    /* noted again by the batch's careful run, after its first rolled back */
    CHECK(query_int(e, "select count(*) from choreo_source_types where source = 'a'") == 1);
    write_blocking(2);
    CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
    check_wanted(e, "a", 0);
    CHECK(choreo_engine_history_take(e, frame.data, frame.size, 0) == 0);
    check_wanted(e, NULL, 0);
    exec(e, "drop table block");
    bool pending;
    if (when == 1) CHECK(choreo_engine_projections_step(e, 100, &pending) == 0); /* the merge */
    if (when == 2) build_to_end(e);
    fake_now += 60000;
    CHECK(choreo_engine_run_retries(e, &r) == 0 && r.applied == 1);
    if (when < 2) build_to_end(e);
    rows_of(e, got, sizeof got);
    CHECK_STR(got, want[when]);
    msgpack_sbuffer_destroy(&frame);
    choreo_engine_close(e);
  }
  remove_file("tot.lua");
}

/* A message whose dead letter is gone without its being applied (dropped by hand, or by
 * retention) is left out of the history all the same. */
static void test_dropped_dead_letters_stay_left_out(void) {
  for (int expired = 0; expired < 2; expired++) {
    char err[512] = "", got[256];
    msgpack_sbuffer frame;
    choreo_engine *e = open_engine_failing_a2(&frame);
    choreo_apply_result r;
    for (int i = 0; i < 10 && query_int(e, "select count(*) from choreo_dead_letters") == 0; i++) {
      fake_now += 3600 * 1000;
      CHECK(choreo_engine_run_retries(e, &r) == 0);
    }
    CHECK(query_int(e, "select count(*) from choreo_dead_letters") == 1);
    int deleted = 0;
    if (expired) {
      fake_now += 3600 * 1000;
      CHECK(choreo_engine_trim(e, 1000, 60 * 1000, 100, &deleted) == 0);
    } else {
      CHECK(choreo_engine_dead_drop(e, query_int(e, "select id from choreo_dead_letters")) == 0);
      CHECK(choreo_engine_dead_drop(e, 999) == CHOREO_ENOENT); /* no such letter: nothing noted */
    }
    CHECK(query_int(e, "select count(*) from choreo_dead_letters") == 0);
    CHECK(query_int(e, "select count(*) from choreo_dropped where source = 'a' and seq = 2") == 1);
    CHECK(query_int(e, "select count(*) from choreo_dropped") == 1);
    exec(e, "drop table block");
    write_blocking(2);
    CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
    check_wanted(e, "a", 0);
    CHECK(choreo_engine_history_take(e, frame.data, frame.size, 0) == 0);
    build_to_end(e);
    rows_of(e, got, sizeof got);
    CHECK_STR(got, "a1v2,a3v2");
    msgpack_sbuffer_destroy(&frame);
    choreo_engine_close(e);
  }
  remove_file("tot.lua");
}

/* Fetched in part, then given up: what was fetched and what was kept, each message once. */
static void test_a_source_given_up_midway_applies_each_once(void) {
  static const char *const paid[] = {"Paid", "Paid", "Paid", "Paid"};
  write_projection(1);
  char err[512] = "", got[256];
  choreo_engine *e = open_engine_fetching(true);
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  frame_of(&frame, "a", 1, 4, paid);
  apply(e, &frame);
  write_projection(2);
  CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
  frame_of(&frame, "a", 1, 2, paid);
  CHECK(choreo_engine_history_take(e, frame.data, frame.size, 0) == 0);
  check_wanted(e, "a", 2);
  CHECK(choreo_engine_history_give_up(e, "a", "no answer") == 0);
  build_to_end(e);
  rows_of(e, got, sizeof got);
  CHECK_STR(got, "a1v2,a2v2,a3v2,a4v2");
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
  remove_file("tot.lua");
}

/* An answer to what the build before a rebuild asked is not the new build's history; a host
 * whose log ends before what this host applied is not the one it applied from. */
static void test_stale_answers_and_replaced_hosts_are_not_taken(void) {
  static const char *const paid[] = {"Paid", "Paid", "Paid", "Paid"};
  write_file("tot.lua", "");
  char err[512] = "", got[256];
  choreo_engine *e = open_engine_fetching(true);
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  frame_of(&frame, "a", 1, 4, paid);
  apply(e, &frame); /* nothing takes Paid yet: nothing kept */
  write_projection(1);
  CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
  frame_of(&frame, "a", 1, 2, paid);
  CHECK(choreo_engine_history_take(e, frame.data, frame.size, 0) == 0);
  check_wanted(e, "a", 2);
  CHECK(choreo_engine_projection_rebuild(e, "tot", err, sizeof err) == 0);
  check_wanted(e, "a", 0);
  frame_of(&frame, "a", 3, 2, paid); /* the answer to "after 2", for the build before */
  CHECK(choreo_engine_history_take(e, frame.data, frame.size, 2) == 0);
  check_wanted(e, "a", 0);
  /* an answer that holds nothing, from a log that says it reaches past 4: given up, said */
  check_given_up_on_empty_answer(e, &frame, 100,
                                 "without a's history: its answer after seq 0 held nothing");
  CHECK(choreo_engine_projection_rebuild(e, "tot", err, sizeof err) == 0);
  check_wanted(e, "a", 0);
  /* a log that ends at 3 is not the one this host applied 4 of */
  check_given_up_on_empty_answer(e, &frame, 3, "without a's history: its log ends at seq 3, "
                                                "before the 4 this host applied");
  build_to_end(e);
  rows_of(e, got, sizeof got);
  CHECK_STR(got, ""); /* nothing was kept, nothing fetched */
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
  remove_file("tot.lua");
}

/* A build fetches only from hosts that sent a type the projection takes, or that it has no
 * record of from their first message on (here: a checkpoint from before the record). */
static void test_only_hosts_that_sent_its_types_are_asked(void) {
  static const char *const paid[] = {"Paid"}, *const other[] = {"Other", "Other"};
  write_projection(1);
  char err[512] = "";
  choreo_engine *e = open_engine_fetching(true);
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  frame_of(&frame, "a", 1, 1, paid);
  apply(e, &frame);
  frame_of(&frame, "c", 1, 2, other);
  apply(e, &frame);
  exec(e, "insert into choreo_checkpoints(source, seq) values ('old', 7)");
  CHECK(query_int(e, "select count(*) from choreo_source_types") == 2);
  write_projection(2);
  CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
  check_wanted(e, "a", 0);
  CHECK(choreo_engine_history_give_up(e, "a", "no answer") == 0);
  check_wanted(e, "old", 0);
  CHECK(choreo_engine_history_give_up(e, "old", "no answer") == 0);
  check_wanted(e, NULL, 0); /* c sent nothing tot takes */
  build_to_end(e);
  /* A request for our history past our log (after INT64_MAX) gets our head, nothing more. */
  int rows = -1;
  CHECK(choreo_engine_read_history(e, INT64_MAX, 10, 1 << 20, &frame, &rows) == 0 && rows == 0);
  choreo_frame_reader r;
  CHECK(choreo_frame_open_sparse(&r, frame.data, frame.size) == 0 && r.count == 0);
  choreo_frame_close(&r);
  msgpack_sbuffer_destroy(&frame);
  choreo_engine_close(e);
  remove_file("tot.lua");
}

/* This host's own plain events older than what was kept are read from its own log, here, not
 * asked of a peer; its stream events stay the streams' (not applied twice). */
static void test_own_plain_events_come_from_its_own_log(void) {
  write_file("till.lua", "local choreo = require 'choreo'\n"
                         "choreo.aggregate('Till', { id = function() return 'main' end,\n"
                         "  decide = { Open = function() return {\n"
                         "    { type = 'Paid', data = { n = 100 } } } end },\n"
                         "  evolve = { Paid = function() end } })\n");
  char err[512] = "", got[256];
  choreo_engine *e = open_engine_fetching(true);
  msgpack_sbuffer data;
  msgpack_sbuffer_init(&data);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  int64_t seq = 0;
  for (int n = 1; n <= 2; n++) {
    msgpack_sbuffer_clear(&data);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_int(&pk, n);
    CHECK(choreo_engine_emit(e, "event", NULL, "Paid", data.data, data.size, &seq) == 0);
  }
  msgpack_sbuffer_clear(&data);
  msgpack_pack_map(&pk, 0);
  CHECK(choreo_engine_emit(e, "command", "svc", "Open", data.data, data.size, &seq) == 0);
  bool pending = true;
  choreo_apply_result r;
  for (int i = 0; i < 5 && pending; i++) CHECK(choreo_engine_apply_own(e, 100, &pending, &r) == 0);
  CHECK(query_int(e, "select count(*) from choreo_streams") == 1);
  write_projection(1); /* beside the aggregate's file */
  CHECK(choreo_engine_reload(e, err, sizeof err) == 0);
  check_wanted(e, "svc", 0); /* the peers leave it to the steps */
  build_to_end(e);
  rows_of(e, got, sizeof got);
  CHECK_STR(got, "svc1v1,svc2v1,svc100v1");
  msgpack_sbuffer_destroy(&data);
  choreo_engine_close(e);
  remove_file("tot.lua");
  remove_file("till.lua");
}

static int count_rows(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  int n = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return n;
}

/* Each (source, type) pair is noted once per epoch, however many types interleave (a host
 * hearing forty types from two others); under a new epoch (a rollback) it is noted again. */
static void test_source_types_are_noted_once_until_a_rollback(void) {
  sqlite3 *db;
  CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
  choreo_source_types *t;
  CHECK(choreo_source_types_open(&t, db) == 0);
  char type[16];
  const choreo_str sources[] = {{"alpha", 5}, {"beta", 4}};
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < 40; i++) {
      snprintf(type, sizeof type, "Type%d", i);
      CHECK(choreo_source_types_note(t, sources[i % 2], (choreo_str){type, strlen(type)},
                                     round * 40 + i + 1, 7) == 0);
    }
  CHECK(count_rows(db, "select count(*) from choreo_source_types") == 40);
  CHECK(count_rows(db, "select min(first_seq) from choreo_source_types") == 1);
  /* Rows gone under the same epoch stay gone: the pairs are remembered, not asked again. */
  CHECK(sqlite3_exec(db, "delete from choreo_source_types", NULL, NULL, NULL) == SQLITE_OK);
  CHECK(choreo_source_types_note(t, sources[0], (choreo_str){"Type0", 5}, 200, 7) == 0);
  CHECK(count_rows(db, "select count(*) from choreo_source_types") == 0);
  /* Under another epoch they are noted again, as a rollback of them requires. */
  CHECK(choreo_source_types_note(t, sources[0], (choreo_str){"Type0", 5}, 201, 8) == 0);
  CHECK(choreo_source_types_note(t, sources[1], (choreo_str){"Type1", 5}, 202, 8) == 0);
  CHECK(count_rows(db, "select count(*) from choreo_source_types") == 2);
  CHECK(count_rows(db, "select first_seq from choreo_source_types where type = 'Type1'") == 202);
  /* The pair noted last is matched on both halves: the same type from another source is new. */
  CHECK(choreo_source_types_note(t, sources[1], (choreo_str){"Type1", 5}, 203, 8) == 0);
  CHECK(choreo_source_types_note(t, sources[0], (choreo_str){"Type1", 5}, 204, 8) == 0);
  CHECK(choreo_source_types_note(t, sources[0], (choreo_str){"Type", 4}, 205, 8) == 0);
  CHECK(count_rows(db, "select count(*) from choreo_source_types") == 4);
  choreo_source_types_close(t);
  sqlite3_close(db);
}

int main(void) {
  setenv("CHOREO_LOG", "error", 0);
  snprintf(dir, sizeof dir, "/tmp/choreo-test-history-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  RUN(test_history_is_fetched_merged_and_applied_once);
  RUN(test_messages_not_applied_are_left_out);
  RUN(test_dropped_dead_letters_stay_left_out);
  RUN(test_a_source_given_up_midway_applies_each_once);
  RUN(test_stale_answers_and_replaced_hosts_are_not_taken);
  RUN(test_only_hosts_that_sent_its_types_are_asked);
  RUN(test_own_plain_events_come_from_its_own_log);
  RUN(test_source_types_are_noted_once_until_a_rollback);
  CHECK(rmdir(dir) == 0);
  return CHECK_DONE();
}
