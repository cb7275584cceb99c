/* Preloads choreo's Lua-visible areas into a state, as linit.c does for Lua's own libraries:
 * `require` finds them without touching the file system. */
#include <lauxlib.h>

#include "bindings.h"

static const luaL_Reg preloaded[] = {
    {"choreo", luaopen_choreo},
    {"choreo.engine", luaopen_choreo_engine},
    {"choreo.sagastore", luaopen_choreo_sagastore},
    {"choreo.streamstore", luaopen_choreo_streamstore},
    {"choreo.projectionstore", luaopen_choreo_projectionstore},
    {"choreo.workflowstore", luaopen_choreo_workflowstore},
    {NULL, NULL}};

void choreo_bindings_preload(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaL_Reg *lib = preloaded; lib->func; lib++) {
    lua_pushcfunction(L, lib->func);
    lua_setfield(L, -2, lib->name);
  }
  lua_pop(L, 1);
}
