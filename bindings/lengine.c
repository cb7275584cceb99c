/* require "choreo.engine": a whole engine (scripts, database, dispatch) driven from another Lua
 * state, with a clock of its own. choreo.testing builds its test hosts on it, so specs exercise
 * the real dispatch path: frames, one transaction per delivery, savepoints, retries. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bindings.h"
#include "choreo.h"
#include "engine.h"
#include "lua_scripts.h"

#define ENGINE_META "choreo.engine"
#define CASCADE_LIMIT 10000 /* own messages handled per call before we call it a loop */

typedef struct engine_handle {
  choreo_engine *e;
  int64_t now_ms;
} engine_handle;

static engine_handle *toengine(lua_State *L) {
  engine_handle *h = luaL_checkudata(L, 1, ENGINE_META);
  if (!h->e) luaL_error(L, "engine is closed");
  return h;
}

static int64_t engine_clock(void *ud) { return ((engine_handle *)ud)->now_ms; }

static lua_Integer engine_limit(lua_State *L, const char *field) {
  if (lua_isnoneornil(L, 3)) return 0;
  lua_getfield(L, 3, field);
  lua_Integer n = luaL_optinteger(L, -1, 0);
  lua_pop(L, 1);
  if (n < 0) luaL_error(L, "%s must be positive", field);
  return n;
}

/* engine.open(dir, name[, {instructions=, memory=, max_message=, workflow_cache=,
 * workflow_history_max=}]): scripts of dir, a fresh in-memory database. */
static int engine_open(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  const char *name = luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  uint64_t instructions = (uint64_t)engine_limit(L, "instructions");
  size_t memory = (size_t)engine_limit(L, "memory");
  size_t max_message = (size_t)engine_limit(L, "max_message");
  int workflow_cache = (int)engine_limit(L, "workflow_cache");
  int workflow_history_max = (int)engine_limit(L, "workflow_history_max");
  engine_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->e = NULL;
  h->now_ms = (int64_t)time(NULL) * 1000;
  luaL_setmetatable(L, ENGINE_META);
  choreo_engine_config cfg = {.name = name, .dir = dir, .data = ":memory:",
                              .scripts = &choreo_lua_scripts, .instruction_limit = instructions, .memory_limit = memory,
                              .max_message = max_message, .workflow_cache = workflow_cache,
                              .workflow_history_max = workflow_history_max,
                              .now_ms = engine_clock, .clock_ud = h};
  char err[1024];
  if (choreo_engine_open(&h->e, &cfg, err, sizeof err)) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static int engine_close(lua_State *L) {
  engine_handle *h = luaL_checkudata(L, 1, ENGINE_META);
  choreo_engine_close(h->e);
  h->e = NULL;
  return 0;
}

static void engine_add_result(choreo_apply_result *sum, const choreo_apply_result *r) {
  sum->applied += r->applied;
  sum->skipped += r->skipped;
  sum->failed += r->failed;
  if (r->failed) memcpy(sum->last_error, r->last_error, sizeof sum->last_error);
}

/* Lets our own handlers see what the last step emitted, as a host does between batches. */
static int engine_cascade(lua_State *L, choreo_engine *e, choreo_apply_result *sum) {
  bool pending = true;
  for (int rounds = 0; pending; rounds++) {
    if (rounds * 100 >= CASCADE_LIMIT)
      return luaL_error(L, "handlers keep emitting messages to themselves (more than %d)", CASCADE_LIMIT);
    choreo_apply_result r;
    int rc = choreo_engine_apply_own(e, 100, &pending, &r);
    if (rc) return luaL_error(L, "applying own messages failed: %s", choreo_strerror(rc));
    engine_add_result(sum, &r);
  }
  return 0;
}

static void engine_push_result(lua_State *L, const choreo_apply_result *r) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, r->applied);
  lua_setfield(L, -2, "applied");
  lua_pushinteger(L, r->skipped);
  lua_setfield(L, -2, "skipped");
  lua_pushinteger(L, r->failed);
  lua_setfield(L, -2, "failed");
  if (r->failed) {
    lua_pushstring(L, r->last_error);
    lua_setfield(L, -2, "error");
  }
}

