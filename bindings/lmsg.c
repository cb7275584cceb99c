/* Values crossing the wire: Lua values to msgpack and back, and the msg table handed to
 * handlers. Only plain data crosses (README.md, Writing handlers); anything else is refused at the call that
 * tried to send it, with the path of the offending value. */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "bindings.h"
#include "choreo.h"
#include "mpput.h"

/* A table is sent as an array when its keys are exactly 1..n; otherwise as a map. */
static int msg_array_length(lua_State *L, int idx, lua_Integer *n) {
  lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
  if (len == 0) return 0; /* a map, or empty: no walk needed to tell */
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
  return count == len;
}

/* A value being packed into out, and where a refusal's reason goes. Values are written
 * straight into the buffer (mpput.h): msgpack-c's packer calls its write callback, which checks
 * the buffer, for every header and every body, and that was half of a small table's packing. */
typedef struct msg_packing {
  msgpack_sbuffer *out;
  char *err;
  size_t errlen;
} msg_packing;

static int msg_out_of_memory(msg_packing *p) {
  snprintf(p->err, p->errlen, "cannot send: out of memory");
  return CHOREO_ENOMEM;
}

/* Where `need` more bytes go, or NULL when the buffer cannot grow; msg_wrote ends the write. */
static char *msg_room(msg_packing *p, size_t need) {
  return mp_reserve(p->out, need) ? p->out->data + p->out->size : NULL;
}

static int msg_wrote(msg_packing *p, const char *end) {
  p->out->size = (size_t)(end - p->out->data);
  return 0;
}

static int msg_too_many(msg_packing *p) {
  snprintf(p->err, p->errlen, "cannot send a table of more than %u entries", UINT32_MAX);
  return CHOREO_EINVAL;
}

/* Puts the header of a map of count entries at `at`, in front of its entries: they are packed
 * in one walk of the table, which does not know its number of keys (counting them first was a
 * second walk of every map). */
static int msg_put_map_header(msg_packing *p, size_t at, size_t count) {
  if (count > UINT32_MAX) return msg_too_many(p);
  char h[MP_PUT_CONTAINER_HEADER];
  size_t n = (size_t)(mp_put_container_header(h, (uint32_t)count, true) - h);
  if (!msg_room(p, n)) return msg_out_of_memory(p);
  msgpack_sbuffer *out = p->out;
  memmove(out->data + at + n, out->data + at, out->size - at);
  memcpy(out->data + at, h, n);
  out->size += n;
  return 0;
}

static int msg_pack_value(lua_State *L, int idx, msg_packing *p, int depth);

static int msg_pack_table(lua_State *L, int idx, msg_packing *p, int depth) {
  if (depth >= CHOREO_MAX_DEPTH) {
    snprintf(p->err, p->errlen, "cannot send a table nested deeper than %d levels (or a cycle)",
             CHOREO_MAX_DEPTH);
    return CHOREO_EINVAL;
  }
  if (!lua_checkstack(L, 4)) {
    snprintf(p->err, p->errlen, "cannot send: Lua stack exhausted");
    return CHOREO_ENOMEM;
  }
  /* A msg table: the fields not read yet come from its copy, packed as they are. */
  bool msg = choreo_lua_msg_is_lazy(L, idx);
  uint32_t held = 0; /* the msg fields the table holds */
  lua_Integer n = 0;
  if (!msg && msg_array_length(L, idx, &n)) {
    if ((uint64_t)n > UINT32_MAX) return msg_too_many(p);
    char *w = msg_room(p, MP_PUT_CONTAINER_HEADER);
    if (!w) return msg_out_of_memory(p);
    msg_wrote(p, mp_put_container_header(w, (uint32_t)n, false));
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      int rc = msg_pack_value(L, lua_gettop(L), p, depth + 1);
      lua_pop(L, 1);
      if (rc) return rc;
    }
    return 0;
  }
  size_t at = p->out->size, count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int key = lua_gettop(L) - 1;
    if (msg && choreo_lua_msg_hidden_key(L, key)) {
      lua_pop(L, 1);
      continue;
    }
    int f = msg ? choreo_lua_msg_field(L, key) : -1;
    if (f >= 0) held |= 1u << f;
    int kt = lua_type(L, key), rc = 0;
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
      snprintf(p->err, p->errlen, "cannot send a table key of type %s", lua_typename(L, kt));
      rc = CHOREO_EINVAL;
    }
    if (!rc) rc = msg_pack_value(L, key, p, depth + 1);
    if (!rc) rc = msg_pack_value(L, key + 1, p, depth + 1);
    lua_pop(L, 1);
    if (rc) {
      lua_pop(L, 1);
      return rc;
    }
    count++;
  }
  if (msg) {
    int unread = choreo_lua_msg_pack_unread(L, idx, p->out, held);
    if (unread < 0) return msg_out_of_memory(p);
    count += (size_t)unread;
  }
  return msg_put_map_header(p, at, count);
}

