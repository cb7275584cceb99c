/* require "choreo.projectionstore": what choreo.projection (scripts/choreo/projection.lua)
 * asks the engine while a message is handled: which version a projection's live tables are of
 * (runtime/core/projections.c), so that only the code of that version writes them. */
#include <lauxlib.h>

#include "bindings.h"

/* live(name, version) -> boolean */
static int projectionstore_live(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_Integer version = luaL_checkinteger(L, 2);
  choreo_engine *e = choreo_lua_engine(L);
  lua_pushboolean(L, e && choreo_engine_projection_live(e, name, version));
  return 1;
}

/* stale(name, version) -> boolean: live tables of that version, while another is declared */
static int projectionstore_stale(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_Integer version = luaL_checkinteger(L, 2);
  choreo_engine *e = choreo_lua_engine(L);
  lua_pushboolean(L, e && choreo_engine_projection_stale(e, name, version));
  return 1;
}

int luaopen_choreo_projectionstore(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"live", projectionstore_live}, {"stale", projectionstore_stale}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
