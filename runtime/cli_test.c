/* choreo test DIR [busted args]: runs the DIR/spec specs with busted inside an embedded
 * Lua 5.4 state that has choreo's bindings, so specs test handlers against the real engine.
 * busted ends with os.exit; here os.exit raises instead, and the code becomes ours. */
#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bindings.h"
#include "cli.h"
#include "paths.h"

#define EXIT_MARK "choreo.exit"

static int test_os_exit(lua_State *L) {
  lua_Integer code = lua_isboolean(L, 1) ? !lua_toboolean(L, 1) : luaL_optinteger(L, 1, 0);
  lua_newtable(L);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, EXIT_MARK);
  return lua_error(L);
}

static void test_set_arg(lua_State *L, const cli_args *a, const char *spec_dir) {
  lua_createtable(L, a->nrest, 1);
  lua_pushstring(L, "choreo test");
  lua_rawseti(L, -2, 0);
  int n = 0;
  for (int i = 1; i < a->nrest; i++) {
    lua_pushstring(L, a->rest[i]);
    lua_rawseti(L, -2, ++n);
  }
  lua_pushstring(L, spec_dir);
  lua_rawseti(L, -2, ++n);
  lua_setglobal(L, "arg");
}

int cli_test(const cli_args *a) {
  if (a->nrest < 1 || a->rest[0][0] == '-') return cli_usage("%s", "usage: choreo test DIR [busted args]");
  char dir[PATH_MAX], spec[PATH_MAX + 8];
  struct stat st;
  if (!realpath(a->rest[0], dir) || stat(dir, &st) || !S_ISDIR(st.st_mode))
    return cli_fail("%s: no such directory", a->rest[0]);
  snprintf(spec, sizeof spec, "%s/spec", dir);
  if (stat(spec, &st) || !S_ISDIR(st.st_mode)) return cli_fail("%s: no spec directory", spec);
  setenv("CHOREO_TEST_DIR", dir, 1);

  lua_State *L = luaL_newstate();
  if (!L) return cli_fail("%s", "cannot create a Lua state");
  *(void **)lua_getextraspace(L) = NULL; /* not a service's scripts state */
  luaL_openlibs(L);
  choreo_bindings_preload(L);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;", choreo_paths_scripts(),
                  choreo_paths_scripts(), dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, test_os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  test_set_arg(L, a, spec);

  int code = CLI_OK;
  static const char runner[] = "require 'busted.runner'({ standalone = false })";
  if (luaL_loadbuffer(L, runner, sizeof runner - 1, "@choreo-test") || lua_pcall(L, 0, 0, 0)) {
    if (lua_istable(L, -1) && lua_getfield(L, -1, EXIT_MARK) == LUA_TNUMBER) {
      code = lua_tointeger(L, -1) ? CLI_FAIL : CLI_OK;
    } else {
      if (lua_istable(L, -1)) lua_pop(L, 1);
      code = cli_fail("test runner failed: %s", luaL_tolstring(L, -1, NULL));
    }
  }
  lua_close(L);
  return code;
}
