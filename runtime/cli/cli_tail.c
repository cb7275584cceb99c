/* choreo tail [--host NAME] [--count N] [PATTERN]: live messages as CloudEvents JSON lines,
 * from one host or every host on the bus (new ones are picked up as they appear). This is the
 * best-effort live path: a message dropped by PUB/SUB under load is not shown. */
#include <limits.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "cli.h"
#include "json.h"

#define TAIL_MAX_SOURCES 256

static volatile sig_atomic_t tail_stop;

static void tail_on_signal(int sig) {
  (void)sig;
  tail_stop = 1;
}

typedef struct tail_state {
  nng_socket sub;
  char bus[PATH_MAX];
  char *dialed[TAIL_MAX_SOURCES];
  int ndialed;
} tail_state;

static void tail_dial(tail_state *t, const char *name) {
  for (int i = 0; i < t->ndialed; i++)
    if (strcmp(t->dialed[i], name) == 0) return;
  if (t->ndialed == TAIL_MAX_SOURCES) return;
  char url[PATH_MAX + 64];
  choreo_bus_ipc_url(url, sizeof url, t->bus, name, "pub");
  if (choreo_bus_dial(t->sub, url, NULL) == 0) t->dialed[t->ndialed++] = strdup(name);
}

static void tail_found(void *ud, const char *name) { tail_dial(ud, name); }

typedef struct tail_lookup {
  const char *name;
  bool found;
} tail_lookup;

static void tail_match(void *ud, const char *name) {
  tail_lookup *l = ud;
  if (strcmp(name, l->name) == 0) l->found = true;
}

/* A host on the bus has its NAME.pub there: tailing one that is not would wait for ever. */
static bool tail_host_exists(const char *bus, const char *name) {
  tail_lookup l = {.name = name};
  return choreo_bus_each_host(bus, "pub", tail_match, &l) == 0 && l.found;
}

static bool tail_matches(const char *pattern, choreo_str type) {
  if (!pattern) return true;
  size_t n = strlen(pattern);
  if (n && pattern[n - 1] == '*') return type.n >= n - 1 && memcmp(type.p, pattern, n - 1) == 0;
  return choreo_str_eq(type, pattern);
}

/* Prints the frame's messages that match; returns how many. */
static long tail_print(const char *buf, size_t len, const char *pattern) {
  choreo_frame_reader r;
  if (choreo_frame_open(&r, buf, len)) return 0;
  long printed = 0;
  choreo_msg m;
  while (choreo_frame_next(&r, &m) == 1) {
    if (!tail_matches(pattern, m.type)) continue;
    char *line = choreo_msg_to_json(&m);
    if (line) {
      puts(line);
      printed++;
    }
    free(line);
  }
  choreo_frame_close(&r);
  fflush(stdout);
  return printed;
}

int cli_tail(const cli_args *a) {
  const char *pattern = NULL;
  long count = -1;
  for (int i = 0; i < a->nrest; i++) {
    if (strcmp(a->rest[i], "--count") == 0 && i + 1 < a->nrest) {
      char *end;
      count = strtol(a->rest[++i], &end, 10);
      if (*end || count <= 0) return cli_usage("--count needs a positive integer, got '%s'", a->rest[i]);
    } else if (a->rest[i][0] == '-') {
      return cli_usage("tail: unknown option '%s'", a->rest[i]);
    } else if (pattern) {
      return cli_usage("tail takes one pattern, got also '%s'", a->rest[i]);
    } else {
      pattern = a->rest[i];
    }
  }
  static tail_state t;
  char err[PATH_MAX + 64];
  if (choreo_bus_dir(a->bus, false, t.bus, sizeof t.bus, err, sizeof err)) return cli_fail("%s", err);
  if (a->host && !choreo_name_valid(a->host)) return cli_usage("invalid host name '%s'", a->host);
  if (a->host && !tail_host_exists(t.bus, a->host))
    return cli_fail("no host named '%s' is running on this bus", a->host);
  if (nng_sub0_open(&t.sub) || nng_socket_set(t.sub, NNG_OPT_SUB_SUBSCRIBE, "", 0) ||
      nng_socket_set_ms(t.sub, NNG_OPT_RECVTIMEO, 250))
    return cli_fail("%s", "cannot open a subscriber socket");
  signal(SIGINT, tail_on_signal);
  signal(SIGTERM, tail_on_signal);
  signal(SIGPIPE, tail_on_signal);
  int rc = CLI_OK;
  while (!tail_stop && count != 0) {
    if (a->host) {
      tail_dial(&t, a->host);
    } else if (choreo_bus_each_host(t.bus, "pub", tail_found, &t)) {
      rc = cli_fail("cannot read the bus directory %s", t.bus);
      break;
    }
    nng_msg *msg;
    if (nng_recvmsg(t.sub, &msg, 0) != 0) continue;
    long n = tail_print(nng_msg_body(msg), nng_msg_len(msg), pattern);
    nng_msg_free(msg);
    if (count > 0) count = n >= count ? 0 : count - n;
  }
  nng_close(t.sub);
  for (int i = 0; i < t.ndialed; i++) free(t.dialed[i]);
  return rc;
}
