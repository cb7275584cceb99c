/* Result line of the broker pipeline benchmarks (see bench_pipeline.h). */
#include "bench_pipeline.h"

#include <stdio.h>

#include "bench_util.h"

int bench_pipeline_report(bench_producer *p, bench_sink *s, long events, double cpu_s,
                          double t_last_commit, double deadline) {
  bench_producer_report r;
  /* The producer finished long before the last commit, unless it failed: a second of grace. */
  if (bench_producer_finish(p, &r, deadline + 1.0) != 0)
    bench_fail("the producer process did not report");
  if (!r.ok) bench_fail("producer: %s", r.error);
  long lost = 0, duplicates = 0;
  if (bench_sink_check(s, events, &lost, &duplicates) != 0)
    bench_fail("checking the database: %s", bench_sink_error(s));
  double elapsed = t_last_commit - r.t_first;
  fprintf(stderr,
          "producer: %lld confirmed in %.2f s (%.0f/s, %.2f us CPU each); end to end %.2f s\n",
          r.sent, r.t_done - r.t_first, (double)r.sent / (r.t_done - r.t_first),
          r.cpu_s * 1e6 / (double)r.sent, elapsed);
  if (lost || duplicates)
    fprintf(stderr, "warning: %ld lost, %ld duplicated events\n", lost, duplicates);
  printf("{\"events_per_s\": %.0f, \"cpu_us_per_event\": %.2f, \"lost\": %ld,"
         " \"duplicates\": %ld}\n",
         (double)events / elapsed, cpu_s * 1e6 / (double)events, lost, duplicates);
  fflush(stdout);
  return 0;
}
