/* The handler registry of a scripts state: what choreo.on registers, kept in the state's
 * registry so that a reload, which builds a new state, starts from nothing and never mixes
 * generations. This file alone reads and writes it:
 *   { exact = {type = {fn...}}, prefixes = {{prefix, fn, policy}...},
 *     policies = {type = policy}, sites = {fn = "file.lua:line"},
 *     resolved = {type = {fn..., where = "file.lua:line, ..."}} }
 * where resolved caches, per type, the list built on its first message (exact handlers first,
 * then matching prefixes) until choreo.on changes the registry, a policy is a full userdata
 * holding a choreo_retry_policy, and a site is where the service's scripts registered the
 * handler (the journal names it). */
#include <lauxlib.h>
#include <string.h>

#include "bindings.h"
#include "paths.h"

#define REG_HANDLERS "choreo.handlers"
#define RESOLVED_MAX 512 /* types remembered with their handlers; more start the cache afresh */

static void handlers_new_resolved(lua_State *L, int handlers, choreo_lua_handlers *state) {
  lua_newtable(L);
  lua_setfield(L, handlers, "resolved");
  state->resolved = 0;
}

choreo_lua_handlers *choreo_lua_handlers_init(lua_State *L) {
  lua_createtable(L, 0, 5);
  lua_newtable(L);
  lua_setfield(L, -2, "exact");
  lua_newtable(L);
  lua_setfield(L, -2, "prefixes");
  lua_newtable(L);
  lua_setfield(L, -2, "policies");
  lua_newtable(L);
  lua_setfield(L, -2, "sites");
  choreo_lua_handlers *state = lua_newuserdatauv(L, sizeof *state, 0);
  memset(state, 0, sizeof *state);
  lua_setfield(L, -2, "state"); /* keeps the counters as long as the state lives */
  handlers_new_resolved(L, lua_gettop(L), state);
  lua_setfield(L, LUA_REGISTRYINDEX, REG_HANDLERS);
  return state;
}

/* The delays of the options' backoff list, in seconds, into p. */
static void handlers_check_backoff(lua_State *L, int idx, choreo_retry_policy *p) {
  if (!lua_istable(L, idx)) luaL_error(L, "choreo.on: backoff must be a list of seconds");
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  if (n > CHOREO_BACKOFF_MAX)
    luaL_error(L, "choreo.on: backoff has %d delays, at most %d are allowed", (int)n,
               CHOREO_BACKOFF_MAX);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    int isnum;
    lua_Number seconds = lua_tonumberx(L, -1, &isnum);
    /* 30 days: retention forgets what waits longer. */
    if (!isnum || !(seconds >= 0 && seconds <= 30 * 86400.0))
      luaL_error(L, "choreo.on: backoff[%d] must be a number of seconds from 0 to 2592000",
                 (int)i);
    p->backoff_ms[i - 1] = (int64_t)(seconds * 1000);
    lua_pop(L, 1);
  }
  p->nbackoff = (int)n;
}

/* Pushes the policy choreo.on's options table at idx declares, as a userdata. */
static void handlers_push_policy(lua_State *L, int idx) {
  choreo_retry_policy *p = lua_newuserdatauv(L, sizeof *p, 0);
  *p = choreo_default_retry_policy;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    if (strcmp(key, "attempts") == 0) {
      int isint;
      lua_Integer n = lua_tointegerx(L, -1, &isint);
      if (!isint || n < 1 || n > CHOREO_ATTEMPTS_MAX)
        luaL_error(L, "choreo.on: attempts must be an integer from 1 to %d",
                   CHOREO_ATTEMPTS_MAX);
      p->attempts = (int)n;
    } else if (strcmp(key, "backoff") == 0) {
      handlers_check_backoff(L, lua_gettop(L), p);
    } else {
      luaL_error(L, "choreo.on: unknown option '%s' (the options are attempts and backoff)",
                 lua_type(L, -2) == LUA_TSTRING ? key : luaL_typename(L, -2));
    }
    lua_pop(L, 1);
  }
}

