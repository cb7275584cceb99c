/* ctx.db: SQL on the host's database, inside the transaction of the message being handled (or
 * on a projection build's database, in the build's transaction).
 * exec runs one statement, rows iterates result rows as tables keyed by column name, one returns
 * the first row or nil. A mistake in the SQL raises; a constraint violation (a runtime outcome
 * the handler may want to handle) returns nil, message. */
#include <lauxlib.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "bindings.h"

#define DB_META "choreo.db"
#define ROWS_META "choreo.db.rows"

/* Preparing costs more than running a small statement, and handlers run the same few
 * statements for every message, so each db object keeps its most recent ones prepared. */
#define DB_CACHE 16

typedef struct db_handle {
  uintptr_t tag; /* its own address ^ DB_TAG: what todb checks */
  choreo_engine *engine; /* whose connection this is, and who guards what is prepared on it */
  sqlite3 *db;
  bool reads_only; /* a query's: its statements may only read */
  sqlite3_stmt *cache[DB_CACHE]; /* idle statements, keyed by their SQL text */
  int next;                      /* the slot to evict next */
} db_handle;

typedef struct rows_handle {
  sqlite3_stmt *stmt; /* NULL once finished */
} rows_handle;

/* Tells a db object from other userdata of its size: only one made here holds its own address
 * XOR this at its start (msg's copies hold their plain address, llazymsg.c), and Lua never moves
 * a userdata. */
#define DB_TAG ((uintptr_t)0x63686f72656f6462u)

/* The db object a method was called on, found by its tag: a third of the instructions of
 * comparing its metatable, on every statement a handler runs; anything else gets
 * luaL_checkudata's error. */
static db_handle *todb(lua_State *L) {
  db_handle *h = lua_touserdata(L, 1);
  if (h && lua_rawlen(L, 1) == sizeof *h && h->tag == ((uintptr_t)h ^ DB_TAG)) return h;
  return luaL_checkudata(L, 1, DB_META);
}

/* Takes an idle statement for sql out of the cache, or prepares one. */
static sqlite3_stmt *db_take(lua_State *L, db_handle *h, const char *sql, size_t len) {
  if (!h->db) luaL_error(L, "this db object belonged to a projection's build, which has ended");
  /* What the handler published is in the log before its SQL runs: a statement of its own may
   * read the log, or take a savepoint that a rollback to must not take those rows with. */
  int written = choreo_engine_write_pending(h->engine);
  if (written)
    luaL_error(L, "SQL error: cannot write the messages published so far: %s",
               choreo_strerror(written));
  for (int i = 0; i < DB_CACHE; i++) {
    sqlite3_stmt *stmt = h->cache[i];
    if (stmt && strncmp(sqlite3_sql(stmt), sql, len) == 0 && sqlite3_sql(stmt)[len] == '\0') {
      h->cache[i] = NULL;
      return stmt;
    }
  }
  const char *tail = NULL;
  sqlite3_stmt *stmt = NULL;
  choreo_engine_guard(h->engine, true);
  if (h->reads_only) choreo_engine_guard_reads(h->engine, true);
  int rc = sqlite3_prepare_v3(h->db, sql, (int)len, SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
  if (h->reads_only) choreo_engine_guard_reads(h->engine, false);
  choreo_engine_guard(h->engine, false);
  if (rc == SQLITE_AUTH && h->reads_only)
    luaL_error(L, "SQL error: a query may only read (no writes, schema changes, pragmas or "
                  "ATTACH): %s", sqlite3_errmsg(h->db));
  if (rc == SQLITE_AUTH)
    luaL_error(L, "SQL error: scripts run inside choreo's transaction and may not begin, commit "
                  "or roll it back, nor use savepoints named choreo_*");
  if (rc != SQLITE_OK) luaL_error(L, "SQL error: %s", sqlite3_errmsg(h->db));
  if (!stmt) luaL_error(L, "SQL error: empty statement");
  while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';')) tail++;
  if (tail && *tail) {
    sqlite3_finalize(stmt);
    luaL_error(L, "SQL error: one statement per call (extra text: %s)", tail);
  }
  return stmt;
}

/* Gives a statement back: reset into the cache, evicting the oldest if it is full. Its
 * bindings stay: SQLite reads them only when the statement runs, and db_bind binds every
 * parameter before it runs again (a text bound SQLITE_STATIC may point at a string Lua has
 * since freed meanwhile; nothing here calls sqlite3_expanded_sql, which would read it). */
