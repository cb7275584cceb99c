/* choreo map: the choreography as a graph of what actually flowed. Every host on the bus counts
 * its journal's entries of the window by source, type, kind and handler (control op "flows");
 * here they become edges from the sender to the host that handled them, labelled with the type
 * and the count, and nodes marked with the sagas, workflows, projections and aggregates that
 * took part. Printed as a Mermaid flowchart, Graphviz DOT or JSON. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "cli.h"
#include "map.h"

#define MAP_WAIT_MS 3000
#define MAP_NODES_MAX 512
#define MAP_WINDOW_MAX_MS (366LL * 86400 * 1000) /* what hosts accept */

struct map {
  int64_t window_ms;
  const char *names[MAP_NODES_MAX]; /* the hosts on the bus first, then other senders */
  int n;
  cJSON *hosts;  /* [{name, answered, journal, more, error}] */
  cJSON *edges;  /* [{from, to, type, kind, count, failed, dead}] */
  cJSON *roles;  /* {host: [role...]} */
};

static void map_found(void *ud, const char *name) {
  map *m = ud;
  cJSON *h = cJSON_CreateObject();
  cJSON_AddStringToObject(h, "name", name);
  cJSON_AddItemToArray(m->hosts, h);
}

static int map_node(map *m, const char *name) {
  for (int i = 0; i < m->n; i++)
    if (strcmp(m->names[i], name) == 0) return i;
  if (m->n == MAP_NODES_MAX) return -1;
  m->names[m->n] = name;
  return m->n++;
}

static const char *map_str(const cJSON *o, const char *field) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static double map_num(const cJSON *o, const char *field) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* A handler label's role, if it names one: "saga Fulfilment (f.lua:3)" -> "saga Fulfilment",
 * and each of a list ("a.lua:2, workflow Fulfilment"). */
static void map_add_roles(map *m, const char *host, const char *handler) {
  static const char *const kinds[] = {"saga ", "workflow ", "projection ", "aggregate "};
  cJSON *list = cJSON_GetObjectItemCaseSensitive(m->roles, host);
  if (!list) list = cJSON_AddArrayToObject(m->roles, host);
  for (const char *p = handler; p && *p;) {
    size_t n = strcspn(p, ",(");
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
      if (strncmp(p, kinds[k], strlen(kinds[k])) != 0) continue;
      char role[256];
      size_t len = n < sizeof role ? n : sizeof role - 1;
      memcpy(role, p, len);
      while (len && role[len - 1] == ' ') len--;
      role[len] = '\0';
      bool seen = false;
      const cJSON *r;
      cJSON_ArrayForEach(r, list) seen |= strcmp(r->valuestring, role) == 0;
      if (!seen) cJSON_AddItemToArray(list, cJSON_CreateString(role));
    }
    p += n;
    if (*p == '(') p += strcspn(p, ")"); /* a site in brackets */
    p += strspn(p, "), ");
  }
}

/* One host's flows into edges (summed over handlers) and roles. */
static void map_add_flows(map *m, const char *host, const cJSON *flows) {
  const cJSON *f;
  cJSON_ArrayForEach(f, flows) {
    map_add_roles(m, host, map_str(f, "handler"));
    cJSON *edge = NULL, *e;
    cJSON_ArrayForEach(e, m->edges) {
      if (!strcmp(map_str(e, "from"), map_str(f, "source")) && !strcmp(map_str(e, "to"), host) &&
          !strcmp(map_str(e, "type"), map_str(f, "type")) &&
          !strcmp(map_str(e, "kind"), map_str(f, "kind")))
        edge = e;
    }
    if (!edge) {
      edge = cJSON_CreateObject();
      cJSON_AddStringToObject(edge, "from", map_str(f, "source"));
      cJSON_AddStringToObject(edge, "to", host);
      cJSON_AddStringToObject(edge, "type", map_str(f, "type"));
      cJSON_AddStringToObject(edge, "kind", map_str(f, "kind"));
      cJSON_AddNumberToObject(edge, "count", 0);
      cJSON_AddNumberToObject(edge, "failed", 0);
      cJSON_AddNumberToObject(edge, "dead", 0);
      cJSON_AddItemToArray(m->edges, edge);
    }
    static const char *const counts[] = {"count", "failed", "dead"};
    for (size_t i = 0; i < 3; i++)
      cJSON_SetNumberValue(cJSON_GetObjectItem(edge, counts[i]),
                           map_num(edge, counts[i]) + map_num(f, counts[i]));
  }
}

