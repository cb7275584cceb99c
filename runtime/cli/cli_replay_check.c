/* choreo replay-check DIR [--name NAME] [--data FILE]: whether the scripts in DIR keep every
 * running workflow instance of a host's database to the steps its history recorded, as a
 * reload checks before it swaps code in; for CI, before new code is deployed. It works on a
 * copy taken with SQLite's online backup, so the host may be running and is not disturbed. */
#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "choreo.h"
#include "cli.h"
#include "engine.h"
#include "host.h"
#include "lua_scripts.h"

/* Copies the database at from into to, consistently even while a host writes it. */
static int replay_copy(const char *from, const char *to, char *err, size_t errlen) {
  sqlite3 *src = NULL, *dst = NULL;
  int rc = sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_open(to, &dst);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(src, 5000);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    rc = b ? sqlite3_backup_step(b, -1) : sqlite3_errcode(dst);
    if (b) sqlite3_backup_finish(b);
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK)
    snprintf(err, errlen, "cannot copy %.900s: %s", from, sqlite3_errstr(rc));
  sqlite3_close(src);
  sqlite3_close(dst);
  return rc == SQLITE_OK ? 0 : CHOREO_EIO;
}

/* Removes the copy's directory and what the engine made in it (WAL, build files). */
static void replay_remove(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *entry;
  char path[PATH_MAX];
  while (d && (entry = readdir(d))) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
    unlink(path);
  }
  if (d) closedir(d);
  rmdir(dir);
}

int cli_replay_check(const cli_args *a) {
  const char *usage = "usage: choreo replay-check DIR [--name NAME] [--data FILE]";
  const char *dir = NULL, *name = NULL, *data = NULL;
  for (int i = 0; i < a->nrest; i++) {
    const char *arg = a->rest[i];
    bool valued = strcmp(arg, "--name") == 0 || strcmp(arg, "--data") == 0;
    if (valued && i + 1 >= a->nrest) return cli_usage("%s needs a value", arg);
    if (strcmp(arg, "--name") == 0) name = a->rest[++i];
    else if (strcmp(arg, "--data") == 0) data = a->rest[++i];
    else if (arg[0] == '-' && arg[1] == '-') return cli_usage("unknown option '%s'", arg);
    else if (dir) return cli_usage("%s", usage);
    else dir = arg;
  }
  if (!dir) return cli_usage("%s", usage);
  char real[PATH_MAX], db[PATH_MAX + 64], err[1024];
  if (!realpath(dir, real)) return cli_fail("%s: no such directory", dir);
  if (!name) name = choreo_host_default_name(real);
  if (choreo_name_check(name, err, sizeof err)) return cli_usage("%s", err);
  if (data) snprintf(db, sizeof db, "%s", data);
  else snprintf(db, sizeof db, "%s/.choreo/%s.db", real, name);
  if (access(db, R_OK) != 0) return cli_fail("no database at %s (give it with --data)", db);
  char tmp[] = "/tmp/choreo-replay-check-XXXXXX", copy[sizeof tmp + 16];
  if (!mkdtemp(tmp)) return cli_fail("%s", "cannot create a temporary directory");
  snprintf(copy, sizeof copy, "%s/copy.db", tmp);
  choreo_engine *e = NULL;
  choreo_engine_config cfg = {.name = name, .dir = real, .data = copy,
                              .scripts = &choreo_lua_scripts};
  int rc = replay_copy(db, copy, err, sizeof err);
  if (!rc) rc = choreo_engine_open(&e, &cfg, err, sizeof err);
  if (!rc) rc = choreo_engine_check_workflows(e, err, sizeof err);
  choreo_engine_close(e);
  replay_remove(tmp);
  if (rc) return cli_fail("%s", err);
  printf("ok: the scripts in %s keep every running workflow instance of %s to its history\n",
         real, db);
  return CLI_OK;
}
