/* choreo tail [--host NAME] [--count N] [--format json|text] [--source NAME]
 * [--correlation ID] [PATTERN]: live messages as CloudEvents JSON lines or one line of text
 * each, from one host or every host on the bus (new ones are picked up as they appear). This is
 * the best-effort live path: a message dropped by PUB/SUB under load is not shown. */
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

/* Which messages to show, and how. */
typedef struct tail_filter {
  const char *pattern; /* type, or a prefix ending in '*' */
  const char *source, *correlation;
  bool text;
} tail_filter;

static bool tail_matches(const tail_filter *f, const choreo_msg *m) {
  if (f->source && !choreo_str_eq(m->source, f->source)) return false;
  if (f->correlation && !choreo_str_eq(m->correlationid, f->correlation)) return false;
  if (!f->pattern) return true;
  size_t n = strlen(f->pattern);
  if (n && f->pattern[n - 1] == '*')
    return m->type.n >= n - 1 && memcmp(m->type.p, f->pattern, n - 1) == 0;
  return choreo_str_eq(m->type, f->pattern);
}

#define TAIL_TEXT_DATA 80 /* characters of data shown per line */

/* One line for people: time of day, source, kind, type (and whom a command is for), the
 * correlation id, and the start of the data as JSON. */
static char *tail_text(const choreo_msg *m) {
  cJSON *ce = choreo_msg_to_cjson(m);
  if (!ce) return NULL;
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(ce, "data");
  if (!data) data = cJSON_GetObjectItemCaseSensitive(ce, "data_base64");
  char *json = data ? cJSON_PrintUnformatted(data) : NULL;
  const char *time = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ce, "time"));
  const char *clock = time && strchr(time, 'T') ? strchr(time, 'T') + 1 : (time ? time : "-");
  char *line = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&line, &size);
  if (f) {
    fprintf(f, "%.15s  %-12.*s %-7.*s %.*s", clock, (int)m->source.n, m->source.p,
            (int)m->kind.n, m->kind.p, (int)m->type.n, m->type.p);
    if (m->to.n) fprintf(f, " -> %.*s", (int)m->to.n, m->to.p);
    if (m->correlationid.n)
      fprintf(f, "  [%.*s]", (int)m->correlationid.n, m->correlationid.p);
    if (json) {
      size_t n = strlen(json);
      fprintf(f, "  %.*s%s", TAIL_TEXT_DATA, json, n > TAIL_TEXT_DATA ? "..." : "");
    }
    if (fclose(f)) {
      free(line);
      line = NULL;
    }
  }
  free(json);
  cJSON_Delete(ce);
  return line;
}

/* Prints the frame's messages that match; returns how many. */
static long tail_print(const char *buf, size_t len, const tail_filter *filter) {
  choreo_frame_reader r;
  if (choreo_frame_open(&r, buf, len)) return 0;
  long printed = 0;
  choreo_msg m;
  while (choreo_frame_next(&r, &m) == 1) {
    if (!tail_matches(filter, &m)) continue;
    char *line = filter->text ? tail_text(&m) : choreo_msg_to_json(&m);
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

/* The value of option rest[*i], moving *i past it; NULL when it has none. */
static const char *tail_value(const cli_args *a, int *i) {
  return *i + 1 < a->nrest ? a->rest[++*i] : NULL;
}

int cli_tail(const cli_args *a) {
  tail_filter filter = {0};
  long count = -1;
  for (int i = 0; i < a->nrest; i++) {
    const char *opt = a->rest[i];
    bool takes_value = strcmp(opt, "--count") == 0 || strcmp(opt, "--format") == 0 ||
                       strcmp(opt, "--source") == 0 || strcmp(opt, "--correlation") == 0;
    const char *value = takes_value ? tail_value(a, &i) : NULL;
    if (takes_value && !value) return cli_usage("tail: %s needs a value", opt);
    if (strcmp(opt, "--count") == 0) {
      char *end;
      count = strtol(value, &end, 10);
      if (*end || count <= 0) return cli_usage("--count needs a positive integer, got '%s'", value);
    } else if (strcmp(opt, "--format") == 0) {
      if (strcmp(value, "json") && strcmp(value, "text"))
        return cli_usage("--format is json or text, got '%s'", value);
      filter.text = strcmp(value, "text") == 0;
    } else if (strcmp(opt, "--source") == 0) {
      if (!choreo_name_valid(value)) return cli_usage("invalid source name '%s'", value);
      filter.source = value;
    } else if (strcmp(opt, "--correlation") == 0) {
      filter.correlation = value;
    } else if (opt[0] == '-') {
      return cli_usage("tail: unknown option '%s'", opt);
    } else if (filter.pattern) {
      return cli_usage("tail takes one pattern, got also '%s'", opt);
    } else {
      filter.pattern = opt;
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
    long n = tail_print(nng_msg_body(msg), nng_msg_len(msg), &filter);
    nng_msg_free(msg);
    if (count > 0) count = n >= count ? 0 : count - n;
  }
  /* No nng_close: NNG 1.5 can wait for good closing a socket one of whose connections closed
   * in the middle of a message (docs/ARCHITECTURE.md), which left `tail --count N` hanging once
   * it had printed its N messages. The process ends here; the kernel takes its sockets back. */
  for (int i = 0; i < t.ndialed; i++) free(t.dialed[i]);
  return rc;
}