static const char *engine_opt(lua_State *L, int opts, const char *field, const char *def) {
  if (lua_isnoneornil(L, opts)) return def;
  lua_getfield(L, opts, field);
  const char *s = luaL_optstring(L, -1, def);
  lua_pop(L, 1); /* the string stays referenced by opts */
  return s;
}

/* e:deliver(type, data, opts): one message from opts.source (default "test") as one frame,
 * then whatever our own handlers do with what it emitted. */
static int engine_deliver(lua_State *L) {
  engine_handle *h = toengine(L);
  const char *type = luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  const char *source = engine_opt(L, 4, "source", "test");
  int64_t applied;
  int rc = choreo_engine_checkpoint(h->e, source, &applied);
  if (rc) return luaL_error(L, "deliver: %s", choreo_strerror(rc));
  choreo_msg_fields f = {
      .source = source, .type = type, .kind = engine_opt(L, 4, "kind", "event"),
      .to = engine_opt(L, 4, "to", NULL), .subject = engine_opt(L, 4, "subject", NULL),
      .correlationid = engine_opt(L, 4, "correlationid", NULL),
      .causationid = engine_opt(L, 4, "causationid", NULL), .seq = applied + 1};
  if (!f.to && strcmp(f.kind, "event") != 0) f.to = choreo_engine_name(h->e);
  if (!lua_isnoneornil(L, 4) && lua_getfield(L, 4, "expect") != LUA_TNIL) {
    int isint;
    f.expectedversion = lua_tointegerx(L, -1, &isint);
    if (!isint || f.expectedversion < 0)
      return luaL_error(L, "deliver: 'expect' must be a stream version, an integer 0 or more");
    f.has_expectedversion = true;
  }

  msgpack_sbuffer data, frame;
  msgpack_sbuffer_init(&data);
  msgpack_sbuffer_init(&frame);
  char err[256] = "";
  rc = lua_isnoneornil(L, 3) ? 0 : choreo_lua_pack(L, 3, &data, err, sizeof err);
  if (!rc) {
    f.data = data.size ? data.data : NULL;
    f.data_len = data.size;
    rc = choreo_frame_header(&frame, source, f.seq, 1, f.seq);
  }
  if (!rc) rc = choreo_msg_encode(&f, &frame);
  choreo_apply_result sum = {0}, r;
  if (!rc) rc = choreo_engine_apply_frame(h->e, frame.data, frame.size, &r);
  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_destroy(&frame);
  if (rc) return luaL_error(L, "deliver: %s", err[0] ? err : choreo_strerror(rc));
  engine_add_result(&sum, &r);
  engine_cascade(L, h->e, &sum);
  engine_push_result(L, &sum);
  return 1;
}

/* e:advance(seconds): moves the clock and runs what came due. */
static int engine_advance(lua_State *L) {
  engine_handle *h = toengine(L);
  lua_Number seconds = luaL_checknumber(L, 2);
  luaL_argcheck(L, seconds >= 0, 2, "cannot move the clock backwards");
  h->now_ms += (int64_t)(seconds * 1000);
  choreo_apply_result sum = {0}, r;
  int64_t due, timeout_due;
  int rounds = 0, rc;
  do {
    if (++rounds > CASCADE_LIMIT)
      return luaL_error(L, "advance: timers keep coming due (more than %d rounds)", CASCADE_LIMIT);
    rc = choreo_engine_run_retries(h->e, &r);
    if (!rc) rc = choreo_engine_next_retry(h->e, &due);
    engine_add_result(&sum, &r);
    if (!rc) rc = choreo_engine_fire_timeouts(h->e);
    if (!rc) rc = choreo_engine_next_timeout(h->e, &timeout_due);
    if (rc) return luaL_error(L, "advance: %s", choreo_strerror(rc));
    engine_cascade(L, h->e, &sum);
  } while ((due >= 0 && due <= h->now_ms && (r.applied || r.failed)) ||
           (timeout_due >= 0 && timeout_due <= h->now_ms));
  engine_push_result(L, &sum);
  return 1;
}

