/* require "choreo.projectionstore": what choreo.projection (scripts/choreo/projection.lua)
 * asks the engine while a message is handled: whether a projection's live tables are of the
 * version the code declares (runtime/core/projections.c). */
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

int luaopen_choreo_projectionstore(lua_State *L) {
  static const luaL_Reg funcs[] = {{"live", projectionstore_live}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
