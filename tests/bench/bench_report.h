/* The end of a run, shared by the broker peers: reap the producer, check the consumer's
 * database for lost and duplicated events, print the workload's one JSON result line. */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include "bench_latency.h"
#include "bench_producer.h"
#include "bench_util.h"
#include "bench_sink.h"
#include "bench_tally.h"

/* The pipeline workload. `cpu_s` is the consumer's user+sys time over the run, `faults` its
 * page faults (bench_faults_process), `t_last_commit` when the last batch was committed. Prints
 * {"events_per_s", "cpu_us_per_event", "producer_cpu_us_per_event",
 * "consumer_faults_per_kevent", "lost", "duplicates"} on stdout and returns 0; on a missing
 * producer report or a failed check, says why (bench_fail). */
int bench_pipeline_report(bench_producer *p, bench_sink *s, long events, double cpu_s,
                          long faults, double t_last_commit, double deadline);

/* The latency workload, `l` holding a latency per event. Prints {"p50_us", "p99_us",
 * "p999_us", "sent", "lost", "duplicates"} on stdout and returns 0; fails like the above. */
int bench_latency_report(bench_producer *p, bench_sink *s, long events, bench_latency *l,
                         double deadline);

/* The restart workload, `t` holding the account of every consumer process and `restarts` the
 * number of times one was replaced. Prints {"max_stall_ms", "lost", "duplicates", "restarts",
 * "p50_us", "p99_us"} on stdout and returns 0; fails like the above. */
int bench_restart_report(bench_producer *p, bench_sink *s, long events, bench_tally *t,
                         long restarts, double deadline);

/* Reads and commits one batch of events into the sink, noting them in the tally. */
typedef void (*bench_batch_fn)(void *ud, bench_sink *sink, bench_tally *tally);

/* The pipeline or latency workload as the options ask, with this process as the consumer: starts
 * the producer, runs `batch` until every event is committed (or the deadline fails the run),
 * then reports. */
void bench_consume(const bench_args *a, bench_producer *p, bench_sink *sink, bench_tally *t,
                   double deadline, bench_batch_fn batch, void *ud);

/* The restart workload: consumer processes (bench_restart_run) own the sink while they run;
 * this process reopens it at the end to report. */
void bench_consume_restarting(char **argv, const char *run, const bench_args *a,
                              bench_producer *p, bench_sink *sink, bench_tally *t,
                              double deadline);

#endif
