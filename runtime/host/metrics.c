/* The host's metrics (see metrics.h). Names and labels follow Prometheus' conventions: a
 * `choreo_` prefix, `_total` counters, base units (`_seconds`, `_bytes`), and one family per
 * name with its HELP and TYPE. The page is written with open_memstream, which grows it. */
#define _GNU_SOURCE /* open_memstream is POSIX 2008; the build's feature macros may hide it */
#include "metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "host.h"
#include "http.h"
#include "log.h"
#include "stats.h"

#define METRICS_WAIT_S 1 /* a scrape waits this long for a fresh page */

static void metrics_family(FILE *f, const char *name, const char *type, const char *help) {
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, double quote and newline escaped. */
static void metrics_value(FILE *f, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"') fprintf(f, "\\%c", *v);
    else if (*v == '\n') fputs("\\n", f);
    else fputc(*v, f);
  }
}

static void metrics_sample(FILE *f, const char *name, const char *label, const char *value,
                           double v) {
  fputs(name, f);
  if (label) {
    fprintf(f, "{%s=\"", label);
    metrics_value(f, value);
    fputs("\"}", f);
  }
  fprintf(f, " %.17g\n", v);
}

static const char *metrics_type_label(const choreo_type_stats *t) {
  return t->type[0] ? t->type : "(other types)";
}

/* Each type's counter of one kind, from the stats (the types past the table's size last). */
static void metrics_per_type(FILE *f, const choreo_stats *s, const char *name, const char *help,
                             size_t offset) {
  metrics_family(f, name, "counter", help);
  for (int i = 0; i <= s->ntypes; i++) {
    const choreo_type_stats *t = i < s->ntypes ? &s->types[i] : &s->other;
    uint64_t v = *(const uint64_t *)((const char *)t + offset);
    if (i == s->ntypes && !t->duration.count) break;
    metrics_sample(f, name, "type", metrics_type_label(t), (double)v);
  }
}

static void metrics_durations(FILE *f, const choreo_stats *s) {
  const char *name = "choreo_handler_duration_seconds";
  metrics_family(f, name, "histogram",
                 "Time the handlers of a message took, all immediate attempts together.");
  for (int i = 0; i <= s->ntypes; i++) {
    const choreo_type_stats *t = i < s->ntypes ? &s->types[i] : &s->other;
    if (i == s->ntypes && !t->duration.count) break;
    uint64_t cumulative = 0;
    for (int b = 0; b <= CHOREO_DURATION_BUCKETS; b++) {
      cumulative += t->duration.buckets[b];
      fprintf(f, "%s_bucket{type=\"", name);
      metrics_value(f, metrics_type_label(t));
      if (b < CHOREO_DURATION_BUCKETS) fprintf(f, "\",le=\"%g\"} %llu\n", choreo_duration_bounds[b],
                                               (unsigned long long)cumulative);
      else fprintf(f, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cumulative);
    }
    fprintf(f, "%s_sum{type=\"", name);
    metrics_value(f, metrics_type_label(t));
    fprintf(f, "\"} %.9g\n%s_count{type=\"", t->duration.sum, name);
    metrics_value(f, metrics_type_label(t));
    fprintf(f, "\"} %llu\n", (unsigned long long)t->duration.count);
  }
}

static void metrics_batches(FILE *f, const choreo_stats *s) {
  const char *name = "choreo_batch_messages";
  metrics_family(f, name, "histogram", "Messages handled per committed batch (one transaction).");
  uint64_t cumulative = 0;
  for (int b = 0; b < CHOREO_BATCH_BUCKETS; b++) {
    cumulative += s->batch_buckets[b];
    fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, choreo_batch_bounds[b],
            (unsigned long long)cumulative);
  }
  cumulative += s->batch_buckets[CHOREO_BATCH_BUCKETS];
  fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %llu\n%s_count %llu\n", name,
          (unsigned long long)cumulative, name, (unsigned long long)s->batch_messages, name,
          (unsigned long long)s->batches);
}

static void metrics_gauge(FILE *f, const char *name, const char *help, double v) {
  metrics_family(f, name, "gauge", help);
  metrics_sample(f, name, NULL, NULL, v);
}

static void metrics_counter(FILE *f, const char *name, const char *help, double v) {
  metrics_family(f, name, "counter", help);
  metrics_sample(f, name, NULL, NULL, v);
}

