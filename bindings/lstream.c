/* require "choreo.streamstore": the stored side of choreo.aggregate and ctx:load/ctx:append
 * (scripts/choreo/aggregate.lua), over the tables the engine owns (runtime/core/streams.c).
 * Reading and appending work only while a handler runs, inside the message's transaction;
 * every function raises on failure. */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "bindings.h"
#include "choreo.h"

#define STREAM_NAME_MAX 1024

static choreo_engine *stream_engine(lua_State *L) {
  choreo_engine *e = choreo_lua_engine(L);
  if (!choreo_engine_current(e)) luaL_error(L, "streams are only reachable inside a handler");
  return e;
}

static int stream_check(lua_State *L, int rc, const char *what) {
  if (rc == CHOREO_ETOOBIG)
    return luaL_error(L, "%s: an event is larger than the limit of %I bytes (--max-message)",
                      what, (lua_Integer)choreo_engine_max_message(choreo_lua_engine(L)));
  if (rc) return luaL_error(L, "%s failed: %s", what, choreo_strerror(rc));
  return 0;
}

static const char *stream_name(lua_State *L, int idx) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  if (len == 0 || len > STREAM_NAME_MAX || strlen(s) != len)
    luaL_argerror(L, idx, "a stream name is 1 to 1024 bytes, without NUL");
  return s;
}

