/* choreo test DIR [busted args]: runs the DIR/spec specs with busted inside choreo, against
 * the real bindings (bindings/ltest.c). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "cli.h"
#include "lua_scripts.h"

int cli_test(const cli_args *a) {
  if (a->nrest < 1 || a->rest[0][0] == '-') return cli_usage("%s", "usage: choreo test DIR [busted args]");
  char dir[PATH_MAX], spec[PATH_MAX + 8];
  struct stat st;
  if (!realpath(a->rest[0], dir) || stat(dir, &st) || !S_ISDIR(st.st_mode))
    return cli_fail("%s: no such directory", a->rest[0]);
  snprintf(spec, sizeof spec, "%s/spec", dir);
  if (stat(spec, &st) || !S_ISDIR(st.st_mode)) return cli_fail("%s: no spec directory", spec);
  setenv("CHOREO_TEST_DIR", dir, 1);
  char err[1024];
  bool passed;
  int rc = choreo_lua_run_tests(dir, (const char *const *)a->rest + 1, a->nrest - 1, &passed, err,
                                sizeof err);
  if (rc == CHOREO_EINVAL) return cli_usage("%s", err);
  if (rc) return cli_fail("%s", err);
  return passed ? CLI_OK : CLI_FAIL;
}
