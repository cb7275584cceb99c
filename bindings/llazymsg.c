/* The msg table handlers receive, filled as it is read. Building every field of every message
 * was nearly a quarter of a dispatched event's instructions, while most handlers read one or
 * two fields (msg.data, mostly). The table starts with data alone (which nearly every handler
 * reads) and a hidden key holding a tagged copy of the other fields; the first read of one of
 * those puts it in the table, so later reads are plain table reads. pairs() fills every field
 * first; packing takes the fields not read yet from the copy; only next() and rawget() see a
 * table whose fields are not all there yet (README: msg). The fields a type's handlers are
 * expected to read (those the messages before read) are put in from the start, and for
 * handlers that read most fields the table is built whole instead (bindings/scripts.c
 * decides), under the same metatable. */
#include <lauxlib.h>
#include <string.h>

#include "bindings.h"
#include "mpput.h"

enum {
  F_TYPE,
  F_ID,
  F_SOURCE,
  F_TIME,
  F_SUBJECT,
  F_KIND,
  F_TO,
  F_CAUSATIONID,
  F_TRACEPARENT,
  F_CORRELATIONID,
  F_DATASCHEMA,
  F_STRINGS, /* the fields above are strings */
  F_SEQ = F_STRINGS,
  F_STREAMVERSION,
  F_EXPECTEDVERSION,
  F_DATA,
  F_COUNT
};

static const char *const lazy_names[F_COUNT] = {
    "type",        "id",          "source",     "time",  "subject",
    "kind",        "to",          "causationid", "traceparent", "correlationid",
    "dataschema",  "seq",         "streamversion", "expectedversion", "data"};

/* The message's fields not put in the table when it was made, their bytes copied after the
 * struct: the message may be kept by a handler long after the frame it came in is gone. The
 * time, when it came as microseconds (time_us, str[F_TIME] empty), is written out when read. */
typedef struct lazy_msg {
  const struct lazy_msg *self; /* its own address: the tag lazy_of checks (below) */
  choreo_str str[F_STRINGS];
  int64_t seq, time_us, streamversion, expectedversion;
  uint32_t settled; /* fields already in the table, or assigned by a handler: never filled */
  char bytes[];
} lazy_msg;

/* The key of the copy in each table: a short string is found faster than a light userdata
 * (Lua compares those through a call per slot), and no handler writes this one. */
#define LAZY_HIDDEN "\x01" "choreo.msg"
static const char lazy_meta = 0; /* its address: the metatable's key in the registry */
/* The metatable's array part (choreo_lua_push_msg_meta): each field's key at META_KEYS + f, the
 * hidden key, the last string put in for each field of LAZY_REPEATED at META_LAST + f, then the
 * last data map's keys (choreo_lua_push_data). */
enum { META_KEYS = 1, META_HIDDEN_KEY = META_KEYS + F_COUNT, META_LAST,
       META_DATA_KEYS = META_LAST + F_COUNT };
/* Fields whose values mostly repeat from one message to the next: names of types, services
 * and kinds, not ids, times or streams. */
#define LAZY_REPEATED                                                                        \
  (1u << F_TYPE | 1u << F_SOURCE | 1u << F_KIND | 1u << F_TO | 1u << F_DATASCHEMA)
/* Where each of LAZY_REPEATED keeps its last value (choreo_lua_msg_kept.repeated). */
enum { KEPT_TYPE, KEPT_SOURCE, KEPT_KIND, KEPT_TO, KEPT_DATASCHEMA, KEPT_SLOTS };
static const int8_t lazy_kept_slot[F_COUNT] = {[F_TYPE] = KEPT_TYPE, [F_SOURCE] = KEPT_SOURCE,
                                               [F_KIND] = KEPT_KIND, [F_TO] = KEPT_TO,
                                               [F_DATASCHEMA] = KEPT_DATASCHEMA};
_Static_assert(KEPT_SLOTS <= CHOREO_LUA_KEPT, "a kept slot for each of LAZY_REPEATED");

/* Whether the copy has field f: strings may be absent; only a stream's events carry a
 * streamversion, and only commands that name one an expectedversion; data is never in it. */
