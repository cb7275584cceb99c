/* Values crossing the wire: Lua values to msgpack and back, and the msg table handed to
 * handlers. Only plain data crosses (README.md, Writing handlers); anything else is refused at the call that
 * tried to send it, with the path of the offending value. */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "bindings.h"
#include "choreo.h"

/* A table is sent as an array when its keys are exactly 1..n; otherwise as a map. */
static int msg_array_length(lua_State *L, int idx, lua_Integer *n) {
  lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
  lua_Integer count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > len) {
      lua_pop(L, 1);
      return 0;
    }
    count++;
  }
  *n = len;
  return count == len && len > 0;
}

static int msg_pack_value(lua_State *L, int idx, msgpack_packer *pk, int depth, char *err,
                          size_t errlen);

static int msg_pack_table(lua_State *L, int idx, msgpack_packer *pk, int depth, char *err,
                          size_t errlen) {
  if (depth >= CHOREO_MAX_DEPTH) {
    snprintf(err, errlen, "cannot send a table nested deeper than %d levels (or a cycle)",
             CHOREO_MAX_DEPTH);
    return CHOREO_EINVAL;
  }
  if (!lua_checkstack(L, 4)) {
    snprintf(err, errlen, "cannot send: Lua stack exhausted");
    return CHOREO_ENOMEM;
  }
  lua_Integer n = 0;
  if (msg_array_length(L, idx, &n)) {
    msgpack_pack_array(pk, (size_t)n);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      int rc = msg_pack_value(L, lua_gettop(L), pk, depth + 1, err, errlen);
      lua_pop(L, 1);
      if (rc) return rc;
    }
    return 0;
  }
  size_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int kt = lua_type(L, -1);
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
      lua_pop(L, 1);
      snprintf(err, errlen, "cannot send a table key of type %s", lua_typename(L, kt));
      return CHOREO_EINVAL;
    }
    count++;
  }
  msgpack_pack_map(pk, count);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int key = lua_gettop(L) - 1;
    int rc = msg_pack_value(L, key, pk, depth + 1, err, errlen);
    if (!rc) rc = msg_pack_value(L, key + 1, pk, depth + 1, err, errlen);
    lua_pop(L, 1);
    if (rc) {
      lua_pop(L, 1);
      return rc;
    }
  }
  return 0;
}

static int msg_pack_value(lua_State *L, int idx, msgpack_packer *pk, int depth, char *err,
                          size_t errlen) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return msgpack_pack_nil(pk), 0;
  case LUA_TBOOLEAN:
    return (lua_toboolean(L, idx) ? msgpack_pack_true(pk) : msgpack_pack_false(pk)), 0;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) return msgpack_pack_int64(pk, lua_tointeger(L, idx)), 0;
    return msgpack_pack_double(pk, lua_tonumber(L, idx)), 0;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    msgpack_pack_str(pk, len);
    return msgpack_pack_str_body(pk, s, len), 0;
  }
  case LUA_TTABLE:
    return msg_pack_table(L, idx, pk, depth, err, errlen);
  default:
    snprintf(err, errlen, "cannot send a value of type %s", luaL_typename(L, idx));
    return CHOREO_EINVAL;
  }
}

int choreo_lua_pack(lua_State *L, int idx, msgpack_packer *pk, char *err, size_t errlen) {
  return msg_pack_value(L, lua_absindex(L, idx), pk, 0, err, errlen);
}

/* Pushing can raise (memory); done under pcall so the decoder's zone is always freed. */
static int lmsg_push_protected(lua_State *L) {
  choreo_lua_push_object(L, lua_touserdata(L, 1));
  return 1;
}

