/* require "choreo.projectionstore": what choreo.projection (scripts/choreo/projection.lua)
 * asks the engine while a message is handled: which version a projection's live tables are of
 * (runtime/core/projections.c), so that only the code of that version writes them, and not
 * twice an event their build applied. */
#include <lauxlib.h>

#include "bindings.h"
#include "choreo.h"

/* fn(name, version) -> boolean, for the engine of the state */
static int projectionstore_ask(lua_State *L, bool (*fn)(choreo_engine *, const char *, int64_t)) {
  const char *name = luaL_checkstring(L, 1);
  lua_Integer version = luaL_checkinteger(L, 2);
  choreo_engine *e = choreo_lua_engine(L);
  lua_pushboolean(L, e && fn(e, name, version));
  return 1;
}

/* applies(name, version): whether that version's handlers write the live tables for the message
 * being handled */
static int projectionstore_applies(lua_State *L) {
  return projectionstore_ask(L, choreo_engine_projection_applies);
}

/* stale(name, version): live tables of that version, while another is declared */
static int projectionstore_stale(lua_State *L) {
  return projectionstore_ask(L, choreo_engine_projection_stale);
}

/* keep(): the message being handled is kept for builds (other hosts' events, plain ones) */
static int projectionstore_keep(lua_State *L) {
  choreo_engine *e = choreo_lua_engine(L);
  int rc = e ? choreo_engine_projection_keep(e) : 0;
  if (rc) return luaL_error(L, "cannot keep the message for projections' builds: %s",
                            choreo_strerror(rc));
  return 0;
}

int luaopen_choreo_projectionstore(lua_State *L) {
  static const luaL_Reg funcs[] = {{"applies", projectionstore_applies},
                                   {"keep", projectionstore_keep},
                                   {"stale", projectionstore_stale},
                                   {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
