/* choreo ui: a web page of the bus, served by NNG's HTTP server: the static files shipped with
 * choreo (ui/: no build step, nothing from a CDN) and the JSON the CLI prints, asked of the
 * hosts when the page asks:
 *   GET /api/hosts                every host's `choreo status --json`, or why it did not answer
 *   GET /api/map?since=DURATION   `choreo map --format json`
 *   GET /api/conversations        the newest conversations of every host, merged
 *   GET /api/trace?id=ID          `choreo trace --json ID`
 * and with --peer URL the same of hosts on other machines. Only GET; it listens on 127.0.0.1 unless told otherwise, and runs until SIGINT or SIGTERM. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bus.h"
#include "cli.h"
#include "http.h"
#include "map.h"
#include "paths.h"
#include "trace.h"

#define UI_WAIT_MS 3000
#define UI_PARAM_MAX 1024
#define UI_INFLIGHT_MAX 32

/* The handlers' only state, set before the server starts: the bus ("" for none) and the
 * hosts of other machines (--peer). */
static char ui_bus[PATH_MAX];
static const char *const *ui_peers;
static int ui_npeers;

static void ui_respond(nng_aio *aio, uint16_t status, cJSON *body) {
  char *text = body ? cJSON_PrintUnformatted(body) : NULL;
  cJSON_Delete(body);
  if (!text) {
    nng_aio_finish(aio, NNG_ENOMEM);
    return;
  }
  choreo_http_reply(aio, status, "application/json", text, strlen(text));
  free(text);
}

static void ui_error(nng_aio *aio, uint16_t status, const char *message) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "error", message);
  ui_respond(aio, status, o);
}