static void metrics_peers(FILE *f, choreo_host *h) {
  choreo_peer_status p;
  metrics_family(f, "choreo_peer_lag_messages", "gauge",
                 "Messages of a peer's log not yet applied here.");
  for (size_t i = 0; choreo_host_peer_get(h, i, &p) == 0; i++)
    if (p.name[0]) metrics_sample(f, "choreo_peer_lag_messages", "peer", p.name, (double)p.lag);
  metrics_family(f, "choreo_peer_up", "gauge", "Whether a peer's endpoint is connected.");
  for (size_t i = 0; choreo_host_peer_get(h, i, &p) == 0; i++)
    if (p.name[0]) metrics_sample(f, "choreo_peer_up", "peer", p.name, p.up ? 1 : 0);
}

static void metrics_unhandled(FILE *f, choreo_engine *e) {
  const choreo_unhandled *list;
  int n;
  uint64_t other;
  choreo_engine_unhandled(e, &list, &n, &other);
  metrics_family(f, "choreo_messages_unhandled_total", "counter",
                 "Messages for this host that no handler took.");
  for (int i = 0; i < n; i++) {
    if (choreo_stats_printable((choreo_str){list[i].type, strlen(list[i].type)}))
      metrics_sample(f, "choreo_messages_unhandled_total", "type", list[i].type,
                     (double)list[i].count);
    else
      other += list[i].count;
  }
  if (other)
    metrics_sample(f, "choreo_messages_unhandled_total", "type", "(other types)", (double)other);
}

static void metrics_write(FILE *f, choreo_host *h) {
  choreo_engine *e = choreo_host_engine(h);
  const choreo_stats *s = choreo_engine_stats(e);
  choreo_host_status st;
  bool status = choreo_host_status_get(h, &st) == 0;
  metrics_family(f, "choreo_info", "gauge", "This host: its service name and choreo's version.");
  fputs("choreo_info{service=\"", f);
  metrics_value(f, choreo_engine_name(e));
  fputs("\",version=\"" CHOREO_VERSION "\"} 1\n", f);
  metrics_per_type(f, s, "choreo_messages_handled_total", "Messages whose handlers ran and committed.",
                   offsetof(choreo_type_stats, handled));
  metrics_per_type(f, s, "choreo_messages_failed_total",
                   "Messages that failed every immediate attempt (then retried later, or dead).",
                   offsetof(choreo_type_stats, failed));
  metrics_per_type(f, s, "choreo_messages_dead_total", "Messages that became dead letters.",
                   offsetof(choreo_type_stats, dead));
  metrics_unhandled(f, e);
  metrics_durations(f, s);
  metrics_batches(f, s);
  metrics_peers(f, h);
  metrics_counter(f, "choreo_reloads_total", "Hot reloads tried.", (double)s->reloads);
  metrics_counter(f, "choreo_reload_failures_total", "Hot reloads refused (the old code kept).",
                  (double)s->reload_failures);
  metrics_gauge(f, "choreo_last_reload_duration_seconds", "How long the last reload took.",
                s->last_reload_seconds);
  metrics_gauge(f, "choreo_lua_memory_bytes", "Memory the scripts' Lua states hold.",
                (double)choreo_engine_lua_memory(e));
  if (!status) return; /* the database could not be read: the rest would be wrong */
  metrics_gauge(f, "choreo_scripts_generation", "Scripts generation: 1 at start, +1 per reload.",
                st.generation);
  metrics_counter(f, "choreo_bad_frames_total", "Malformed or forged frames refused.",
                  (double)st.bad_frames);
  metrics_gauge(f, "choreo_retries_pending", "Messages waiting for a delayed retry.",
                (double)st.retries_pending);
  metrics_gauge(f, "choreo_timeouts_pending", "Durable timeouts not yet due.",
                (double)st.timeouts_pending);
  metrics_gauge(f, "choreo_dead_letters", "Dead letters kept.", (double)st.dead_letters);
  metrics_gauge(f, "choreo_saga_instances", "Saga instances running.", (double)st.sagas_running);
  metrics_family(f, "choreo_workflow_instances", "gauge", "Workflow instances, by status.");
  metrics_sample(f, "choreo_workflow_instances", "status", "running", (double)st.workflows_running);
  metrics_sample(f, "choreo_workflow_instances", "status", "stuck", (double)st.workflows_stuck);
  metrics_gauge(f, "choreo_log_head_seq", "The last seq of this host's log.", (double)st.head);
  metrics_gauge(f, "choreo_log_oldest_seq", "The oldest seq its log still holds.",
                (double)st.oldest);
  metrics_gauge(f, "choreo_database_bytes", "Size of the database file.", (double)st.db_bytes);
  metrics_gauge(f, "choreo_wal_bytes", "Size of the database's write-ahead log.",
                (double)st.wal_bytes);
  metrics_gauge(f, "choreo_subscribers", "Connections to this host's publisher.",
                st.subscribers);
  metrics_gauge(f, "choreo_uptime_seconds", "Seconds since the host opened.", st.uptime_s);
}

