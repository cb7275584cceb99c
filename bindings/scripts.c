/* One generation of a service's scripts (choreo_lua_scripts in lua_scripts.h). Embedding
 * follows Redis's lessons: the count hook keeps raising once the budget is spent, so a
 * handler's own pcall cannot swallow the timeout; a custom allocator caps memory; errors carry
 * file:line and a traceback. The count hook is set on a call only once it has run a tick
 * (watchdog.h): Lua runs twice as fast without it. */
#include <dirent.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "choreo.h"
#include "log.h"
#include "lua_blocks.h"
#include "lua_scripts.h"
#include "watchdog.h"

#define HOOK_EVERY 1000
#define KNOWN_TYPE_MAX 128
#define HANDLED_BY_MAX 256

typedef struct choreo_scripts {
  lua_State *L;
  choreo_engine *engine;
  choreo_watch *watch; /* arms the count hook of a call that runs long */
  /* The innermost coroutine running (choreo_lua_resume), armed with the main thread: set and
   * put back around lua_resume, on the loop's thread, as the signal is. */
  lua_State *volatile resumed;
  size_t mem_used, mem_limit;
  choreo_lua_blocks blocks; /* where the state's memory comes from */
  uint64_t instruction_limit;
  /* Where the running call was when memory ran short ("file:line: "): the error Lua raises
   * then carries no message of its own. Noted by the count hook once use passes three
   * quarters of the limit (memory running short gradually), else by the allocator as it
   * refuses a fresh block (one huge allocation). */
  char where[160];
  choreo_lua_handlers *handlers; /* the registry's counters */
  /* scripts_run_handlers as a closure over msg's metatable and ctx (a registry reference):
   * found by index for every message, where looking both up took two searches of the
   * registry's hash part. */
  int runner;
  choreo_lua_msg_kept kept; /* what msg tables keep from one message to the next */
  /* Where the handlers of the last delivered message were registered, for the journal. */
  char handled_by[HANDLED_BY_MAX];
  /* How the last delivered type's handlers read msg. A table filled as it is read costs far
   * less when they read a field or two (msg.data), more when they read most; messages come in
   * runs of one type, so the last one's reads say how to build the next (llazymsg.c). */
  struct {
    size_t len; /* 0: nothing known */
    char type[KNOWN_TYPE_MAX];
    uint32_t fields; /* the fields they read (bits by field number) */
    unsigned builds; /* messages of the type built since it became the last */
  } reads;
  /* The handlers of the last type asked about or delivered: their list (a registry
   * reference), where they were registered, and how many there are, valid while the
   * handlers' version stays. Messages come in runs of one type, and finding a type's list
   * takes three look-ups by string (and asking from outside Lua, a pcall). */
  struct {
    uint64_t version;
    size_t len; /* 0: no list kept (where and count still tell of the last type pushed) */
    char type[KNOWN_TYPE_MAX];
    int ref;
    lua_Integer count; /* of handlers in the list */
    size_t where_len;
    char where[HANDLED_BY_MAX];
  } last;
} choreo_scripts;

static choreo_scripts *scripts_of(lua_State *L) {
  return *(choreo_scripts **)lua_getextraspace(L);
}

choreo_engine *choreo_lua_engine(lua_State *L) {
  choreo_scripts *s = scripts_of(L);
  return s ? s->engine : NULL; /* NULL in states that are not a service's scripts */
}

/* Notes the innermost Lua function's file:line in s->where. getstack and getinfo with "Sl"
 * only read the call stack and allocate nothing; the allocator calls this only for a fresh
 * block, never while Lua moves a stack or a table (a realloc), when the stack may be in
 * flux. The main thread's stack is searched: in a coroutine, that is where it was resumed.
 * Out of line, with its lua_Debug, so that the allocator's common cases (a new block, a freed
 * one) need no stack frame. */
static __attribute__((noinline, cold)) void scripts_note_where(choreo_scripts *s) {
  lua_Debug ar;
  if (!s->L || s->where[0]) return;
  for (int level = 0; lua_getstack(s->L, level, &ar); level++) {
    if (lua_getinfo(s->L, "Sl", &ar) && ar.currentline > 0) {
      snprintf(s->where, sizeof s->where, "%s:%d: ", ar.short_src, ar.currentline);
      return;
    }
  }
}