static int ui_hex(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The value of parameter `name` in the request's query string, %-decoded into out; false when
 * absent or malformed (a bad escape, an escaped NUL, too long). */
static bool ui_param(nng_aio *aio, const char *name, char *out, size_t size) {
  const char *uri = nng_http_req_get_uri(nng_aio_get_input(aio, 0));
  const char *q = strchr(uri, '?');
  size_t nlen = strlen(name);
  for (const char *p = q ? q + 1 : NULL; p && *p; p += strcspn(p, "&"), p += *p == '&') {
    if (strncmp(p, name, nlen) != 0 || p[nlen] != '=') continue;
    const char *v = p + nlen + 1;
    size_t n = strcspn(v, "&"), o = 0;
    for (size_t i = 0; i < n; i++) {
      if (o + 1 >= size) return false;
      int hi = v[i] == '%' && i + 2 < n ? ui_hex(v[i + 1]) : -1;
      int lo = hi >= 0 ? ui_hex(v[i + 2]) : -1;
      if (v[i] == '%' && (hi < 0 || lo < 0 || (hi == 0 && lo == 0))) return false;
      out[o++] = v[i] == '%' ? (char)(hi * 16 + lo) : v[i] == '+' ? ' ' : v[i];
      if (v[i] == '%') i += 2;
    }
    out[o] = '\0';
    return true;
  }
  return false;
}

typedef struct ui_hosts {
  cJSON *list;
} ui_hosts;

static void ui_found(void *ud, const char *name) {
  cJSON *h = cJSON_CreateObject();
  cJSON_AddStringToObject(h, "name", name);
  cJSON_AddItemToArray(((ui_hosts *)ud)->list, h);
}

/* Every host on the bus, each asked `op`; answers under "answer", failures under "error". */
static cJSON *ui_ask_all(const char *op) {
  ui_hosts hs = {cJSON_CreateArray()};
  if (ui_bus[0] && choreo_bus_each_host(ui_bus, "ctl", ui_found, &hs)) {
    cJSON_Delete(hs.list);
    return NULL;
  }
  char request[64];
  snprintf(request, sizeof request, "{\"op\":\"%s\"}", op);
  for (int i = 0; i < ui_npeers; i++) {
    ui_found(&hs, ui_peers[i]); /* known by its URL until it answers */
    cJSON_AddStringToObject(cJSON_GetArrayItem(hs.list, cJSON_GetArraySize(hs.list) - 1), "peer",
                            ui_peers[i]);
  }
  cJSON *h;
  cJSON_ArrayForEach(h, hs.list) {
    cJSON *answer = NULL;
    char err[256];
    const char *name = cJSON_GetObjectItem(h, "name")->valuestring;
    const cJSON *peer = cJSON_GetObjectItem(h, "peer");
    int rc = peer ? cli_ask_peer(peer->valuestring, request, UI_WAIT_MS, &answer, err, sizeof err)
                  : cli_ask(ui_bus, name, request, UI_WAIT_MS, false, &answer, err, sizeof err);
    if (rc) {
      cJSON_AddStringToObject(h, "error", rc == CLI_UNANSWERED ? "no answer within 3 s" : err);
      continue;
    }
    const cJSON *named = cJSON_GetObjectItem(answer, cJSON_GetObjectItem(answer, "host") ? "host" : "name");
    if (peer && cJSON_IsString(named)) cJSON_ReplaceItemInObject(h, "name", cJSON_CreateString(named->valuestring));
    cJSON_AddItemToObject(h, "answer", answer);
  }
  return hs.list;
}

static void ui_hosts_answer(nng_aio *aio) {
  cJSON *list = ui_ask_all("status");
  if (!list) return ui_error(aio, 500, "cannot read the bus directory");
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToObject(o, "hosts", list);
  ui_respond(aio, 200, o);
}

static void ui_conversations_answer(nng_aio *aio) {
  cJSON *list = ui_ask_all("conversations");
  if (!list) return ui_error(aio, 500, "cannot read the bus directory");
  /* Merged by conversation: the hosts each took part, the span of all their entries. */
  cJSON *merged = cJSON_CreateObject(), *h;
  cJSON_ArrayForEach(h, list) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetObjectItem(h, "answer"), "conversations")) {
      const char *id = cJSON_GetObjectItem(c, "correlation")->valuestring;
      cJSON *m = cJSON_GetObjectItemCaseSensitive(merged, id);
      if (!m) {
        m = cJSON_AddObjectToObject(merged, id);
        cJSON_AddStringToObject(m, "correlation", id);
        cJSON_AddNumberToObject(m, "first_ms", cJSON_GetObjectItem(c, "first_ms")->valuedouble);
        cJSON_AddNumberToObject(m, "last_ms", 0);
        cJSON_AddNumberToObject(m, "messages", 0);
        cJSON_AddNumberToObject(m, "failed", 0);
        cJSON_AddArrayToObject(m, "hosts");
      }
      static const char *const sums[] = {"messages", "failed"};
      for (int i = 0; i < 2; i++)
        cJSON_SetNumberValue(cJSON_GetObjectItem(m, sums[i]),
                             cJSON_GetObjectItem(m, sums[i])->valuedouble +
                                 cJSON_GetObjectItem(c, sums[i])->valuedouble);
      double first = cJSON_GetObjectItem(c, "first_ms")->valuedouble;
      double last = cJSON_GetObjectItem(c, "last_ms")->valuedouble;
      if (first < cJSON_GetObjectItem(m, "first_ms")->valuedouble)
        cJSON_SetNumberValue(cJSON_GetObjectItem(m, "first_ms"), first);
      if (last > cJSON_GetObjectItem(m, "last_ms")->valuedouble)
        cJSON_SetNumberValue(cJSON_GetObjectItem(m, "last_ms"), last);
      cJSON_AddItemToArray(cJSON_GetObjectItem(m, "hosts"),
                           cJSON_CreateString(cJSON_GetObjectItem(h, "name")->valuestring));
    }
  }
  cJSON *o = cJSON_CreateObject(), *out = cJSON_AddArrayToObject(o, "conversations");
  while (merged->child) cJSON_AddItemToArray(out, cJSON_DetachItemViaPointer(merged, merged->child));
  cJSON_Delete(merged);
  cJSON_Delete(list);
  ui_respond(aio, 200, o);
}

