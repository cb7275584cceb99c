/* The end of a "pipeline" run, shared by the broker peers: reap the producer, check the
 * consumer's database for lost and duplicated events, print the one JSON result line. */
#ifndef BENCH_PIPELINE_H
#define BENCH_PIPELINE_H

#include "bench_producer.h"
#include "bench_sink.h"

/* `cpu_s` is the consumer's user+sys time over the run, `t_last_commit` when the last batch
 * was committed. Prints {"events_per_s", "cpu_us_per_event", "lost", "duplicates"} on stdout
 * and returns 0; on a missing producer report or a failed check, says why (bench_fail). */
int bench_pipeline_report(bench_producer *p, bench_sink *s, long events, double cpu_s,
                          double t_last_commit, double deadline);

#endif