/* A block moved or resized (Lua's stacks, tables' parts, buffers): rarer than new and freed. */
static __attribute__((noinline)) void *scripts_realloc(choreo_scripts *s, void *ptr, size_t old,
                                                       size_t nsize) {
  if (nsize > old && s->mem_used - old + nsize > s->mem_limit) return NULL;
  void *p = choreo_lua_blocks_resize(&s->blocks, ptr, old, nsize);
  if (p) s->mem_used = s->mem_used - old + nsize;
  return p;
}

static void *scripts_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  choreo_scripts *s = ud;
  if (nsize == 0) {
    if (ptr) {
      choreo_lua_blocks_give(&s->blocks, ptr, osize);
      s->mem_used -= osize;
    }
    return NULL;
  }
  if (ptr) return scripts_realloc(s, ptr, osize, nsize);
  /* a new block: osize tells what kind of object it is for */
  if (s->mem_used + nsize > s->mem_limit) {
    scripts_note_where(s);
    return NULL;
  }
  void *p = choreo_lua_blocks_take(&s->blocks, nsize);
  if (p) s->mem_used += nsize;
  return p;
}

/* Why a call may not go on: the budget is spent, or the host is stopping. */
static const char *scripts_cut_short(choreo_scripts *s, char *buf, size_t size) {
  if (choreo_engine_interrupted(s->engine)) return "interrupted: the host is stopping";
  snprintf(buf, size, "exceeded the instruction limit (%llu)",
           (unsigned long long)s->instruction_limit);
  return buf;
}

/* The budget is the engine's: the SQL the handler runs spends it too. */
static void scripts_hook(lua_State *L, lua_Debug *ar) {
  choreo_scripts *s = scripts_of(L);
  if (s->mem_used > s->mem_limit / 4 * 3 && lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
    snprintf(s->where, sizeof s->where, "%s:%d: ", ar->short_src, ar->currentline);
  if (!choreo_engine_spend(s->engine, HOOK_EVERY)) {
    /* From now on raise at every instruction, so that code catching the error with pcall
     * cannot run on: the raise lands in the catching code itself (and in a coroutine's
     * resumer as well). */
    lua_sethook(L, scripts_hook, LUA_MASKCOUNT, 1);
    if (L != s->L) lua_sethook(s->L, scripts_hook, LUA_MASKCOUNT, 1);
    char why[64];
    /* Level 0 is the Lua function the hook interrupted: name its file and line. */
    luaL_where(L, 0);
    lua_pushstring(L, scripts_cut_short(s, why, sizeof why));
    lua_concat(L, 2);
    lua_error(L);
  }
}

/* The watchdog's arm, in a signal handler on the thread of a call that has run a tick (and again
 * at every tick after): the count hook from now on, on the main thread and on the innermost
 * coroutine it is running, if any (choreo_lua_resume); a resumer that goes on once its
 * coroutine came back is armed at the next tick. Not over a hook already set: that may be the
 * one raising at every instruction. */
static void scripts_arm(void *ud) {
  choreo_scripts *s = ud;
  lua_State *co = s->resumed;
  if (!lua_gethookmask(s->L)) lua_sethook(s->L, scripts_hook, LUA_MASKCOUNT, HOOK_EVERY);
  if (co && !lua_gethookmask(co)) lua_sethook(co, scripts_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

int choreo_lua_resume(lua_State *L, lua_State *co, int nargs, int *nres) {
  choreo_scripts *s = scripts_of(L);
  if (!s) return lua_resume(co, L, nargs, nres);
  /* As the call is metered now: once it is armed (or its budget spent), from the start; before,
   * not even with a hook an earlier call left on a coroutine kept since. */
  if (lua_gethookmask(s->L))
    lua_sethook(co, scripts_hook, LUA_MASKCOUNT,
                choreo_engine_spend(s->engine, 0) ? HOOK_EVERY : 1);
  else
    lua_sethook(co, NULL, 0, 0);
  lua_State *outer = s->resumed;
  s->resumed = co;
  int status = lua_resume(co, L, nargs, nres);
  s->resumed = outer;
  return status;
}

int choreo_lua_resume_values(lua_State *L, lua_State *co, int nargs) {
  if (!lua_checkstack(co, nargs)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, nargs);
  int nres;
  int status = choreo_lua_resume(L, co, nargs, &nres);
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_xmove(co, L, 1); /* its error */
    return -1;
  }
  if (!lua_checkstack(L, nres + 1)) {
    lua_pop(co, nres);
    lua_pushliteral(L, "too many results to resume");
    return -1;
  }
  lua_xmove(co, L, nres);
  return nres;
}

/* coroutine.resume and coroutine.wrap as Lua's own, but through choreo_lua_resume, so that the
 * watchdog's arm reaches the coroutine running: a coroutine runs without the count hook, at
 * full speed, until its call has run a tick. */
int choreo_lua_coresume(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  int n = choreo_lua_resume_values(L, lua_tothread(L, 1), lua_gettop(L) - 1);
  lua_pushboolean(L, n >= 0);
  lua_insert(L, n >= 0 ? -(n + 1) : -2);
  return n >= 0 ? n + 1 : 2;
}

/* A function coroutine.wrap returned: its values, or its error raised again where it was called
 * (a string naming that place first, as Lua's wrap does), its to-be-closed variables closed. */
static int scripts_cowrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int n = choreo_lua_resume_values(L, co, lua_gettop(L));
  if (n >= 0) return n;
  int status = lua_status(co);
  if (status != LUA_OK && status != LUA_YIELD) { /* it failed: close it */
    status = lua_resetthread(co);
    lua_xmove(co, L, 1); /* the error, or one a closing raised instead */
  }
  if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int scripts_cowrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, scripts_cowrapped, 1);
  return 1;
}

