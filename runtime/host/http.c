/* The host's HTTP server (see http.h). */
#include "http.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "control.h"
#include "log.h"

#define HTTP_BODY_MAX (1u << 20)
#define HTTP_PREFIX "/query/"

struct choreo_http_request {
  nng_aio *aio;
  char *method, *uri, *body; /* body NUL-terminated; NULL when there is none */
  choreo_http_request *next;
};

static void http_request_free(choreo_http_request *r) {
  if (!r) return;
  free(r->method);
  free(r->uri);
  free(r->body);
  free(r);
}

void choreo_http_let_go(nng_http_server *server, nng_http_handler *handler, bool handler_added,
                        bool server_started) {
  if (handler_added) nng_http_server_del_handler(server, handler);
  if (server_started) nng_http_server_stop(server); /* waits for the handlers under way */
  if (handler_added) nng_http_handler_free(handler);
  if (server) nng_http_server_release(server);
}

void choreo_http_reply(nng_aio *aio, uint16_t status, const char *type, const char *body,
                       size_t len) {
  nng_http_res *res;
  if (nng_http_res_alloc(&res) != 0) {
    nng_aio_finish(aio, NNG_ENOMEM); /* NNG answers 500 and hangs up */
    return;
  }
  if (nng_http_res_set_status(res, status) || nng_http_res_set_header(res, "Content-Type", type) ||
      nng_http_res_set_header(res, "Cache-Control", "no-store") ||
      nng_http_res_copy_data(res, body, len)) {
    nng_http_res_free(res);
    nng_aio_finish(aio, NNG_ENOMEM);
    return;
  }
  nng_aio_set_output(aio, 0, res);
  nng_aio_finish(aio, 0);
}

/* Completes the request with a JSON body. */
static void http_respond(nng_aio *aio, uint16_t status, const char *json) {
  choreo_http_reply(aio, status, "application/json", json, strlen(json));
}

static void http_respond_error(nng_aio *aio, uint16_t status, const char *message) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "error", message);
  char *text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  http_respond(aio, status, text ? text : "{\"error\":\"out of memory\"}");
  free(text);
}

static int http_hex(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes n bytes of a URL part (%XX, and '+' as a space when plus) into a new string; NULL
 * for a malformed escape, an escaped NUL, or no memory. */
static char *http_decode(const char *s, size_t n, bool plus) {
  char *out = malloc(n + 1), *o = out;
  for (size_t i = 0; out && i < n; i++) {
    if (s[i] == '%') {
      int hi = i + 2 < n ? http_hex(s[i + 1]) : -1;
      int lo = hi >= 0 ? http_hex(s[i + 2]) : -1;
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
        free(out);
        return NULL;
      }
      *o++ = (char)(hi * 16 + lo);
      i += 2;
    } else {
      *o++ = plus && s[i] == '+' ? ' ' : s[i];
    }
  }
  if (out) *o = '\0';
  return out;
}

/* The query string a=1&b=x as the JSON text {"a": "1", "b": "x"} (values stay strings); NULL
 * when it is malformed. */
static char *http_args_json(const char *query) {
  cJSON *o = cJSON_CreateObject();
  bool ok = o != NULL;
  for (const char *p = query; ok && *p;) {
    size_t n = strcspn(p, "&");
    const char *eq = memchr(p, '=', n);
    size_t klen = eq ? (size_t)(eq - p) : n;
    char *key = http_decode(p, klen, true);
    char *value = eq ? http_decode(eq + 1, n - klen - 1, true) : strdup("");
    ok = key && value;
    if (ok && *key) {
      cJSON_DeleteItemFromObjectCaseSensitive(o, key); /* the last one given wins */
      ok = cJSON_AddStringToObject(o, key, value) != NULL;
    }
    free(key);
    free(value);
    p += n;
    if (*p == '&') p++;
  }
  char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return text;
}

/* The loop: runs one request's query and completes it. */
static void http_answer(choreo_http *s, choreo_http_request *r) {
  bool get = strcmp(r->method, "GET") == 0, post = strcmp(r->method, "POST") == 0;
  char *query = strchr(r->uri, '?');
  size_t path_len = query ? (size_t)(query - r->uri) : strlen(r->uri);
  size_t prefix = sizeof HTTP_PREFIX - 1;
  if (path_len <= prefix || strncmp(r->uri, HTTP_PREFIX, prefix) != 0 ||
      memchr(r->uri + prefix, '/', path_len - prefix)) {
    http_respond_error(r->aio, 404, "no such path: queries are at /query/NAME");
    return;
  }
  if (!get && !post) {
    http_respond_error(r->aio, 405, "a query takes GET (arguments in the URL) or POST (a JSON body)");
    return;
  }
  char *name = http_decode(r->uri + prefix, path_len - prefix, false);
  char *args = NULL;
  if (get && query && query[1]) args = http_args_json(query + 1);
  else if (post && r->body) args = strdup(r->body);
  if (!name || (get && query && query[1] && !args)) {
    http_respond_error(r->aio, 400, "malformed URL: a bad %-escape");
  } else {
    cJSON *result = NULL;
    char err[1024] = "";
    int rc = choreo_control_query(s->host, name, args, &result, err, sizeof err);
    char *text = rc ? NULL : cJSON_PrintUnformatted(result);
    if (rc)
      http_respond_error(r->aio, rc == CHOREO_ENOENT ? 404 : rc == CHOREO_EINVAL ? 400
                                 : rc == CHOREO_ESTOPPED ? 503 : 500, err);
    else if (!text)
      http_respond_error(r->aio, 500, "out of memory");
    else
      http_respond(r->aio, 200, text);
    free(text);
    cJSON_Delete(result);
  }
  free(name);
  free(args);
}

