/* choreo's own Lua modules (scripts/choreo/), compiled once per process (lua_chunks.c). */
#ifndef CHOREO_LUA_CHUNKS_H
#define CHOREO_LUA_CHUNKS_H

#include <lua.h>

/* As luaL_loadfilex(L, path, "t"), but a file compiled before and unchanged since (same size
 * and modification time) is loaded from its compiled copy. Safe from any thread. */
int choreo_lua_chunks_load(lua_State *L, const char *path);

/* A package.searchers entry for the modules in choreo's own directory (choreo_paths_scripts),
 * loaded with choreo_lua_chunks_load; any other module is left to the searchers after it. */
int choreo_lua_chunks_search(lua_State *L);

#endif