static void scripts_resume_through_choreo(lua_State *L) {
  lua_getglobal(L, "coroutine");
  lua_pushcfunction(L, choreo_lua_coresume);
  lua_setfield(L, -2, "resume");
  lua_pushcfunction(L, scripts_cowrap);
  lua_setfield(L, -2, "wrap");
  lua_pop(L, 1);
}

static int scripts_os_exit(lua_State *L) {
  return luaL_error(L, "os.exit is not allowed in a choreo script");
}

static int scripts_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Runs the function below nargs arguments under the budget, with scripts_traceback already
 * pushed below the function (scripts_pcall puts it there; a caller per message pushes it first,
 * saving the move). On failure, err gets the first line(s) of the message and *traceback (if
 * asked) the full traceback; the result is CHOREO_ETOOBIG when the memory limit stopped it,
 * CHOREO_ESCRIPT otherwise. */
static int scripts_pcall_traced(choreo_scripts *s, int nargs, char *err, size_t errlen,
                                char **traceback) {
  lua_State *L = s->L;
  int base = lua_gettop(L) - nargs - 1;
  choreo_engine_meter_start(s->engine);
  s->where[0] = '\0';
  choreo_watch_enter(s->watch);
  int status = lua_pcall(L, nargs, 0, base);
  if (choreo_watch_leave(s->watch)) lua_sethook(L, NULL, 0, 0); /* armed or not */
  bool went_on = choreo_engine_spend(s->engine, 0);
  choreo_engine_meter_stop(s->engine);
  if (status == LUA_OK && went_on) {
    lua_pop(L, 1);
    return 0;
  }
  if (status == LUA_OK) { /* the handler caught the limit error itself: it still failed */
    lua_pop(L, 1);
    char why[64];
    snprintf(err, errlen, "%s", scripts_cut_short(s, why, sizeof why));
    lua_gc(L, LUA_GCCOLLECT);
    return CHOREO_ESCRIPT;
  }
  if (status == LUA_ERRMEM) {
    snprintf(err, errlen, "%sexceeded the memory limit (%zu bytes)", s->where, s->mem_limit);
    lua_pop(L, 2);
    lua_gc(L, LUA_GCCOLLECT);
    return CHOREO_ETOOBIG;
  } else {
    const char *full = lua_tostring(L, -1);
    if (!full) full = "(error object is not a string)";
    const char *cut = strstr(full, "\nstack traceback:");
    size_t n = cut ? (size_t)(cut - full) : strlen(full);
    snprintf(err, errlen, "%.*s", (int)n, full);
    if (traceback) *traceback = strdup(full);
  }
  lua_pop(L, 2);
  lua_gc(L, LUA_GCCOLLECT); /* give back what a failed call grabbed */
  return CHOREO_ESCRIPT;
}

/* scripts_pcall_traced for a function and nargs arguments pushed as they are. */
static int scripts_pcall(choreo_scripts *s, int nargs, char *err, size_t errlen,
                         char **traceback) {
  lua_pushcfunction(s->L, scripts_traceback);
  lua_insert(s->L, -nargs - 2);
  return scripts_pcall_traced(s, nargs, err, errlen, traceback);
}