static int msg_put_byte(msg_packing *p, unsigned char b) {
  char *w = msg_room(p, 1);
  return w ? msg_wrote(p, mp_put_byte(w, b)) : msg_out_of_memory(p);
}

_Static_assert(MP_PUT_DOUBLE <= MP_PUT_INT, "a number's room fits either kind");

static int msg_pack_value(lua_State *L, int idx, msg_packing *p, int depth) {
  char *w;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return msg_put_byte(p, MP_NIL);
  case LUA_TBOOLEAN:
    return msg_put_byte(p, lua_toboolean(L, idx) ? MP_TRUE : MP_FALSE);
  case LUA_TNUMBER:
    if (!(w = msg_room(p, MP_PUT_INT))) return msg_out_of_memory(p);
    if (lua_isinteger(L, idx)) return msg_wrote(p, mp_put_int(w, lua_tointeger(L, idx)));
    return msg_wrote(p, mp_put_double(w, lua_tonumber(L, idx)));
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (!(w = msg_room(p, MP_PUT_STR_HEADER + len))) return msg_out_of_memory(p);
    return msg_wrote(p, mp_put_str(w, s, len));
  }
  case LUA_TTABLE:
    return msg_pack_table(L, idx, p, depth);
  default:
    snprintf(p->err, p->errlen, "cannot send a value of type %s", luaL_typename(L, idx));
    return CHOREO_EINVAL;
  }
}

int choreo_lua_pack(lua_State *L, int idx, msgpack_sbuffer *out, char *err, size_t errlen) {
  msg_packing p = {.out = out, .err = err, .errlen = errlen};
  return msg_pack_value(L, lua_absindex(L, idx), &p, 0);
}

static uint64_t msg_be(const unsigned char *p, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width; i++) v = v << 8 | p[i];
  return v;
}

/* Where choreo_lua_push_data keeps the last message's data keys. */
typedef struct msg_key_cache {
  choreo_lua_kept *keys;
  int cache, first;
} msg_key_cache;

static void msg_push_packed(lua_State *L, const unsigned char **pp, const msg_key_cache *kc);

void choreo_lua_push_kept(lua_State *L, const char *p, size_t n, choreo_lua_kept *kept, int i,
                          int cache, int at) {
  if (n > CHOREO_LUA_KEPT_MAX) {
    lua_pushlstring(L, p, n);
  } else if (kept->len[i] == n + 1 && choreo_bytes_eq(kept->bytes[i], p, n)) {
    lua_rawgeti(L, cache, at);
  } else {
    lua_pushlstring(L, p, n);
    lua_pushvalue(L, -1);
    lua_rawseti(L, cache, at); /* may raise (memory): then nothing is kept */
    memcpy(kept->bytes[i], p, n);
    kept->len[i] = (uint8_t)(n + 1);
  }
}

/* The key at *pp of the map entry at position i, through the keys kept (choreo_lua_push_data). */
static void msg_push_key(lua_State *L, const unsigned char **pp, const msg_key_cache *kc,
                         int i) {
  const unsigned char *p = *pp;
  size_t n;
  if (*p >= 0xa0 && *p <= 0xbf) {
    n = *p++ & 0x1f;
  } else if (*p == 0xd9) {
    n = p[1];
    p += 2;
  } else {
    msg_push_packed(L, pp, NULL);
    return;
  }
  choreo_lua_push_kept(L, (const char *)p, n, kc->keys, i, kc->cache, kc->first + i);
  *pp = p + n;
}

