/* Unit tests for the compiled copies of choreo's own Lua modules (bindings/lua_chunks.c): a
 * file loads and runs the same from its copy as from its source, an unchanged file (same size
 * and modification time) is served from the copy, a changed one is compiled again, a syntax
 * error is reported and kept nowhere, errors raised from a copy name the file and line, and
 * the searcher finds choreo's own modules and leaves every other name alone. */
#include <fcntl.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "lua_chunks.h"
#include "temp_files.h"

static char dir[PATH_MAX];

static void set_mtime(const char *path, time_t sec) {
  struct timespec times[2] = {{sec, 0}, {sec, 0}};
  CHECK(utimensat(AT_FDCWD, path, times, 0) == 0);
}

/* Loads path in a fresh state and runs it: its integer result, or -1 on any error (the message
 * in why). */
static long long run_file(const char *path, char *why, size_t whylen) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  long long result = -1;
  why[0] = '\0';
  if (choreo_lua_chunks_load(L, path) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
    snprintf(why, whylen, "%s", lua_tostring(L, -1));
  else
    result = lua_tointeger(L, -1);
  lua_close(L);
  return result;
}

static void test_a_file_runs_the_same_from_its_copy(void) {
  char path[PATH_MAX + 16], why[512];
  snprintf(path, sizeof path, "%s/same.lua", dir);
  check_write_file(path, "local t = {}\nfor i = 1, 10 do t[i] = i * i end\nreturn t[10] + #t\n");
  CHECK(run_file(path, why, sizeof why) == 110);
  CHECK(run_file(path, why, sizeof why) == 110);
  CHECK_STR(why, "");
}

static void test_an_unchanged_file_is_served_from_its_copy(void) {
  char path[PATH_MAX + 16], why[512];
  snprintf(path, sizeof path, "%s/kept.lua", dir);
  check_write_file(path, "return 1\n");
  set_mtime(path, 1700000000);
  CHECK(run_file(path, why, sizeof why) == 1);
  /* the same size and time: taken for the same file (what make and ccache would assume too) */
  check_write_file(path, "return 2\n");
  set_mtime(path, 1700000000);
  CHECK(run_file(path, why, sizeof why) == 1);
  set_mtime(path, 1700000001); /* touched: compiled again */
  CHECK(run_file(path, why, sizeof why) == 2);
  check_write_file(path, "return 345\n"); /* another size, even at the same time */
  set_mtime(path, 1700000001);
  CHECK(run_file(path, why, sizeof why) == 345);
}

static void test_a_syntax_error_is_reported_and_not_kept(void) {
  char path[PATH_MAX + 16], why[512];
  snprintf(path, sizeof path, "%s/broken.lua", dir);
  check_write_file(path, "return (1 +\n");
  set_mtime(path, 1700000100);
  CHECK(run_file(path, why, sizeof why) == -1);
  CHECK(strstr(why, "broken.lua:") != NULL);
  check_write_file(path, "return (1 + 2)\n"); /* fixed, its time put back: nothing stale is served */
  set_mtime(path, 1700000100);
  CHECK(run_file(path, why, sizeof why) == 3);
}

static void test_errors_from_a_copy_name_the_file_and_line(void) {
  char path[PATH_MAX + 16], first[512], again[512];
  snprintf(path, sizeof path, "%s/raises.lua", dir);
  check_write_file(path, "local x = 1\n\nerror('no ' .. x)\n");
  CHECK(run_file(path, first, sizeof first) == -1);
  CHECK(run_file(path, again, sizeof again) == -1);
  CHECK(strstr(again, "raises.lua:3: no 1") != NULL);
  CHECK_STR(again, first);
}

static void test_the_searcher_finds_choreos_own_modules_only(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  for (int round = 0; round < 2; round++) { /* compiled, then from the copy */
    lua_pushcfunction(L, choreo_lua_chunks_search);
    lua_pushliteral(L, "choreo.saga");
    CHECK(lua_pcall(L, 1, 2, 0) == LUA_OK);
    CHECK(lua_isfunction(L, -2));
    const char *where = lua_tostring(L, -1);
    CHECK(where && strstr(where, "/choreo/saga.lua") != NULL);
    lua_pop(L, 2);
  }
  lua_pushcfunction(L, choreo_lua_chunks_search);
  lua_pushliteral(L, "no.such.module");
  CHECK(lua_pcall(L, 1, 2, 0) == LUA_OK);
  CHECK(lua_isnil(L, -2) && lua_isnil(L, -1));
  lua_close(L);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/choreo-test-lua-chunks-%d", (int)getpid());
  remove_tree(dir);
  CHECK(mkdir(dir, 0700) == 0);
  RUN(test_a_file_runs_the_same_from_its_copy);
  RUN(test_an_unchanged_file_is_served_from_its_copy);
  RUN(test_a_syntax_error_is_reported_and_not_kept);
  RUN(test_errors_from_a_copy_name_the_file_and_line);
  RUN(test_the_searcher_finds_choreos_own_modules_only);
  remove_tree(dir);
  return CHECK_DONE();
}
