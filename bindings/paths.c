/* Locating choreo's own Lua scripts (see paths.h). Looked for next to the program (the build
 * tree, and PREFIX/bin beside PREFIX/share), next to the library that holds this code (a
 * program embedding libchoreo.so lives anywhere), at the install prefix the build was
 * configured with, and last in the source tree. */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"

static char scripts_dir[PATH_MAX];

static int paths_has_scripts(const char *dir) {
  char probe[PATH_MAX + 32];
  struct stat st;
  snprintf(probe, sizeof probe, "%s/choreo/testing.lua", dir);
  return stat(probe, &st) == 0;
}

/* Tries the places relative to the directory holding `file`. */
static int paths_try_beside(const char *file) {
  static const char *const relative[] = {"/scripts", "/../scripts", "/../share/choreo/scripts",
                                         "/../../share/choreo/scripts"};
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", file);
  char *slash = strrchr(dir, '/');
  if (!slash) return 0;
  *slash = '\0';
  for (size_t i = 0; i < sizeof relative / sizeof *relative; i++) {
    snprintf(scripts_dir, sizeof scripts_dir, "%s%s", dir, relative[i]);
    if (paths_has_scripts(scripts_dir)) return 1;
  }
  return 0;
}

/* Fills scripts_dir, once per process: hosts opened on several threads may ask together. */
static void paths_find(void) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    if (paths_try_beside(exe)) return;
  }
  Dl_info self;
  if (dladdr((void *)choreo_paths_scripts, &self) && self.dli_fname && self.dli_fname[0] == '/' &&
      paths_try_beside(self.dli_fname))
    return;
  const char *fixed = paths_has_scripts(CHOREO_INSTALLED_SCRIPTS) ? CHOREO_INSTALLED_SCRIPTS
                                                                  : CHOREO_SOURCE_SCRIPTS;
  snprintf(scripts_dir, sizeof scripts_dir, "%s", fixed);
}

const char *choreo_paths_scripts(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, paths_find);
  return scripts_dir;
}
