/* Result lines of the broker benchmarks (see bench_report.h). */
#include "bench_report.h"

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "bench_restart.h"
#include "bench_util.h"

/* Reaps the producer and counts lost and duplicated events; fails unless both went well. */
static void finish(bench_producer *p, bench_sink *s, long events, double deadline,
                   bench_producer_report *r, long *lost, long *duplicates) {
  /* The producer finished long before the last commit, unless it failed: a second of grace. */
  if (bench_producer_finish(p, r, deadline + 1.0) != 0)
    bench_fail("the producer process did not report");
  if (!r->ok) bench_fail("producer: %s", r->error);
  if (bench_sink_check(s, events, lost, duplicates) != 0)
    bench_fail("checking the database: %s", bench_sink_error(s));
  if (*lost || *duplicates)
    fprintf(stderr, "warning: %ld lost, %ld duplicated events\n", *lost, *duplicates);
}

/* How far the offered load fell short of the asked rate, if the producer could not keep up. */
static void print_offered(const bench_producer_report *r) {
  fprintf(stderr, "producer: %lld confirmed in %.2f s (%.0f/s offered)\n", r->sent,
          r->t_done - r->t_first, (double)r->sent / (r->t_done - r->t_first));
}

int bench_pipeline_report(bench_producer *p, bench_sink *s, long events, double cpu_s,
                          long faults, double t_last_commit, double deadline) {
  bench_producer_report r;
  long lost = 0, duplicates = 0;
  finish(p, s, events, deadline, &r, &lost, &duplicates);
  double elapsed = t_last_commit - r.t_first;
  fprintf(stderr,
          "producer: %lld confirmed in %.2f s (%.0f/s, %.2f us CPU each); end to end %.2f s\n",
          r.sent, r.t_done - r.t_first, (double)r.sent / (r.t_done - r.t_first),
          r.cpu_s * 1e6 / (double)r.sent, elapsed);
  printf("{\"events_per_s\": %.0f, \"cpu_us_per_event\": %.2f,"
         " \"producer_cpu_us_per_event\": %.2f, \"consumer_faults_per_kevent\": %.1f,"
         " \"lost\": %ld, \"duplicates\": %ld}\n",
         (double)events / elapsed, cpu_s * 1e6 / (double)events,
         r.cpu_s * 1e6 / (double)events, (double)faults * 1000.0 / (double)events, lost,
         duplicates);
  fflush(stdout);
  return 0;
}

int bench_latency_report(bench_producer *p, bench_sink *s, long events, bench_latency *l,
                         double deadline) {
  bench_producer_report r;
  long lost = 0, duplicates = 0;
  finish(p, s, events, deadline, &r, &lost, &duplicates);
  print_offered(&r);
  printf("{\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"sent\": %lld, \"lost\": %ld,"
         " \"duplicates\": %ld}\n",
         bench_latency_percentile(l, 0.50) * 1e6, bench_latency_percentile(l, 0.99) * 1e6,
         bench_latency_percentile(l, 0.999) * 1e6, r.sent, lost, duplicates);
  fflush(stdout);
  return 0;
}

int bench_restart_report(bench_producer *p, bench_sink *s, long events, bench_tally *t,
                         long restarts, double deadline) {
  bench_producer_report r;
  long lost = 0, duplicates = 0;
  finish(p, s, events, deadline, &r, &lost, &duplicates);
  print_offered(&r);
  fprintf(stderr, "consumers: %ld processes committed %ld events\n", restarts + 1, t->committed);
  printf("{\"max_stall_ms\": %.1f, \"lost\": %ld, \"duplicates\": %ld, \"restarts\": %ld,"
         " \"p50_us\": %.1f, \"p99_us\": %.1f}\n",
         t->max_gap * 1e3, lost, duplicates, restarts,
         bench_latency_percentile(&t->lat, 0.50) * 1e6,
         bench_latency_percentile(&t->lat, 0.99) * 1e6);
  fflush(stdout);
  return 0;
}

void bench_consume(const bench_args *a, bench_producer *p, bench_sink *sink, bench_tally *t,
                   double deadline, bench_batch_fn batch, void *ud) {
  double cpu0 = bench_cpu_process();
  long faults0 = bench_faults_process();
  if (bench_producer_go(p) != 0) bench_fail("cannot start the producer");
  bool paused = false;
  while (t->seen.distinct < a->events) {
    if (bench_now() > deadline)
      bench_fail("time limit of %d s reached with %ld of %ld events committed", a->timeout_s,
                 t->seen.distinct, a->events);
    batch(ud, sink, t);
    if (a->pause_ms && !paused && t->seen.distinct > 0) {
      struct timespec pause = {a->pause_ms / 1000, a->pause_ms % 1000 * 1000000L};
      while (nanosleep(&pause, &pause) != 0) {} /* interrupted: the rest of it */
      paused = true;
    }
  }
  double cpu = bench_cpu_process() - cpu0;
  long faults = bench_faults_process() - faults0;
  if (a->rate)
    bench_latency_report(p, sink, a->events, &t->lat, deadline);
  else
    bench_pipeline_report(p, sink, a->events, cpu, faults, t->last_commit, deadline);
}

void bench_consume_restarting(char **argv, const char *run, const bench_args *a,
                              bench_producer *p, bench_sink *sink, bench_tally *t,
                              double deadline) {
  bench_sink_close(sink);
  long restarts = bench_restart_run(argv, run, a, p, t, deadline);
  if (bench_sink_attach(sink, a->db) != 0) bench_fail("%s: %s", a->db, bench_sink_error(sink));
  bench_restart_report(p, sink, a->events, t, restarts, deadline);
}
