/* The restart workload of the broker peers: what deploying new handler code costs a service
 * that must restart to run it. While the producer offers the latency workload's fixed-rate
 * load, the consumer is replaced every --restart-every milliseconds the way a deploy does it:
 * the consumer is a process of its own; its supervisor (the benchmark's main process) sends it
 * SIGTERM; the consumer finishes the transaction in hand (commit, then ack) and leaves; once it
 * is gone, a fresh process of the same program starts (fork and exec, with --consumer-of RUN
 * added to the command line), connects to the broker, reopens the database and rejoins the
 * consumer group where the last one left off. Each consumer process forwards its account
 * (bench_tally) through a pipe on descriptor BENCH_RESTART_FD; the supervisor keeps it across
 * all of them. */
#ifndef BENCH_RESTART_H
#define BENCH_RESTART_H

#include "bench_producer.h"
#include "bench_tally.h"
#include "bench_util.h"

/* Where a consumer process finds the pipe to its supervisor. */
#define BENCH_RESTART_FD 3

/* The supervisor, once the stream and the consumer group exist: starts the first consumer
 * process (this program's `argv` plus --consumer-of `run`) and, once it is ready, lets the
 * producer go; replaces the consumer every a->restart_ms while the load lasts (a->seconds);
 * stops the last one once `t` counts every event. Fails (bench_fail) if a consumer process
 * fails or does not stop when asked, or at `deadline`. Returns the number of restarts. */
long bench_restart_run(char **argv, const char *run, const bench_args *a, bench_producer *p,
                       bench_tally *t, double deadline);

/* A consumer process, first thing, before any client library starts a thread: keeps SIGTERM
 * pending instead of dying of it (see bench_restart_stopping) and makes `t` forward the
 * account to the supervisor. */
void bench_restart_consumer(bench_tally *t);

/* 1 once the supervisor asked this consumer process to stop. It then finishes the transaction
 * in hand, acks it, and leaves; what it has read it has also stored, so whenever the request
 * comes, even in the middle of a read, nothing is left delivered but unacknowledged. */
int bench_restart_stopping(void);

#endif