static void ui_map_answer(nng_aio *aio) {
  char since[64] = "1h", err[PATH_MAX + 64];
  int64_t window_ms = 3600000;
  bool given = ui_param(aio, "since", since, sizeof since);
  if (given && !(since[0] >= '1' && since[0] <= '9')) return ui_error(aio, 400, "since: a duration such as 1h");
  if (given) { /* cli_duration's rules, without its message on stderr */
    char *end;
    long long n = strtoll(since, &end, 10);
    int64_t unit = !strcmp(end, "ms") ? 1 : !strcmp(end, "s") ? 1000 : !strcmp(end, "m") ? 60000
                 : !strcmp(end, "h") ? 3600000 : !strcmp(end, "d") ? 86400000 : 0;
    if (!unit || n <= 0 || n > INT64_MAX / unit || n * unit > 366LL * 86400 * 1000)
      return ui_error(aio, 400, "since: a duration such as 1h, at most 366d");
    window_ms = n * unit;
  }
  map *m;
  if (map_build(ui_bus, NULL, ui_peers, ui_npeers, window_ms, &m, err, sizeof err))
    return ui_error(aio, 502, err);
  cJSON *o = map_json(m);
  map_destroy(m);
  ui_respond(aio, o ? 200 : 500, o);
}

static void ui_trace_answer(nng_aio *aio) {
  char id[UI_PARAM_MAX], err[4096];
  if (!ui_param(aio, "id", id, sizeof id) || !id[0])
    return ui_error(aio, 400, "trace needs ?id=ID: a message id or a conversation id");
  trace *t;
  int rc = trace_build(ui_bus, NULL, ui_peers, ui_npeers, id, &t, err, sizeof err);
  if (rc) return ui_error(aio, 404, err);
  cJSON *o = trace_json(t);
  trace_destroy(t);
  ui_respond(aio, o ? 200 : 500, o);
}

static void ui_route(nng_aio *aio) {
  const char *uri = nng_http_req_get_uri(nng_aio_get_input(aio, 0));
  size_t n = strcspn(uri, "?");
  if (n == 10 && strncmp(uri, "/api/hosts", n) == 0) ui_hosts_answer(aio);
  else if (n == 8 && strncmp(uri, "/api/map", n) == 0) ui_map_answer(aio);
  else if (n == 10 && strncmp(uri, "/api/trace", n) == 0) ui_trace_answer(aio);
  else if (n == 18 && strncmp(uri, "/api/conversations", n) == 0) ui_conversations_answer(aio);
  else ui_error(aio, 404, "no such path: the API is /api/hosts, /api/map, /api/conversations, /api/trace");
}

/* Requests under way on their own threads; the server stops once none is. */
static atomic_int ui_inflight;

static void *ui_worker(void *arg) {
  ui_route(arg);
  atomic_fetch_sub(&ui_inflight, 1);
  return NULL;
}

/* NNG's thread: hands the request to a thread of its own. Answering asks the hosts over NNG
 * sockets and waits (seconds, for a host that does not answer): done on NNG's own threads, it
 * would hold the very threads those sockets need, and the page's few requests at once were
 * enough to stall it for good. */
static void ui_on_api(nng_aio *aio) {
  if (atomic_fetch_add(&ui_inflight, 1) >= UI_INFLIGHT_MAX) {
    atomic_fetch_sub(&ui_inflight, 1);
    return ui_error(aio, 503, "too many requests under way");
  }
  pthread_attr_t attr;
  pthread_t thread;
  bool started = pthread_attr_init(&attr) == 0 &&
                 pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
                 pthread_create(&thread, &attr, ui_worker, aio) == 0;
  pthread_attr_destroy(&attr);
  if (!started) {
    atomic_fetch_sub(&ui_inflight, 1);
    ui_error(aio, 500, "cannot start a thread for the request");
  }
}

