/* Projections' tables, builds and swaps (see projections.h). */
#include "projections.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "choreo.h"
#include "buildhistory.h"
#include "clock.h"
#include "log.h"
#include "sql.h"

/* A build commits every so many steps (of up to a batch each, one per loop turn): its handlers
 * rewrite the same pages over and over, and each commit writes them to the WAL again. A crash
 * loses only what was not committed; the build resumes from the last commit. */
#define PROJECTIONS_STEPS_PER_COMMIT 16

/* choreo_projection_inputs: a copy of every message a projection's handler took that a build
 * could not find again in this host's streams (other hosts' events, this host's plain events),
 * kept with the transaction that handled it; a build replays them after the streams.
 * choreo_projection_types: the event types projections name (declared = 1), and those no
 * projection names any more since since_ms, whose kept inputs retention deletes after
 * --retain-max. (Inputs kept before types were recorded have none, and stay.) */
static const char projections_schema[] =
    "CREATE TABLE IF NOT EXISTS choreo_projections("
    "  name TEXT PRIMARY KEY, version INTEGER NOT NULL, objects TEXT NOT NULL,"
    "  build_version INTEGER NOT NULL DEFAULT 0, built_through INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS choreo_projection_inputs("
    "  id INTEGER PRIMARY KEY, source TEXT NOT NULL, seq INTEGER NOT NULL, msg BLOB NOT NULL,"
    "  type TEXT);"
    "CREATE UNIQUE INDEX IF NOT EXISTS choreo_projection_inputs_once "
    "  ON choreo_projection_inputs(source, seq);"
    "CREATE TABLE IF NOT EXISTS choreo_projection_types("
    "  type TEXT PRIMARY KEY, declared INTEGER NOT NULL, since_ms INTEGER NOT NULL) WITHOUT ROWID;";
/* After the type column is there in a database from before. */
static const char projections_schema_after[] =
    "CREATE INDEX IF NOT EXISTS choreo_projection_inputs_by_type "
    "  ON choreo_projection_inputs(type) WHERE type IS NOT NULL;";

/* The build file's own table: which version it builds and how far it is. */
static const char build_schema[] =
    "CREATE TABLE choreo_build(one INTEGER PRIMARY KEY CHECK (one = 1), version INTEGER NOT NULL,"
    "  position INTEGER NOT NULL, applied INTEGER NOT NULL, inputs INTEGER NOT NULL DEFAULT 0);";

typedef struct projection {
  char *name;
  int64_t declared; /* 0: not declared by the current scripts */
  char *tables;     /* the declared SQL */
  char *types;      /* the event types its handlers take, '\n' after each */
  int64_t live;     /* 0: no live tables */
  char *objects;    /* the live objects' names, '\n' after each */
  int64_t building; /* 0: no build */
  /* The last stream event the live tables' build applied: one delivered again later (a retry,
   * a dead letter sent back) is in them already. */
  int64_t built_through;
  sqlite3 *build;   /* the build file's connection, once taken up by this process */
  int64_t position, applied;
  int64_t inputs; /* the last of choreo_projection_inputs the build applied */
  int steps_open; /* steps in the build's open transaction, not committed yet */
  int64_t taken_up_ms, applied_at_take_up; /* for the rate */
  char error[512];
} projection;

enum {
  P_KEEP,
  P_INPUTS_SINCE,
  P_INPUTS_ANY,
  P_INPUTS_AFTER,
  P_TYPES_UNDECLARE,
  P_TYPES_DECLARE,
  P_INPUTS_EXPIRE,
  P_TYPES_EXPIRE,
  P_INPUTS_OF,
  P_COUNT
};

static const char *const projections_sql[P_COUNT] = {
    [P_KEEP] = "INSERT OR IGNORE INTO choreo_projection_inputs(source, seq, msg, type) "
               "VALUES (?1, ?2, ?3, ?4)",
    [P_INPUTS_SINCE] = "SELECT id, msg FROM choreo_projection_inputs WHERE id > ?1 ORDER BY id LIMIT ?2",
    [P_INPUTS_ANY] = "SELECT 1 FROM choreo_projection_inputs LIMIT 1",
    [P_INPUTS_AFTER] = "SELECT count(*) FROM choreo_projection_inputs WHERE id > ?1",
    [P_TYPES_UNDECLARE] = "UPDATE choreo_projection_types SET declared = 0, since_ms = ?1 "
                          "WHERE declared = 1",
    [P_TYPES_DECLARE] = "INSERT INTO choreo_projection_types VALUES (?1, 1, ?2) ON CONFLICT(type) "
                        "DO UPDATE SET declared = 1, since_ms = excluded.since_ms",
    /* by type, through the partial index: never a scan of every kept input */
    [P_INPUTS_EXPIRE] = "DELETE FROM choreo_projection_inputs WHERE id IN (SELECT id FROM "
                        "choreo_projection_inputs WHERE type IN (SELECT type FROM "
                        "choreo_projection_types WHERE declared = 0 AND since_ms < ?1) LIMIT ?2)",
    [P_TYPES_EXPIRE] = "DELETE FROM choreo_projection_types WHERE declared = 0 AND since_ms < ?1 "
                       "AND NOT EXISTS (SELECT 1 FROM choreo_projection_inputs i "
                       "WHERE i.type = choreo_projection_types.type)",
    [P_INPUTS_OF] = "SELECT seq, msg FROM choreo_projection_inputs WHERE source = ?1 AND seq > ?2 "
                    "AND seq <= ?3 ORDER BY seq LIMIT ?4",
};

