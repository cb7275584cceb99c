/* choreo's own Lua modules, compiled once per process. `require "choreo"` installs all four
 * (saga, aggregate, projection, workflow: some 57 KB of source) into every new Lua state, and
 * a hot reload builds a new state: compiling them was nine tenths of a reload's instructions
 * (callgrind, 30 reloads of a one-handler service: 7.5 of 8.3 million per reload). The chunk
 * compiled first is kept, debug information included, so errors and tracebacks read as before,
 * and loaded into each later state, which skips the parser. A file whose size or modification
 * time changed is compiled again. Only choreo's own directory is served from here: a service's
 * scripts are what a reload is for, and are always read anew. */
#include <lauxlib.h>
#include <limits.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lua_chunks.h"
#include "paths.h"

#define CHUNKS_MAX 16 /* files kept; scripts/choreo holds five */

typedef struct chunk {
  char path[PATH_MAX];
  off_t size;
  struct timespec mtime;
  msgpack_sbuffer code; /* lua_dump's output */
} chunk;

static chunk chunks[CHUNKS_MAX];
static int chunks_kept;
/* Hosts in one process (an embedding program) load states from their own threads. */
static pthread_mutex_t chunks_lock = PTHREAD_MUTEX_INITIALIZER;

static bool chunks_same_file(const chunk *c, const struct stat *st) {
  return c->size == st->st_size && c->mtime.tv_sec == st->st_mtim.tv_sec &&
         c->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static chunk *chunks_find(const char *path) {
  for (int i = 0; i < chunks_kept; i++)
    if (strcmp(chunks[i].path, path) == 0) return &chunks[i];
  return NULL;
}

static int chunks_write(lua_State *L, const void *p, size_t n, void *sbuf) {
  (void)L;
  return msgpack_sbuffer_write(sbuf, p, n);
}

/* Keeps the function on top of L's stack as the compiled copy of path, as it was at st, when
 * there is room. A file changed since st is compiled again at its next load. */
static void chunks_keep(lua_State *L, const char *path, const struct stat *st) {
  msgpack_sbuffer code;
  msgpack_sbuffer_init(&code);
  if (strlen(path) >= PATH_MAX || lua_dump(L, chunks_write, &code, 0) != 0) {
    msgpack_sbuffer_destroy(&code);
    return;
  }
  pthread_mutex_lock(&chunks_lock);
  chunk *c = chunks_find(path);
  if (!c && chunks_kept < CHUNKS_MAX) {
    c = &chunks[chunks_kept++];
    snprintf(c->path, sizeof c->path, "%s", path);
  }
  if (c) {
    msgpack_sbuffer_destroy(&c->code); /* a zeroed buffer too: it frees NULL */
    c->code = code;
    c->size = st->st_size;
    c->mtime = st->st_mtim;
  } else {
    msgpack_sbuffer_destroy(&code);
  }
  pthread_mutex_unlock(&chunks_lock);
}

/* choreo_lua_chunks_load with the file's stat already taken (NULL: none could be). */
static int chunks_load(lua_State *L, const char *path, const struct stat *st) {
  if (st) {
    pthread_mutex_lock(&chunks_lock);
    const chunk *c = chunks_find(path);
    /* loaded under the lock: a thread compiling the file again may replace the copy */
    int rc = c && chunks_same_file(c, st)
                 ? luaL_loadbufferx(L, c->code.data, c->code.size, path, "b")
                 : -1;
    pthread_mutex_unlock(&chunks_lock);
    if (rc != -1) return rc;
  }
  int rc = luaL_loadfilex(L, path, "t");
  if (rc == LUA_OK && st) chunks_keep(L, path, st);
  return rc;
}

int choreo_lua_chunks_load(lua_State *L, const char *path) {
  struct stat st;
  return chunks_load(L, path, stat(path, &st) == 0 ? &st : NULL);
}

int choreo_lua_chunks_search(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  char module[PATH_MAX];
  snprintf(module, sizeof module, "%s", name);
  for (char *dot = strchr(module, '.'); dot; dot = strchr(dot, '.')) *dot = '/';
  static const char *const layouts[] = {"%s/%s.lua", "%s/%s/init.lua"};
  for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++) {
    char path[2 * PATH_MAX + 16];
    snprintf(path, sizeof path, layouts[i], choreo_paths_scripts(), module);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (chunks_load(L, path, &st) != LUA_OK) /* the stat just taken: one per module load */
      return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, path,
                        lua_tostring(L, -1));
    lua_pushstring(L, path); /* the loader's second argument, as Lua's own searcher passes */
    return 2;
  }
  return 0; /* not one of choreo's: the searchers after this one look */
}
