/* require "choreo": registering handlers (choreo.on, lhandlers.c) and the ctx object handlers
 * receive (publish, send, reply, timeout, db, log). */
#include <lauxlib.h>
#include <string.h>

#include "bindings.h"
#include "choreo.h"
#include "clock.h"
#include "engine.h"

static choreo_engine *host_engine(lua_State *L, const char *what) {
  choreo_engine *e = choreo_lua_engine(L);
  if (!choreo_engine_current(e)) luaL_error(L, "ctx:%s called outside a handler", what);
  return e;
}

static const char *host_check_name(lua_State *L, int idx, const char *what) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  if (len == 0 || strlen(s) != len) luaL_argerror(L, idx, lua_pushfstring(L, "%s must be a non-empty string", what));
  return s;
}

static const char *host_opt_string(lua_State *L, int opts, const char *field) {
  if (lua_getfield(L, opts, field) == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", field);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1); /* still referenced by the opts table */
  return s;
}

/* Raises the error of a failed ctx call; a message over the limit says which limit. */
static int host_fail(lua_State *L, choreo_engine *e, const char *what, int rc) {
  if (rc == CHOREO_ETOOBIG)
    return luaL_error(L, "ctx:%s: the message is larger than the limit of %I bytes (--max-message)",
                      what, (lua_Integer)choreo_engine_max_message(e));
  return luaL_error(L, "ctx:%s: %s", what, choreo_strerror(rc));
}

/* Packs data, emits, raises with a clear message on failure; returns the id of what it emitted. */
static int host_emit(lua_State *L, const char *kind, const char *to, const char *type,
                     int data_idx, int opts_idx, const char *what) {
  choreo_engine *e = host_engine(L, what);
  int top = opts_idx > data_idx ? opts_idx : data_idx;
  if (lua_gettop(L) < top) lua_settop(L, top); /* absent arguments become nil, not our temporaries */
  choreo_emit_opts opts = {0};
  if (opts_idx && !lua_isnoneornil(L, opts_idx)) {
    luaL_checktype(L, opts_idx, LUA_TTABLE);
    opts.subject = host_opt_string(L, opts_idx, "subject");
    opts.correlationid = host_opt_string(L, opts_idx, "correlationid");
    if (lua_getfield(L, opts_idx, "expect") != LUA_TNIL) {
      int isint;
      lua_Integer v = lua_tointegerx(L, -1, &isint);
      if (!isint || v < 0 || strcmp(kind, "command") != 0)
        return luaL_error(L, "ctx:%s: option 'expect' is a stream version (an integer, 0 or "
                             "more) and only a command carries one", what);
      opts.has_expectedversion = true;
      opts.expectedversion = v;
    }
    lua_pop(L, 1);
  }
  msgpack_sbuffer *b = choreo_lua_pack_buffer(L);
  char err[256];
  const char *data = NULL;
  size_t len = 0;
  if (!lua_isnoneornil(L, data_idx)) {
    if (choreo_lua_pack(L, data_idx, b, err, sizeof err)) return luaL_error(L, "ctx:%s: %s", what, err);
    data = b->data;
    len = b->size;
  }
  int64_t seq;
  int rc = choreo_engine_emit_from_handler(e, kind, to, type, data, len, &opts, &seq);
  if (rc) return host_fail(L, e, what, rc);
  /* the id, "<name>/<seq>", by hand: lua_pushfstring took 1,700 instructions, snprintf 1,000,
   * a luaL_Buffer 100 more than this */
  const char *name = choreo_engine_name(e);
  size_t name_len = strlen(name);
  char id[CHOREO_NAME_MAX + 1 + 20];
  memcpy(id, name, name_len); /* a service name is at most CHOREO_NAME_MAX */
  id[name_len] = '/';
  lua_pushlstring(L, id, name_len + 1 + (size_t)choreo_seq_digits(id + name_len + 1, seq));
  return 1;
}

static int ctx_publish(lua_State *L) {
  const char *type = host_check_name(L, 2, "type");
  return host_emit(L, "event", NULL, type, 3, 4, "publish");
}

static int ctx_send(lua_State *L) {
  const char *to = host_check_name(L, 2, "destination");
  const char *type = host_check_name(L, 3, "type");
  return host_emit(L, "command", to, type, 4, 5, "send");
}

static int ctx_reply(lua_State *L) {
  const char *type = host_check_name(L, 2, "type");
  const choreo_msg *m = choreo_engine_current(host_engine(L, "reply"));
  lua_settop(L, 3);
  lua_pushlstring(L, m->source.p, m->source.n); /* kept on the stack while host_emit runs */
  return host_emit(L, "reply", lua_tostring(L, -1), type, 3, 0, "reply");
}

/* ctx:timeout(seconds, type, data[, {subject=}]): a durable timer; when it is due a message of
 * kind "timeout" comes back to this host (inside a saga: to the same instance). */
static int ctx_timeout(lua_State *L) {
  choreo_engine *e = host_engine(L, "timeout");
  lua_Number seconds = luaL_checknumber(L, 2);
  luaL_argcheck(L, seconds >= 0 && seconds <= 1e9, 2, "seconds must be between 0 and 1e9");
  const char *type = host_check_name(L, 3, "type");
  if (lua_gettop(L) < 5) lua_settop(L, 5);
  const char *subject = NULL;
  if (!lua_isnil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    subject = host_opt_string(L, 5, "subject");
  }
  msgpack_sbuffer *b = choreo_lua_pack_buffer(L);
  char err[256];
  if (!lua_isnil(L, 4) && choreo_lua_pack(L, 4, b, err, sizeof err))
    return luaL_error(L, "ctx:timeout: %s", err);
  int rc = choreo_engine_timeout_from_handler(e, seconds, type, b->size ? b->data : NULL, b->size,
                                              subject);
  if (rc) return host_fail(L, e, "timeout", rc);
  return 0;
}

/* ctx:cancel_timeouts(subject): drops the pending timeouts set with that subject. */
static int ctx_cancel_timeouts(lua_State *L) {
  choreo_engine *e = host_engine(L, "cancel_timeouts");
  const char *subject = host_check_name(L, 2, "subject");
  int rc = choreo_engine_cancel_timeouts(e, subject);
  if (rc) return luaL_error(L, "ctx:cancel_timeouts: %s", choreo_strerror(rc));
  return 0;
}

static const luaL_Reg ctx_methods[] = {
    {"cancel_timeouts", ctx_cancel_timeouts}, {"publish", ctx_publish}, {"reply", ctx_reply},
    {"send", ctx_send}, {"timeout", ctx_timeout}, {NULL, NULL}};

/* choreo.now(): wall-clock seconds with microseconds, for measuring latencies in handlers
 * (os.time has whole seconds only). */
static int choreo_now(lua_State *L) {
  lua_pushnumber(L, choreo_clock_seconds());
  return 1;
}

static const luaL_Reg choreo_funcs[] = {{"now", choreo_now},
                                        {"on", choreo_lua_on},
                                        {"pack", choreo_lua_msgpack_encode},
                                        {"query", choreo_lua_query_define},
                                        {"unpack", choreo_lua_msgpack_decode},
                                        {NULL, NULL}};

/* The ctx object: a table of methods plus db and log, created once per state. */
static void host_make_ctx(lua_State *L, choreo_engine *e) {
  luaL_newlib(L, ctx_methods);
  choreo_lua_push_db(L, e, 0, false);
  lua_setfield(L, -2, "db");
  choreo_lua_push_log(L, choreo_engine_name(e));
  lua_setfield(L, -2, "log");
}

/* Requires the Lua half `module` and calls the function it returns with the choreo table on
 * top of the stack (and with_ctx, the ctx object); what that returns is kept in the registry
 * under key, unless key is NULL. */
static void host_install(lua_State *L, const char *module, bool with_ctx, const char *key) {
  int choreo = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, module);
  lua_call(L, 1, 1);
  lua_pushvalue(L, choreo);
  if (with_ctx) lua_getfield(L, LUA_REGISTRYINDEX, CHOREO_REG_CTX);
  lua_call(L, with_ctx ? 2 : 1, key ? 1 : 0);
  if (key) lua_setfield(L, LUA_REGISTRYINDEX, key);
}

