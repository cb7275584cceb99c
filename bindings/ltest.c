/* `choreo test DIR`: busted inside a Lua state that has choreo's bindings, so specs test
 * handlers against the real engine. busted ends with os.exit; here os.exit raises a marked
 * error instead, and its code becomes ours. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>

#include "bindings.h"
#include "lua_scripts.h"

#define EXIT_MARK "choreo.exit"

static void *test_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

static int test_os_exit(lua_State *L) {
  lua_Integer code = lua_isboolean(L, 1) ? !lua_toboolean(L, 1) : luaL_optinteger(L, 1, 0);
  lua_newtable(L);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, EXIT_MARK);
  return lua_error(L);
}

/* The global `arg`, as lua.c builds it: the program at 0, busted's arguments from 1. */
static void test_set_arg(lua_State *L, const char *const *args, int nargs, const char *spec_dir) {
  lua_createtable(L, nargs + 1, 1);
  lua_pushstring(L, "choreo test");
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < nargs; i++) {
    lua_pushstring(L, args[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushstring(L, spec_dir);
  lua_rawseti(L, -2, nargs + 1);
  lua_setglobal(L, "arg");
}

int choreo_lua_run_tests(const char *dir, const char *const *args, int nargs, bool *passed,
                         char *err, size_t errlen) {
  *passed = false;
  lua_State *L = choreo_lua_state_new(test_alloc, NULL, dir, test_os_exit);
  if (!L) {
    snprintf(err, errlen, "cannot create a Lua state");
    return CHOREO_ENOMEM;
  }
  lua_pushfstring(L, "%s/spec", dir);
  test_set_arg(L, args, nargs, lua_tostring(L, -1));
  lua_pop(L, 1);
  /* busted exits 1 for arguments it cannot parse, as for failing tests: parse them first, with
   * busted's own parser, so that a usage error can be told apart. (--help prints and exits.) */
  static const char check[] =
      "for _, a in ipairs(arg) do if a == '--help' or a == '-h' then return end end\n"
      "local options = require('pl.tablex').update(require 'busted.options', "
      "{ standalone = false })\n"
      "local cli = require 'busted.modules.cli'(options)\n"
      "cli:set_name('choreo test')\n"
      "local ok, err = cli:parse(arg)\n"
      "if not ok then\n"
      "  err = err:gsub('^choreo test: error: ', ''):gsub('; re%-run with %-%-help for usage%.$', '')\n"
      "  return 'test: ' .. err .. '; busted\\'s options: choreo test DIR --help'\n"
      "end";
  int checked = luaL_loadbuffer(L, check, sizeof check - 1, "@choreo-test");
  if (!checked) checked = lua_pcall(L, 0, 1, 0);
  if (checked || lua_type(L, -1) == LUA_TSTRING) {
    snprintf(err, errlen, "%s%s", checked ? "test runner failed: " : "",
             luaL_tolstring(L, -1, NULL));
    lua_close(L);
    return checked ? CHOREO_ESCRIPT : CHOREO_EINVAL;
  }
  lua_pop(L, 1);
  int rc = 0;
  static const char runner[] = "require 'busted.runner'({ standalone = false })";
  if (luaL_loadbuffer(L, runner, sizeof runner - 1, "@choreo-test") || lua_pcall(L, 0, 0, 0)) {
    if (lua_istable(L, -1) && lua_getfield(L, -1, EXIT_MARK) == LUA_TNUMBER) {
      *passed = lua_tointeger(L, -1) == 0;
    } else {
      if (lua_istable(L, -1)) lua_pop(L, 1);
      snprintf(err, errlen, "test runner failed: %s", luaL_tolstring(L, -1, NULL));
      rc = CHOREO_ESCRIPT;
    }
  } else {
    *passed = true; /* busted returned without calling os.exit */
  }
  lua_close(L);
  return rc;
}