static int scripts_is_lua_file(const struct dirent *d) {
  size_t n = strlen(d->d_name);
  return d->d_name[0] != '.' && n > 4 && strcmp(d->d_name + n - 4, ".lua") == 0;
}

static int scripts_load_dir(choreo_scripts *s, const char *dir, char *err, size_t errlen) {
  struct dirent **names;
  int n = scandir(dir, &names, scripts_is_lua_file, alphasort);
  if (n < 0) {
    snprintf(err, errlen, "%s: cannot read the scripts directory", dir);
    return CHOREO_ENOENT;
  }
  if (n == 0) /* a mistyped directory would otherwise run, silently handling nothing */
    choreo_log(CHOREO_LOG_WARN, choreo_engine_name(s->engine),
               "%s holds no *.lua script: no Lua handler will run", dir);
  int rc = 0;
  for (int i = 0; i < n; i++) {
    if (!rc) {
      char path[PATH_MAX];
      snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
      if (luaL_loadfile(s->L, path) != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(s->L, -1));
        lua_pop(s->L, 1);
        rc = CHOREO_ESCRIPT;
      } else {
        rc = scripts_pcall(s, 0, err, errlen, NULL);
      }
    }
    free(names[i]);
  }
  free(names);
  return rc;
}

static void scripts_free(void *scripts) {
  choreo_scripts *s = scripts;
  if (!s) return;
  choreo_watch_close(s->watch);
  lua_close(s->L);
  choreo_lua_blocks_release(&s->blocks);
  free(s);
}

static int scripts_run_handlers(lua_State *L);

