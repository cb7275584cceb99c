/* The Lua-visible areas of choreo, one file each, and the helpers they share. init.c preloads
 * them all into a state, as linit.c does for Lua's own libraries. Everything in the project
 * that includes a Lua header lives in this folder. */
#ifndef CHOREO_BINDINGS_H
#define CHOREO_BINDINGS_H

#include <lua.h>
#include <msgpack.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "engine.h"

#define CHOREO_REG_CTX "choreo.ctx" /* the one ctx object handlers receive */
/* upcast(msg): brings the data of a message that carries a dataschema up to the current shape
 * of its type (choreo.upcast); set when the scripts require "choreo". */
#define CHOREO_REG_UPCAST "choreo.upcast"
/* { list = fn() -> the declared projections ({ name =, version =, tables = } each, kept by the
 * module, so their strings live as long as the state), project = fn(name, msg, db),
 * deliver_stale = fn(msg, ctx) }: what scripts/choreo/projection.lua hands the host; set when
 * the scripts require "choreo". */
#define CHOREO_REG_PROJECTIONS "choreo.projections"
/* { any = whether choreo.workflow was called, dispatch = fn(msg), check = fn(i) }: what
 * scripts/choreo/workflow.lua hands the host; set when the scripts require "choreo". */
#define CHOREO_REG_WORKFLOWS "choreo.workflows"

/* Makes require "choreo", "choreo.engine" (used by choreo.testing), "choreo.sagastore" (used
 * by choreo.saga), "choreo.streamstore" (used by choreo.aggregate),
 * "choreo.projectionstore" (used by choreo.projection) and "choreo.workflowstore" (used by
 * choreo.workflow) available in L. */
void choreo_bindings_preload(lua_State *L);

/* lstate.c: a new state with the standard libraries, os.exit replaced by os_exit, package.path
 * finding choreo's modules and then dir's, and the bindings preloaded; NULL without memory. */
lua_State *choreo_lua_state_new(lua_Alloc alloc, void *ud, const char *dir,
                                lua_CFunction os_exit);

/* scripts.c: the engine whose scripts run in L, or NULL in other states (choreo test). */
choreo_engine *choreo_lua_engine(lua_State *L);
/* lua_resume(co, L, ...) for coroutines in a service's scripts (coroutine.resume and wrap, a
 * workflow's): co without the count hook until the watchdog arms the running call, which then
 * arms co as well while it is the innermost coroutine running. */
int choreo_lua_resume(lua_State *L, lua_State *co, int nargs, int *nres);
/* Moves nargs values from L to co and resumes it: the number of values it yielded or returned,
 * moved to L, or -1 with its error (or why it could not be resumed) on top of L. */
int choreo_lua_resume_values(lua_State *L, lua_State *co, int nargs);
/* coroutine.resume(co, ...) in a service's scripts (and a workflow's resume): Lua's, through
 * choreo_lua_resume. */
int choreo_lua_coresume(lua_State *L);

/* lhandlers.c: the handler registry. init creates it in a scripts state and returns its
 * counters, which live as long as the state. */
typedef struct choreo_lua_handlers {
  uint64_t version; /* counts choreo.on calls */
  int resolved;     /* types in the resolved cache */
} choreo_lua_handlers;
choreo_lua_handlers *choreo_lua_handlers_init(lua_State *L);
/* choreo.on(pattern, fn [, options]) */
int choreo_lua_on(lua_State *L);
/* Pushes the list of handlers for type (exact ones first, then matching prefixes). */
void choreo_lua_handlers_push(lua_State *L, choreo_str type);
/* The retry policy declared for type: the exact type's, else the first matching prefix's that
 * declared one. Pushes strings: call it protected. */
bool choreo_lua_handlers_policy(lua_State *L, choreo_str type, choreo_retry_policy *out);

/* lmsg.c: values crossing the wire. Packs the value at idx at the end of out; on failure
 * returns CHOREO_EINVAL with a reason in err ("cannot send a function", "table nested deeper
 * than ...") and out holds part of it. */
