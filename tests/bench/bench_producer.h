/* The producer side of a pipeline benchmark as a forked child process. A process rather than a
 * thread so that getrusage(RUSAGE_SELF) in the parent is the consumer's CPU alone, client
 * library threads included (libnats reads on a thread of its own). The fork happens before the
 * parent touches any client library, so the child starts from clean library state; the child
 * waits for a "go" byte, which the parent sends once the stream and its consumer exist, and
 * hands back a fixed-size report through a pipe. */
#ifndef BENCH_PRODUCER_H
#define BENCH_PRODUCER_H

#include <sys/types.h>

typedef struct bench_producer_report {
  double t_first;  /* bench_now() just before the first publish */
  double t_done;   /* bench_now() when the broker had confirmed the last publish */
  double cpu_s;    /* user+sys of the producer process, client library threads included */
  long long sent;  /* publishes the broker confirmed */
  int ok;          /* 1 if every publish was confirmed */
  char error[200]; /* why not, when ok == 0 */
} bench_producer_report;

/* Runs in the child after "go"; fills `r` (t_first, t_done, sent, and error on failure) and
 * returns 0 if all went well. */
typedef int (*bench_producer_fn)(void *arg, bench_producer_report *r);

typedef struct bench_producer {
  pid_t pid;
  int go_fd;     /* parent writes one byte here; closing it unsent makes the child quit */
  int report_fd; /* parent reads the report here */
} bench_producer;

/* Forks the child; it arms its own watchdog of `timeout_s` plus a margin. Returns 0 or -1. */
int bench_producer_fork(bench_producer *p, bench_producer_fn fn, void *arg, int timeout_s);

int bench_producer_go(bench_producer *p);

/* Reads the report, waiting until `deadline` (bench_now() scale) at most, and reaps the child;
 * a child that has not reported by then is killed. Returns 0 if a report arrived. */
int bench_producer_finish(bench_producer *p, bench_producer_report *r, double deadline);

#endif
