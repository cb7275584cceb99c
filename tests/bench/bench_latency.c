/* Fixed-rate schedule and latency record of the latency workload (see bench_latency.h). */
#include "bench_latency.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"

void bench_pace_start(bench_pace *p, long rate, long events) {
  p->start = bench_now();
  p->rate = (double)rate;
  p->events = events;
  p->next = 0;
}

/* An absolute deadline on the clock bench_now() reads: no drift from the time spent awake. */
static void sleep_until(double when) {
  struct timespec ts = {.tv_sec = (time_t)when};
  ts.tv_nsec = (long)((when - (double)ts.tv_sec) * 1e9);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

long bench_pace_due(bench_pace *p, long max, long *first) {
  if (p->next >= p->events) return 0;
  long end = p->events;
  if (p->rate > 0) {
    sleep_until(p->start + (double)p->next / p->rate);
    /* Every event whose time has come, the one just waited for included even if rounding
     * puts "now" a hair before its time. */
    end = (long)((bench_now() - p->start) * p->rate) + 1;
    if (end <= p->next) end = p->next + 1;
    if (end > p->events) end = p->events;
  }
  if (end - p->next > max) end = p->next + max;
  *first = p->next;
  p->next = end;
  return end - *first;
}

void bench_pace_stamped(long rate, long events,
                        void (*send)(void *ctx, const unsigned char *payload), void *ctx) {
  unsigned char payload[BENCH_PAYLOAD_MAX];
  bench_pace pace;
  bench_pace_start(&pace, rate, events);
  long first, n;
  while ((n = bench_pace_due(&pace, events, &first)) > 0)
    for (long i = first; i < first + n; i++) {
      bench_payload_stamped(payload, i, bench_now());
      send(ctx, payload);
    }
}

void bench_latency_init(bench_latency *l, long events) {
  l->v = malloc((size_t)events * sizeof *l->v);
  if (!l->v) bench_fail("out of memory");
  l->n = 0;
  l->cap = events;
}

void bench_latency_add(bench_latency *l, double seconds) {
  /* One entry per first delivery of an index below `cap`: never more than `cap` of them. */
  if (l->n == l->cap) bench_fail("more first deliveries than events");
  l->v[l->n++] = seconds;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_latency_percentile(bench_latency *l, double p) {
  qsort(l->v, (size_t)l->n, sizeof *l->v, by_value);
  long k = (long)(p * (double)l->n);
  return l->v[k < l->n - 1 ? k : l->n - 1];
}

void bench_latency_free(bench_latency *l) {
  free(l->v);
  l->v = NULL;
}