/* Asks every host; the names of those that did not answer are kept with why. */
static void map_collect(map *m, const char *bus, int64_t window_ms) {
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "op", "flows");
  cJSON_AddNumberToObject(req, "window_ms", (double)window_ms);
  char *text = cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  cJSON *h;
  cJSON_ArrayForEach(h, m->hosts) {
    const char *name = map_str(h, "name");
    cJSON *answer = NULL;
    char err[256] = "out of memory";
    const char *peer = cJSON_IsString(cJSON_GetObjectItem(h, "peer"))
                           ? cJSON_GetObjectItem(h, "peer")->valuestring
                           : NULL;
    int rc = !text  ? CLI_FAIL
             : peer ? cli_ask_peer(peer, text, MAP_WAIT_MS, &answer, err, sizeof err)
                    : cli_ask(bus, name, text, MAP_WAIT_MS, false, &answer, err, sizeof err);
    const char *answered_name = rc == CLI_OK ? map_str(answer, "host") : "";
    if (peer && choreo_name_valid(answered_name)) { /* a peer is known by its URL until then */
      cJSON_ReplaceItemInObject(h, "name", cJSON_CreateString(answered_name));
      name = map_str(h, "name");
    }
    /* An error answer (a host too old to know "flows") is an answer all the same. */
    map_node(m, name);
    cJSON_AddBoolToObject(h, "answered", rc == CLI_OK || rc == CLI_FAIL);
    if (rc) {
      cJSON_AddStringToObject(h, "error", rc == CLI_UNANSWERED ? "no answer within 3 s"
                                          : rc == CLI_USAGE     ? "not running"
                                                                : err);
      continue;
    }
    cJSON_AddBoolToObject(h, "journal", cJSON_IsTrue(cJSON_GetObjectItem(answer, "journal")));
    cJSON_AddBoolToObject(h, "more", cJSON_IsTrue(cJSON_GetObjectItem(answer, "more")));
    map_add_flows(m, name, cJSON_GetObjectItem(answer, "flows"));
    cJSON_Delete(answer);
  }
  free(text);
  const cJSON *e;
  cJSON_ArrayForEach(e, m->edges) map_node(m, map_str(e, "from"));
}

/* Text inside a quoted label: Mermaid reads '"' as the end and '#' as an entity. */
static void map_mermaid_text(const char *s) {
  for (; *s; s++) {
    if (*s == '"') fputs("#quot;", stdout);
    else if (*s == '#') fputs("#35;", stdout);
    else if (*s != '\n') putchar(*s);
  }
}

static void map_dot_text(const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') putchar('\\');
    if (*s != '\n') putchar(*s);
  }
}

static void map_edge_label(const cJSON *e, bool mermaid) {
  void (*text)(const char *) = mermaid ? map_mermaid_text : map_dot_text;
  text(map_str(e, "type"));
  printf(" ×%.0f", map_num(e, "count"));
  if (map_num(e, "failed") > 0) printf(", %.0f failed", map_num(e, "failed"));
  if (map_num(e, "dead") > 0) printf(", %.0f dead", map_num(e, "dead"));
}

static void map_print(map *m, const char *format) {
  bool mermaid = strcmp(format, "mermaid") == 0;
  puts(mermaid ? "flowchart LR" : "digraph choreography {\n  rankdir=LR;\n  node [shape=box];");
  for (int i = 0; i < m->n; i++) {
    const cJSON *roles = cJSON_GetObjectItemCaseSensitive(m->roles, m->names[i]), *r;
    printf(mermaid ? "  n%d[\"" : "  n%d [label=\"", i);
    (mermaid ? map_mermaid_text : map_dot_text)(m->names[i]);
    cJSON_ArrayForEach(r, roles) {
      fputs(mermaid ? "<br/>" : "\\n", stdout);
      (mermaid ? map_mermaid_text : map_dot_text)(r->valuestring);
    }
    const cJSON *h;
    cJSON_ArrayForEach(h, m->hosts) {
      if (strcmp(map_str(h, "name"), m->names[i]) != 0 || !cJSON_GetObjectItem(h, "error")) continue;
      fputs(mermaid ? "<br/>(" : "\\n(", stdout);
      (mermaid ? map_mermaid_text : map_dot_text)(
          cJSON_IsTrue(cJSON_GetObjectItem(h, "answered")) ? map_str(h, "error") : "did not answer");
      fputs(")", stdout);
    }
    puts(mermaid ? "\"]" : "\"];");
  }
  const cJSON *h;
  cJSON_ArrayForEach(h, m->hosts) {
    if (!cJSON_IsTrue(cJSON_GetObjectItem(h, "more"))) continue;
    printf(mermaid ? "  %%%% %s: only its newest 200000 entries of the window were read\n"
                   : "  // %s: only its newest 200000 entries of the window were read\n",
           map_str(h, "name"));
  }
  const cJSON *e;
  cJSON_ArrayForEach(e, m->edges) {
    int from = map_node(m, map_str(e, "from")), to = map_node(m, map_str(e, "to"));
    if (from < 0 || to < 0) continue; /* past MAP_NODES_MAX services */
    bool event = strcmp(map_str(e, "kind"), "event") == 0;
    if (mermaid) {
      printf("  n%d %s|\"", from, event ? "-.->" : "-->");
      map_edge_label(e, true);
      printf("\"| n%d\n", to);
    } else {
      printf("  n%d -> n%d [label=\"", from, to);
      map_edge_label(e, false);
      fputs(" (", stdout);
      map_dot_text(map_str(e, "kind"));
      printf(")\"%s];\n", event ? ", style=dashed" : "");
    }
  }
  if (!mermaid) puts("}");
}

