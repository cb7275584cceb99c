/* Unit tests for the VFS that gathers WAL writes (runtime/core/walwrites.c): a commit of many
 * pages costs one write call; what a commit wrote is in the file when COMMIT returns
 * (another connection reads it, a process killed right after keeps it); frames a transaction
 * spilled and rolled back never land on what another connection committed after; a page
 * written twice in one transaction (SQLite rewrites its frame in place) survives a kill; a
 * commit whose write fails (a full disk) fails alone. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "temp_files.h"
#include "walwrites.h"

static char dir[] = "/tmp/choreo-walwrites-XXXXXX";
static char path[PATH_MAX];

static sqlite3 *open_db(const char *vfs) {
  sqlite3 *db = NULL;
  CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) == SQLITE_OK);
  CHECK(sqlite3_exec(db, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; "
                         "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0",
                     NULL, NULL, NULL) == SQLITE_OK);
  return db;
}

static void exec(sqlite3 *db, const char *sql) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK) fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
  CHECK(rc == SQLITE_OK);
}

static long long scalar(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  long long v = -1;
  CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
  if (st && sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static bool intact(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  bool ok = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW &&
            strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
  sqlite3_finalize(st);
  return ok;
}

static void fresh(void) {
  for (const char *suffix = ""; suffix; suffix = *suffix ? NULL : "-wal") {
    char p[PATH_MAX + 8];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    unlink(p);
  }
  char shm[PATH_MAX + 8];
  snprintf(shm, sizeof shm, "%s-shm", path);
  unlink(shm);
}

/* Write calls to files, counted where they are made: SQLite's own through the unix VFS's
 * system call table (its hook for tests), ours by linking pwrite to __wrap_pwrite
 * (-Wl,--wrap=pwrite). Counting the process's write calls would count a tool's too (valgrind
 * writes to a pipe of its own to hand its lock between threads). */
static long long writes;
static bool disk_full; /* our writes fail as on a full disk */
static sqlite3_syscall_ptr sqlite_pwrite64;

static ssize_t counted_pwrite64(int fd, const void *buf, size_t n, off_t off) {
  writes++;
  return ((ssize_t(*)(int, const void *, size_t, off_t))sqlite_pwrite64)(fd, buf, n, off);
}

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off) {
  writes++;
  if (disk_full) {
    errno = ENOSPC;
    return -1;
  }
  return __real_pwrite(fd, buf, n, off);
}

/* Debian's SQLite writes with pwrite64 (built with USE_PREAD64): the only write call of its
 * table in use, which the checks below make sure of. */
static void count_writes(void) {
  sqlite3_vfs *unix_vfs = sqlite3_vfs_find("unix");
  CHECK(unix_vfs != NULL);
  sqlite_pwrite64 = unix_vfs->xGetSystemCall(unix_vfs, "pwrite64");
  CHECK(sqlite_pwrite64 != NULL);
  CHECK(unix_vfs->xSetSystemCall(unix_vfs, "pwrite64", (sqlite3_syscall_ptr)counted_pwrite64) ==
        SQLITE_OK);
}

/* The write calls of one commit of 50 rows of 1,000 bytes (a dozen pages of the table and its
 * tree) on a connection through vfs. */
static long long writes_of_a_commit(const char *vfs) {
  fresh();
  sqlite3 *db = open_db(vfs);
  exec(db, "CREATE TABLE t(i INTEGER PRIMARY KEY, pad BLOB)");
  long long before = writes;
  exec(db, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) "
           "INSERT INTO t(pad) SELECT randomblob(1000) FROM n; COMMIT");
  long long made = writes - before;
  sqlite3_close(db);
  return made;
}

static void a_commit_of_many_pages_is_one_write(void) {
  long long plain = writes_of_a_commit("unix"), gathered = writes_of_a_commit(NULL);
  fprintf(stderr, "  write calls of a commit: %lld, %lld on SQLite's plain VFS\n", gathered, plain);
  CHECK(plain >= 24); /* two per frame: the count sees SQLite's own */
  CHECK(gathered == 1);
}

