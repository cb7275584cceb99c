/* require "choreo.workflowstore": the stored side of choreo.workflow
 * (scripts/choreo/workflow.lua), whose instances, histories and inboxes live in tables the
 * engine owns (runtime/core/workflows.c). Values cross as the wire encoding in Lua strings
 * (choreo.pack), which the module encodes and decodes itself. Writes work only while a handler
 * runs, inside the message's transaction; each function raises on failure. Also resume(), which
 * runs a workflow's coroutine under the budget of the handler call that resumes it. */
#include <lauxlib.h>
#include <limits.h>
#include <string.h>

#include "bindings.h"
#include "choreo.h"

/* Writes need the transaction of a message being handled; reads (a reload's check of the
 * running instances) work between batches too. */
static choreo_workflows *workflow_store(lua_State *L) {
  choreo_engine *e = choreo_lua_engine(L);
  if (!choreo_engine_current(e)) luaL_error(L, "workflows are only reachable inside a handler");
  return choreo_engine_workflows(e);
}

static choreo_workflows *workflow_reader(lua_State *L) {
  choreo_engine *e = choreo_lua_engine(L);
  if (!e) luaL_error(L, "workflows are only reachable in a service's scripts");
  return choreo_engine_workflows(e);
}

static int workflow_check(lua_State *L, int rc, const char *what) {
  if (rc) return luaL_error(L, "workflow %s failed: %s", what, choreo_strerror(rc));
  return 0;
}

static void workflow_set_string(lua_State *L, const char *field, const char *value) {
  if (!value) return;
  lua_pushstring(L, value);
  lua_setfield(L, -2, field);
}

static void workflow_set_blob(lua_State *L, const char *field, const char *blob, size_t len) {
  if (!blob) return;
  lua_pushlstring(L, blob, len);
  lua_setfield(L, -2, field);
}

static void workflow_set_int(lua_State *L, const char *field, int64_t value) {
  lua_pushinteger(L, (lua_Integer)value);
  lua_setfield(L, -2, field);
}

void choreo_lua_push_workflow_row(lua_State *L, const choreo_workflow_row *row) {
  lua_createtable(L, 0, 14);
  workflow_set_string(L, "name", row->name);
  workflow_set_string(L, "id", row->id);
  workflow_set_string(L, "status", row->status);
  workflow_set_string(L, "error", row->error);
  workflow_set_string(L, "waiting", row->waiting);
  workflow_set_string(L, "wait_op", row->wait_op);
  workflow_set_string(L, "wait_ref", row->wait_ref);
  workflow_set_int(L, "wait_step", row->wait_step);
  lua_pushboolean(L, row->wait_timer);
  lua_setfield(L, -2, "wait_timer");
  workflow_set_int(L, "steps", row->steps);
  workflow_set_int(L, "rev", row->rev);
  workflow_set_int(L, "started_ms", row->started_ms);
  workflow_set_int(L, "updated_ms", row->updated_ms);
  workflow_set_blob(L, "input", row->input, row->input_len);
  workflow_set_blob(L, "result", row->result, row->result_len);
}

static int workflow_push_row(void *ud, const choreo_workflow_row *row) {
  choreo_lua_push_workflow_row(ud, row);
  return 0;
}

/* get(name, id) -> the instance's row | nil */
static int workflow_get(lua_State *L) {
  choreo_workflows *w = workflow_reader(L);
  const char *name = luaL_checkstring(L, 1), *id = luaL_checkstring(L, 2);
  bool found;
  workflow_check(L, choreo_workflows_get(w, name, id, workflow_push_row, L, &found), "load");
  if (!found) lua_pushnil(L);
  return 1;
}

static const char *workflow_field(lua_State *L, int idx, const char *field, size_t *len) {
  lua_getfield(L, idx, field);
  const char *s = lua_isnil(L, -1) ? NULL : lua_tolstring(L, -1, len);
  lua_pop(L, 1); /* a string field stays referenced by the table */
  return s;
}

