/* Locating choreo's own Lua scripts (see paths.h). */
#include <limits.h>
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

const char *choreo_paths_scripts(void) {
  if (scripts_dir[0]) return scripts_dir;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    static const char *const relative[] = {"/scripts", "/../scripts", "/../share/choreo/scripts"};
    for (size_t i = 0; i < sizeof relative / sizeof *relative; i++) {
      snprintf(scripts_dir, sizeof scripts_dir, "%s%s", exe, relative[i]);
      if (paths_has_scripts(scripts_dir)) return scripts_dir;
    }
  }
  snprintf(scripts_dir, sizeof scripts_dir, "%s", CHOREO_SOURCE_SCRIPTS);
  return scripts_dir;
}