static int scripts_new_runner(lua_State *L) {
  choreo_lua_push_msg_meta(L);
  lua_getfield(L, LUA_REGISTRYINDEX, CHOREO_REG_CTX);
  lua_pushcclosure(L, scripts_run_handlers, 2);
  scripts_of(L)->runner = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static int scripts_make_runner(choreo_scripts *s, char *err, size_t errlen) {
  lua_pushcfunction(s->L, scripts_new_runner);
  return scripts_pcall(s, 0, err, errlen, NULL);
}

static int scripts_load(void **out, choreo_engine *e, const char *dir, uint64_t instruction_limit,
                        size_t memory_limit, char *err, size_t errlen) {
  choreo_scripts *s = calloc(1, sizeof *s);
  if (!s) return CHOREO_ENOMEM;
  s->engine = e;
  s->mem_limit = memory_limit;
  s->instruction_limit = instruction_limit;
  s->L = choreo_lua_state_new(scripts_alloc, s, dir, scripts_os_exit);
  if (!s->L || choreo_watch_open(&s->watch, scripts_arm, s) != 0) {
    if (s->L) lua_close(s->L);
    choreo_lua_blocks_release(&s->blocks);
    free(s);
    snprintf(err, errlen, "cannot create a Lua state and its watchdog");
    return CHOREO_ENOMEM;
  }
  *(choreo_scripts **)lua_getextraspace(s->L) = s;
  scripts_resume_through_choreo(s->L);
  s->handlers = choreo_lua_handlers_init(s->L);
  int rc = scripts_load_dir(s, dir, err, errlen);
  if (!rc) rc = scripts_make_runner(s, err, errlen);
  if (rc) {
    scripts_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

static bool scripts_last_is(const choreo_scripts *s, choreo_str type) {
  return s->last.len && s->last.version == s->handlers->version && s->last.len == type.n &&
         choreo_bytes_eq(s->last.type, type.p, type.n);
}

/* Pushes the handlers of type into s->last (see there) and onto the stack; returns how many. */
static lua_Integer scripts_push_handlers(lua_State *L, choreo_scripts *s, choreo_str type) {
  if (scripts_last_is(s, type)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->last.ref);
    return s->last.count;
  }
  choreo_lua_handlers_push(L, type);
  s->last.count = (lua_Integer)lua_rawlen(L, -1);
  lua_getfield(L, -1, "where");
  size_t len = 0;
  const char *where = lua_tolstring(L, -1, &len);
  if (len >= sizeof s->last.where) len = sizeof s->last.where - 1;
  if (len) memcpy(s->last.where, where, len);
  s->last.where[len] = '\0';
  s->last.where_len = len;
  lua_pop(L, 1);
  if (s->last.len) luaL_unref(L, LUA_REGISTRYINDEX, s->last.ref);
  s->last.len = 0;
  if (type.n > 0 && type.n <= KNOWN_TYPE_MAX) {
    lua_pushvalue(L, -1);
    s->last.ref = luaL_ref(L, LUA_REGISTRYINDEX);
    memcpy(s->last.type, type.p, type.n);
    s->last.len = type.n;
    s->last.version = s->handlers->version;
  }
  return s->last.count;
}

static int scripts_find_handlers(lua_State *L) {
  scripts_push_handlers(L, scripts_of(L), *(const choreo_str *)lua_touserdata(L, 1));
  return 0;
}

static bool scripts_handles(void *scripts, choreo_str type) {
  choreo_scripts *s = scripts;
  if (scripts_last_is(s, type)) return s->last.count > 0;
  lua_pushcfunction(s->L, scripts_find_handlers);
  lua_pushlightuserdata(s->L, &type);
  if (lua_pcall(s->L, 1, 0, 0) != LUA_OK) {
    lua_pop(s->L, 1);
    return true; /* cannot tell (out of memory): let delivery try and fail visibly */
  }
  return s->last.count > 0;
}

/* How a msg table is built: whole, or filled as it is read with the fields in prefill put in
 * from the start (choreo_lua_push_msg_counted). */
typedef struct scripts_build {
  bool whole;
  uint32_t prefill;
} scripts_build;

/* Pushes the msg table of m, and when counted its copy of the fields after it
 * (choreo_lua_push_msg_counted); an event of a stream comes in the current shape of its data,
 * all handlers only ever see. */
static void scripts_push_msg(lua_State *L, const choreo_msg *m, scripts_build build,
                             bool counted, int meta) {
  int msg = lua_gettop(L) + 1;
  if (counted)
    choreo_lua_push_msg_counted(L, m, build.whole, build.prefill, meta, &scripts_of(L)->kept);
  else
    choreo_lua_push_msg_lazy(L, m, build.whole);
  if (m->dataschema.p && lua_getfield(L, LUA_REGISTRYINDEX, CHOREO_REG_UPCAST) == LUA_TFUNCTION) {
    lua_pushvalue(L, msg);
    lua_call(L, 1, 0);
  } else if (m->dataschema.p) {
    lua_pop(L, 1);
  }
}

/* A reply or event of a workflow's conversation (its correlation id), or a workflow's timer
 * (its subject): see scripts/choreo/workflow.lua. */
#define WORKFLOW_PREFIX "workflow:"

static bool scripts_workflow_key(const choreo_msg *m, choreo_str *out) {
  const size_t n = sizeof WORKFLOW_PREFIX - 1;
  choreo_str key = choreo_str_eq(m->kind, "timeout") ? m->subject
                   : choreo_str_eq(m->kind, "event") || choreo_str_eq(m->kind, "reply")
                       ? m->correlationid
                       : (choreo_str){0};
  if (out) *out = key;
  return key.n > n && memcmp(key.p, WORKFLOW_PREFIX, n) == 0;
}

/* The NAME of a workflow key "workflow:HOST:NAME:ID" (empty if it has none). */
static choreo_str scripts_workflow_name(choreo_str key) {
  const char *end = key.p + key.n;
  const char *host = key.p + sizeof WORKFLOW_PREFIX - 1;
  const char *name = memchr(host, ':', (size_t)(end - host));
  const char *stop = name ? memchr(name + 1, ':', (size_t)(end - name - 1)) : NULL;
  return stop ? (choreo_str){name + 1, (size_t)(stop - name - 1)} : (choreo_str){0};
}

/* Pushes the function `hook` of the workflow module when the generation declares workflows;
 * false (nothing pushed) otherwise. */
static bool scripts_push_workflow_hook(lua_State *L, const char *hook) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, CHOREO_REG_WORKFLOWS) != LUA_TTABLE) {
    lua_pop(L, 1);
    return false;
  }
  lua_getfield(L, -1, "any");
  bool any = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (any) lua_getfield(L, -1, hook);
  lua_remove(L, any ? -2 : -1);
  return any;
}

typedef struct scripts_check_call {
  lua_Integer i, n;
  char *why;
  size_t whylen;
} scripts_check_call;

static int scripts_run_check(lua_State *L) {
  scripts_check_call *call = lua_touserdata(L, 1);
  if (!scripts_push_workflow_hook(L, "check")) return 0; /* no workflows declared */
  lua_pushinteger(L, call->i);
  lua_call(L, 1, 1);
  if (call->i == 0) call->n = lua_tointeger(L, -1);
  else if (lua_type(L, -1) == LUA_TSTRING) snprintf(call->why, call->whylen, "%s", lua_tostring(L, -1));
  return 0;
}