/* version(stream) -> the stream's version, 0 when it has no event */
static int stream_version(lua_State *L) {
  choreo_engine *e = stream_engine(L);
  int64_t v = 0;
  stream_check(L, choreo_engine_stream_version(e, stream_name(L, 1), &v), "stream version");
  lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

choreo_stream_event *choreo_lua_stream_events(lua_State *L, int idx, const char *what, int *n) {
  idx = lua_absindex(L, idx);
  luaL_checktype(L, idx, LUA_TTABLE);
  *n = (int)luaL_len(L, idx);
  if (*n < 1 || *n > 100000) luaL_error(L, "%s: 1 to 100000 events, got %d", what, *n);
  luaL_checkstack(L, *n + 8, "too many events");
  choreo_stream_event *events = lua_newuserdatauv(L, sizeof *events * (size_t)*n, 0);
  for (int i = 0; i < *n; i++) {
    lua_geti(L, idx, i + 1);
    int ev = lua_gettop(L);
    if (!lua_istable(L, ev) || lua_getfield(L, ev, "type") != LUA_TSTRING)
      luaL_error(L, "%s: event %d has no type (events are { type = ..., data = ... })", what, i + 1);
    lua_getfield(L, ev, "schema");
    events[i] = (choreo_stream_event){.type = lua_tostring(L, -2), .schema = lua_tostring(L, -1)};
    lua_pop(L, 2); /* both still referenced by the event table */
    lua_getfield(L, ev, "data");
    lua_remove(L, ev);
    if (lua_isnil(L, -1)) continue; /* its slot stays, as nil */
    events[i].data = choreo_lua_encode_in_place(L, -1, &events[i].len);
  }
  return events;
}

/* append(stream, expect, events[, stored]): events as choreo_lua_stream_events takes them.
 * Returns the stream's new version, or nil, "conflict", its version. With `stored`, the new
 * version is followed by a list of the events appended as msg tables, as a read would give
 * them (a fold takes them in without reading them back). */
static int stream_push_appended(void *ud, int64_t version, const char *msg, size_t len) {
  (void)version; /* the msg has it */
  lua_State *L = ud;
  choreo_msg m;
  /* The bytes were encoded a moment ago; a failure here would be a bug of ours. */
  if (choreo_msg_decode(msg, len, &m)) return CHOREO_EINVAL;
  choreo_lua_push_msg_lazy(L, &m, false);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

static int stream_append(lua_State *L) {
  choreo_engine *e = stream_engine(L);
  const char *stream = stream_name(L, 1);
  lua_Integer expect = luaL_optinteger(L, 2, -1);
  bool stored = lua_toboolean(L, 4);
  int n;
  choreo_stream_event *events = choreo_lua_stream_events(L, 3, "append", &n);
  if (stored) lua_createtable(L, n, 0);
  int64_t version = 0;
  bool conflict = false;
  stream_check(L,
               choreo_engine_stream_append(e, stream, expect, events, n, &version, &conflict,
                                           stored ? stream_push_appended : NULL, L),
               "append");
  if (conflict) {
    lua_pushnil(L);
    lua_pushliteral(L, "conflict");
    lua_pushinteger(L, (lua_Integer)version);
    return 3;
  }
  lua_pushinteger(L, (lua_Integer)version);
  if (!stored) return 1;
  lua_insert(L, -2);
  return 2;
}

/* each(stream, after, fn): fn(msg) for each event after `after`, in order. An error in fn
 * stops the walk (the statement is left clean) and is raised again afterwards. */
typedef struct stream_walk {
  lua_State *L;
  int fn;
  bool failed;
} stream_walk;

static int stream_one(void *ud, int64_t version, const char *msg, size_t len) {
  stream_walk *w = ud;
  choreo_msg m;
  if (choreo_msg_decode(msg, len, &m)) {
    lua_pushfstring(w->L, "event %I of the stream does not decode", (lua_Integer)version);
    w->failed = true;
    return 1;
  }
  lua_pushvalue(w->L, w->fn);
  choreo_lua_push_msg_lazy(w->L, &m, false);
  if (lua_pcall(w->L, 1, 0, 0) != LUA_OK) {
    w->failed = true;
    return 1;
  }
  return 0;
}

static int stream_each(lua_State *L) {
  choreo_engine *e = stream_engine(L);
  const char *stream = stream_name(L, 1);
  lua_Integer after = luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  stream_walk w = {.L = L, .fn = 3};
  int rc = choreo_engine_stream_each(e, stream, after, stream_one, &w);
  if (w.failed) return lua_error(L); /* the message is on the stack */
  return stream_check(L, rc, "reading the stream");
}

/* snapshot_load(stream, fingerprint) -> state, version | nil */
static int stream_snapshot_load(lua_State *L) {
  choreo_engine *e = stream_engine(L);
  const char *stream = stream_name(L, 1), *fingerprint = luaL_checkstring(L, 2);
  msgpack_sbuffer state;
  msgpack_sbuffer_init(&state);
  int64_t version = 0;
  bool found = false;
  int rc = choreo_engine_snapshot_load(e, stream, fingerprint, &state, &version, &found);
  if (!rc && found) {
    choreo_lua_push_stored(L, &state);
    lua_pushinteger(L, (lua_Integer)version);
    return 2;
  }
  msgpack_sbuffer_destroy(&state);
  stream_check(L, rc, "loading a snapshot");
  lua_pushnil(L);
  return 1;
}

/* snapshot_save(stream, version, fingerprint, state) */
static int stream_snapshot_save(lua_State *L) {
  choreo_engine *e = stream_engine(L);
  const char *stream = stream_name(L, 1);
  lua_Integer version = luaL_checkinteger(L, 2);
  const char *fingerprint = luaL_checkstring(L, 3);
  lua_settop(L, 4);
  size_t len;
  const char *state = choreo_lua_encode_in_place(L, 4, &len);
  return stream_check(L, choreo_engine_snapshot_save(e, stream, version, fingerprint, state, len),
                      "saving a snapshot");
}

/* drop_stale(prefix, fingerprint) -> how many snapshots went. Also while the scripts load. */
static int stream_drop_stale(lua_State *L) {
  choreo_engine *e = choreo_lua_engine(L);
  const char *prefix = luaL_checkstring(L, 1), *fingerprint = luaL_checkstring(L, 2);
  int dropped = 0;
  stream_check(L, choreo_engine_snapshots_drop_stale(e, prefix, fingerprint, &dropped),
               "dropping stale snapshots");
  lua_pushinteger(L, dropped);
  return 1;
}

/* epoch() -> a number that changes whenever a rollback may have undone writes: a state folded
 * under another epoch may hold events that are gone. */
static int stream_epoch(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)choreo_engine_epoch(choreo_lua_engine(L)));
  return 1;
}

/* fingerprint(text) -> 16 hex digits (FNV-1a, 64 bits): names the code that folds a stream. */
static int stream_fingerprint(lua_State *L) {
  size_t len;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &len);
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ull;
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  lua_pushstring(L, hex);
  return 1;
}

static const luaL_Reg stream_funcs[] = {{"append", stream_append},
                                        {"drop_stale", stream_drop_stale},
                                        {"each", stream_each},
                                        {"epoch", stream_epoch},
                                        {"fingerprint", stream_fingerprint},
                                        {"snapshot_load", stream_snapshot_load},
                                        {"snapshot_save", stream_snapshot_save},
                                        {"version", stream_version},
                                        {NULL, NULL}};

int luaopen_choreo_streamstore(lua_State *L) {
  luaL_newlib(L, stream_funcs);
  return 1;
}