static void each_commit_is_in_the_file_when_commit_returns(void) {
  fresh();
  sqlite3 *db = open_db(NULL), *other = open_db("unix"); /* the plain VFS: reads the file */
  exec(db, "CREATE TABLE t(i INTEGER PRIMARY KEY, pad BLOB)");
  for (int round = 1; round <= 20; round++) {
    exec(db, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
             "WHERE i < 25) INSERT INTO t(pad) SELECT randomblob(700) FROM n; COMMIT");
    CHECK(scalar(other, "SELECT count(*) FROM t") == round * 25);
    CHECK(scalar(other, "SELECT sum(length(pad)) FROM t") == round * 25 * 700);
  }
  CHECK(intact(other));
  sqlite3_close(other);
  sqlite3_close(db);
}

/* A reader in another process polls while commits come: whenever it sees a commit, it reads
 * all of it (a commit it saw before its frames were written would read zeros or old pages). */
static void a_reader_never_sees_a_commit_before_its_frames(void) {
  fresh();
  sqlite3 *db = open_db(NULL);
  exec(db, "CREATE TABLE t(i INTEGER PRIMARY KEY, pad BLOB)");
  pid_t reader = fork();
  CHECK(reader >= 0);
  if (reader == 0) {
    sqlite3 *r = NULL;
    int bad = sqlite3_open_v2(path, &r, SQLITE_OPEN_READONLY, "unix") != SQLITE_OK;
    sqlite3_busy_timeout(r, 1000);
    for (long long seen = 0; !bad && seen < 300 * 25;) {
      sqlite3_stmt *st = NULL;
      if (sqlite3_prepare_v2(r, "SELECT count(*), sum(length(pad)), sum(pad = zeroblob(700)) "
                                "FROM t", -1, &st, NULL) != SQLITE_OK) {
        bad = 1;
        break;
      }
      if (sqlite3_step(st) == SQLITE_ROW) {
        seen = sqlite3_column_int64(st, 0);
        bad = seen % 25 != 0 || sqlite3_column_int64(st, 1) != seen * 700 ||
              sqlite3_column_int64(st, 2) != seen;
      } else {
        bad = 1;
      }
      if (bad) fprintf(stderr, "  the reader: %s, %lld rows\n", sqlite3_errmsg(r), seen);
      sqlite3_finalize(st);
    }
    sqlite3_close(r);
    _exit(bad);
  }
  for (int round = 0; round < 300; round++)
    exec(db, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
             "WHERE i < 25) INSERT INTO t(pad) SELECT zeroblob(700) FROM n; COMMIT");
  int status = 0;
  CHECK(waitpid(reader, &status, 0) == reader && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  sqlite3_close(db);
}

/* Commits in a child that is killed (SIGKILL, nothing closed) right after; the parent finds
 * every one of them. With rewrite, each transaction also writes its first pages again after
 * spilling them (a cache of 5 pages): SQLite overwrites those frames in place and rewrites
 * the checksums of the frames after them at commit. */
static void commits_survive_a_kill(bool rewrite) {
  fresh();
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    sqlite3 *db = open_db(NULL);
    exec(db, "PRAGMA cache_size=5; CREATE TABLE t(i INTEGER PRIMARY KEY, n INTEGER, pad BLOB)");
    for (int round = 0; round < 10; round++) {
      exec(db, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
               "WHERE i < 40) INSERT INTO t(n, pad) SELECT 0, randomblob(900) FROM n");
      if (rewrite) exec(db, "UPDATE t SET n = n + 1 WHERE i % 40 < 4");
      exec(db, "COMMIT");
    }
    kill(getpid(), SIGKILL);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
  sqlite3 *db = open_db(NULL);
  CHECK(scalar(db, "SELECT count(*) FROM t") == 400);
  CHECK(scalar(db, "SELECT sum(length(pad)) FROM t") == 400 * 900);
  CHECK(scalar(db, "SELECT sum(n) FROM t") == (rewrite ? 4 * 10 * 10 / 2 + 4 * 10 / 2 : 0));
  CHECK(intact(db));
  sqlite3_close(db);
}

static void commits_survive_a_kill_plain(void) { commits_survive_a_kill(false); }
static void commits_survive_a_kill_with_pages_rewritten(void) { commits_survive_a_kill(true); }

/* A transaction spills pages to the WAL (a cache of 5 pages) and rolls back; another
 * connection then commits; the first one writes again. Frames the first one still held would
 * land on the other's committed frames. */
static void frames_rolled_back_never_land_on_a_later_commit(void) {
  fresh();
  sqlite3 *db = open_db(NULL), *other = open_db(NULL);
  exec(db, "PRAGMA cache_size=5; CREATE TABLE t(i INTEGER PRIMARY KEY, pad BLOB)");
  exec(db, "CREATE TABLE u(i INTEGER PRIMARY KEY, pad BLOB)");
  /* All in the database file: rolling back reads nothing from the WAL (which would write out
   * what was gathered on the way) */
  exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  exec(db, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60) "
           "INSERT INTO t(pad) SELECT randomblob(900) FROM n; ROLLBACK");
  exec(other, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
              "WHERE i < 60) INSERT INTO u(pad) SELECT zeroblob(900) FROM n; COMMIT");
  exec(db, "INSERT INTO t(pad) VALUES (x'01')");
  sqlite3_close(db);
  CHECK(scalar(other, "SELECT count(*) FROM u WHERE pad = zeroblob(900)") == 60);
  CHECK(scalar(other, "SELECT count(*) FROM t") == 1);
  CHECK(intact(other));
  sqlite3_close(other);
  sqlite3 *again = open_db("unix"); /* from the file alone */
  CHECK(scalar(again, "SELECT count(*) FROM u WHERE pad = zeroblob(900)") == 60);
  CHECK(intact(again));
  sqlite3_close(again);
}