/* The value of the local `name` of a stack frame (the saga's, projection's or aggregate's
 * name, for their modules' registering functions), or NULL. */
static const char *handlers_frame_name(lua_State *L, lua_Debug *ar) {
  const char *local;
  for (int i = 1; (local = lua_getlocal(L, ar, i)) != NULL; i++) {
    bool found = strcmp(local, "name") == 0 && lua_type(L, -1) == LUA_TSTRING;
    const char *value = found ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1); /* the string stays alive: the frame's local still holds it */
    if (found) return value;
  }
  return NULL;
}

/* Pushes where the service's code registers a handler: the innermost caller that is neither C
 * nor one of choreo's own modules, as "file.lua:line"; when one of those modules registered
 * it for a declaration (choreo.saga, choreo.projection, choreo.aggregate), "saga NAME
 * (file.lua:line)" with the line that declared it. */
static void handlers_push_site(lua_State *L) {
  const char *own = choreo_paths_scripts();
  size_t ownlen = strlen(own);
  static const char *const kinds[] = {"saga", "projection", "aggregate"};
  const char *kind = NULL, *name = NULL;
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0 || ar.source[0] != '@') continue;
    const char *path = ar.source + 1;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(path, own, ownlen) == 0 && path[ownlen] == '/') {
      for (size_t i = 0; !kind && i < sizeof kinds / sizeof *kinds; i++) {
        size_t n = strlen(kinds[i]);
        if (strncmp(base, kinds[i], n) == 0 && strcmp(base + n, ".lua") == 0 &&
            (name = handlers_frame_name(L, &ar)) != NULL)
          kind = kinds[i];
      }
      continue;
    }
    if (kind) lua_pushfstring(L, "%s %s (%s:%d)", kind, name, base, ar.currentline);
    else lua_pushfstring(L, "%s:%d", base, ar.currentline);
    return;
  }
  lua_pushliteral(L, "?");
}

/* choreo.on(pattern, fn [, {attempts = n, backoff = {seconds...}}]): exact type, or a prefix
 * ending in "*". A type declares its retry policy once. */
int choreo_lua_on(lua_State *L) {
  size_t len;
  const char *pattern = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len > 0, 1, "message type must be a non-empty string");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_argexpected(L, lua_isnoneornil(L, 3) || lua_istable(L, 3), 3, "table of options");
  lua_settop(L, 3);
  if (lua_isnil(L, 3))
    lua_pushnil(L);
  else
    handlers_push_policy(L, 3);
  if (lua_getfield(L, LUA_REGISTRYINDEX, REG_HANDLERS) != LUA_TTABLE)
    return luaL_error(L, "choreo.on works in a service's scripts");
  lua_replace(L, 3); /* 3: the registry, 4: the policy or nil */
  lua_getfield(L, 3, "sites");
  lua_pushvalue(L, 2);
  handlers_push_site(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  if (pattern[len - 1] == '*') {
    lua_getfield(L, 3, "prefixes");
    lua_createtable(L, 3, 0);
    lua_pushlstring(L, pattern, len - 1);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 2);
    lua_pushvalue(L, 4);
    lua_rawseti(L, -2, 3);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  } else {
    if (!lua_isnil(L, 4)) {
      lua_getfield(L, 3, "policies");
      if (lua_getfield(L, -1, pattern) != LUA_TNIL)
        return luaL_error(L, "choreo.on: %s has a retry policy already (declare it once)",
                          pattern);
      lua_pop(L, 1);
      lua_pushvalue(L, 4);
      lua_setfield(L, -2, pattern);
      lua_pop(L, 1);
    }
    lua_getfield(L, 3, "exact");
    if (lua_getfield(L, -1, pattern) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, pattern);
    }
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  }
  /* Types already resolved to their handlers must be resolved again. */
  lua_getfield(L, 3, "state");
  choreo_lua_handlers *state = lua_touserdata(L, -1);
  state->version++;
  handlers_new_resolved(L, 3, state);
  return 0;
}