int choreo_lua_pack(lua_State *L, int idx, msgpack_sbuffer *out, char *err, size_t errlen);
/* Pushes the msgpack value at data as a plain Lua value, reading it in place. data must have
 * passed choreo_msgpack_check (as a message's data has): lengths are not checked again. */
void choreo_lua_push_packed(lua_State *L, const char *data);
/* The hash part to make for a table that gets `keys` keys at once: twice as many slots for a
 * few (a dozen or less). Lua sizes to the power of two at or above: 7 keys in 8 slots collide
 * more often than not, and each collision costs a search for a free slot and a second main
 * position. Callgrind, the pipeline_fields consumer: Lua's luaH_newkey and mainpositionTV took
 * 590-718 instructions per event in four runs, against 887-1,060 in two without the room (the
 * spread is Lua's string-hash seed). A large map is sized as is (its memory not doubled). */
#define CHOREO_LUA_HASH_ROOM(keys) ((keys) <= 12 ? 2 * (keys) : (keys))
/* Strings kept from one message to the next by slot: their bytes here, their Lua strings at
 * slots of a table. Made, a short string is hashed and looked up among all of Lua's strings; a
 * string whose bytes are those kept at its slot is the kept one again, found by index. Zeroed,
 * it keeps none. */
#define CHOREO_LUA_KEPT 8
#define CHOREO_LUA_KEPT_MAX 32
typedef struct choreo_lua_kept {
  uint8_t len[CHOREO_LUA_KEPT]; /* the string's length + 1; 0: none kept */
  char bytes[CHOREO_LUA_KEPT][CHOREO_LUA_KEPT_MAX];
} choreo_lua_kept;
/* Pushes the string of the n bytes at p: the one kept at slot i (its string at index `at` of
 * the table at cache) when the bytes are the same, else a new one, kept there for the next. */
void choreo_lua_push_kept(lua_State *L, const char *p, size_t n, choreo_lua_kept *kept, int i,
                          int cache, int at);
/* What msg tables keep from one message to the next (in msg's metatable): the keys of the data
 * map by position, and the values of the fields that mostly repeat (llazymsg.c). */
typedef struct choreo_lua_msg_kept {
  choreo_lua_kept data_keys, repeated;
} choreo_lua_msg_kept;
/* choreo_lua_push_packed for a message's data: the keys of its top map through keys
 * (choreo_lua_push_kept, by position, at first + position of the table at cache). */
void choreo_lua_push_data(lua_State *L, const char *data, choreo_lua_kept *keys, int cache,
                          int first);
/* Pushes the msg table handed to handlers (README: msg fields). */
void choreo_lua_push_msg(lua_State *L, const choreo_msg *m);

/* llazymsg.c: the msg table handlers get, filled as its fields are first read, or built whole
 * (for handlers that read most fields); either way with the same protected metatable.
 * For the packer, which must not allocate (a finalizer run by a GC step could pack too):
 * is_lazy tells a msg table with fields not read yet; field gives the field number of the key
 * at idx (-1 for none); hidden_key tells the key holding the fields not read yet (which only
 * next() sees); pack_unread appends to out the fields not read yet, but for those in `skip`
 * (bits by field number: values the table holds already), as map entries, and returns how
 * many (-1: out of memory).
 * push_msg_counted pushes the table and then its copy of the fields (nil for a table built
 * whole), with the fields in `prefill` (bits by field number) in the table from the start;
 * fields_read, given the copy's index, gives the fields other than data read, assigned or
 * prefilled so far (bits by field number), -1 for nil. Kept on the stack, the copy lives as
 * long as the reads are wanted, whatever a handler does to the table (and telling them makes
 * no look-up in it). push_msg_meta pushes the metatable every msg table gets: a caller that
 * keeps it (an upvalue) passes its index to push_msg_counted as meta, which is 0 to have it
 * looked up, and may pass kept for the data's keys and the names that repeat to be kept from
 * one message to the next (choreo_lua_msg_kept), or NULL. */
void choreo_lua_push_msg_lazy(lua_State *L, const choreo_msg *m, bool whole);
void choreo_lua_push_msg_counted(lua_State *L, const choreo_msg *m, bool whole,
                                 uint32_t prefill, int meta, choreo_lua_msg_kept *kept);