/* Replays every running instance of the workflows this generation declares against its
 * history, each under a budget of its own, without acting; the first that the new code would
 * leave stuck (or whose replay fails) is the reason in err. */
static int scripts_check_workflows(void *scripts, char *err, size_t errlen) {
  choreo_scripts *s = scripts;
  scripts_check_call call = {.why = err, .whylen = errlen};
  err[0] = '\0';
  for (call.i = 0; call.i <= call.n && !err[0]; call.i++) {
    char failed[512];
    lua_pushcfunction(s->L, scripts_run_check);
    lua_pushlightuserdata(s->L, &call);
    if (scripts_pcall(s, 1, failed, sizeof failed, NULL))
      snprintf(err, errlen, "replaying the running workflows: %s", failed);
  }
  return err[0] ? CHOREO_ESCRIPT : 0;
}

static bool scripts_for_workflow(void *scripts, const choreo_msg *m) {
  choreo_scripts *s = scripts;
  if (!scripts_workflow_key(m, NULL)) return false;
  bool any = scripts_push_workflow_hook(s->L, "dispatch");
  if (any) lua_pop(s->L, 1);
  return any;
}

/* Build whole from this many fields read (besides data); below, the fields read are put in
 * the table from the start. Callgrind, the pipeline_fields consumer (five fields and data read),
 * instructions per event: built whole 18,182, filled as read 20,596, the five put in from the
 * start 17,390. */
#define READS_FOR_WHOLE 7
/* One message in this many of a type is filled only as it is read, to see what its handlers
 * read now (fields put in from the start, or a table built whole, show no reads). Each such
 * message pays a metamethod call per field read (about 1,100 instructions): at 64, a twentieth
 * of the pipeline_fields consumer's msg building. A field read anew is put in from the next
 * message on; one no longer read is put in for at most this many. */
#define READS_RECHECK 256

/* Whether the reads kept are those of type (an empty record is no type's). */
static bool scripts_reads_are(const choreo_scripts *s, choreo_str type) {
  return s->reads.len && s->reads.len == type.n && choreo_bytes_eq(s->reads.type, type.p, type.n);
}

static scripts_build scripts_plan_build(choreo_scripts *s, choreo_str type) {
  scripts_build b = {false, 0};
  if (!scripts_reads_are(s, type) || ++s->reads.builds % READS_RECHECK == 0) return b;
  if (__builtin_popcount(s->reads.fields) >= READS_FOR_WHOLE)
    b.whole = true;
  else
    b.prefill = s->reads.fields;
  return b;
}

static void scripts_note_reads(choreo_scripts *s, choreo_str type, uint32_t fields) {
  if (scripts_reads_are(s, type)) {
    s->reads.fields = fields;
    return;
  }
  s->reads.len = 0;
  s->reads.fields = 0;
  if (type.n == 0 || type.n > KNOWN_TYPE_MAX) return;
  memcpy(s->reads.type, type.p, type.n);
  s->reads.len = type.n;
  s->reads.fields = fields;
  s->reads.builds = 0;
}

/* The runner's upvalues (scripts_make_runner). */
#define RUNNER_META lua_upvalueindex(1)
#define RUNNER_CTX lua_upvalueindex(2)

/* Runs the handlers one after another in one protected call, so the budget covers them all, the
 * first error stops the rest (their effects roll back together), and building the msg table
 * cannot fail outside protection. */
static int scripts_run_handlers(lua_State *L) {
  const choreo_msg *m = lua_touserdata(L, 1);
  choreo_scripts *s = scripts_of(L);
  lua_Integer n = scripts_push_handlers(L, s, m->type);
  memcpy(s->handled_by, s->last.where, s->last.where_len + 1);
  scripts_build build = scripts_plan_build(s, m->type);
  scripts_push_msg(L, m, build, true, RUNNER_META);
  /* what the handlers read counts, not what an upcast read (but what was put in for them) */
  int32_t before = m->dataschema.p ? choreo_lua_msg_fields_read(L, 4) : (int32_t)build.prefill;
  /* ctx is made as the scripts first require choreo, which they may do later than loading */
  if (lua_isnil(L, RUNNER_CTX) && lua_getfield(L, LUA_REGISTRYINDEX, CHOREO_REG_CTX) != LUA_TNIL)
    lua_replace(L, RUNNER_CTX);
  lua_settop(L, 4);
  lua_pushvalue(L, RUNNER_CTX);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 5);
    lua_call(L, 2, 0);
  }
  int32_t read = choreo_lua_msg_fields_read(L, 4);
  if (read >= 0) /* else built whole: nothing seen */
    scripts_note_reads(s, m->type, ((uint32_t)read & ~(uint32_t)before) | build.prefill);
  choreo_str key;
  if (scripts_workflow_key(m, &key) && scripts_push_workflow_hook(L, "dispatch")) {
    size_t used = strlen(s->handled_by);
    choreo_str name = scripts_workflow_name(key);
    snprintf(s->handled_by + used, sizeof s->handled_by - used, "%sworkflow %.*s",
             used ? ", " : "", (int)name.n, name.p);
    lua_pushvalue(L, 3);
    lua_call(L, 1, 0);
  }
  return 0;
}