/* The gathered write of a commit fails (a full disk): COMMIT says so, the transaction is
 * gone, what was committed before stays, and the next commit, once there is room, lands. */
static void a_failed_write_fails_its_commit_alone(void) {
  fresh();
  sqlite3 *db = open_db(NULL);
  exec(db, "CREATE TABLE t(i INTEGER PRIMARY KEY, pad BLOB); INSERT INTO t(pad) VALUES (x'01')");
  disk_full = true;
  int rc = sqlite3_exec(db, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                            "FROM n WHERE i < 30) INSERT INTO t(pad) SELECT randomblob(900) "
                            "FROM n; COMMIT", NULL, NULL, NULL);
  disk_full = false;
  CHECK(rc == SQLITE_FULL);
  if (!sqlite3_get_autocommit(db)) exec(db, "ROLLBACK");
  CHECK(scalar(db, "SELECT count(*) FROM t") == 1);
  exec(db, "INSERT INTO t(pad) VALUES (x'02')");
  sqlite3_close(db);
  sqlite3 *again = open_db("unix");
  CHECK(scalar(again, "SELECT count(*) FROM t") == 2);
  CHECK(intact(again));
  sqlite3_close(again);
}

int main(void) {
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/test.db", dir);
  count_writes();
  choreo_walwrites_register();
  RUN(a_commit_of_many_pages_is_one_write);
  RUN(each_commit_is_in_the_file_when_commit_returns);
  RUN(a_reader_never_sees_a_commit_before_its_frames);
  RUN(commits_survive_a_kill_plain);
  RUN(commits_survive_a_kill_with_pages_rewritten);
  RUN(frames_rolled_back_never_land_on_a_later_commit);
  RUN(a_failed_write_fails_its_commit_alone);
  remove_tree(dir);
  return CHECK_DONE();
}
