/* choreo.query(name, fn): the read side served to the outside (`choreo query`, HTTP with
 * --http). A query is a function of its arguments and a db object that may only read; the
 * scripts state keeps them in its registry, so a reload starts from nothing, as with
 * handlers. */
#include <lauxlib.h>
#include <string.h>

#include "bindings.h"

#define REG_QUERIES "choreo.queries"
#define REG_QUERY_DB "choreo.query_db"
#define QUERY_NAME_MAX 100

/* The registry's table of queries, created on first use; left on the stack. */
static void query_table(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, REG_QUERIES) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, REG_QUERIES);
}

/* Names go into URLs (/query/NAME): letters, digits, '_', '-' and '.'. */
static bool query_name_ok(const char *s, size_t len) {
  if (len == 0 || len > QUERY_NAME_MAX) return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-' || c == '.'))
      return false;
  }
  return true;
}

int choreo_lua_query_define(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  if (!query_name_ok(name, len))
    return luaL_error(L, "choreo.query: the name must be 1 to %d letters, digits, '_', '-' or "
                         "'.' (it is part of a URL), got '%s'", QUERY_NAME_MAX, name);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  query_table(L);
  if (lua_getfield(L, -1, name) != LUA_TNIL)
    return luaL_error(L, "choreo.query: '%s' is defined twice", name);
  lua_pop(L, 1);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, name);
  return 0;
}

int choreo_lua_query_run(lua_State *L) {
  choreo_lua_query_call *call = lua_touserdata(L, 1);
  query_table(L);
  if (lua_getfield(L, -1, call->name) != LUA_TFUNCTION) return 0; /* call->found stays false */
  call->found = true;
  if (call->args) choreo_lua_push_packed(L, call->args);
  else lua_pushnil(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, REG_QUERY_DB) == LUA_TNIL) {
    lua_pop(L, 1);
    choreo_lua_push_db(L, choreo_lua_engine(L), 0, true);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_QUERY_DB);
  }
  lua_call(L, 2, 1);
  char err[256];
  if (choreo_lua_pack(L, -1, call->out, err, sizeof err))
    return luaL_error(L, "query %s returned what cannot be answered: %s", call->name, err);
  return 0;
}