struct choreo_projections {
  sqlite3 *db;
  sqlite3_stmt *st[P_COUNT];
  char *data;
  bool in_memory;
  void (*prepare)(void *ud, sqlite3 *build);
  void (*release)(void *ud, sqlite3 *build);
  void *hooks_ud;
  projection *list;
  int n;
};

static void projections_errf(char *err, size_t errlen, const char *name, const char *what,
                             const char *why) {
  snprintf(err, errlen, "projection %s: %s: %s", name, what, why);
}

static projection *projections_find(choreo_projections *p, const char *name) {
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->list[i].name, name) == 0) return &p->list[i];
  return NULL;
}

static projection *projections_add(choreo_projections *p, const char *name) {
  projection *grown = realloc(p->list, (size_t)(p->n + 1) * sizeof *grown);
  if (!grown) return NULL;
  p->list = grown;
  projection *x = &p->list[p->n];
  memset(x, 0, sizeof *x);
  x->name = strdup(name);
  x->objects = strdup("");
  if (!x->name || !x->objects) {
    free(x->name);
    free(x->objects);
    return NULL;
  }
  p->n++;
  return x;
}

/* A build's file: beside the host's database, or in the temporary directory for a host in
 * memory (unique to this process and this projections object). */
static char *projections_build_path(choreo_projections *p, const char *name) {
  char *path;
  if (p->in_memory) {
    const char *tmp = getenv("TMPDIR");
    path = sqlite3_mprintf("%s/choreo-build-%d-%p-%s.db", tmp && *tmp ? tmp : "/tmp",
                           (int)getpid(), (void *)p, name);
  } else {
    path = sqlite3_mprintf("%s-build-%s.db", p->data, name);
  }
  return path;
}

static void projections_unlink_build(choreo_projections *p, const char *name) {
  char *path = projections_build_path(p, name);
  if (!path) return;
  static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
    char *f = sqlite3_mprintf("%s%s", path, suffixes[i]);
    if (f) unlink(f);
    sqlite3_free(f);
  }
  sqlite3_free(path);
}

static void projections_close_build(choreo_projections *p, projection *x) {
  if (!x->build) return;
  /* The scripts' db object over it finalizes its statements first; close_v2 covers any left. */
  if (p->release) p->release(p->hooks_ud, x->build);
  sqlite3_close_v2(x->build); /* what it had not committed rolls back */
  x->build = NULL;
  x->steps_open = 0;
}

static int projections_store_row(choreo_projections *p, const projection *x) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(p->db,
                         "INSERT INTO choreo_projections(name, version, objects, build_version, "
                         "built_through) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(name) DO UPDATE "
                         "SET version = excluded.version, objects = excluded.objects, "
                         "build_version = excluded.build_version, "
                         "built_through = excluded.built_through",
                         -1, &st, NULL) != SQLITE_OK)
    return CHOREO_EIO;
  sqlite3_bind_text(st, 1, x->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, x->live);
  sqlite3_bind_text(st, 3, x->objects, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, x->building);
  sqlite3_bind_int64(st, 5, x->built_through);
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : CHOREO_EIO;
  sqlite3_finalize(st);
  return rc;
}

static int projections_load(choreo_projections *p) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(p->db,
                         "SELECT name, version, objects, build_version, built_through "
                         "FROM choreo_projections ORDER BY name",
                         -1, &st, NULL) != SQLITE_OK)
    return CHOREO_EIO;
  int rc = 0, step;
  while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
    projection *x = projections_add(p, (const char *)sqlite3_column_text(st, 0));
    char *objects = strdup((const char *)sqlite3_column_text(st, 2));
    if (!x || !objects) {
      free(objects);
      rc = CHOREO_ENOMEM;
      break;
    }
    free(x->objects);
    x->objects = objects;
    x->live = sqlite3_column_int64(st, 1);
    x->building = sqlite3_column_int64(st, 3);
    x->built_through = sqlite3_column_int64(st, 4);
  }
  if (!rc && step != SQLITE_DONE) rc = CHOREO_EIO;
  sqlite3_finalize(st);
  return rc;
}

int choreo_projections_open(choreo_projections **out, sqlite3 *db, const char *data,
                            void (*prepare)(void *ud, sqlite3 *build),
                            void (*release)(void *ud, sqlite3 *build), void *ud) {
  choreo_projections *p = calloc(1, sizeof *p);
  if (!p) return CHOREO_ENOMEM;
  p->db = db;
  p->data = strdup(data);
  p->in_memory = strcmp(data, ":memory:") == 0 || data[0] == '\0';
  p->prepare = prepare;
  p->release = release;
  p->hooks_ud = ud;
  int rc = p->data ? 0 : CHOREO_ENOMEM;
  if (!rc && (sqlite3_exec(db, projections_schema, NULL, NULL, NULL) != SQLITE_OK ||
              choreo_sql_add_column(db, "choreo_projection_inputs", "type", "TEXT", NULL) !=
                  SQLITE_OK))
    rc = CHOREO_EIO;
  if (!rc) rc = choreo_sql_prepare(db, projections_schema_after, projections_sql, P_COUNT, p->st);
  if (!rc) rc = projections_load(p);
  if (rc) {
    choreo_projections_close(p);
    return rc;
  }
  *out = p;
  return 0;
}