static bool lazy_has(const lazy_msg *z, int f) {
  return f < F_STRINGS            ? z->str[f].p != NULL || (f == F_TIME && z->time_us >= 0)
         : f == F_STREAMVERSION   ? z->streamversion > 0
         : f == F_EXPECTEDVERSION ? z->expectedversion >= 0
                                  : f != F_DATA;
}

static int64_t lazy_integer(const lazy_msg *z, int f) {
  return f == F_SEQ ? z->seq : f == F_STREAMVERSION ? z->streamversion : z->expectedversion;
}

/* String field f, which the copy has: the time written into buf when it came as microseconds. */
static choreo_str lazy_str(const lazy_msg *z, int f, char buf[CHOREO_TIME_TEXT]) {
  return f == F_TIME ? choreo_time_text(z->str[f], z->time_us, buf) : z->str[f];
}

/* Pushes field f, or nothing (returning false) when the message has none. */
static bool lazy_push_field(lua_State *L, const lazy_msg *z, int f) {
  if (!lazy_has(z, f)) return false;
  if (f < F_STRINGS) {
    char buf[CHOREO_TIME_TEXT];
    choreo_str s = lazy_str(z, f, buf);
    lua_pushlstring(L, s.p, s.n);
  } else {
    lua_pushinteger(L, lazy_integer(z, f));
  }
  return true;
}

/* Pushes field f as lazy_push_field does; one of LAZY_REPEATED through the values kept from
 * the messages before (choreo_lua_push_kept; their strings in the metatable at mt), when kept. */
static bool lazy_push_repeated(lua_State *L, const lazy_msg *z, int f, int mt,
                               choreo_lua_kept *kept) {
  if (!kept || !(LAZY_REPEATED & 1u << f)) return lazy_push_field(L, z, f);
  const choreo_str *s = &z->str[f];
  if (!s->p) return false;
  choreo_lua_push_kept(L, s->p, s->n, kept, lazy_kept_slot[f], mt, META_LAST + f);
  return true;
}

/* The copy in the msg table at idx, or NULL (a table built whole, or whatever a handler put
 * under the hidden key). Only a copy made here holds its own address at its start: no other
 * userdata a script can reach has its address written in it, and Lua never moves one. A user
 * value as the tag cost twice the instructions per message. Allocates nothing: the key string
 * is kept alive by the metatable, so pushing it only finds it. */
static lazy_msg *lazy_of(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushliteral(L, LAZY_HIDDEN);
  lazy_msg *z = NULL;
  if (lua_rawget(L, idx) == LUA_TUSERDATA && lua_rawlen(L, -1) >= sizeof *z) {
    z = lua_touserdata(L, -1);
    if (z->self != z) z = NULL;
  }
  lua_pop(L, 1); /* the table keeps it */
  return z;
}

/* The field number of the key at idx, or -1: by length, then bytes (a Lua table would cost a
 * second look-up for every first read). */
int choreo_lua_msg_field(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TSTRING) return -1;
  size_t n;
  const char *k = lua_tolstring(L, idx, &n);
  int f;
  switch (n) {
  case 2: f = k[0] == 'i' ? F_ID : F_TO; break;
  case 3: f = F_SEQ; break;
  case 4: f = k[0] == 't' ? (k[1] == 'y' ? F_TYPE : F_TIME) : k[0] == 'k' ? F_KIND : F_DATA; break;
  case 6: f = F_SOURCE; break;
  case 7: f = F_SUBJECT; break;
  case 10: f = F_DATASCHEMA; break;
  case 11: f = k[0] == 'c' ? F_CAUSATIONID : F_TRACEPARENT; break;
  case 13: f = k[0] == 'c' ? F_CORRELATIONID : F_STREAMVERSION; break;
  case 15: f = F_EXPECTEDVERSION; break;
  default: return -1;
  }
  return memcmp(k, lazy_names[f], n) == 0 ? f : -1;
}

/* __index(msg, key): a field read for the first time. */
static int lazy_index(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int f = choreo_lua_msg_field(L, 2);
  lazy_msg *z = f < 0 ? NULL : lazy_of(L, 1);
  if (!z || z->settled & 1u << f) return 0;
  bool present = lazy_push_field(L, z, f); /* may raise (memory): the field stays unread */
  z->settled |= 1u << f;
  if (!present) return 0;
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  return 1;
}