int map_build(const char *bus, const char *host, const char *const *peers, int npeers,
              int64_t window_ms, map **out, char *err, size_t errlen) {
  *out = NULL;
  map *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, errlen, "out of memory");
    return CLI_FAIL;
  }
  m->window_ms = window_ms;
  m->hosts = cJSON_CreateArray();
  m->edges = cJSON_CreateArray();
  m->roles = cJSON_CreateObject();
  int rc = CLI_OK;
  if (host) {
    if (choreo_name_valid(host)) map_found(m, host);
    else rc = CLI_USAGE, snprintf(err, errlen, "invalid host name '%s'", host);
  } else if (bus[0] && choreo_bus_each_host(bus, "ctl", map_found, m)) {
    rc = CLI_FAIL, snprintf(err, errlen, "cannot read the bus directory %s", bus);
  }
  for (int i = 0; !rc && i < npeers; i++) {
    map_found(m, peers[i]);
    cJSON *added = cJSON_GetArrayItem(m->hosts, cJSON_GetArraySize(m->hosts) - 1);
    cJSON_AddStringToObject(added, "peer", peers[i]);
  }
  if (!rc && cJSON_GetArraySize(m->hosts) == 0)
    rc = CLI_FAIL, snprintf(err, errlen, "no host is running on bus %s", bus);
  if (rc) {
    map_destroy(m);
    return rc;
  }
  map_collect(m, bus, window_ms);
  *out = m;
  return CLI_OK;
}

cJSON *map_json(const map *m) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "window_ms", (double)m->window_ms);
  cJSON_AddItemToObject(o, "hosts", cJSON_Duplicate(m->hosts, 1));
  cJSON_AddItemToObject(o, "edges", cJSON_Duplicate(m->edges, 1));
  cJSON_AddItemToObject(o, "roles", cJSON_Duplicate(m->roles, 1));
  return o;
}

void map_destroy(map *m) {
  if (!m) return;
  cJSON_Delete(m->hosts);
  cJSON_Delete(m->edges);
  cJSON_Delete(m->roles);
  free(m);
}

/* map [--since DURATION] [--format mermaid|dot|json] [--peer URL]... */
int cli_map(const cli_args *a) {
  const char *format = "mermaid", *peers[a->nrest + 1];
  int64_t window_ms = 3600000;
  int npeers = 0;
  for (int i = 0; i < a->nrest; i++) {
    const char *s = a->rest[i];
    bool valued = strcmp(s, "--since") == 0 || strcmp(s, "--format") == 0 ||
                  strcmp(s, "--peer") == 0;
    if (valued && i + 1 >= a->nrest) return cli_usage("%s needs a value", s);
    if (strcmp(s, "--since") == 0) {
      if (cli_duration(s, a->rest[++i], &window_ms)) return CLI_USAGE;
      if (window_ms > MAP_WINDOW_MAX_MS) return cli_usage("%s", "--since is at most 366d");
    } else if (strcmp(s, "--format") == 0) {
      format = a->rest[++i];
    } else if (strcmp(s, "--peer") == 0) {
      peers[npeers++] = a->rest[++i];
    } else {
      return cli_usage("map takes --since DURATION, --format mermaid|dot|json and --peer URL, not '%s'", s);
    }
  }
  if (strcmp(format, "mermaid") && strcmp(format, "dot") && strcmp(format, "json"))
    return cli_usage("--format must be mermaid, dot or json, not '%s'", format);
  char bus[PATH_MAX], err[PATH_MAX + 64];
  if (choreo_bus_dir(a->bus, false, bus, sizeof bus, err, sizeof err)) {
    if (!npeers || a->host) return cli_fail("%s", err);
    bus[0] = '\0'; /* --peer only: this machine may have no bus */
  }
  map *m;
  int rc = map_build(bus, a->host, peers, npeers, window_ms, &m, err, sizeof err);
  if (rc == CLI_USAGE) return cli_usage("%s", err);
  if (rc) return cli_fail("%s", err);
  if (strcmp(format, "json") == 0) {
    cJSON *o = map_json(m);
    char *text = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (text) puts(text);
    else rc = cli_fail("%s", "out of memory");
    free(text);
  } else {
    map_print(m, format);
  }
  map_destroy(m);
  return rc;
}