static void metrics_render(uv_async_t *async) {
  choreo_metrics *m = async->data;
  char *page = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&page, &len);
  if (!f) return;
  metrics_write(f, m->host);
  if (fclose(f) != 0) {
    free(page);
    return;
  }
  pthread_mutex_lock(&m->lock);
  char *old = m->page;
  m->page = page;
  m->len = len;
  m->generation++;
  pthread_cond_broadcast(&m->rendered);
  pthread_mutex_unlock(&m->lock);
  free(old);
}

/* NNG's thread: asks the loop for a fresh page, waits a second at most, answers the latest. */
static void metrics_on_request(nng_aio *aio) {
  choreo_metrics *m = nng_http_handler_get_data(nng_aio_get_input(aio, 1));
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += METRICS_WAIT_S;
  pthread_mutex_lock(&m->lock);
  uint64_t before = m->generation;
  if (!m->stopping) uv_async_send(&m->render); /* under the lock: not closed before stopping */
  while (!m->stopping && m->generation == before &&
         pthread_cond_timedwait(&m->rendered, &m->lock, &until) == 0) {
  }
  size_t len = m->page ? m->len : 0;
  char *page = malloc(len + 1); /* answered outside the lock: the loop may render meanwhile */
  if (page && len) memcpy(page, m->page, len);
  pthread_mutex_unlock(&m->lock);
  if (!page) {
    nng_aio_finish(aio, NNG_ENOMEM);
    return;
  }
  choreo_http_reply(aio, 200, "text/plain; version=0.0.4; charset=utf-8", page, len);
  free(page);
}

/* http://HOST:PORT as given, or a bare port on the loopback interface. */
static void metrics_url(const char *given, char *out, size_t size) {
  bool port = given[0] && strspn(given, "0123456789") == strlen(given);
  snprintf(out, size, port ? "http://127.0.0.1:%s" : "%s", given);
}

int choreo_metrics_start(choreo_metrics *m, uv_loop_t *loop, choreo_host *host, const char *given,
                         char *err, size_t errlen) {
  *m = (choreo_metrics){.host = host};
  char url[512];
  metrics_url(given, url, sizeof url);
  nng_url *u = NULL;
  int rv = nng_url_parse(&u, url);
  if (rv || strcmp(u->u_scheme, "http") != 0) {
    nng_url_free(u);
    snprintf(err, errlen, "--metrics %s: expected http://HOST:PORT or a port", given);
    return CHOREO_EINVAL;
  }
  pthread_condattr_t attr;
  if (pthread_mutex_init(&m->lock, NULL) || pthread_condattr_init(&attr) ||
      pthread_cond_init(&m->rendered, &attr) || uv_async_init(loop, &m->render, metrics_render)) {
    nng_url_free(u);
    snprintf(err, errlen, "--metrics %s: cannot set up the server", given);
    return CHOREO_ENOMEM;
  }
  pthread_condattr_destroy(&attr);
  m->render.data = m;
  m->on_loop = m->started = true;
  metrics_render(&m->render); /* a page from the start */
  choreo_bus_lsan_pause(); /* see http.c: NNG frees a released server in the background */
  rv = nng_http_server_hold(&m->server, u);
  nng_url_free(u);
  if (!rv) rv = nng_http_handler_alloc(&m->handler, "/metrics", metrics_on_request);
  if (!rv) rv = nng_http_handler_set_method(m->handler, "GET");
  if (!rv) rv = nng_http_handler_set_data(m->handler, m, NULL);
  if (!rv) rv = nng_http_server_add_handler(m->server, m->handler);
  if (!rv) m->handler_added = true;
  else if (m->handler) nng_http_handler_free(m->handler);
  if (!rv) rv = nng_http_server_start(m->server);
  if (!rv) m->server_started = true;
  choreo_bus_lsan_resume();
  if (rv) {
    snprintf(err, errlen, "--metrics %s: %s", given, nng_strerror(rv));
    return CHOREO_EBUS;
  }
  return 0;
}

static void metrics_on_closed(uv_handle_t *handle) {
  choreo_metrics *m = handle->data;
  pthread_cond_destroy(&m->rendered);
  pthread_mutex_destroy(&m->lock);
  free(m->page);
  m->page = NULL;
  m->on_loop = false;
}

void choreo_metrics_stop(choreo_metrics *m) {
  if (!m->started) return;
  m->started = false;
  pthread_mutex_lock(&m->lock);
  m->stopping = true; /* a scrape waiting for the loop answers now: the loop is here */
  pthread_cond_broadcast(&m->rendered);
  pthread_mutex_unlock(&m->lock);
  choreo_http_let_go(m->server, m->handler, m->handler_added, m->server_started);
  uv_close((uv_handle_t *)&m->render, metrics_on_closed);
}
