/* ctx.log: debug/info/warn/error, each joining its arguments with spaces (tostring'd) and
 * writing one line to the host's log tagged with the service name. */
#include <lauxlib.h>

#include "bindings.h"
#include "log.h"

static int log_write(lua_State *L, choreo_log_level level) {
  if (!choreo_log_enabled(level)) return 0;
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, ' ');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  choreo_log(level, lua_tostring(L, lua_upvalueindex(1)), "%s", lua_tostring(L, -1));
  return 0;
}

static int log_debug(lua_State *L) { return log_write(L, CHOREO_LOG_DEBUG); }
static int log_error(lua_State *L) { return log_write(L, CHOREO_LOG_ERROR); }
static int log_info(lua_State *L) { return log_write(L, CHOREO_LOG_INFO); }
static int log_warn(lua_State *L) { return log_write(L, CHOREO_LOG_WARN); }

static const luaL_Reg log_funcs[] = {
    {"debug", log_debug}, {"error", log_error}, {"info", log_info}, {"warn", log_warn},
    {NULL, NULL}};

void choreo_lua_push_log(lua_State *L, const char *who) {
  luaL_newlibtable(L, log_funcs);
  lua_pushstring(L, who);
  luaL_setfuncs(L, log_funcs, 1);
}
