/* The handler registry of a scripts state: what choreo.on registers, kept in the state's
 * registry so that a reload, which builds a new state, starts from nothing and never mixes
 * generations. This file alone reads and writes it:
 *   { exact = {type = {fn...}}, prefixes = {{prefix, fn}...}, resolved = {type = {fn...}} }
 * where resolved caches, per type, the list built on its first message (exact handlers first,
 * then matching prefixes) until choreo.on changes the registry. */
#include <lauxlib.h>
#include <string.h>

#include "bindings.h"

#define REG_HANDLERS "choreo.handlers"
#define RESOLVED_MAX 512 /* types remembered with their handlers; more start the cache afresh */

static void handlers_new_resolved(lua_State *L, int handlers, choreo_lua_handlers *state) {
  lua_newtable(L);
  lua_setfield(L, handlers, "resolved");
  state->resolved = 0;
}

choreo_lua_handlers *choreo_lua_handlers_init(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_newtable(L);
  lua_setfield(L, -2, "exact");
  lua_newtable(L);
  lua_setfield(L, -2, "prefixes");
  choreo_lua_handlers *state = lua_newuserdatauv(L, sizeof *state, 0);
  memset(state, 0, sizeof *state);
  lua_setfield(L, -2, "state"); /* keeps the counters as long as the state lives */
  handlers_new_resolved(L, lua_gettop(L), state);
  lua_setfield(L, LUA_REGISTRYINDEX, REG_HANDLERS);
  return state;
}

/* choreo.on(pattern, fn): exact type, or a prefix ending in "*". */
int choreo_lua_on(lua_State *L) {
  size_t len;
  const char *pattern = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len > 0, 1, "message type must be a non-empty string");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  if (lua_getfield(L, LUA_REGISTRYINDEX, REG_HANDLERS) != LUA_TTABLE)
    return luaL_error(L, "choreo.on works in a service's scripts");
  if (pattern[len - 1] == '*') {
    lua_getfield(L, 3, "prefixes");
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, pattern, len - 1);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  } else {
    lua_getfield(L, 3, "exact");
    if (lua_getfield(L, -1, pattern) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, pattern);
    }
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  }
  /* Types already resolved to their handlers must be resolved again. */
  lua_getfield(L, 3, "state");
  choreo_lua_handlers *state = lua_touserdata(L, -1);
  state->version++;
  handlers_new_resolved(L, 3, state);
  return 0;
}

/* Pushes a new list of the handlers for `type`. The registry table is at index `handlers`. */
static void handlers_build(lua_State *L, int handlers, choreo_str type) {
  lua_createtable(L, 4, 0);
  int list = lua_gettop(L);
  int n = 0;
  lua_getfield(L, handlers, "exact");
  lua_pushlstring(L, type.p, type.n);
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TFUNCTION; i++)
      lua_rawseti(L, list, ++n);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  lua_getfield(L, handlers, "prefixes");
  for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
    lua_rawgeti(L, -1, 1);
    size_t plen;
    const char *prefix = lua_tolstring(L, -1, &plen);
    if (prefix && plen <= type.n && memcmp(prefix, type.p, plen) == 0) {
      lua_rawgeti(L, -2, 2);
      lua_rawseti(L, list, ++n);
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 2);
}

void choreo_lua_handlers_push(lua_State *L, choreo_str type) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, REG_HANDLERS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    return;
  }
  int handlers = lua_gettop(L);
  lua_getfield(L, handlers, "resolved");
  lua_pushlstring(L, type.p, type.n);
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_replace(L, handlers);
    lua_settop(L, handlers);
    return;
  }
  lua_pop(L, 2);
  lua_getfield(L, handlers, "state");
  choreo_lua_handlers *state = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (++state->resolved > RESOLVED_MAX) { /* a stream of ever new types must not grow it */
    handlers_new_resolved(L, handlers, state);
    state->resolved = 1;
  }
  handlers_build(L, handlers, type);
  lua_getfield(L, handlers, "resolved");
  lua_pushlstring(L, type.p, type.n);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_replace(L, handlers);
}