/* Sets list.where: the sites of the n handlers in the list, each once, joined by ", ". */
static void handlers_set_where(lua_State *L, int handlers, int list, int n) {
  luaL_Buffer b;
  lua_getfield(L, handlers, "sites");
  int sites = lua_gettop(L);
  lua_newtable(L); /* sites already named */
  int seen = lua_gettop(L);
  luaL_buffinit(L, &b);
  bool first = true;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    lua_rawget(L, sites);
    if (lua_type(L, -1) == LUA_TSTRING && lua_rawget(L, seen) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_rawgeti(L, list, i);
      lua_rawget(L, sites);
      lua_pushvalue(L, -1);
      lua_pushboolean(L, 1);
      lua_rawset(L, seen);
      if (!first) luaL_addstring(&b, ", ");
      luaL_addvalue(&b);
      first = false;
    } else {
      lua_pop(L, 1);
    }
  }
  luaL_pushresult(&b);
  lua_setfield(L, list, "where");
  lua_pop(L, 2);
}

/* Pushes a new list of the handlers for `type`. The registry table is at index `handlers`. */
static void handlers_build(lua_State *L, int handlers, choreo_str type) {
  lua_createtable(L, 4, 0);
  int list = lua_gettop(L);
  int n = 0;
  lua_getfield(L, handlers, "exact");
  lua_pushlstring(L, type.p, type.n);
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TFUNCTION; i++)
      lua_rawseti(L, list, ++n);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  lua_getfield(L, handlers, "prefixes");
  for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
    lua_rawgeti(L, -1, 1);
    size_t plen;
    const char *prefix = lua_tolstring(L, -1, &plen);
    if (prefix && plen <= type.n && memcmp(prefix, type.p, plen) == 0) {
      lua_rawgeti(L, -2, 2);
      lua_rawseti(L, list, ++n);
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 2);
  handlers_set_where(L, handlers, list, n);
}

bool choreo_lua_handlers_policy(lua_State *L, choreo_str type, choreo_retry_policy *out) {
  bool found = false;
  if (lua_getfield(L, LUA_REGISTRYINDEX, REG_HANDLERS) != LUA_TTABLE) {
    lua_pop(L, 1);
    return false;
  }
  int handlers = lua_gettop(L);
  lua_getfield(L, handlers, "policies");
  lua_pushlstring(L, type.p, type.n);
  const choreo_retry_policy *p = lua_rawget(L, -2) == LUA_TUSERDATA ? lua_touserdata(L, -1) : NULL;
  lua_getfield(L, handlers, "prefixes");
  for (lua_Integer i = 1; !p && lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
    lua_rawgeti(L, -1, 1);
    size_t plen;
    const char *prefix = lua_tolstring(L, -1, &plen);
    if (prefix && plen <= type.n && memcmp(prefix, type.p, plen) == 0 &&
        lua_rawgeti(L, -2, 3) == LUA_TUSERDATA)
      p = lua_touserdata(L, -1);
    else
      lua_pushnil(L);
    lua_pop(L, 3);
  }
  if (p) {
    *out = *p; /* copied while the userdata is still reachable from the stack or registry */
    found = true;
  }
  lua_settop(L, handlers - 1);
  return found;
}

void choreo_lua_handlers_push(lua_State *L, choreo_str type) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, REG_HANDLERS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    return;
  }
  int handlers = lua_gettop(L);
  lua_getfield(L, handlers, "resolved");
  lua_pushlstring(L, type.p, type.n);
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_replace(L, handlers);
    lua_settop(L, handlers);
    return;
  }
  lua_pop(L, 2);
  lua_getfield(L, handlers, "state");
  choreo_lua_handlers *state = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (++state->resolved > RESOLVED_MAX) { /* a stream of ever new types must not grow it */
    handlers_new_resolved(L, handlers, state);
    state->resolved = 1;
  }
  handlers_build(L, handlers, type);
  lua_getfield(L, handlers, "resolved");
  lua_pushlstring(L, type.p, type.n);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_replace(L, handlers);
}