/* e:log(after): the messages this engine emitted with seq > after, as tables. */
static int engine_log(lua_State *L) {
  engine_handle *h = toengine(L);
  int64_t after = luaL_optinteger(L, 2, 0);
  lua_newtable(L);
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  int n = 0, count;
  while (choreo_engine_read_log(h->e, after, 1000, 1u << 22, &frame, &count) == 0 && count > 0) {
    choreo_frame_reader r;
    if (choreo_frame_open(&r, frame.data, frame.size)) break;
    choreo_msg m;
    while (choreo_frame_next(&r, &m) == 1) {
      choreo_lua_push_msg(L, &m);
      lua_rawseti(L, -2, ++n);
      after = m.seq;
    }
    choreo_frame_close(&r);
  }
  msgpack_sbuffer_destroy(&frame);
  return 1;
}

/* e:given(stream, events): appends events ({type=, data=[, schema=]}) to a stream as an
 * aggregate would have, then lets our own handlers see them. */
static int engine_given(lua_State *L) {
  engine_handle *h = toengine(L);
  const char *stream = luaL_checkstring(L, 2);
  int n;
  choreo_stream_event *events = choreo_lua_stream_events(L, 3, "given", &n);
  int64_t version;
  bool conflict;
  int rc = choreo_engine_stream_append(h->e, stream, -1, events, n, &version, &conflict,
                                       NULL, NULL);
  if (rc) return luaL_error(L, "given: %s", choreo_strerror(rc));
  choreo_apply_result sum = {0};
  engine_cascade(L, h->e, &sum);
  lua_pushinteger(L, (lua_Integer)version);
  return 1;
}

static int engine_push_event(void *ud, int64_t version, const char *msg, size_t len) {
  lua_State *L = ud;
  choreo_msg m;
  if (choreo_msg_decode(msg, len, &m)) return CHOREO_EINVAL;
  choreo_lua_push_msg(L, &m);
  lua_rawseti(L, -2, version);
  return 0;
}

/* e:stream(stream) -> its events as msg tables, in order (as stored: not upcast) */
static int engine_stream(lua_State *L) {
  engine_handle *h = toengine(L);
  const char *stream = luaL_checkstring(L, 2);
  lua_newtable(L);
  int rc = choreo_engine_stream_each(h->e, stream, 0, engine_push_event, L);
  if (rc) return luaL_error(L, "stream: %s", choreo_strerror(rc));
  return 1;
}

/* e:query(name, args) -> result | nil, error: as `choreo query` would answer */
static int engine_query(lua_State *L) {
  engine_handle *h = toengine(L);
  const char *name = luaL_checkstring(L, 2);
  lua_settop(L, 3);
  size_t len = 0;
  const char *args = lua_isnil(L, 3) ? NULL : choreo_lua_encode_in_place(L, 3, &len);
  msgpack_sbuffer out;
  msgpack_sbuffer_init(&out);
  char err[1024] = "";
  int rc = choreo_engine_query(h->e, name, args, len, &out, err, sizeof err);
  if (rc) {
    msgpack_sbuffer_destroy(&out);
    luaL_pushfail(L);
    lua_pushstring(L, err[0] ? err : choreo_strerror(rc));
    return 2;
  }
  choreo_lua_push_stored(L, &out);
  return 1;
}

static int engine_db(lua_State *L) {
  engine_handle *h = toengine(L);
  choreo_lua_push_db(L, h->e, 1, false);
  return 1;
}