/* __newindex(msg, key, value): a handler's own value for a field is never overwritten, and a
 * field it set to nil stays nil. */
static int lazy_newindex(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int f = choreo_lua_msg_field(L, 2);
  lazy_msg *z = f < 0 ? NULL : lazy_of(L, 1);
  if (z) z->settled |= 1u << f;
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 0;
}

/* Every field not read yet, into the table at idx (pairs() runs it: it may allocate). */
static void lazy_fill(lua_State *L, int idx, lazy_msg *z) {
  for (int f = 0; f < F_COUNT; f++) {
    if (z->settled & 1u << f) continue;
    lua_pushstring(L, lazy_names[f]);
    /* a value a handler rawset keeps */
    if (lua_rawget(L, idx) == LUA_TNIL && lazy_push_field(L, z, f)) {
      lua_pushstring(L, lazy_names[f]);
      lua_insert(L, -2);
      lua_rawset(L, idx);
    }
    lua_pop(L, 1);
    z->settled |= 1u << f;
  }
}

bool choreo_lua_msg_is_lazy(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return false;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &lazy_meta);
  bool ours = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return ours && lazy_of(L, idx) != NULL;
}

int choreo_lua_msg_pack_unread(lua_State *L, int idx, msgpack_sbuffer *out, uint32_t skip) {
  lazy_msg *z = lazy_of(L, idx);
  int n = 0;
  for (int f = 0; z && f < F_COUNT; f++) {
    if (((z->settled | skip) & 1u << f) || !lazy_has(z, f)) continue;
    char buf[CHOREO_TIME_TEXT];
    choreo_str s = f < F_STRINGS ? lazy_str(z, f, buf) : (choreo_str){NULL, 0};
    size_t klen = strlen(lazy_names[f]), vlen = f < F_STRINGS ? s.n : MP_PUT_INT;
    if (!mp_reserve(out, 2 * MP_PUT_STR_HEADER + klen + vlen)) return -1;
    char *p = mp_put_str(out->data + out->size, lazy_names[f], klen);
    p = f < F_STRINGS ? mp_put_str(p, s.p, s.n) : mp_put_int(p, lazy_integer(z, f));
    out->size = (size_t)(p - out->data);
    n++;
  }
  return n;
}

bool choreo_lua_msg_hidden_key(lua_State *L, int idx) {
  size_t n;
  const char *k = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
  return k && n == sizeof LAZY_HIDDEN - 1 && memcmp(k, LAZY_HIDDEN, n) == 0;
}

/* The iterator pairs() returns: next() without the hidden key. */
static int lazy_next(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  while (lua_next(L, 1)) {
    if (!choreo_lua_msg_hidden_key(L, -2)) return 2;
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  return 1;
}

/* __pairs(msg): every field, filled first. */
static int lazy_pairs(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lazy_msg *z = lazy_of(L, 1);
  if (z) lazy_fill(L, 1, z);
  lua_pushcfunction(L, lazy_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

void choreo_lua_push_msg_meta(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &lazy_meta) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, META_DATA_KEYS - 1 + CHOREO_LUA_KEPT, 4);
  lua_pushcfunction(L, lazy_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, lazy_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, lazy_pairs);
  lua_setfield(L, -2, "__pairs");
  /* setmetatable(msg, ...) would lose the fields not read yet; what getmetatable returns is
   * an empty table (code that copies metatables gets one it can use) */
  lua_newtable(L);
  lua_setfield(L, -2, "__metatable");
  /* The keys every msg gets, kept here: fetched by index, not made (hashed and looked up) from
   * their text for every message; kept alive, lazy_of never allocates the hidden one. */
  for (int f = 0; f < F_COUNT; f++) {
    lua_pushstring(L, lazy_names[f]);
    lua_rawseti(L, -2, META_KEYS + f);
  }
  lua_pushliteral(L, LAZY_HIDDEN);
  lua_rawseti(L, -2, META_HIDDEN_KEY);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &lazy_meta);
}

int32_t choreo_lua_msg_fields_read(lua_State *L, int idx) {
  lazy_msg *z = lua_touserdata(L, idx);
  return z ? (int32_t)(z->settled & ~(1u << F_DATA)) : -1;
}