/* Takes what waits, under the lock. */
static choreo_http_request *http_take(choreo_http *s) {
  pthread_mutex_lock(&s->lock);
  choreo_http_request *list = s->waiting;
  s->waiting = s->last = NULL;
  pthread_mutex_unlock(&s->lock);
  return list;
}

static void http_on_wake(uv_async_t *async) {
  choreo_http *s = async->data;
  for (choreo_http_request *r = http_take(s), *next; r; r = next) {
    next = r->next;
    http_answer(s, r);
    http_request_free(r);
  }
}

/* NNG's thread: a request came. It waits for the loop, which owns the scripts. */
static void http_on_request(nng_aio *aio) {
  nng_http_req *req = nng_aio_get_input(aio, 0);
  choreo_http *s = nng_http_handler_get_data(nng_aio_get_input(aio, 1));
  void *body;
  size_t len;
  nng_http_req_get_data(req, &body, &len);
  choreo_http_request *r = calloc(1, sizeof *r);
  if (r) {
    r->aio = aio;
    r->method = strdup(nng_http_req_get_method(req));
    r->uri = strdup(nng_http_req_get_uri(req));
    r->body = len ? malloc(len + 1) : NULL;
    if (r->body) {
      memcpy(r->body, body, len);
      r->body[len] = '\0';
    }
  }
  if (!r || !r->method || !r->uri || (len && !r->body)) {
    http_request_free(r);
    http_respond_error(aio, 500, "out of memory");
    return;
  }
  pthread_mutex_lock(&s->lock);
  bool stopping = s->stopping;
  if (!stopping) {
    if (s->last) s->last->next = r;
    else s->waiting = r;
    s->last = r;
    uv_async_send(&s->wake); /* under the lock: the handle is not closed before stopping is set */
  }
  pthread_mutex_unlock(&s->lock);
  if (stopping) {
    http_request_free(r);
    http_respond_error(aio, 503, "the host is stopping");
  }
}

int choreo_http_start(choreo_http *s, uv_loop_t *loop, choreo_host *host, const char *url,
                      char *err, size_t errlen) {
  *s = (choreo_http){.host = host};
  nng_url *u = NULL;
  int rv = nng_url_parse(&u, url);
  if (rv || strcmp(u->u_scheme, "http") != 0) {
    nng_url_free(u);
    snprintf(err, errlen, "--http %s: expected http://HOST:PORT", url);
    return CHOREO_EINVAL;
  }
  if (pthread_mutex_init(&s->lock, NULL) || uv_async_init(loop, &s->wake, http_on_wake)) {
    nng_url_free(u);
    snprintf(err, errlen, "--http %s: cannot set up the server", url);
    return CHOREO_ENOMEM;
  }
  s->wake.data = s;
  s->on_loop = s->started = true;
  /* NNG 1.5 frees a released server, its listener and handlers in the background, once its
   * connections are reaped: at a stop that is often after the process has ended. */
  choreo_bus_lsan_pause();
  rv = nng_http_server_hold(&s->server, u);
  nng_url_free(u);
  if (!rv) rv = nng_http_handler_alloc(&s->handler, "/", http_on_request);
  if (!rv) rv = nng_http_handler_set_tree(s->handler);
  if (!rv) rv = nng_http_handler_set_method(s->handler, NULL);
  if (!rv) rv = nng_http_handler_collect_body(s->handler, true, HTTP_BODY_MAX);
  if (!rv) rv = nng_http_handler_set_data(s->handler, s, NULL);
  if (!rv) rv = nng_http_server_add_handler(s->server, s->handler);
  if (!rv) s->handler_added = true;
  else if (s->handler) nng_http_handler_free(s->handler);
  if (!rv) rv = nng_http_server_start(s->server);
  if (!rv) s->server_started = true;
  choreo_bus_lsan_resume();
  if (rv) {
    snprintf(err, errlen, "--http %s: %s", url, nng_strerror(rv));
    return CHOREO_EBUS;
  }
  return 0;
}

static void http_on_closed(uv_handle_t *handle) {
  choreo_http *s = handle->data;
  pthread_mutex_destroy(&s->lock);
  s->on_loop = false;
}

void choreo_http_stop(choreo_http *s) {
  if (!s->started) return;
  s->started = false;
  pthread_mutex_lock(&s->lock);
  s->stopping = true;
  pthread_mutex_unlock(&s->lock);
  for (choreo_http_request *r = http_take(s), *next; r; r = next) {
    next = r->next;
    http_respond_error(r->aio, 503, "the host is stopping");
    http_request_free(r);
  }
  choreo_http_let_go(s->server, s->handler, s->handler_added, s->server_started);
  uv_close((uv_handle_t *)&s->wake, http_on_closed);
}
