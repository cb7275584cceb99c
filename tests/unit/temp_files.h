/* The C unit tests' helpers for the files a host leaves: counting a bus directory's sockets,
 * removing a test's corner of the temp directory, and making one for an ipc:// endpoint. */
#ifndef CHOREO_TEST_TEMP_FILES_H
#define CHOREO_TEST_TEMP_FILES_H

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"

/* The entries of a bus directory: each open host has its NAME.pub, NAME.rep and NAME.ctl
 * sockets there, which NNG removes when the host closes its listeners. */
static inline int bus_entries(const char *bus) {
  int n = 0;
  DIR *d = opendir(bus);
  CHECK(d != NULL);
  if (!d) return -1;
  for (struct dirent *ent; (ent = readdir(d));)
    if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

/* rm -r: SQLite leaves -wal/-shm files beside the databases, the defaults a .choreo folder. */
static inline void remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      for (struct dirent *ent; (ent = readdir(d));) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
        char child[PATH_MAX];
        /* a path that does not fit is left behind, and rmdir below says so */
        if (snprintf(child, sizeof child, "%s/%s", path, ent->d_name) < (int)sizeof child)
          remove_tree(child);
      }
      closedir(d);
    }
    CHECK(rmdir(path) == 0);
  } else {
    CHECK(unlink(path) == 0);
  }
}

/* A test's ipc:// endpoint: a fresh directory under /tmp, the socket file's path in it, and
 * its URL. */
typedef struct temp_endpoint {
  char dir[64], path[96], url[110];
} temp_endpoint;

static inline void temp_endpoint_make(temp_endpoint *e, const char *test, const char *file) {
  snprintf(e->dir, sizeof e->dir, "/tmp/choreo-%s-XXXXXX", test);
  CHECK(mkdtemp(e->dir) != NULL);
  snprintf(e->path, sizeof e->path, "%s/%s", e->dir, file);
  snprintf(e->url, sizeof e->url, "ipc://%s", e->path);
}

/* The address of the Unix socket at path. */
static inline struct sockaddr_un unix_address(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  return sa;
}

/* The endpoint's socket address, for a test that binds or connects a raw socket there. */
static inline struct sockaddr_un temp_endpoint_address(const temp_endpoint *e) {
  return unix_address(e->path);
}

#endif