static int64_t workflow_int_field(lua_State *L, int idx, const char *field) {
  lua_getfield(L, idx, field);
  int64_t v = (int64_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static bool workflow_bool_field(lua_State *L, int idx, const char *field) {
  lua_getfield(L, idx, field);
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* put(row): writes the instance (input only when row.input is set) */
static int workflow_put(lua_State *L) {
  choreo_workflows *w = workflow_store(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t len;
  choreo_workflow_row row = {
      .name = workflow_field(L, 1, "name", &len), .id = workflow_field(L, 1, "id", &len),
      .status = workflow_field(L, 1, "status", &len), .error = workflow_field(L, 1, "error", &len),
      .waiting = workflow_field(L, 1, "waiting", &len),
      .wait_op = workflow_field(L, 1, "wait_op", &len),
      .wait_ref = workflow_field(L, 1, "wait_ref", &len),
      .wait_step = workflow_int_field(L, 1, "wait_step"),
      .wait_timer = workflow_bool_field(L, 1, "wait_timer"),
      .steps = workflow_int_field(L, 1, "steps"), .rev = workflow_int_field(L, 1, "rev"),
      .started_ms = workflow_int_field(L, 1, "started_ms"),
      .updated_ms = choreo_engine_now_ms(choreo_lua_engine(L))};
  row.input = workflow_field(L, 1, "input", &row.input_len);
  row.result = workflow_field(L, 1, "result", &row.result_len);
  if (!row.name || !row.id || !row.status) return luaL_error(L, "workflow save: incomplete row");
  return workflow_check(L, choreo_workflows_put(w, &row), "save");
}

/* record(name, id, step, op, what, ref|nil, result|nil): a step of its history */
static int workflow_record(lua_State *L) {
  choreo_workflows *w = workflow_store(L);
  const char *name = luaL_checkstring(L, 1), *id = luaL_checkstring(L, 2);
  size_t len = 0; /* read first: an initializer's zeroing may come after a call that sets it */
  const char *result = luaL_optlstring(L, 7, NULL, &len);
  choreo_workflow_step s = {.step = luaL_checkinteger(L, 3), .op = luaL_checkstring(L, 4),
                            .what = luaL_checkstring(L, 5), .ref = luaL_optstring(L, 6, NULL),
                            .result = result, .result_len = len,
                            .at_ms = choreo_engine_now_ms(choreo_lua_engine(L))};
  return workflow_check(L, choreo_workflows_record(w, name, id, &s), "record");
}

/* complete(name, id, step, result): the outcome of the step it waits in */
static int workflow_complete(lua_State *L) {
  choreo_workflows *w = workflow_store(L);
  const char *name = luaL_checkstring(L, 1), *id = luaL_checkstring(L, 2);
  lua_Integer step = luaL_checkinteger(L, 3);
  size_t len;
  const char *result = luaL_checklstring(L, 4, &len);
  return workflow_check(L, choreo_workflows_complete(w, name, id, step, result, len,
                                                     choreo_engine_now_ms(choreo_lua_engine(L))),
                        "step");
}

void choreo_lua_push_workflow_step(lua_State *L, const choreo_workflow_step *s) {
  lua_createtable(L, 0, 7);
  workflow_set_int(L, "step", s->step);
  workflow_set_string(L, "op", s->op);
  workflow_set_string(L, "what", s->what);
  workflow_set_string(L, "ref", s->ref);
  workflow_set_blob(L, "result", s->result, s->result_len);
  workflow_set_int(L, "at_ms", s->at_ms);
  if (s->done_ms) workflow_set_int(L, "done_ms", s->done_ms);
}

static int workflow_push_step(void *ud, const choreo_workflow_step *s) {
  lua_State *L = ud;
  choreo_lua_push_workflow_step(L, s);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* history(name, id) -> { step rows, in order } */
static int workflow_history(lua_State *L) {
  choreo_workflows *w = workflow_reader(L);
  const char *name = luaL_checkstring(L, 1), *id = luaL_checkstring(L, 2);
  lua_newtable(L);
  return workflow_check(L, choreo_workflows_history(w, name, id, workflow_push_step, L), "history")
             ? 0 : 1;
}

static int workflow_push_listed(void *ud, const choreo_workflow_row *row) {
  lua_State *L = ud;
  choreo_lua_push_workflow_row(L, row);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* listed(status) -> { rows of the instances with that status (without input and result) } */
static int workflow_listed(lua_State *L) {
  choreo_workflows *w = workflow_reader(L);
  const char *status = luaL_checkstring(L, 1);
  lua_newtable(L);
  workflow_check(L, choreo_workflows_each(w, NULL, status, INT_MAX, workflow_push_listed, L),
                 "list");
  return 1;
}

/* signal(name, id, during, signal, encoded data): a signal taken while waiting in step `during` */
static int workflow_signal(lua_State *L) {
  choreo_workflows *w = workflow_store(L);
  const char *name = luaL_checkstring(L, 1), *id = luaL_checkstring(L, 2);
  lua_Integer during = luaL_checkinteger(L, 3);
  const char *signal = luaL_checkstring(L, 4);
  size_t len;
  const char *data = luaL_checklstring(L, 5, &len);
  return workflow_check(L, choreo_workflows_signal(w, name, id, during, signal, data, len), "signal");
}

static int workflow_push_signal(void *ud, int64_t during, const char *signal, const char *data,
                                size_t len) {
  lua_State *L = ud;
  lua_createtable(L, 0, 3);
  workflow_set_int(L, "during", during);
  workflow_set_string(L, "signal", signal);
  workflow_set_blob(L, "data", data, len);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* signals(name, id) -> { { during =, signal =, data = (encoded) }, ... } in the order they came */
static int workflow_signals(lua_State *L) {
  choreo_workflows *w = workflow_reader(L);
  const char *name = luaL_checkstring(L, 1), *id = luaL_checkstring(L, 2);
  lua_newtable(L);
  workflow_check(L, choreo_workflows_signals(w, name, id, workflow_push_signal, L), "signals");
  return 1;
}

/* emitted(ref) -> whether some step of some instance emitted the message with that id */
static int workflow_emitted(lua_State *L) {
  bool found;
  workflow_check(L, choreo_workflows_emitted(workflow_store(L), luaL_checkstring(L, 1), &found),
                 "lookup");
  lua_pushboolean(L, found);
  return 1;
}

/* forget(name, id, inbox, history): drops its kept events and/or its history */
static int workflow_forget(lua_State *L) {
  choreo_workflows *w = workflow_store(L);
  const char *name = luaL_checkstring(L, 1), *id = luaL_checkstring(L, 2);
  return workflow_check(
      L, choreo_workflows_forget(w, name, id, lua_toboolean(L, 3), lua_toboolean(L, 4)), "forget");
}

/* inbox_put(name, id, type, encoded message) */
static int workflow_inbox_put(lua_State *L) {
  choreo_workflows *w = workflow_store(L);
  const char *name = luaL_checkstring(L, 1), *id = luaL_checkstring(L, 2);
  const char *type = luaL_checkstring(L, 3);
  size_t len;
  const char *msg = luaL_checklstring(L, 4, &len);
  return workflow_check(L, choreo_workflows_inbox_put(w, name, id, type, msg, len), "inbox");
}

static int workflow_push_bytes(void *ud, int64_t key, const char *bytes, size_t len) {
  (void)key;
  lua_pushlstring(ud, bytes, len);
  return 0;
}

/* inbox_take(name, id, type) -> the oldest kept message of that type (encoded) | nil */
static int workflow_inbox_take(lua_State *L) {
  choreo_workflows *w = workflow_store(L);
  const char *name = luaL_checkstring(L, 1), *id = luaL_checkstring(L, 2);
  const char *type = luaL_checkstring(L, 3);
  bool found;
  workflow_check(L, choreo_workflows_inbox_take(w, name, id, type, workflow_push_bytes, L, &found),
                 "inbox");
  if (!found) lua_pushnil(L);
  return 1;
}

/* now() -> the engine's clock in seconds (a spec's moves with host:advance) */
static int workflow_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)choreo_engine_now_ms(choreo_lua_engine(L)) / 1000.0);
  return 1;
}

/* limits() -> instances kept in memory, steps a history may take (--workflow-cache,
 * --workflow-history-max) */
static int workflow_limits(lua_State *L) {
  choreo_engine *e = choreo_lua_engine(L);
  lua_pushinteger(L, e ? choreo_engine_workflow_cache(e) : 10000);
  lua_pushinteger(L, e ? choreo_engine_workflow_history_max(e) : 10000);
  return 2;
}

/* limited() -> whether the handler call has run out of its budget (or was interrupted): an
 * error then is the call's, not the workflow's. */
static int workflow_limited(lua_State *L) {
  lua_pushboolean(L, !choreo_engine_spend(choreo_lua_engine(L), 0));
  return 1;
}

/* resume(co, ...) -> as coroutine.resume, which it is (metered as the call that resumes it is),
 * under a function of its own so that its errors name it. */
static int workflow_resume(lua_State *L) { return choreo_lua_coresume(L); }

static const luaL_Reg workflow_funcs[] = {
    {"complete", workflow_complete}, {"emitted", workflow_emitted}, {"forget", workflow_forget},
    {"get", workflow_get}, {"history", workflow_history}, {"inbox_put", workflow_inbox_put},
    {"inbox_take", workflow_inbox_take}, {"limited", workflow_limited},
    {"limits", workflow_limits}, {"now", workflow_now},
    {"put", workflow_put}, {"record", workflow_record}, {"resume", workflow_resume},
    {"listed", workflow_listed}, {"signal", workflow_signal}, {"signals", workflow_signals},
    {NULL, NULL}};

int luaopen_choreo_workflowstore(lua_State *L) {
  luaL_newlib(L, workflow_funcs);
  return 1;
}
