/* choreo run DIR: option parsing and defaults for a host (the host itself is host.c). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bus.h"
#include "choreo.h"
#include "cli.h"

static int run_number(const char *flag, const char *text, unsigned long long *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno || *end || !*text || text[0] == '-' || v == 0) return cli_usage("%s needs a positive integer", flag);
  *out = v;
  return CLI_OK;
}

int cli_run(const cli_args *a) {
  choreo_host_options o = {.bus = a->bus};
  const char *listen[a->nrest + 1], *peers[a->nrest + 1];
  o.listen = listen;
  o.peers = peers;
  for (int i = 0; i < a->nrest; i++) {
    const char *arg = a->rest[i];
    if (arg[0] != '-') {
      if (o.dir) return cli_usage("run takes one directory, got also '%s'", arg);
      o.dir = arg;
      continue;
    }
    if (i + 1 >= a->nrest) return cli_usage("%s needs a value", arg);
    const char *value = a->rest[++i];
    unsigned long long n = 0;
    if (strcmp(arg, "--name") == 0) o.name = value;
    else if (strcmp(arg, "--data") == 0) o.data = value;
    else if (strcmp(arg, "--listen") == 0) listen[o.nlisten++] = value;
    else if (strcmp(arg, "--peer") == 0) peers[o.npeers++] = value;
    else if (strcmp(arg, "--instructions") == 0) {
      if (run_number(arg, value, &n)) return CLI_USAGE;
      o.instruction_limit = n;
    } else if (strcmp(arg, "--memory") == 0) {
      if (run_number(arg, value, &n)) return CLI_USAGE;
      o.memory_limit = (size_t)n;
    } else return cli_usage("run: unknown option '%s'", arg);
  }
  if (!o.dir) return cli_usage("%s", "run needs the scripts directory: choreo run DIR");
  struct stat st;
  if (stat(o.dir, &st) != 0 || !S_ISDIR(st.st_mode)) return cli_fail("%s: no such directory", o.dir);
  char real[PATH_MAX], data[PATH_MAX + 64];
  if (!realpath(o.dir, real)) return cli_fail("%s: cannot resolve the directory", o.dir);
  o.dir = real;
  if (!o.name) o.name = strrchr(real, '/')[1] ? strrchr(real, '/') + 1 : "root";
  if (!choreo_bus_valid_name(o.name))
    return cli_usage("invalid name '%s' (letters, digits, '_', '-', '.'; at most 100)", o.name);
  if (!o.data) {
    snprintf(data, sizeof data, "%s/.choreo", real);
    if (mkdir(data, 0755) != 0 && errno != EEXIST) return cli_fail("cannot create %s", data);
    snprintf(data, sizeof data, "%s/.choreo/%s.db", real, o.name);
    o.data = data;
  }
  return choreo_host_run(&o) ? CLI_FAIL : CLI_OK;
}