/* n map entries or array elements at *pp; a map's first keys through kc when there is one. */
static void msg_push_container(lua_State *L, const unsigned char **pp, uint64_t n, bool map,
                               const msg_key_cache *kc) {
  lua_createtable(L, map ? 0 : (int)n, map ? CHOREO_LUA_HASH_ROOM((int)n) : 0);
  for (uint64_t i = 0; i < n; i++) {
    if (map && kc && i < CHOREO_LUA_KEPT)
      msg_push_key(L, pp, kc, (int)i);
    else
      msg_push_packed(L, pp, NULL);
    if (!map) {
      lua_rawseti(L, -2, (lua_Integer)i + 1);
      continue;
    }
    msg_push_packed(L, pp, NULL);
    /* nil and NaN cannot be Lua keys: the entry is dropped (lua_isnumber would also try to
     * read every string key as a number) */
    if (lua_isnil(L, -2) ||
        (lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2)))
      lua_pop(L, 2);
    else
      lua_rawset(L, -3);
  }
}

/* One value at *pp, moving *pp past it. Integers beyond Lua's become floats; binary strings
 * are strings; extension types, which we do not define, are nil. A map's first keys go through
 * kc when there is one (choreo_lua_push_data), the values within it through none. */
static void msg_push_packed(lua_State *L, const unsigned char **pp, const msg_key_cache *kc) {
  luaL_checkstack(L, 3, "message data nested too deeply");
  const unsigned char *p = *pp;
  unsigned b = *p++;
  if (b <= 0x7f) {
    lua_pushinteger(L, b);
  } else if (b >= 0xe0) {
    lua_pushinteger(L, (int8_t)b);
  } else if (b <= 0x8f) {
    *pp = p;
    msg_push_container(L, pp, b & 0x0f, true, kc);
    return;
  } else if (b <= 0x9f) {
    *pp = p;
    msg_push_container(L, pp, b & 0x0f, false, NULL);
    return;
  } else if (b <= 0xbf) {
    lua_pushlstring(L, (const char *)p, b & 0x1f);
    p += b & 0x1f;
  } else {
    int width = 0;
    uint64_t n;
    switch (b) {
    case 0xc2: case 0xc3:
      lua_pushboolean(L, b == 0xc3);
      break;
    case 0xc4: case 0xc5: case 0xc6: case 0xd9: case 0xda: case 0xdb:
      width = 1 << (b >= 0xd9 ? b - 0xd9 : b - 0xc4);
      n = msg_be(p, width);
      lua_pushlstring(L, (const char *)p + width, n);
      p += width + n;
      break;
    case 0xc7: case 0xc8: case 0xc9: /* ext: length, type, payload */
      width = 1 << (b - 0xc7);
      p += width + 1 + msg_be(p, width);
      lua_pushnil(L);
      break;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: /* fixext */
      p += 1 + (1u << (b - 0xd4));
      lua_pushnil(L);
      break;
    case 0xca: {
      uint32_t bits = (uint32_t)msg_be(p, 4);
      float f;
      memcpy(&f, &bits, sizeof f);
      lua_pushnumber(L, f);
      p += 4;
      break;
    }
    case 0xcb: {
      uint64_t bits = msg_be(p, 8);
      double d;
      memcpy(&d, &bits, sizeof d);
      lua_pushnumber(L, d);
      p += 8;
      break;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
      width = 1 << (b - 0xcc);
      n = msg_be(p, width);
      if (n > (uint64_t)INT64_MAX)
        lua_pushnumber(L, (lua_Number)n);
      else
        lua_pushinteger(L, (lua_Integer)n);
      p += width;
      break;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
      width = 1 << (b - 0xd0);
      n = msg_be(p, width);
      int shift = 64 - width * 8; /* sign-extends the width's bits */
      lua_pushinteger(L, (lua_Integer)((int64_t)(n << shift) >> shift));
      p += width;
      break;
    }
    case 0xdc: case 0xdd: case 0xde: case 0xdf:
      width = b == 0xdc || b == 0xde ? 2 : 4;
      *pp = p + width;
      msg_push_container(L, pp, msg_be(p, width), b >= 0xde, kc);
      return;
    default: /* nil */
      lua_pushnil(L);
      break;
    }
  }
  *pp = p;
}

void choreo_lua_push_packed(lua_State *L, const char *data) {
  const unsigned char *p = (const unsigned char *)data;
  msg_push_packed(L, &p, NULL);
}

void choreo_lua_push_data(lua_State *L, const char *data, choreo_lua_kept *keys, int cache,
                          int first) {
  const unsigned char *p = (const unsigned char *)data;
  msg_key_cache kc = {keys, lua_absindex(L, cache), first};
  msg_push_packed(L, &p, &kc);
}