static void db_give_back(db_handle *h, sqlite3_stmt *stmt) {
  sqlite3_reset(stmt);
  for (int i = 0; i < DB_CACHE; i++) {
    if (!h->cache[i]) {
      h->cache[i] = stmt;
      return;
    }
  }
  sqlite3_finalize(h->cache[h->next]);
  h->cache[h->next] = stmt;
  h->next = (h->next + 1) % DB_CACHE;
}

/* Binds the arguments first..last, every parameter of the statement; on a bad value returns
 * the error text instead of raising, so the caller can give the statement back first. Strings
 * are bound without a copy (text_life SQLITE_STATIC) when the statement runs within the call,
 * while the arguments are on the Lua stack; a statement that outlives the call (rows) needs
 * SQLITE_TRANSIENT. */
static const char *db_bind(lua_State *L, sqlite3_stmt *stmt, int first, int last,
                           sqlite3_destructor_type text_life) {
  int n = last - first + 1;
  if (n != sqlite3_bind_parameter_count(stmt))
    return lua_pushfstring(L, "statement has %d parameter(s) but %d value(s) were given",
                           sqlite3_bind_parameter_count(stmt), n);
  for (int i = 1; i <= n; i++) {
    int idx = first + i - 1;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
      sqlite3_bind_null(stmt, i);
      break;
    case LUA_TBOOLEAN:
      sqlite3_bind_int(stmt, i, lua_toboolean(L, idx));
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx))
        sqlite3_bind_int64(stmt, i, lua_tointeger(L, idx));
      else
        sqlite3_bind_double(stmt, i, lua_tonumber(L, idx));
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      sqlite3_bind_text(stmt, i, s, (int)len, text_life);
      break;
    }
    default:
      return lua_pushfstring(L, "cannot bind a %s to SQL parameter %d", luaL_typename(L, idx), i);
    }
  }
  return NULL;
}

/* A statement for the SQL at index 2 with the arguments 3..last bound, for running within the
 * call: give it back before returning or raising. */
static sqlite3_stmt *db_prepare(lua_State *L, db_handle *h, int last) {
  size_t len;
  const char *sql = luaL_checklstring(L, 2, &len);
  sqlite3_stmt *stmt = db_take(L, h, sql, len);
  const char *err = db_bind(L, stmt, 3, last, SQLITE_STATIC);
  if (err) {
    db_give_back(h, stmt);
    lua_error(L);
  }
  return stmt;
}

static void db_push_row(lua_State *L, sqlite3_stmt *stmt) {
  int n = sqlite3_column_count(stmt);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    switch (sqlite3_column_type(stmt, i)) {
    case SQLITE_INTEGER:
      lua_pushinteger(L, sqlite3_column_int64(stmt, i));
      break;
    case SQLITE_FLOAT:
      lua_pushnumber(L, sqlite3_column_double(stmt, i));
      break;
    case SQLITE_NULL:
      continue;
    default:
      lua_pushlstring(L, (const char *)sqlite3_column_blob(stmt, i),
                      (size_t)sqlite3_column_bytes(stmt, i));
      break;
    }
    lua_setfield(L, -2, sqlite3_column_name(stmt, i));
  }
}

/* A failed step: constraint violations are outcomes (nil, message); anything else raises. A
 * statement cut short by the handler's budget (or a stop) says so, where the handler ran it. */
static int db_step_failed(lua_State *L, db_handle *h, sqlite3_stmt *stmt, int rc) {
  if (rc == SQLITE_INTERRUPT) {
    luaL_where(L, 1);
    if (choreo_engine_interrupted(h->engine))
      lua_pushliteral(L, "SQL interrupted: the host is stopping");
    else
      lua_pushfstring(L, "SQL interrupted: exceeded the instruction limit (%I)",
                      (lua_Integer)choreo_engine_instruction_limit(h->engine));
    lua_concat(L, 2);
  } else {
    lua_pushfstring(L, "%s", sqlite3_errmsg(h->db));
  }
  db_give_back(h, stmt);
  if ((rc & 0xff) == SQLITE_CONSTRAINT) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  return lua_error(L);
}

static int db_exec(lua_State *L) {
  db_handle *h = todb(L);
  sqlite3_stmt *stmt = db_prepare(L, h, lua_gettop(L));
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) return db_step_failed(L, h, stmt, rc);
  db_give_back(h, stmt);
  lua_pushinteger(L, sqlite3_changes(h->db));
  return 1;
}