static int engine_push_dead(void *ud, const choreo_dead_letter *d) {
  lua_State *L = ud;
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, (lua_Integer)d->id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, d->type);
  lua_setfield(L, -2, "type");
  lua_pushstring(L, d->error);
  lua_setfield(L, -2, "error");
  lua_pushstring(L, d->traceback);
  lua_setfield(L, -2, "traceback");
  lua_pushinteger(L, d->attempts);
  lua_setfield(L, -2, "attempts");
  lua_pushboolean(L, d->retrying);
  lua_setfield(L, -2, "retrying");
  lua_pushinteger(L, d->revived);
  lua_setfield(L, -2, "revived");
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* e:dead_letters() -> { {id=, type=, error=, traceback=, attempts=, retrying=, revived=}, ... }
 * in id order */
static int engine_dead_letters(lua_State *L) {
  engine_handle *h = toengine(L);
  lua_newtable(L);
  int rc = choreo_engine_dead_each(h->e, engine_push_dead, L);
  if (rc) return luaL_error(L, "dead_letters: %s", choreo_strerror(rc));
  return 1;
}

/* e:dead_retry(id) -> true | nil, reason: as `choreo dead retry` */
static int engine_dead_retry(lua_State *L) {
  engine_handle *h = toengine(L);
  lua_Integer id = luaL_checkinteger(L, 2);
  int rc = choreo_engine_dead_retry(h->e, (int64_t)id);
  if (rc && rc != CHOREO_ENOENT && rc != CHOREO_EINVAL)
    return luaL_error(L, "dead_retry: %s", choreo_strerror(rc));
  if (!rc) {
    lua_pushboolean(L, 1);
    return 1;
  }
  luaL_pushfail(L);
  lua_pushstring(L, rc == CHOREO_ENOENT ? "no such dead letter"
                                        : "the letter is being retried already");
  return 2;
}

static int engine_push_state(void *ud, const choreo_saga_row *row) {
  lua_State *L = ud;
  lua_pushlstring(L, row->state ? row->state : "", row->state_len);
  return 0;
}

/* e:saga(name, key) -> the instance's state, or nil */
static int engine_saga(lua_State *L) {
  engine_handle *h = toengine(L);
  const char *name = luaL_checkstring(L, 2), *key = luaL_checkstring(L, 3);
  lua_settop(L, 3);
  int rc = choreo_engine_sagas_each(h->e, name, key, engine_push_state, L);
  if (rc) return luaL_error(L, "saga: %s", choreo_strerror(rc));
  if (lua_gettop(L) == 3) return 0;
  lua_pushcfunction(L, choreo_lua_msgpack_decode);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  return 1;
}

/* Replaces the encoded value in field of the table on top by the value. */
static void engine_decode_field(lua_State *L, const char *field) {
  if (lua_getfield(L, -1, field) != LUA_TSTRING) {
    lua_pop(L, 1);
    return;
  }
  lua_pushcfunction(L, choreo_lua_msgpack_decode);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  lua_setfield(L, -2, field);
}

static int engine_push_workflow(void *ud, const choreo_workflow_row *row) {
  lua_State *L = ud;
  choreo_lua_push_workflow_row(L, row);
  engine_decode_field(L, "input");
  engine_decode_field(L, "result");
  return 0;
}

