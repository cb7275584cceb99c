/* Shared plumbing of the peer-system benchmarks: the monotonic clock, CPU time, the command
 * line, the event payload, and a watchdog so that no benchmark can hang a benchmark run. Each
 * program prints one JSON line on stdout and its diagnostics on stderr. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stddef.h>
#include <sys/un.h>

/* Every event carries this many payload bytes, as in the "pipeline" workload. */
#define BENCH_PAYLOAD_DEFAULT 100
#define BENCH_PAYLOAD_MAX 65536
/* Bytes per event payload in this run: --payload N (32 to BENCH_PAYLOAD_MAX), else
 * BENCH_PAYLOAD_DEFAULT. */
extern size_t bench_payload_size;
#define BENCH_DEFAULT_TIMEOUT_S 120

/* Seconds on CLOCK_MONOTONIC: one clock for every process on the machine, so a producer
 * process and its consumer can subtract each other's timestamps. */
double bench_now(void);

/* User+sys seconds of the whole calling process (all its threads, none of its children). */
double bench_cpu_process(void);

/* User+sys seconds of the calling thread only. */
double bench_cpu_thread(void);

/* Page faults of the whole calling process so far (minor and major): memory touched for the
 * first time. On some virtual machines each costs ~10 µs, so a consumer that holds a growing
 * backlog pays for it in CPU; the pipeline reports them to tell that cost from the rest. */
long bench_faults_process(void);

typedef struct bench_args {
  const char *url; /* --url */
  const char *db;  /* --db */
  int port;        /* --port */
  long events;     /* --events, or rate * seconds in the latency workload */
  long rate;       /* --rate, events per second; 0 unless the latency workload was asked for */
  long seconds;    /* --seconds */
  int timeout_s;   /* --timeout; unless given, BENCH_DEFAULT_TIMEOUT_S (beyond --seconds) */
  /* --pause-ms, in the pipeline workload: the consumer stops reading this long after its first
   * batch while the producer goes on, as a consumer that falls behind for a while (0: never). */
  long pause_ms;
  long restart_ms; /* --restart-every, with --rate: the restart workload; 0 otherwise */
  /* --consumer-of RUN: this process is one consumer of the restart workload run RUN, started
   * by that run's supervising process (bench_restart.h); NULL otherwise. */
  const char *consumer_of;
} bench_args;

/* BENCH_ARG_RATE stands for the latency workload's --rate R --seconds S, which replace
 * --events when given; BENCH_ARG_RESTART for the restart workload's optional --restart-every
 * MS on top of them, and --consumer-of; BENCH_ARG_PAUSE for the pipeline's optional --pause-ms
 * (a consumer of bench_consume's). */
enum {
  BENCH_ARG_URL = 1,
  BENCH_ARG_DB = 2,
  BENCH_ARG_PORT = 4,
  BENCH_ARG_EVENTS = 8,
  BENCH_ARG_RATE = 16,
  BENCH_ARG_RESTART = 32,
  BENCH_ARG_PAUSE = 64
};

/* Parses the options named in `accepted` (a mask of BENCH_ARG_*, all of them required, except
 * that --rate and --seconds, if accepted, may stand in for --events, and that the restart
 * options are optional) plus the optional --timeout. Prints `usage` and exits 2 on anything
 * else. Remembers argv[0] as the name for bench_fail and the watchdog. */
void bench_args_parse(bench_args *a, int argc, char **argv, unsigned accepted, const char *usage);

/* The name of this run's stream and the like, `len` bytes at most: fresh for each run (the
 * process id and the time), or the one --consumer-of gives a consumer of the restart workload.
 * Letters, digits and '_' only, so that it fits inside a NATS subject or stream name. */
void bench_run_name(char *buf, size_t len, const bench_args *a);

/* The address of the Unix socket at path; fails (bench_fail) when the path is too long for one. */
struct sockaddr_un bench_unix_address(const char *path);

/* Writes, or reads, all n bytes on a blocking descriptor, through interruptions by signals; 0,
 * or -1 with errno set (0 for a read that met the end first). */
int bench_write_all(int fd, const void *buf, size_t n);
int bench_read_all(int fd, void *buf, size_t n);

/* Prints "<program>: <message>" on stderr and exits 1. */
void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Ends the process with status 3 and a message if it is still running `seconds` from now: the
 * backstop for a library call that blocks forever. Not inherited by fork(); the child arms its
 * own. */
void bench_watchdog(int seconds);

/* Fills `buf` (bench_payload_size bytes) for event `i`: the decimal index, a space, filler.
 * Carrying the index inside the payload lets a transport without fields (NATS, NNG) check
 * loss and duplication the same way as one with fields (Redis). */
void bench_payload(unsigned char *buf, long i);

/* The same with the time the event is sent (bench_now() scale) after the index, in
 * nanoseconds: "i t " then filler. How the latency workload's consumer knows when its events
 * left the producer. */
void bench_payload_stamped(unsigned char *buf, long i, double sent);

/* The index written by bench_payload, or -1 if `buf` does not start with one. */
long bench_payload_index(const void *buf, size_t len);

/* The send time written by bench_payload_stamped, or -1 if `buf` carries none. */
double bench_payload_sent(const void *buf, size_t len);

/* A set of event indexes [0, n): how the consumers know when every event has arrived even if
 * some arrive twice. */
typedef struct bench_seen {
  unsigned char *bits;
  long n;
  long distinct;
} bench_seen;

void bench_seen_init(bench_seen *s, long n);
/* Returns 1 if `i` is new, 0 if seen before or out of range. */
int bench_seen_add(bench_seen *s, long i);
void bench_seen_free(bench_seen *s);

#endif