static const char *scripts_handled_by(void *scripts) {
  choreo_scripts *s = scripts;
  return s->handled_by;
}

static size_t scripts_memory(void *scripts) {
  choreo_scripts *s = scripts;
  return s->mem_used;
}

static int scripts_deliver(void *scripts, const choreo_msg *m, char *err, size_t errlen,
                           char **traceback) {
  choreo_scripts *s = scripts;
  lua_State *L = s->L;
  *traceback = NULL;
  s->handled_by[0] = '\0';
  lua_pushcfunction(L, scripts_traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->runner);
  lua_pushlightuserdata(L, (void *)m);
  return scripts_pcall_traced(s, 1, err, errlen, traceback);
}

typedef struct scripts_policy_call {
  choreo_str type;
  choreo_retry_policy *out;
  bool found;
} scripts_policy_call;

static int scripts_find_policy(lua_State *L) {
  scripts_policy_call *call = lua_touserdata(L, 1);
  call->found = choreo_lua_handlers_policy(L, call->type, call->out);
  return 0;
}

static bool scripts_policy(void *scripts, choreo_str type, choreo_retry_policy *out) {
  choreo_scripts *s = scripts;
  scripts_policy_call call = {type, out, false};
  lua_pushcfunction(s->L, scripts_find_policy);
  lua_pushlightuserdata(s->L, &call);
  if (lua_pcall(s->L, 1, 0, 0) != LUA_OK) {
    lua_pop(s->L, 1);
    return false; /* out of memory: the default policy will do */
  }
  return call.found;
}

static int scripts_query(void *scripts, const char *name, const char *args, size_t len,
                         msgpack_sbuffer *out, char *err, size_t errlen) {
  choreo_scripts *s = scripts;
  choreo_lua_query_call call = {.name = name, .args = args, .len = len, .out = out};
  size_t mark = out->size;
  lua_pushcfunction(s->L, choreo_lua_query_run);
  lua_pushlightuserdata(s->L, &call);
  int rc = scripts_pcall(s, 1, err, errlen, NULL);
  if (rc) out->size = mark; /* nothing half-packed */
  if (!rc && !call.found) {
    snprintf(err, errlen, "no query named '%s'", name);
    return CHOREO_ENOENT;
  }
  return rc;
}

typedef struct scripts_projections_call {
  void (*fn)(void *ud, const choreo_projection_decl *d);
  void *ud;
} scripts_projections_call;

/* Pushes the function `hook` of scripts/choreo/projection.lua's module; false (nothing pushed
 * that matters) in a state that never required "choreo". */
static bool scripts_projection_hook(lua_State *L, const char *hook) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, CHOREO_REG_PROJECTIONS) != LUA_TTABLE) return false;
  lua_getfield(L, -1, hook);
  return true;
}

/* The list's strings belong to the module's tables, which the state keeps. */
static int scripts_list_projections(lua_State *L) {
  scripts_projections_call *call = lua_touserdata(L, 1);
  if (!scripts_projection_hook(L, "list")) return 0;
  lua_call(L, 0, 1);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "name");
    lua_getfield(L, -2, "version");
    lua_getfield(L, -3, "tables");
    lua_getfield(L, -4, "types");
    choreo_projection_decl d = {.name = lua_tostring(L, -4),
                                .version = (int64_t)lua_tointeger(L, -3),
                                .tables = lua_tostring(L, -2),
                                .types = lua_tostring(L, -1)};
    call->fn(call->ud, &d);
    lua_pop(L, 5);
  }
  return 0;
}