void choreo_lua_push_msg_meta(lua_State *L);
bool choreo_lua_msg_is_lazy(lua_State *L, int idx);
int choreo_lua_msg_field(lua_State *L, int idx);
bool choreo_lua_msg_hidden_key(lua_State *L, int idx);
int choreo_lua_msg_pack_unread(lua_State *L, int idx, msgpack_sbuffer *out, uint32_t skip);
int32_t choreo_lua_msg_fields_read(lua_State *L, int idx);

/* choreo.pack(value) -> string and choreo.unpack(string) -> value: the wire encoding, for
 * state kept in the database (sagas). unpack raises on bytes that are not one valid value. */
int choreo_lua_msgpack_encode(lua_State *L);
int choreo_lua_msgpack_decode(lua_State *L);
/* The state's buffer for packing, emptied: kept between calls, so packing a small value
 * allocates nothing (msgpack-c's first write takes 8 KiB, and giving that back each time made
 * glibc consolidate its free lists, a sixth of an aggregate command's CPU). Valid until the
 * next call; nothing that packs may run meanwhile. */
msgpack_sbuffer *choreo_lua_pack_buffer(lua_State *L);
/* For state kept in the database (sagas, snapshots): pushes the value encoded in `stored` and
 * frees its bytes (left empty); and replaces the value at idx by its encoding, returned. Both
 * raise as choreo.unpack and choreo.pack do. */
void choreo_lua_push_stored(lua_State *L, msgpack_sbuffer *stored);
const char *choreo_lua_encode_in_place(lua_State *L, int idx, size_t *len);

/* lstream.c: the list of events at idx ({ type =, data = [, schema = ] } each) as the engine
 * takes them; *n gets their number. The encodings are pushed on the stack (one slot each) and
 * the array is a userdata below them: all stay valid while they stay there. `what` names the
 * caller in errors. */
choreo_stream_event *choreo_lua_stream_events(lua_State *L, int idx, const char *what, int *n);

/* lstore.c: pushes a db object (exec/rows/one) over the engine's connection; what it prepares
 * may not end choreo's transaction (choreo_engine_guard), and with reads_only may only read
 * (choreo_engine_guard_reads: a query's). The object holds a reference to the value at
 * owner_idx so the owner outlives it (0 for none). */
void choreo_lua_push_db(lua_State *L, choreo_engine *engine, int owner_idx, bool reads_only);
/* The same over another connection of the engine's (a projection build's). */
void choreo_lua_push_db_on(lua_State *L, choreo_engine *engine, sqlite3 *db, int owner_idx,
                           bool reads_only);
/* Finalizes what the db object at idx prepared and makes it raise from then on: its
 * connection is closing. (A rows iterator still open keeps its own statement, which close_v2
 * waits for.) */
void choreo_lua_db_close(lua_State *L, int idx);

/* lquery.c: choreo.query(name, fn), and the protected call that runs one (a
 * choreo_lua_query_call as its light userdata argument). */
typedef struct choreo_lua_query_call {
  const char *name;
  const char *args; /* msgpack, NULL for nil */
  size_t len;
  msgpack_sbuffer *out;
  bool found;
} choreo_lua_query_call;
int choreo_lua_query_define(lua_State *L);
int choreo_lua_query_run(lua_State *L);

/* llog.c: pushes the log table (debug/info/warn/error) writing lines tagged with `who`. */
void choreo_lua_push_log(lua_State *L, const char *who);

int luaopen_choreo(lua_State *L);
int luaopen_choreo_engine(lua_State *L);
int luaopen_choreo_sagastore(lua_State *L);
int luaopen_choreo_streamstore(lua_State *L);
int luaopen_choreo_projectionstore(lua_State *L);
int luaopen_choreo_workflowstore(lua_State *L);

/* lworkflow.c: a workflow instance's row and one step of its history as tables (blobs as
 * encoded strings), for the store and for specs. */
void choreo_lua_push_workflow_row(lua_State *L, const choreo_workflow_row *row);
void choreo_lua_push_workflow_step(lua_State *L, const choreo_workflow_step *s);

#endif