static int db_one(lua_State *L) {
  db_handle *h = todb(L);
  sqlite3_stmt *stmt = db_prepare(L, h, lua_gettop(L));
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW)
    db_push_row(L, stmt);
  else if (rc == SQLITE_DONE)
    lua_pushnil(L);
  else
    return db_step_failed(L, h, stmt, rc);
  db_give_back(h, stmt);
  return 1;
}

static int rows_close(lua_State *L) {
  rows_handle *r = luaL_checkudata(L, 1, ROWS_META);
  if (r->stmt) sqlite3_finalize(r->stmt);
  r->stmt = NULL;
  return 0;
}

static int rows_next(lua_State *L) {
  rows_handle *r = luaL_checkudata(L, lua_upvalueindex(1), ROWS_META);
  if (!r->stmt) return 0;
  int rc = sqlite3_step(r->stmt);
  if (rc == SQLITE_ROW) {
    db_push_row(L, r->stmt);
    return 1;
  }
  sqlite3 *db = sqlite3_db_handle(r->stmt);
  sqlite3_stmt *stmt = r->stmt;
  r->stmt = NULL;
  if (rc == SQLITE_DONE) {
    sqlite3_finalize(stmt);
    return 0;
  }
  lua_pushfstring(L, "SQL error: %s", sqlite3_errmsg(db));
  sqlite3_finalize(stmt);
  return lua_error(L);
}

/* Returns an iterator plus the handle as the closing value, so a `for` loop left early
 * finalizes the statement at once (Lua 5.4 to-be-closed), and __gc covers everything else. The
 * handle exists before the statement so that no error can leak it. */
static int db_rows(lua_State *L) {
  db_handle *h = todb(L);
  int last = lua_gettop(L);
  size_t len;
  const char *sql = luaL_checklstring(L, 2, &len);
  rows_handle *r = lua_newuserdatauv(L, sizeof *r, 0);
  r->stmt = NULL;
  luaL_setmetatable(L, ROWS_META);
  r->stmt = db_take(L, h, sql, len); /* owned by the iterator until it finishes */
  const char *err = db_bind(L, r->stmt, 3, last, SQLITE_TRANSIENT);
  if (err) lua_error(L);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, rows_next, 1);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_rotate(L, -4, -1); /* iterator, nil, nil, handle */
  return 4;
}

static const luaL_Reg db_methods[] = {
    {"exec", db_exec}, {"one", db_one}, {"rows", db_rows}, {NULL, NULL}};

static void db_finalize_cache(db_handle *h) {
  for (int i = 0; i < DB_CACHE; i++) {
    sqlite3_finalize(h->cache[i]);
    h->cache[i] = NULL;
  }
}

static int db_gc(lua_State *L) {
  db_finalize_cache(luaL_checkudata(L, 1, DB_META));
  return 0;
}

void choreo_lua_db_close(lua_State *L, int idx) {
  db_handle *h = luaL_checkudata(L, idx, DB_META);
  db_finalize_cache(h);
  h->db = NULL;
}

static const luaL_Reg rows_meta[] = {{"__close", rows_close}, {"__gc", rows_close}, {NULL, NULL}};

void choreo_lua_push_db(lua_State *L, choreo_engine *engine, int owner_idx, bool reads_only) {
  choreo_lua_push_db_on(L, engine, choreo_engine_db(engine), owner_idx, reads_only);
}

void choreo_lua_push_db_on(lua_State *L, choreo_engine *engine, sqlite3 *db, int owner_idx,
                           bool reads_only) {
  owner_idx = owner_idx ? lua_absindex(L, owner_idx) : 0;
  db_handle *h = lua_newuserdatauv(L, sizeof *h, 1);
  memset(h, 0, sizeof *h);
  h->tag = (uintptr_t)h ^ DB_TAG;
  h->engine = engine;
  h->db = db;
  h->reads_only = reads_only;
  if (owner_idx) {
    lua_pushvalue(L, owner_idx);
    lua_setiuservalue(L, -2, 1);
  }
  if (luaL_newmetatable(L, DB_META)) {
    luaL_newlibtable(L, db_methods);
    luaL_setfuncs(L, db_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, db_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newmetatable(L, ROWS_META);
    luaL_setfuncs(L, rows_meta, 0);
    lua_pop(L, 1);
  }
  lua_setmetatable(L, -2);
}