static int scripts_projections(void *scripts, void (*fn)(void *ud, const choreo_projection_decl *d),
                               void *ud) {
  choreo_scripts *s = scripts;
  scripts_projections_call call = {fn, ud};
  lua_pushcfunction(s->L, scripts_list_projections);
  lua_pushlightuserdata(s->L, &call);
  if (lua_pcall(s->L, 1, 0, 0) != LUA_OK) {
    lua_pop(s->L, 1);
    return CHOREO_ENOMEM;
  }
  return 0;
}

#define REG_BUILD_DB "choreo.build_db" /* { conn = lightuserdata, db = db object } */

typedef struct scripts_project_call {
  const char *name;
  const choreo_msg *m;
  sqlite3 *build;
} scripts_project_call;

/* The db object over the build's connection, made once per connection. */
static void scripts_push_build_db(lua_State *L, sqlite3 *build) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, REG_BUILD_DB) == LUA_TTABLE) {
    lua_getfield(L, -1, "conn");
    bool same = lua_touserdata(L, -1) == (void *)build;
    lua_pop(L, 1);
    if (same) {
      lua_getfield(L, -1, "db");
      lua_remove(L, -2);
      return;
    }
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);
  lua_pushlightuserdata(L, build);
  lua_setfield(L, -2, "conn");
  choreo_lua_push_db_on(L, choreo_lua_engine(L), build, 0, false);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "db");
  lua_insert(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, REG_BUILD_DB);
}

/* Finalizes the cached db object's statements if it is over build, and forgets it. */
static int scripts_forget_build_db(lua_State *L) {
  sqlite3 *build = lua_touserdata(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, REG_BUILD_DB) != LUA_TTABLE) return 0;
  lua_getfield(L, -1, "conn");
  if (lua_touserdata(L, -1) != (void *)build) return 0;
  lua_getfield(L, -2, "db");
  choreo_lua_db_close(L, -1);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, REG_BUILD_DB);
  return 0;
}

static void scripts_release_build(void *scripts, sqlite3 *build) {
  choreo_scripts *s = scripts;
  lua_pushcfunction(s->L, scripts_forget_build_db);
  lua_pushlightuserdata(s->L, build);
  if (lua_pcall(s->L, 1, 0, 0) != LUA_OK) lua_pop(s->L, 1); /* close_v2 still waits for them */
}

static int scripts_run_projection(lua_State *L) {
  scripts_project_call *call = lua_touserdata(L, 1);
  if (!scripts_projection_hook(L, "project")) return 0;
  lua_pushstring(L, call->name);
  scripts_push_msg(L, call->m, (scripts_build){false, 0}, false, 0);
  scripts_push_build_db(L, call->build);
  lua_call(L, 3, 0);
  return 0;
}

static int scripts_project(void *scripts, const char *name, const choreo_msg *m, sqlite3 *build,
                           char *err, size_t errlen) {
  choreo_scripts *s = scripts;
  scripts_project_call call = {name, m, build};
  lua_pushcfunction(s->L, scripts_run_projection);
  lua_pushlightuserdata(s->L, &call);
  return scripts_pcall(s, 1, err, errlen, NULL);
}

static int scripts_run_stale(lua_State *L) {
  const choreo_msg *m = lua_touserdata(L, 1);
  if (!scripts_projection_hook(L, "deliver_stale")) return 0;
  scripts_push_msg(L, m, (scripts_build){false, 0}, false, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, CHOREO_REG_CTX);
  lua_call(L, 2, 0);
  return 0;
}

static int scripts_deliver_stale(void *scripts, const choreo_msg *m, char *err, size_t errlen,
                                 char **traceback) {
  choreo_scripts *s = scripts;
  *traceback = NULL;
  lua_pushcfunction(s->L, scripts_run_stale);
  lua_pushlightuserdata(s->L, (void *)m);
  return scripts_pcall(s, 1, err, errlen, traceback);
}

const choreo_scripts_ops choreo_lua_scripts = {
    .load = scripts_load,
    .free = scripts_free,
    .handles = scripts_handles,
    .deliver = scripts_deliver,
    .handled_by = scripts_handled_by,
    .memory = scripts_memory,
    .policy = scripts_policy,
    .query = scripts_query,
    .projections = scripts_projections,
    .project = scripts_project,
    .deliver_stale = scripts_deliver_stale,
    .release_build = scripts_release_build,
    .for_workflow = scripts_for_workflow,
    .check_workflows = scripts_check_workflows,
};