/* The metatable: kept by the caller at meta, else looked up (by a light userdata key, which
 * Lua compares through a call per slot of the registry's chain). */
static void lazy_push_meta(lua_State *L, int meta) {
  if (meta)
    lua_pushvalue(L, meta);
  else
    choreo_lua_push_msg_meta(L);
}

void choreo_lua_push_msg_counted(lua_State *L, const choreo_msg *m, bool whole,
                                 uint32_t prefill, int meta, choreo_lua_msg_kept *kept) {
  if (meta) meta = lua_absindex(L, meta);
  if (whole) {
    choreo_lua_push_msg(L, m);
    /* the same metatable either way: a handler cannot tell the two apart */
    lazy_push_meta(L, meta);
    lua_setmetatable(L, -2);
    lua_pushnil(L);
    return;
  }
  /* The fields as they are in m; the copy made below holds those not put in the table. */
  lazy_msg view = {
      .str = {[F_TYPE] = m->type,
              [F_ID] = m->id,
              [F_SOURCE] = m->source,
              [F_TIME] = m->time,
              [F_SUBJECT] = m->subject,
              [F_KIND] = m->kind,
              [F_TO] = m->to,
              [F_CAUSATIONID] = m->causationid,
              [F_TRACEPARENT] = m->traceparent,
              /* a message that starts a conversation correlates with itself */
              [F_CORRELATIONID] = m->correlationid.p ? m->correlationid : m->id,
              [F_DATASCHEMA] = m->dataschema},
      .seq = m->seq,
      .time_us = m->time_us,
      .streamversion = m->streamversion,
      .expectedversion = m->expectedversion,
      .settled = 1u << F_DATA, /* in the table from the start (below) */
  };
  lua_createtable(L, 0, CHOREO_LUA_HASH_ROOM(2 + __builtin_popcount(prefill))); /* data, copy */
  lazy_push_meta(L, meta);
  int mt = lua_gettop(L);
  /* Nearly every handler reads data: decoded now, it is a plain table read, where a first
   * read through __index cost a metamethod call (about 1,100 instructions). */
  if (m->data) {
    lua_rawgeti(L, mt, META_KEYS + F_DATA);
    if (kept)
      choreo_lua_push_data(L, m->data, &kept->data_keys, mt, META_DATA_KEYS);
    else
      choreo_lua_push_packed(L, m->data);
    lua_rawset(L, -4);
  }
  /* The fields the handlers are expected to read: a plain table read each, where a first read
   * through __index costs a metamethod call. */
  for (uint32_t bits = prefill & ((1u << F_COUNT) - 1) & ~(1u << F_DATA); bits; bits &= bits - 1) {
    int f = __builtin_ctz(bits);
    lua_rawgeti(L, mt, META_KEYS + f);
    if (lazy_push_repeated(L, &view, f, mt, kept ? &kept->repeated : NULL))
      lua_rawset(L, -4);
    else
      lua_pop(L, 1);
    view.settled |= 1u << f;
  }
  size_t need = 0;
  for (int f = 0; f < F_STRINGS; f++)
    if (!(view.settled & 1u << f)) need += view.str[f].n;
  lua_rawgeti(L, mt, META_HIDDEN_KEY);
  lazy_msg *z = lua_newuserdatauv(L, sizeof *z + need, 0);
  *z = view;
  z->self = z;
  char *p = z->bytes;
  for (int f = 0; f < F_STRINGS; f++) {
    choreo_str *s = &z->str[f];
    if (view.settled & 1u << f) {
      *s = (choreo_str){NULL, 0}; /* never read from here */
    } else if (s->p) {
      if (s->n) memcpy(p, s->p, s->n);
      s->p = p;
      p += s->n;
    }
  }
  lua_pushvalue(L, -1);
  lua_insert(L, -4); /* the table, the copy, the metatable, key, copy */
  lua_rawset(L, -5);
  lua_setmetatable(L, -3);
}

void choreo_lua_push_msg_lazy(lua_State *L, const choreo_msg *m, bool whole) {
  choreo_lua_push_msg_counted(L, m, whole, 0, 0, NULL);
  lua_pop(L, 1);
}
