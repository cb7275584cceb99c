/* The Lua-visible areas of choreo, one file each (DESIGN.md §1), and the helpers they share.
 * init.c preloads them all into a state, as linit.c does for Lua's own libraries. */
#ifndef CHOREO_BINDINGS_H
#define CHOREO_BINDINGS_H

#include <lua.h>
#include <msgpack.h>
#include <sqlite3.h>
#include <stddef.h>

#include "codec.h"

/* Registry keys shared between the bindings and the scripts state (runtime/scripts.c). */
/* { exact = {type = {fn...}}, prefixes = {{p, fn}...}, resolved = {type = {fn...}} }: choreo.on
 * adds to exact or prefixes, empties resolved (the lists built per type on first use) and tells
 * the scripts state (choreo_scripts_handlers_changed). */
#define CHOREO_REG_HANDLERS "choreo.handlers"
#define CHOREO_REG_CTX "choreo.ctx"           /* the one ctx object handlers receive */
#define CHOREO_REG_SCRIPTS_DIR "choreo.scripts_dir" /* where choreo/NAME.lua live */

/* Makes require "choreo", "choreo.engine" (used by choreo.testing) available in L. */
void choreo_bindings_preload(lua_State *L);

/* lmsg.c: values crossing the wire. Packs the value at idx; on failure returns CHOREO_EINVAL
 * with a reason in err ("cannot send a function", "table nested deeper than ..."). */
int choreo_lua_pack(lua_State *L, int idx, msgpack_packer *pk, char *err, size_t errlen);
/* Pushes a msgpack value as a plain Lua value. */
void choreo_lua_push_object(lua_State *L, const msgpack_object *o);
/* Pushes the msg table handed to handlers (README: msg fields). */
void choreo_lua_push_msg(lua_State *L, const choreo_msg *m);

/* choreo.pack(value) -> string and choreo.unpack(string) -> value: the wire encoding, for
 * state kept in the database (sagas). unpack raises on bytes that are not one valid value. */
int choreo_lua_msgpack_encode(lua_State *L);
int choreo_lua_msgpack_decode(lua_State *L);

/* lstore.c: pushes a db object (exec/rows/one) over a connection owned by someone else. The
 * object holds a reference to the value at owner_idx so the owner outlives it (0 for none). */
void choreo_lua_push_db(lua_State *L, sqlite3 *db, int owner_idx);

/* llog.c: pushes the log table (debug/info/warn/error) writing lines tagged with `who`. */
void choreo_lua_push_log(lua_State *L, const char *who);

int luaopen_choreo(lua_State *L);
int luaopen_choreo_engine(lua_State *L);

#endif