int luaopen_choreo(lua_State *L) {
  choreo_engine *e = choreo_lua_engine(L);
  if (!e) return luaL_error(L, "require \"choreo\" works in a service's scripts; specs use choreo.testing");
  /* One ctx for the state's life, whoever requires choreo again (the runner keeps it). */
  if (lua_getfield(L, LUA_REGISTRYINDEX, CHOREO_REG_CTX) == LUA_TNIL) {
    host_make_ctx(L, e);
    lua_setfield(L, LUA_REGISTRYINDEX, CHOREO_REG_CTX);
  }
  lua_pop(L, 1);

  luaL_newlib(L, choreo_funcs);
  lua_pushstring(L, choreo_engine_name(e));
  lua_setfield(L, -2, "name");
  lua_pushstring(L, CHOREO_VERSION);
  lua_setfield(L, -2, "version");
  /* The same connection as ctx.db, for schema set-up while the scripts load. */
  choreo_lua_push_db(L, e, 0, false);
  lua_setfield(L, -2, "db");
  /* choreo.saga is written in Lua on top of the above (scripts/choreo/saga.lua): its module is
   * a function that installs it into this table. */
  host_install(L, "choreo.saga", false, NULL);
  /* So are choreo.aggregate and ctx:load/append (scripts/choreo/aggregate.lua); its module
   * also answers the upcaster of delivered messages (choreo_lua_upcast). */
  host_install(L, "choreo.aggregate", true, CHOREO_REG_UPCAST);
  /* And choreo.projection (scripts/choreo/projection.lua), whose module hands the host the
   * declared projections and runs their handlers in builds. */
  host_install(L, "choreo.projection", false, CHOREO_REG_PROJECTIONS);
  /* And choreo.workflow and ctx:start (scripts/choreo/workflow.lua), whose module takes the
   * messages of workflows' conversations. */
  host_install(L, "choreo.workflow", true, CHOREO_REG_WORKFLOWS);
  return 1;
}
