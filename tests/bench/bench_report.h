/* The end of a run, shared by the broker peers: reap the producer, check the consumer's
 * database for lost and duplicated events, print the workload's one JSON result line. */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include "bench_latency.h"
#include "bench_producer.h"
#include "bench_sink.h"

/* The pipeline workload. `cpu_s` is the consumer's user+sys time over the run, `t_last_commit`
 * when the last batch was committed. Prints {"events_per_s", "cpu_us_per_event", "lost",
 * "duplicates"} on stdout and returns 0; on a missing producer report or a failed check, says
 * why (bench_fail). */
int bench_pipeline_report(bench_producer *p, bench_sink *s, long events, double cpu_s,
                          double t_last_commit, double deadline);

/* The latency workload, `l` holding a latency per event. Prints {"p50_us", "p99_us",
 * "p999_us", "sent", "lost", "duplicates"} on stdout and returns 0; fails like the above. */
int bench_latency_report(bench_producer *p, bench_sink *s, long events, bench_latency *l,
                         double deadline);

#endif
