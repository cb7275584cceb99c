/* Result lines of the broker benchmarks (see bench_report.h). */
#include "bench_report.h"

#include <stdio.h>

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

int bench_pipeline_report(bench_producer *p, bench_sink *s, long events, double cpu_s,
                          double t_last_commit, double deadline) {
  bench_producer_report r;
  long lost = 0, duplicates = 0;
  finish(p, s, events, deadline, &r, &lost, &duplicates);
  double elapsed = t_last_commit - r.t_first;
  fprintf(stderr,
          "producer: %lld confirmed in %.2f s (%.0f/s, %.2f us CPU each); end to end %.2f s\n",
          r.sent, r.t_done - r.t_first, (double)r.sent / (r.t_done - r.t_first),
          r.cpu_s * 1e6 / (double)r.sent, elapsed);
  printf("{\"events_per_s\": %.0f, \"cpu_us_per_event\": %.2f, \"lost\": %ld,"
         " \"duplicates\": %ld}\n",
         (double)events / elapsed, cpu_s * 1e6 / (double)events, lost, duplicates);
  fflush(stdout);
  return 0;
}

int bench_latency_report(bench_producer *p, bench_sink *s, long events, bench_latency *l,
                         double deadline) {
  bench_producer_report r;
  long lost = 0, duplicates = 0;
  finish(p, s, events, deadline, &r, &lost, &duplicates);
  /* How far the offered load fell short of the asked rate, if the producer could not keep up. */
  fprintf(stderr, "producer: %lld confirmed in %.2f s (%.0f/s offered)\n", r.sent,
          r.t_done - r.t_first, (double)r.sent / (r.t_done - r.t_first));
  printf("{\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"sent\": %lld, \"lost\": %ld,"
         " \"duplicates\": %ld}\n",
         bench_latency_percentile(l, 0.50) * 1e6, bench_latency_percentile(l, 0.99) * 1e6,
         bench_latency_percentile(l, 0.999) * 1e6, r.sent, lost, duplicates);
  fflush(stdout);
  return 0;
}