static void msg_set_str(lua_State *L, const char *field, choreo_str s) {
  if (!s.p) return;
  lua_pushlstring(L, s.p, s.n);
  lua_setfield(L, -2, field);
}

void choreo_lua_push_msg(lua_State *L, const choreo_msg *m) {
  char time[CHOREO_TIME_TEXT];
  lua_createtable(L, 0, 12);
  msg_set_str(L, "type", m->type);
  msg_set_str(L, "id", m->id);
  msg_set_str(L, "source", m->source);
  msg_set_str(L, "time", choreo_msg_time(m, time));
  msg_set_str(L, "subject", m->subject);
  msg_set_str(L, "kind", m->kind);
  msg_set_str(L, "to", m->to);
  msg_set_str(L, "causationid", m->causationid);
  msg_set_str(L, "traceparent", m->traceparent);
  /* A message that starts a conversation correlates with itself. */
  msg_set_str(L, "correlationid", m->correlationid.p ? m->correlationid : m->id);
  lua_pushinteger(L, m->seq);
  lua_setfield(L, -2, "seq");
  /* Event sourcing's: only a stream's events (and commands to aggregates) carry them. */
  msg_set_str(L, "dataschema", m->dataschema);
  if (m->streamversion > 0) {
    lua_pushinteger(L, m->streamversion);
    lua_setfield(L, -2, "streamversion");
  }
  if (m->expectedversion >= 0) {
    lua_pushinteger(L, m->expectedversion);
    lua_setfield(L, -2, "expectedversion");
  }
  if (m->data)
    choreo_lua_push_packed(L, m->data);
  else
    lua_pushnil(L);
  lua_setfield(L, -2, "data");
}

#define PACK_BUFFER "choreo.pack_buffer"
#define PACK_BUFFER_KEEP (256u << 10) /* a buffer grown past this is let go before reuse */

static int msg_pack_buffer_gc(lua_State *L) {
  msgpack_sbuffer *b = lua_touserdata(L, 1);
  msgpack_sbuffer_destroy(b);
  msgpack_sbuffer_init(b);
  return 0;
}

msgpack_sbuffer *choreo_lua_pack_buffer(lua_State *L) {
  msgpack_sbuffer *b;
  if (lua_getfield(L, LUA_REGISTRYINDEX, PACK_BUFFER) == LUA_TUSERDATA) {
    b = lua_touserdata(L, -1);
    if (b->alloc > PACK_BUFFER_KEEP) {
      msgpack_sbuffer_destroy(b);
      msgpack_sbuffer_init(b);
    }
  } else {
    lua_pop(L, 1);
    b = lua_newuserdatauv(L, sizeof *b, 0);
    msgpack_sbuffer_init(b);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, msg_pack_buffer_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, PACK_BUFFER);
  }
  lua_pop(L, 1); /* the registry keeps it */
  b->size = 0;
  return b;
}

int choreo_lua_msgpack_encode(lua_State *L) {
  luaL_checkany(L, 1);
  msgpack_sbuffer *b = choreo_lua_pack_buffer(L);
  char err[256];
  if (choreo_lua_pack(L, 1, b, err, sizeof err)) return luaL_error(L, "choreo.pack: %s", err);
  lua_pushlstring(L, b->data ? b->data : "", b->size);
  return 1;
}

void choreo_lua_push_stored(lua_State *L, msgpack_sbuffer *stored) {
  /* The bytes stay in a Lua string while they are decoded, so an error cannot leak them. */
  lua_pushlstring(L, stored->data ? stored->data : "", stored->size);
  msgpack_sbuffer_destroy(stored);
  msgpack_sbuffer_init(stored);
  lua_pushcfunction(L, choreo_lua_msgpack_decode);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
}

const char *choreo_lua_encode_in_place(lua_State *L, int idx, size_t *len) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, choreo_lua_msgpack_encode);
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  lua_replace(L, idx);
  return lua_tolstring(L, idx, len);
}

int choreo_lua_msgpack_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  if (choreo_msgpack_check(s, len, 1, CHOREO_MAX_DEPTH + 1))
    return luaL_error(L, "choreo.unpack: not one valid encoded value");
  choreo_lua_push_packed(L, s);
  return 1;
}