void choreo_projections_close(choreo_projections *p) {
  if (!p) return;
  for (int i = 0; i < p->n; i++) {
    projection *x = &p->list[i];
    projections_close_build(p, x);
    if (p->in_memory && x->building) projections_unlink_build(p, x->name);
    free(x->name);
    free(x->tables);
    free(x->types);
    free(x->objects);
  }
  choreo_sql_finalize(p->st, P_COUNT);
  free(p->list);
  free(p->data);
  free(p);
}

/* The names a query on db selects ("name" from `from_where`), '\n' after each, as one
 * malloc'd string. */
static char *projections_list(sqlite3 *db, const char *from_where) {
  char *sql = sqlite3_mprintf("SELECT coalesce(group_concat(name || char(10), ''), '') FROM %s",
                              from_where);
  sqlite3_stmt *st = NULL;
  char *names = NULL;
  if (sql && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    names = strdup((const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_free(sql);
  return names;
}

/* The names in db's schema (schema "main"). */
static char *projections_names(sqlite3 *db) {
  return projections_list(db, "main.sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'");
}

static bool projections_listed(const char *list, const char *name, size_t len) {
  for (const char *at = list; *at;) {
    const char *end = strchr(at, '\n');
    if (!end) break;
    if ((size_t)(end - at) == len && memcmp(at, name, len) == 0) return true;
    at = end + 1;
  }
  return false;
}

/* Runs the tables SQL on db and sets *objects to the names it created, '\n' after each. */
static int projections_create(sqlite3 *db, const char *tables, char **objects, char **why) {
  char *before = projections_names(db);
  if (!before) return CHOREO_ENOMEM;
  char *msg = NULL;
  if (sqlite3_exec(db, tables, NULL, NULL, &msg) != SQLITE_OK) {
    *why = strdup(msg ? msg : "failed");
    sqlite3_free(msg);
    free(before);
    return CHOREO_ESCRIPT;
  }
  char *after = projections_names(db);
  if (!after) {
    free(before);
    return CHOREO_ENOMEM;
  }
  /* after, less what was there before, in place */
  char *w = after;
  for (const char *at = after; *at;) {
    const char *end = strchr(at, '\n');
    size_t len = (size_t)(end - at);
    if (!projections_listed(before, at, len)) {
      memmove(w, at, len + 1);
      w += len + 1;
    }
    at = end + 1;
  }
  *w = '\0';
  free(before);
  *objects = after;
  return 0;
}

/* Whether the host's database has an object of that name. */
static bool projections_taken(sqlite3 *db, const char *name, size_t len) {
  sqlite3_stmt *st;
  bool taken = false;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM main.sqlite_master WHERE name = ?1", -1, &st, NULL) ==
      SQLITE_OK) {
    sqlite3_bind_text(st, 1, name, (int)len, SQLITE_STATIC);
    taken = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
  }
  return taken;
}

/* A contentless full-text table keeps no text to copy: a swap would bring its index over
 * empty. (An external-content one reads its table, which comes along.) scratch holds the
 * projection's tables; the SQL is compared without blanks, in lower case. */
static int projections_refuse_contentless(sqlite3 *scratch, const char *name, char *err,
                                          size_t errlen) {
  char *contentless = projections_list(scratch,
      "(SELECT name, replace(replace(replace(replace(replace(lower(sql), ' ', ''), char(9), ''), "
      "char(10), ''), char(13), ''), '\"', '''') AS bare FROM main.sqlite_master "
      "WHERE type = 'table') WHERE bare LIKE 'createvirtualtable%usingfts%' "
      "AND bare LIKE '%content=''''%'");
  if (!contentless) return CHOREO_ENOMEM;
  int rc = 0;
  if (contentless[0]) {
    snprintf(err, errlen, "projection %s: tables: %.*s is a contentless full-text table "
             "(content=''), whose rows a rebuild cannot copy: keep its content, or point it at a "
             "table of the projection (content='TABLE')", name,
             (int)strcspn(contentless, "\n"), contentless);
    rc = CHOREO_ESCRIPT;
  }
  free(contentless);
  return rc;
}

/* A projection's tables created in a database in memory, to look at before anything real is
 * touched; the caller closes *scratch whatever the result. */
static int projections_scratch(const char *tables, sqlite3 **scratch, char **objects, char **why) {
  if (sqlite3_open(":memory:", scratch) != SQLITE_OK) return CHOREO_ENOMEM;
  return projections_create(*scratch, tables, objects, why);
}

/* The declared SQL must be SQL, create something, and take no name of the host's database but
 * the projection's own (live): tried on a scratch database, so that a mistake rejects the
 * scripts before anything is touched. */
static int projections_check(choreo_projections *p, const choreo_projection_decl *d, char *err,
                             size_t errlen) {
  sqlite3 *scratch = NULL;
  char *objects = NULL, *why = NULL;
  int rc = projections_scratch(d->tables, &scratch, &objects, &why);
  if (rc == CHOREO_ESCRIPT) projections_errf(err, errlen, d->name, "tables", why);
  if (!rc && !objects[0]) {
    projections_errf(err, errlen, d->name, "tables", "the SQL creates no table");
    rc = CHOREO_ESCRIPT;
  }
  projection *x = projections_find(p, d->name);
  /* Refused for what is to be built: tables live at this version, which a release before
   * took, keep serving. */
  if (!rc && !(x && x->live == d->version))
    rc = projections_refuse_contentless(scratch, d->name, err, errlen);
  /* a virtual table's shadow tables go and come with it */
  char *shadows = rc ? NULL : projections_list(scratch, "pragma_table_list WHERE schema = 'main' "
                                                        "AND type = 'shadow'");
  if (!rc && !shadows) rc = CHOREO_ENOMEM;
  for (const char *at = objects; !rc && *at;) {
    const char *end = strchr(at, '\n');
    size_t len = (size_t)(end - at);
    if (projections_taken(p->db, at, len) && !projections_listed(shadows, at, len) &&
        !(x && projections_listed(x->objects, at, len))) {
      snprintf(err, errlen, "projection %s: tables: %.*s is taken by a table of the host's "
               "database that is not this projection's (drop it, or choose another name)",
               d->name, (int)len, at);
      rc = CHOREO_ESCRIPT;
    }
    at = end + 1;
  }
  free(why);
  free(objects);
  free(shadows);
  sqlite3_close(scratch);
  return rc;
}

/* Starts x's build of its declared version afresh: a new file with the tables and position 0,
 * then the row in the host's database saying so. */
static int projections_start_build(choreo_projections *p, projection *x) {
  projections_close_build(p, x);
  projections_unlink_build(p, x->name);
  x->error[0] = '\0';
  x->building = x->declared; /* in memory at once: a build that cannot start shows why */
  x->position = x->inputs = x->applied = x->applied_at_take_up = 0;
  x->taken_up_ms = choreo_clock_ms();
  char *path = projections_build_path(p, x->name);
  if (!path) return CHOREO_ENOMEM;
  int rc = sqlite3_open_v2(path, &x->build, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  sqlite3_free(path);
  char *objects = NULL, *why = NULL;
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(x->build, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; BEGIN",
                      NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = projections_create(x->build, x->tables, &objects, &why) ? SQLITE_ERROR : 0;
  if (rc == SQLITE_OK) rc = sqlite3_exec(x->build, build_schema, NULL, NULL, NULL);
  if (rc == SQLITE_OK) {
    char *sql = sqlite3_mprintf("INSERT INTO choreo_build VALUES (1, %lld, 0, 0, 0); COMMIT",
                                (long long)x->declared);
    rc = sql ? sqlite3_exec(x->build, sql, NULL, NULL, NULL) : SQLITE_NOMEM;
    sqlite3_free(sql);
  }
  if (rc != SQLITE_OK) {
    snprintf(x->error, sizeof x->error, "cannot start the build: %s",
             why ? why : x->build ? sqlite3_errmsg(x->build) : "out of memory");
    choreo_log(CHOREO_LOG_ERROR, "projections", "%s: %s", x->name, x->error);
    projections_close_build(p, x);
  }
  free(why);
  free(objects);
  if (rc != SQLITE_OK) return CHOREO_EIO;
  if (p->prepare) p->prepare(p->hooks_ud, x->build);
  choreo_log(CHOREO_LOG_INFO, "projections", "%s: building version %lld from the first event",
             x->name, (long long)x->building);
  return projections_store_row(p, x);
}

/* Drops x's build, file and all. */
static int projections_discard_build(choreo_projections *p, projection *x) {
  projections_close_build(p, x);
  projections_unlink_build(p, x->name);
  if (!x->building) return 0;
  x->building = 0;
  x->error[0] = '\0';
  return projections_store_row(p, x);
}

/* Takes up a build this process did not start (after a restart): its file's position, or a
 * fresh start when the file is gone or builds something else. */
static int projections_take_up(choreo_projections *p, projection *x) {
  char *path = projections_build_path(p, x->name);
  if (!path) return CHOREO_ENOMEM;
  sqlite3_stmt *st = NULL;
  bool resumed = false;
  int rc = sqlite3_open_v2(path, &x->build, SQLITE_OPEN_READWRITE, NULL);
  sqlite3_free(path);
  if (rc == SQLITE_OK) rc = sqlite3_exec(x->build, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
  if (rc == SQLITE_OK &&
      sqlite3_prepare_v2(x->build, "SELECT version, position, applied, inputs FROM choreo_build", -1,
                         &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) == x->building) {
    x->position = sqlite3_column_int64(st, 1);
    x->inputs = sqlite3_column_int64(st, 3);
    x->applied = x->applied_at_take_up = sqlite3_column_int64(st, 2);
    x->taken_up_ms = choreo_clock_ms();
    resumed = true;
  }
  sqlite3_finalize(st);
  if (!resumed) return projections_start_build(p, x);
  if (p->prepare) p->prepare(p->hooks_ud, x->build);
  choreo_log(CHOREO_LOG_INFO, "projections", "%s: resuming the build of version %lld after "
             "stream event %lld", x->name, (long long)x->building, (long long)x->position);
  return 0;
}

/* The types the declarations name are declared from now on; those only the ones before named
 * stop being declared now (their kept inputs go --retain-max later, see expire). In the
 * caller's transaction. */
static int projections_record_types(choreo_projections *p, const choreo_projection_decl *decl,
                                    int n, int64_t now_ms) {
  sqlite3_stmt *st = p->st[P_TYPES_UNDECLARE];
  int rc = sqlite3_bind_int64(st, 1, now_ms) ? CHOREO_EIO : choreo_sql_finish(st, sqlite3_step(st));
  for (int i = 0; i < n && !rc; i++) {
    for (const char *at = decl[i].types; at && *at && !rc;) {
      const char *end = strchr(at, '\n');
      if (!end) break;
      st = p->st[P_TYPES_DECLARE];
      rc = sqlite3_bind_text(st, 1, at, (int)(end - at), SQLITE_STATIC) ||
                   sqlite3_bind_int64(st, 2, now_ms)
               ? choreo_sql_finish(st, SQLITE_ERROR)
               : choreo_sql_finish(st, sqlite3_step(st));
      at = end + 1;
    }
  }
  return rc;
}

int choreo_projections_expire(choreo_projections *p, int64_t before_ms, int max_rows,
                              int *deleted) {
  *deleted = 0;
  sqlite3_stmt *st = p->st[P_INPUTS_EXPIRE];
  if (sqlite3_bind_int64(st, 1, before_ms) || sqlite3_bind_int(st, 2, max_rows))
    return choreo_sql_finish(st, SQLITE_ERROR);
  int rc = choreo_sql_finish(st, sqlite3_step(st));
  if (rc) return rc;
  *deleted = sqlite3_changes(p->db);
  if (*deleted == max_rows) return 0; /* more to come: the types stay until their last input */
  st = p->st[P_TYPES_EXPIRE];
  if (sqlite3_bind_int64(st, 1, before_ms)) return choreo_sql_finish(st, SQLITE_ERROR);
  return choreo_sql_finish(st, sqlite3_step(st));
}

int choreo_projections_sync(choreo_projections *p, const choreo_projection_decl *decl, int n,
                            bool has_history, int64_t now_ms, char *err, size_t errlen) {
  int any = sqlite3_step(p->st[P_INPUTS_ANY]);
  has_history = has_history || any == SQLITE_ROW;
  if (choreo_sql_finish(p->st[P_INPUTS_ANY], any)) {
    snprintf(err, errlen, "cannot read the projections' inputs: %s", sqlite3_errmsg(p->db));
    return CHOREO_EIO;
  }
  for (int i = 0; i < n; i++) {
    int rc = projections_check(p, &decl[i], err, errlen);
    if (rc) return rc;
  }
  /* The live tables of projections new here and the types they all name, all or none. */
  int rc = 0;
  if (sqlite3_exec(p->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "cannot create projections' tables: %s", sqlite3_errmsg(p->db));
    return CHOREO_EIO;
  }
  int added = 0;
  for (int i = 0; i < n && !rc; i++) {
    if (projections_find(p, decl[i].name)) continue;
    char *objects = NULL, *why = NULL;
    projection *x = projections_add(p, decl[i].name);
    added += x != NULL;
    rc = x ? projections_create(p->db, decl[i].tables, &objects, &why) : CHOREO_ENOMEM;
    if (rc == CHOREO_ESCRIPT) projections_errf(err, errlen, decl[i].name, "tables", why);
    if (!rc) {
      free(x->objects);
      x->objects = objects;
      x->live = decl[i].version;
      /* Said in the same transaction, so a crash before the build starts cannot leave the
       * history out: the next start takes the build up. */
      if (has_history) x->building = decl[i].version;
      rc = projections_store_row(p, x);
    }
    free(why);
  }
  bool said = rc == CHOREO_ESCRIPT;
  if (!rc && projections_record_types(p, decl, n, now_ms)) {
    snprintf(err, errlen, "cannot record the projections' event types: %s", sqlite3_errmsg(p->db));
    rc = CHOREO_EIO;
    said = true;
  }
  if (!rc && sqlite3_exec(p->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) rc = CHOREO_EIO;
  if (rc) {
    sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
    if (!said) snprintf(err, errlen, "cannot create projections' tables");
    /* forget the ones just added: nothing of them was kept */
    for (int k = p->n - added; k < p->n; k++) {
      free(p->list[k].name);
      free(p->list[k].tables);
      free(p->list[k].types);
      free(p->list[k].objects);
    }
    p->n -= added;
    return rc;
  }
  for (int i = 0; i < p->n; i++) p->list[i].declared = 0;
  for (int i = 0; i < n; i++) {
    projection *x = projections_find(p, decl[i].name);
    char *tables = strdup(decl[i].tables);
    char *types = strdup(decl[i].types ? decl[i].types : "");
    if (!tables || !types) {
      free(tables);
      free(types);
      return CHOREO_ENOMEM;
    }
    free(x->tables);
    x->tables = tables;
    free(x->types);
    x->types = types;
    x->declared = decl[i].version;
  }
  /* Builds: one per projection whose live tables are not of the declared version, or that is
   * new on a host that has events to give it. One that cannot start says why in its status:
   * the scripts run on, and the live tables serve. */
  for (int i = 0; i < p->n; i++) {
    projection *x = &p->list[i];
    if (!x->declared && x->live) {
      /* Its tables get no more events: declared again, it is built afresh. */
      x->live = 0;
      projections_discard_build(p, x);
      projections_store_row(p, x);
    } else if (!x->declared)
      projections_discard_build(p, x);
    else if (x->building == x->declared && !x->error[0]) {
      if (!x->build) projections_take_up(p, x);
    } else if (x->live != x->declared || x->building == x->declared)
      projections_start_build(p, x);
    else
      projections_discard_build(p, x);
  }
  return 0;
}

int choreo_projections_rebuild(choreo_projections *p, const char *name, char *err,
                               size_t errlen) {
  projection *x = projections_find(p, name);
  if (!x || !x->declared) {
    snprintf(err, errlen, "no projection named '%s'", name);
    return CHOREO_ENOENT;
  }
  sqlite3 *scratch = NULL;
  char *objects = NULL, *why = NULL;
  int rc = projections_scratch(x->tables, &scratch, &objects, &why);
  if (!rc) rc = projections_refuse_contentless(scratch, name, err, errlen);
  else snprintf(err, errlen, "%s", why ? why : "cannot read the projection's tables");
  free(objects);
  free(why);
  sqlite3_close(scratch);
  if (rc) return rc;
  rc = projections_start_build(p, x);
  if (rc) snprintf(err, errlen, "%s", x->error[0] ? x->error : "cannot start the build");
  return rc;
}

bool choreo_projections_live(choreo_projections *p, const char *name, int64_t version) {
  projection *x = projections_find(p, name);
  return x && x->live == version;
}

bool choreo_projections_applies(choreo_projections *p, const char *name, int64_t version,
                                int64_t own_stream_seq) {
  projection *x = projections_find(p, name);
  return x && x->live == version && (own_stream_seq <= 0 || own_stream_seq > x->built_through);
}

int choreo_projections_keep(choreo_projections *p, const char *source, size_t source_len,
                            int64_t seq, const char *type, size_t type_len, const char *msg,
                            size_t len) {
  sqlite3_stmt *st = p->st[P_KEEP];
  int rc = sqlite3_bind_text(st, 1, source, (int)source_len, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_int64(st, 2, seq);
  if (!rc) rc = sqlite3_bind_blob64(st, 3, msg, len, SQLITE_STATIC);
  if (!rc) rc = sqlite3_bind_text(st, 4, type, (int)type_len, SQLITE_STATIC);
  return choreo_sql_finish(st, rc ? SQLITE_ERROR : sqlite3_step(st));
}

int choreo_projections_inputs_since(choreo_projections *p, int64_t after, int max,
                                    int (*fn)(void *ud, int64_t id, const char *msg, size_t len),
                                    void *ud, int *n) {
  sqlite3_stmt *st = p->st[P_INPUTS_SINCE];
  *n = 0;
  if (sqlite3_bind_int64(st, 1, after) || sqlite3_bind_int(st, 2, max))
    return choreo_sql_finish(st, SQLITE_ERROR);
  return choreo_sql_walk(st, fn, ud, n);
}

int choreo_projections_inputs_of(choreo_projections *p, const char *source, int64_t after,
                                 int64_t upto, int max,
                                 int (*fn)(void *ud, int64_t seq, const char *msg, size_t len),
                                 void *ud, int *n) {
  sqlite3_stmt *st = p->st[P_INPUTS_OF];
  if (sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC) || sqlite3_bind_int64(st, 2, after) ||
      sqlite3_bind_int64(st, 3, upto) || sqlite3_bind_int(st, 4, max))
    return choreo_sql_finish(st, SQLITE_ERROR);
  return choreo_sql_walk(st, fn, ud, n);
}

bool choreo_projections_takes(choreo_projections *p, const char *name, const char *type,
                              size_t len) {
  projection *x = projections_find(p, name);
  for (const char *at = x && x->types ? x->types : ""; *at;) {
    const char *end = strchr(at, '\n');
    if (!end) break;
    if ((size_t)(end - at) == len && memcmp(at, type, len) == 0) return true;
    at = end + 1;
  }
  return false;
}

sqlite3 *choreo_projections_build_of(choreo_projections *p, const char *name) {
  projection *x = projections_find(p, name);
  return x ? x->build : NULL;
}

int choreo_projections_inputs_after(choreo_projections *p, int64_t after, int64_t *n) {
  sqlite3_stmt *st = p->st[P_INPUTS_AFTER];
  *n = 0;
  int step = sqlite3_bind_int64(st, 1, after) ? SQLITE_ERROR : sqlite3_step(st);
  if (step == SQLITE_ROW) *n = sqlite3_column_int64(st, 0);
  return choreo_sql_finish(st, step);
}

bool choreo_projections_declared(choreo_projections *p, const char *name, int64_t version) {
  projection *x = projections_find(p, name);
  return x && x->declared == version;
}

bool choreo_projections_building(choreo_projections *p) {
  for (int i = 0; i < p->n; i++)
    if (p->list[i].building && p->list[i].declared && !p->list[i].error[0]) return true;
  return false;
}

bool choreo_projections_next_build(choreo_projections *p, const char **name, sqlite3 **build,
                                   int64_t *position, int64_t *inputs) {
  for (int i = 0; i < p->n; i++) {
    projection *x = &p->list[i];
    if (!x->building || x->error[0] || !x->declared) continue;
    if (!x->build && projections_take_up(p, x)) continue; /* x->error says why */
    if (!x->build) continue;
    *name = x->name;
    *build = x->build;
    *position = x->position;
    *inputs = x->inputs;
    return true;
  }
  return false;
}

int choreo_projections_advance(choreo_projections *p, const char *name, int64_t position,
                               int64_t inputs, int64_t n, bool caught_up) {
  projection *x = projections_find(p, name);
  if (!x || !x->build) return CHOREO_EINVAL;
  if (sqlite3_get_autocommit(x->build)) {
    choreo_projections_fail(p, name, "the build's transaction ended under its handlers; it starts "
                                     "afresh next time");
    return CHOREO_EIO;
  }
  bool commit = caught_up || ++x->steps_open >= PROJECTIONS_STEPS_PER_COMMIT;
  char *sql = sqlite3_mprintf("UPDATE choreo_build SET position = %lld, inputs = %lld, "
                              "applied = %lld%s", (long long)position, (long long)inputs,
                              (long long)(x->applied + n), commit ? "; COMMIT" : "");
  int rc = sql && sqlite3_exec(x->build, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : CHOREO_EIO;
  sqlite3_free(sql);
  if (rc) {
    char why[256]; /* copied: the rollback that follows replaces SQLite's message */
    snprintf(why, sizeof why, "%s", sql ? sqlite3_errmsg(x->build) : "out of memory");
    choreo_projections_fail(p, name, why);
    return rc;
  }
  if (commit) x->steps_open = 0;
  x->position = position;
  x->inputs = inputs;
  x->applied += n;
  return 0;
}

void choreo_projections_put_down(choreo_projections *p, const char *name) {
  projection *x = projections_find(p, name);
  if (x) projections_close_build(p, x);
}

void choreo_projections_fail(choreo_projections *p, const char *name, const char *why) {
  projection *x = projections_find(p, name);
  if (!x) return;
  if (x->build && !sqlite3_get_autocommit(x->build)) {
    sqlite3_exec(x->build, "ROLLBACK", NULL, NULL, NULL);
  } else if (x->build) { /* no transaction to roll back: autocommitted writes may be in it */
    projections_close_build(p, x);
    projections_unlink_build(p, name);
  }
  snprintf(x->error, sizeof x->error, "%s", why);
  choreo_log(CHOREO_LOG_ERROR, "projections", "%s: the build of version %lld stopped: %s "
             "(the live tables stay; a reload or `choreo projections rebuild %s` starts it again)",
             name, (long long)x->building, why, name);
}

/* In the open transaction of the host's connection, with the build attached as choreo_build:
 * drops the live objects of x and creates the build's, tables with their rows first; *objects
 * gets the new names, '\n' after each. */
static int projections_swap_tables(choreo_projections *p, projection *x, const char *shadows,
                                   const char *norowid, char **objects, char **why) {
  sqlite3 *db = p->db;
  /* what the live version made goes: views and triggers first, then the tables (their
   * indexes with them) */
  for (int pass = 0; pass < 2; pass++) {
    for (const char *at = x->objects; *at;) {
      const char *end = strchr(at, '\n');
      char *name = sqlite3_mprintf("%.*s", (int)(end - at), at);
      /* a shadow table goes with its virtual table */
      char *sql = name ? sqlite3_mprintf("SELECT m.type FROM main.sqlite_master m WHERE m.name = '%q' "
                                         "AND (m.type = 'table') = %d AND NOT EXISTS (SELECT 1 FROM "
                                         "pragma_table_list l WHERE l.schema = 'main' AND "
                                         "l.name = m.name AND l.type = 'shadow')", name, pass)
                       : NULL;
      sqlite3_stmt *st;
      char type[16] = "";
      if (sql && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
          snprintf(type, sizeof type, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
      }
      sqlite3_free(sql);
      char *drop = type[0] ? sqlite3_mprintf("DROP %s IF EXISTS main.\"%w\"", type, name) : NULL;
      int rc = !name || (type[0] && !drop) ? SQLITE_NOMEM
               : drop                      ? sqlite3_exec(db, drop, NULL, NULL, NULL)
                                           : SQLITE_OK;
      sqlite3_free(drop);
      sqlite3_free(name);
      if (rc != SQLITE_OK) return CHOREO_EIO;
      at = end + 1;
    }
  }
  /* the build's objects come in: tables with their rows, then indexes, views, triggers.
   * Shadow tables (a virtual table's own storage) come with their virtual table, whose rows
   * go in through it. Listed first: the schema changes as they are created. */
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db,
                         "SELECT s.name, s.type = 'table', s.sql FROM choreo_build.sqlite_master s "
                         "WHERE s.sql IS NOT NULL "
                         "AND s.name NOT IN ('choreo_build', " CHOREO_BUILD_HISTORY_OBJECTS ") "
                         "AND s.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                         "ORDER BY s.type = 'table' DESC, s.rowid",
                         -1, &st, NULL) != SQLITE_OK)
    return CHOREO_EIO;
  typedef struct { char *name, *sql; bool table; } built;
  built *list = NULL;
  int n = 0, rc = 0;
  while (!rc && sqlite3_step(st) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 0);
    if (projections_listed(shadows, name, strlen(name))) continue; /* come with their table */
    built *grown = realloc(list, (size_t)(n + 1) * sizeof *grown);
    if (!grown) {
      rc = CHOREO_ENOMEM;
      break;
    }
    list = grown;
    list[n].name = strdup((const char *)sqlite3_column_text(st, 0));
    list[n].table = sqlite3_column_int(st, 1);
    list[n].sql = strdup((const char *)sqlite3_column_text(st, 2));
    rc = list[n].name && list[n].sql ? 0 : CHOREO_ENOMEM;
    n++;
  }
  sqlite3_finalize(st);
  size_t cap = 0, len = 0;
  char *names = NULL;
  for (int i = 0; i < n && !rc; i++) {
    char *msg = NULL;
    if (sqlite3_exec(db, list[i].sql, NULL, NULL, &msg) != SQLITE_OK) {
      *why = sqlite3_mprintf("%s: %s", list[i].name, msg ? msg : "failed");
      rc = CHOREO_ESCRIPT;
    } else if (list[i].table) {
      /* The columns that hold data (not generated ones, nor a virtual table's hidden ones),
       * and the rowid where there is one: another table may refer to it. */
      bool rowid = !projections_listed(norowid, list[i].name, strlen(list[i].name));
      char *copy = sqlite3_mprintf(
          "SELECT 'INSERT INTO main.\"' || replace(%Q, '\"', '\"\"') || '\"(' || c || ') SELECT ' "
          "|| c || ' FROM choreo_build.\"' || replace(%Q, '\"', '\"\"') || '\"' FROM ("
          "SELECT %s group_concat('\"' || replace(name, '\"', '\"\"') || '\"', ', ') AS c "
          "FROM pragma_table_xinfo(%Q, 'choreo_build') WHERE hidden = 0)",
          list[i].name, list[i].name, rowid ? "'rowid, ' ||" : "", list[i].name);
      sqlite3_stmt *make = NULL;
      char *insert = NULL;
      if (copy && sqlite3_prepare_v2(db, copy, -1, &make, NULL) == SQLITE_OK &&
          sqlite3_step(make) == SQLITE_ROW && sqlite3_column_text(make, 0))
        insert = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(make, 0));
      sqlite3_finalize(make);
      sqlite3_free(copy);
      if (!insert || sqlite3_exec(db, insert, NULL, NULL, &msg) != SQLITE_OK) {
        *why = sqlite3_mprintf("%s: %s", list[i].name, msg ? msg : "cannot copy its rows");
        rc = CHOREO_ESCRIPT;
      }
      sqlite3_free(insert);
    }
    sqlite3_free(msg);
    size_t k = strlen(list[i].name);
    if (!rc && len + k + 2 > cap) {
      cap = (len + k + 2) * 2;
      char *grown = realloc(names, cap);
      if (!grown) rc = CHOREO_ENOMEM;
      else names = grown;
    }
    if (!rc) {
      memcpy(names + len, list[i].name, k);
      names[len + k] = '\n';
      len += k + 1;
      names[len] = '\0';
    }
  }
  for (int i = 0; i < n; i++) {
    free(list[i].name);
    free(list[i].sql);
  }
  free(list);
  if (rc) {
    free(names);
    return rc;
  }
  *objects = names ? names : strdup("");
  return *objects ? 0 : CHOREO_ENOMEM;
}

int choreo_projections_swap(choreo_projections *p, const char *name) {
  projection *x = projections_find(p, name);
  if (!x || !x->building || !x->build) return CHOREO_EINVAL;
  /* Read where the build's schema is its main one: attached, a shadow table's owner would be
   * looked for in the host's main schema first. */
  char *shadows = projections_list(x->build, "pragma_table_list WHERE schema = 'main' AND "
                                             "type = 'shadow'");
  char *norowid = projections_list(x->build, "pragma_table_list WHERE schema = 'main' AND wr");
  projections_close_build(p, x); /* committed: the file is whole */
  char *path = projections_build_path(p, name);
  char *attach = path ? sqlite3_mprintf("ATTACH %Q AS choreo_build", path) : NULL;
  sqlite3_free(path);
  char *objects = NULL, *why = NULL;
  /* one a failed swap could not detach (a statement of the scripts' held it) goes first */
  sqlite3_exec(p->db, "DETACH choreo_build", NULL, NULL, NULL);
  int rc = attach && shadows && norowid && sqlite3_exec(p->db, attach, NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : CHOREO_EIO;
  sqlite3_free(attach);
  bool attached = rc == 0;
  if (!rc && sqlite3_exec(p->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) rc = CHOREO_EIO;
  if (!rc) rc = projections_swap_tables(p, x, shadows, norowid, &objects, &why);
  free(shadows);
  free(norowid);
  int64_t was_live = x->live;
  char *was_objects = x->objects;
  int64_t was_through = x->built_through;
  if (!rc) {
    x->live = x->building;
    x->objects = objects;
    x->building = 0;
    x->built_through = x->position;
    rc = projections_store_row(p, x);
    if (!rc && sqlite3_exec(p->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) rc = CHOREO_EIO;
    if (rc) { /* as it was */
      x->building = x->live;
      x->live = was_live;
      x->objects = was_objects;
      x->built_through = was_through;
      free(objects);
    } else {
      free(was_objects);
    }
  }
  char reason[400] = ""; /* before the rollback, which replaces SQLite's message */
  if (rc)
    snprintf(reason, sizeof reason, "its tables could not replace the live ones: %s",
             why ? why : sqlite3_errmsg(p->db));
  if (rc && !sqlite3_get_autocommit(p->db)) sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
  if (attached) sqlite3_exec(p->db, "DETACH choreo_build", NULL, NULL, NULL);
  if (rc) {
    choreo_projections_fail(p, name, reason);
  } else {
    projections_unlink_build(p, name);
    choreo_log(CHOREO_LOG_INFO, "projections", "%s: version %lld is live (%lld events)",
               name, (long long)x->live, (long long)x->applied);
  }
  sqlite3_free(why);
  return rc;
}

void choreo_projections_each(choreo_projections *p, choreo_projection_fn fn, void *ud) {
  int64_t now = choreo_clock_ms();
  for (int i = 0; i < p->n; i++) {
    projection *x = &p->list[i];
    double seconds = (double)(now - x->taken_up_ms) / 1000.0;
    choreo_projection_status s = {
        .name = x->name, .declared = x->declared, .live = x->live, .objects = x->objects,
        .building = x->building, .position = x->position, .inputs = x->inputs,
        .applied = x->applied, .error = x->error, .history = "",
        .rate = x->building && seconds > 0 ? (double)(x->applied - x->applied_at_take_up) / seconds : 0};
    fn(ud, &s);
  }
}