/* The ui folder beside choreo's scripts (the build tree, PREFIX/share/choreo, the sources). */
static bool ui_dir(char *out, size_t size) {
  struct stat st;
  snprintf(out, size, "%s/../ui", choreo_paths_scripts());
  char probe[PATH_MAX + 32];
  snprintf(probe, sizeof probe, "%s/index.html", out);
  return stat(probe, &st) == 0;
}

/* ui [--listen http://HOST:PORT|PORT] [--peer URL]... */
int cli_ui(const cli_args *a) {
  const char *listen = "7480", *peers[a->nrest + 1];
  int npeers = 0;
  for (int i = 0; i < a->nrest; i++) {
    if (strcmp(a->rest[i], "--listen") == 0 && i + 1 < a->nrest) listen = a->rest[++i];
    else if (strcmp(a->rest[i], "--peer") == 0 && i + 1 < a->nrest) peers[npeers++] = a->rest[++i];
    else return cli_usage("ui takes --listen http://HOST:PORT or a port, and --peer URL, not '%s'",
                          a->rest[i]);
  }
  ui_peers = peers;
  ui_npeers = npeers;
  char url[512], dir[PATH_MAX], err[PATH_MAX + 64];
  bool port = listen[0] && strspn(listen, "0123456789") == strlen(listen);
  snprintf(url, sizeof url, port ? "http://127.0.0.1:%s" : "%s", listen);
  nng_url *u = NULL;
  if (nng_url_parse(&u, url) || strcmp(u->u_scheme, "http") != 0) {
    nng_url_free(u);
    return cli_usage("--listen %s: expected http://HOST:PORT or a port", listen);
  }
  if (choreo_bus_dir(a->bus, false, ui_bus, sizeof ui_bus, err, sizeof err)) {
    if (!npeers) {
      nng_url_free(u);
      return cli_fail("%s", err);
    }
    ui_bus[0] = '\0'; /* --peer only: this machine may have no bus */
  }
  if (!ui_dir(dir, sizeof dir)) {
    nng_url_free(u);
    return cli_fail("the page's files are missing: %s", dir);
  }
  /* Waited for below, not delivered: the server's threads must not take them. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  nng_http_server *server = NULL;
  nng_http_handler *api = NULL;
  int rv = nng_http_server_hold(&server, u);
  nng_url_free(u);
  /* One handler per file: a directory's tree under "/" would overlap the API's. */
  static const char *const pages[][2] = {{"/", "index.html"}, {"/app.js", "app.js"},
                                         {"/style.css", "style.css"}};
  for (size_t i = 0; !rv && i < sizeof pages / sizeof *pages; i++) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", dir, pages[i][1]);
    nng_http_handler *file = NULL;
    rv = nng_http_handler_alloc_file(&file, pages[i][0], path);
    if (!rv && (rv = nng_http_server_add_handler(server, file))) nng_http_handler_free(file);
  }
  if (!rv) rv = nng_http_handler_alloc(&api, "/api", ui_on_api);
  if (!rv) rv = nng_http_handler_set_tree(api);
  if (!rv) rv = nng_http_server_add_handler(server, api);
  if (!rv) rv = nng_http_server_start(server);
  if (rv) {
    if (server) nng_http_server_release(server);
    return cli_fail("--listen: %s", nng_strerror(rv));
  }
  printf("choreo ui: %s (bus %s)\n", url, ui_bus);
  fflush(stdout);
  int sig;
  sigwait(&stop, &sig);
  /* The requests under way end within their waits: their answers need the server. */
  while (atomic_load(&ui_inflight) > 0) nng_msleep(10);
  nng_http_server_stop(server);
  nng_http_server_release(server);
  return CLI_OK;
}