static int engine_push_step(void *ud, const choreo_workflow_step *s) {
  lua_State *L = ud;
  choreo_lua_push_workflow_step(L, s);
  engine_decode_field(L, "result");
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* e:workflow(name, id) -> the instance (status, input, result, error, waiting, steps, ...)
 * with its history ({ step =, op =, what =, result = } each, in order), or nil */
static int engine_workflow(lua_State *L) {
  engine_handle *h = toengine(L);
  const char *name = luaL_checkstring(L, 2), *id = luaL_checkstring(L, 3);
  choreo_workflows *w = choreo_engine_workflows(h->e);
  bool found;
  int rc = choreo_workflows_get(w, name, id, engine_push_workflow, L, &found);
  if (!rc && found) {
    lua_newtable(L);
    rc = choreo_workflows_history(w, name, id, engine_push_step, L);
    lua_setfield(L, -2, "history");
  }
  if (rc) return luaL_error(L, "workflow: %s", choreo_strerror(rc));
  if (!found) lua_pushnil(L);
  return 1;
}

/* e:timeouts() -> the number of pending timeouts */
static int engine_timeouts(lua_State *L) {
  engine_handle *h = toengine(L);
  int64_t n;
  int rc = choreo_engine_pending_timeouts(h->e, &n);
  if (rc) return luaL_error(L, "timeouts: %s", choreo_strerror(rc));
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int engine_reload(lua_State *L) {
  engine_handle *h = toengine(L);
  char err[1024];
  if (choreo_engine_reload(h->e, err, sizeof err)) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  choreo_apply_result sum = {0};
  engine_cascade(L, h->e, &sum); /* what the reload asked of this host (stuck workflows) */
  lua_pushboolean(L, 1);
  return 1;
}

/* e:build(): runs the projections' builds to their end (specs have no loop to step them). */
static int engine_build(lua_State *L) {
  engine_handle *h = toengine(L);
  bool pending = true;
  while (pending) {
    int rc = choreo_engine_projections_step(h->e, 1000, &pending);
    if (rc) return luaL_error(L, "build: %s", choreo_strerror(rc));
  }
  return 0;
}

/* e:rebuild(name) -> true | nil, reason: as `choreo projections rebuild` (e:build runs it). */
static int engine_rebuild(lua_State *L) {
  engine_handle *h = toengine(L);
  char err[512];
  if (choreo_engine_projection_rebuild(h->e, luaL_checkstring(L, 2), err, sizeof err)) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static void engine_push_projection(void *ud, const choreo_projection_status *st) {
  lua_State *L = ud;
  lua_createtable(L, 0, 8);
  lua_pushstring(L, st->name);
  lua_setfield(L, -2, "name");
  lua_pushinteger(L, (lua_Integer)st->declared);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, (lua_Integer)st->live);
  lua_setfield(L, -2, "live");
  lua_pushinteger(L, (lua_Integer)st->building);
  lua_setfield(L, -2, "building");
  lua_pushinteger(L, (lua_Integer)st->applied);
  lua_setfield(L, -2, "applied");
  lua_pushstring(L, st->error);
  lua_setfield(L, -2, "error");
  lua_newtable(L);
  lua_Integer i = 0;
  for (const char *at = st->objects; *at;) {
    const char *end = strchr(at, '\n');
    lua_pushlstring(L, at, (size_t)(end - at));
    lua_rawseti(L, -2, ++i);
    at = end + 1;
  }
  lua_setfield(L, -2, "tables");
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* e:projections() -> { { name =, version =, live =, building =, applied =, error =, tables = }... } */
static int engine_projections(lua_State *L) {
  engine_handle *h = toengine(L);
  lua_newtable(L);
  choreo_engine_projections_each(h->e, engine_push_projection, L);
  return 1;
}

static int engine_now(lua_State *L) {
  lua_pushinteger(L, toengine(L)->now_ms);
  return 1;
}

static const luaL_Reg engine_methods[] = {
    {"advance", engine_advance},
    {"build", engine_build},
    {"close", engine_close},
    {"db", engine_db},
    {"dead_letters", engine_dead_letters},
    {"dead_retry", engine_dead_retry},
    {"deliver", engine_deliver},
    {"given", engine_given},
    {"log", engine_log},
    {"now_ms", engine_now},
    {"projections", engine_projections},
    {"query", engine_query},
    {"rebuild", engine_rebuild},
    {"reload", engine_reload},
    {"saga", engine_saga},
    {"stream", engine_stream},
    {"timeouts", engine_timeouts},
    {"workflow", engine_workflow},
    {NULL, NULL}};

static const luaL_Reg engine_funcs[] = {
    {"open", engine_open}, {NULL, NULL}};

int luaopen_choreo_engine(lua_State *L) {
  if (luaL_newmetatable(L, ENGINE_META)) {
    luaL_newlib(L, engine_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, engine_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, engine_funcs);
  return 1;
}
