/* require "choreo.sagastore": the stored side of choreo.saga (scripts/choreo/saga.lua), which
 * keeps its instances in tables the engine owns (runtime/core/sagas.c). Each function works
 * only while a handler runs, inside the message's transaction, and raises on failure. */
#include <lauxlib.h>

#include "bindings.h"
#include "choreo.h"

static choreo_engine *saga_engine(lua_State *L) {
  choreo_engine *e = choreo_lua_engine(L);
  if (!choreo_engine_current(e)) luaL_error(L, "saga state is only reachable inside a handler");
  return e;
}

static int saga_check(lua_State *L, int rc, const char *what) {
  if (rc) return luaL_error(L, "saga %s failed: %s", what, choreo_strerror(rc));
  return 0;
}

/* load(name, key) -> state, version | nil */
static int saga_load(lua_State *L) {
  choreo_engine *e = saga_engine(L);
  const char *name = luaL_checkstring(L, 1), *key = luaL_checkstring(L, 2);
  msgpack_sbuffer state;
  msgpack_sbuffer_init(&state);
  int64_t version = 0;
  bool found = false;
  int rc = choreo_engine_saga_load(e, name, key, &state, &version, &found);
  if (!rc && found) {
    choreo_lua_push_stored(L, &state);
    lua_pushinteger(L, (lua_Integer)version);
    return 2;
  }
  msgpack_sbuffer_destroy(&state);
  saga_check(L, rc, "load");
  lua_pushnil(L);
  return 1;
}

/* save(name, key, state, version) */
static int saga_save(lua_State *L) {
  choreo_engine *e = saga_engine(L);
  const char *name = luaL_checkstring(L, 1), *key = luaL_checkstring(L, 2);
  lua_Integer version = luaL_checkinteger(L, 4);
  lua_settop(L, 3);
  size_t len;
  const char *state = choreo_lua_encode_in_place(L, 3, &len);
  return saga_check(L, choreo_engine_saga_save(e, name, key, state, len, version), "save");
}

/* remove(name, key) */
static int saga_remove(lua_State *L) {
  choreo_engine *e = saga_engine(L);
  const char *name = luaL_checkstring(L, 1), *key = luaL_checkstring(L, 2);
  return saga_check(L, choreo_engine_saga_remove(e, name, key), "remove");
}

/* miss(name, type): a message of this type found no instance. */
static int saga_miss(lua_State *L) {
  choreo_engine *e = saga_engine(L);
  const char *name = luaL_checkstring(L, 1), *type = luaL_checkstring(L, 2);
  return saga_check(L, choreo_engine_saga_miss(e, name, type), "miss count");
}

static const luaL_Reg saga_funcs[] = {{"load", saga_load},
                                      {"miss", saga_miss},
                                      {"remove", saga_remove},
                                      {"save", saga_save},
                                      {NULL, NULL}};

int luaopen_choreo_sagastore(lua_State *L) {
  luaL_newlib(L, saga_funcs);
  return 1;
}