void choreo_lua_push_object(lua_State *L, const msgpack_object *o) {
  luaL_checkstack(L, 3, "message data nested too deeply");
  switch (o->type) {
  case MSGPACK_OBJECT_BOOLEAN:
    lua_pushboolean(L, o->via.boolean);
    break;
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
    if (o->via.u64 > (uint64_t)INT64_MAX)
      lua_pushnumber(L, (lua_Number)o->via.u64);
    else
      lua_pushinteger(L, (lua_Integer)o->via.u64);
    break;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER:
    lua_pushinteger(L, (lua_Integer)o->via.i64);
    break;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64:
    lua_pushnumber(L, o->via.f64);
    break;
  case MSGPACK_OBJECT_STR:
    lua_pushlstring(L, o->via.str.ptr, o->via.str.size);
    break;
  case MSGPACK_OBJECT_BIN:
    lua_pushlstring(L, o->via.bin.ptr, o->via.bin.size);
    break;
  case MSGPACK_OBJECT_ARRAY:
    lua_createtable(L, (int)o->via.array.size, 0);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
      choreo_lua_push_object(L, &o->via.array.ptr[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  case MSGPACK_OBJECT_MAP:
    lua_createtable(L, 0, (int)o->via.map.size);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
      choreo_lua_push_object(L, &o->via.map.ptr[i].key);
      if (lua_isnil(L, -1) || (lua_isnumber(L, -1) && lua_tonumber(L, -1) != lua_tonumber(L, -1))) {
        lua_pop(L, 1); /* nil and NaN cannot be Lua keys: drop the entry */
        continue;
      }
      choreo_lua_push_object(L, &o->via.map.ptr[i].val);
      lua_rawset(L, -3);
    }
    break;
  default: /* nil, and extension types we do not define */
    lua_pushnil(L);
    break;
  }
}

static void msg_set_str(lua_State *L, const char *field, choreo_str s) {
  if (!s.p) return;
  lua_pushlstring(L, s.p, s.n);
  lua_setfield(L, -2, field);
}

void choreo_lua_push_msg(lua_State *L, const choreo_msg *m) {
  lua_createtable(L, 0, 12);
  msg_set_str(L, "type", m->type);
  msg_set_str(L, "id", m->id);
  msg_set_str(L, "source", m->source);
  msg_set_str(L, "time", m->time);
  msg_set_str(L, "subject", m->subject);
  msg_set_str(L, "kind", m->kind);
  msg_set_str(L, "to", m->to);
  msg_set_str(L, "causationid", m->causationid);
  msg_set_str(L, "traceparent", m->traceparent);
  /* A message that starts a conversation correlates with itself. */
  msg_set_str(L, "correlationid", m->correlationid.p ? m->correlationid : m->id);
  lua_pushinteger(L, m->seq);
  lua_setfield(L, -2, "seq");
  if (m->data)
    choreo_lua_push_object(L, m->data);
  else
    lua_pushnil(L);
  lua_setfield(L, -2, "data");
}

int choreo_lua_msgpack_encode(lua_State *L) {
  luaL_checkany(L, 1);
  msgpack_sbuffer b;
  msgpack_sbuffer_init(&b);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
  char err[256];
  int rc = choreo_lua_pack(L, 1, &pk, err, sizeof err);
  if (!rc) lua_pushlstring(L, b.data ? b.data : "", b.size);
  msgpack_sbuffer_destroy(&b);
  if (rc) return luaL_error(L, "choreo.pack: %s", err);
  return 1;
}

int choreo_lua_msgpack_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  if (choreo_msgpack_check(s, len, 1, CHOREO_MAX_DEPTH + 1))
    return luaL_error(L, "choreo.unpack: not one valid encoded value");
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  if (msgpack_unpack_next(&u, s, len, NULL) != MSGPACK_UNPACK_SUCCESS) {
    msgpack_unpacked_destroy(&u);
    return luaL_error(L, "choreo.unpack: not one valid encoded value");
  }
  lua_pushcfunction(L, lmsg_push_protected);
  lua_pushlightuserdata(L, &u.data);
  int status = lua_pcall(L, 1, 1, 0);
  msgpack_unpacked_destroy(&u);
  if (status != LUA_OK) return lua_error(L);
  return 1;
}
