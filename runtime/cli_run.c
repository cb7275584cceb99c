/* choreo run DIR: option parsing and defaults for a host (the host itself is host.c). */
#define _GNU_SOURCE /* sched_setaffinity and the CPU_* macros */
#include <errno.h>
#include <sched.h>
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

/* --cpu N: keeps the host and every thread it starts (NNG's, the checkpointer) on one CPU. Its
 * messages pass between those threads several times; on a VM, waking a thread on another CPU
 * costs tens of microseconds, which measured as half the publish-to-commit latency. */
static int run_pin(const char *text) {
  char *end;
  errno = 0;
  long cpu = strtol(text, &end, 10);
  cpu_set_t allowed, one;
  if (errno || *end || !*text || cpu < 0 || cpu >= CPU_SETSIZE)
    return cli_usage("--cpu needs a CPU number, got '%s'", text);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || !CPU_ISSET((int)cpu, &allowed))
    return cli_fail("--cpu %s: no such CPU available to this process", text);
  CPU_ZERO(&one);
  CPU_SET((int)cpu, &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0)
    return cli_fail("--cpu: %s", strerror(errno));
  return CLI_OK;
}

int cli_run(const cli_args *a) {
  choreo_host_options o = {.bus = a->bus};
  const char *cpu = NULL;
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
    else if (strcmp(arg, "--cpu") == 0) cpu = value;
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
  int rc = cpu ? run_pin(cpu) : CLI_OK; /* before the host starts any thread */
  if (rc) return rc;
  return choreo_host_run(&o) ? CLI_FAIL : CLI_OK;
}
