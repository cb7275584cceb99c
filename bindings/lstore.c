/* ctx.db: SQL on the host's database, inside the transaction of the message being handled.
 * exec runs one statement, rows iterates result rows as tables keyed by column name, one returns
 * the first row or nil. A mistake in the SQL raises; a constraint violation (a runtime outcome
 * the handler may want to handle) returns nil, message. */
#include <lauxlib.h>
#include <string.h>

#include "bindings.h"

#define DB_META "choreo.db"
#define ROWS_META "choreo.db.rows"

typedef struct db_handle {
  sqlite3 *db;
} db_handle;

typedef struct rows_handle {
  sqlite3_stmt *stmt; /* NULL once finished */
} rows_handle;

#define todb(L) (((db_handle *)luaL_checkudata(L, 1, DB_META))->db)

static void db_bind(lua_State *L, sqlite3_stmt *stmt, int first, int last) {
  int n = last - first + 1;
  if (n != sqlite3_bind_parameter_count(stmt)) {
    int expected = sqlite3_bind_parameter_count(stmt);
    sqlite3_finalize(stmt);
    luaL_error(L, "statement has %d parameter(s) but %d value(s) were given", expected, n);
  }
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
      sqlite3_bind_text(stmt, i, s, (int)len, SQLITE_TRANSIENT);
      break;
    }
    default: {
      const char *type = luaL_typename(L, idx);
      sqlite3_finalize(stmt);
      luaL_error(L, "cannot bind a %s to SQL parameter %d", type, i);
    }
    }
  }
}

/* Prepares exactly one statement with the arguments after the SQL bound. */
static sqlite3_stmt *db_prepare(lua_State *L, sqlite3 *db, int last) {
  size_t len;
  const char *sql = luaL_checklstring(L, 2, &len);
  const char *tail = NULL;
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2(db, sql, (int)len, &stmt, &tail) != SQLITE_OK)
    luaL_error(L, "SQL error: %s", sqlite3_errmsg(db));
  if (!stmt) luaL_error(L, "SQL error: empty statement");
  while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';')) tail++;
  if (tail && *tail) {
    sqlite3_finalize(stmt);
    luaL_error(L, "SQL error: one statement per call (extra text: %s)", tail);
  }
  db_bind(L, stmt, 3, last);
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

/* A failed step: constraint violations are outcomes (nil, message); anything else raises. */
static int db_step_failed(lua_State *L, sqlite3 *db, sqlite3_stmt *stmt, int rc) {
  lua_pushfstring(L, "%s", sqlite3_errmsg(db));
  sqlite3_finalize(stmt);
  if ((rc & 0xff) == SQLITE_CONSTRAINT) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  return lua_error(L);
}

static int db_exec(lua_State *L) {
  sqlite3 *db = todb(L);
  sqlite3_stmt *stmt = db_prepare(L, db, lua_gettop(L));
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) return db_step_failed(L, db, stmt, rc);
  sqlite3_finalize(stmt);
  lua_pushinteger(L, sqlite3_changes(db));
  return 1;
}

static int db_one(lua_State *L) {
  sqlite3 *db = todb(L);
  sqlite3_stmt *stmt = db_prepare(L, db, lua_gettop(L));
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW)
    db_push_row(L, stmt);
  else if (rc == SQLITE_DONE)
    lua_pushnil(L);
  else
    return db_step_failed(L, db, stmt, rc);
  sqlite3_finalize(stmt);
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
  sqlite3 *db = todb(L);
  int last = lua_gettop(L);
  rows_handle *r = lua_newuserdatauv(L, sizeof *r, 0);
  r->stmt = NULL;
  luaL_setmetatable(L, ROWS_META);
  r->stmt = db_prepare(L, db, last);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, rows_next, 1);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_rotate(L, -4, -1); /* iterator, nil, nil, handle */
  return 4;
}

static const luaL_Reg db_methods[] = {
    {"exec", db_exec}, {"one", db_one}, {"rows", db_rows}, {NULL, NULL}};

static const luaL_Reg rows_meta[] = {{"__close", rows_close}, {"__gc", rows_close}, {NULL, NULL}};

void choreo_lua_push_db(lua_State *L, sqlite3 *db, int owner_idx) {
  owner_idx = owner_idx ? lua_absindex(L, owner_idx) : 0;
  db_handle *h = lua_newuserdatauv(L, sizeof *h, 1);
  h->db = db;
  if (owner_idx) {
    lua_pushvalue(L, owner_idx);
    lua_setiuservalue(L, -2, 1);
  }
  if (luaL_newmetatable(L, DB_META)) {
    luaL_newlib(L, db_methods);
    lua_setfield(L, -2, "__index");
    luaL_newmetatable(L, ROWS_META);
    luaL_setfuncs(L, rows_meta, 0);
    lua_pop(L, 1);
  }
  lua_setmetatable(L, -2);
}
