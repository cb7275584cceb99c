/* Clock, CPU time, command line, payload and watchdog for the benchmarks (see bench_util.h). */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include "bench_util.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char bench_name[64] = "bench";

double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rusage_seconds(int who) {
  struct rusage ru;
  if (getrusage(who, &ru) != 0) return 0.0;
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double bench_cpu_process(void) { return rusage_seconds(RUSAGE_SELF); }

double bench_cpu_thread(void) { return rusage_seconds(RUSAGE_THREAD); }

long bench_faults_process(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return ru.ru_minflt + ru.ru_majflt;
}

void bench_fail(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", bench_name);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

static void usage_exit(const char *usage, const char *why) {
  fprintf(stderr, "%s: %s\nusage: %s %s\n", bench_name, why, bench_name, usage);
  exit(2);
}

static long parse_long(const char *opt, const char *s, long min, long max, const char *usage) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v < min || v > max) {
    char why[200];
    snprintf(why, sizeof why, "%s %s: not a whole number from %ld to %ld", opt, s, min, max);
    usage_exit(usage, why);
  }
  return v;
}

size_t bench_payload_size = BENCH_PAYLOAD_DEFAULT;

/* The indexes travel as text in 100 bytes and as a bitmap in memory: keep them sane. */
#define MAX_EVENTS 1000000000L

/* --seconds, which comes with --rate: a bit of its own to check that they come together. */
enum { ARG_SECONDS = 1u << 16 };

void bench_args_parse(bench_args *a, int argc, char **argv, unsigned accepted, const char *usage) {
  const char *slash = strrchr(argv[0], '/');
  snprintf(bench_name, sizeof bench_name, "%s", slash ? slash + 1 : argv[0]);
  memset(a, 0, sizeof *a);
  a->timeout_s = BENCH_DEFAULT_TIMEOUT_S;
  unsigned given = 0;
  int timeout_given = 0;
  for (int k = 1; k < argc; k++) {
    const char *opt = argv[k];
    if (k + 1 >= argc) usage_exit(usage, "option without a value");
    const char *val = argv[++k];
    if (strcmp(opt, "--url") == 0 && (accepted & BENCH_ARG_URL)) {
      a->url = val;
      given |= BENCH_ARG_URL;
    } else if (strcmp(opt, "--db") == 0 && (accepted & BENCH_ARG_DB)) {
      a->db = val;
      given |= BENCH_ARG_DB;
    } else if (strcmp(opt, "--port") == 0 && (accepted & BENCH_ARG_PORT)) {
      a->port = (int)parse_long(opt, val, 1, 65535, usage);
      given |= BENCH_ARG_PORT;
    } else if (strcmp(opt, "--events") == 0 && (accepted & BENCH_ARG_EVENTS)) {
      a->events = parse_long(opt, val, 1, MAX_EVENTS, usage);
      given |= BENCH_ARG_EVENTS;
    } else if (strcmp(opt, "--rate") == 0 && (accepted & BENCH_ARG_RATE)) {
      a->rate = parse_long(opt, val, 1, 10000000L, usage);
      given |= BENCH_ARG_RATE;
    } else if (strcmp(opt, "--seconds") == 0 && (accepted & BENCH_ARG_RATE)) {
      a->seconds = parse_long(opt, val, 1, 24 * 3600, usage);
      given |= ARG_SECONDS;
    } else if (strcmp(opt, "--restart-every") == 0 && (accepted & BENCH_ARG_RESTART)) {
      a->restart_ms = parse_long(opt, val, 1, 3600L * 1000, usage);
    } else if (strcmp(opt, "--consumer-of") == 0 && (accepted & BENCH_ARG_RESTART)) {
      a->consumer_of = val;
    } else if (strcmp(opt, "--payload") == 0) {
      bench_payload_size = (size_t)parse_long(opt, val, 32, BENCH_PAYLOAD_MAX, usage);
    } else if (strcmp(opt, "--pause-ms") == 0 && (accepted & BENCH_ARG_PAUSE)) {
      a->pause_ms = parse_long(opt, val, 1, 60L * 1000, usage);
    } else if (strcmp(opt, "--timeout") == 0) {
      a->timeout_s = (int)parse_long(opt, val, 1, 24 * 3600, usage);
      timeout_given = 1;
    } else {
      usage_exit(usage, "unknown option");
    }
  }
  if (given & (BENCH_ARG_RATE | ARG_SECONDS)) {
    if (!(given & BENCH_ARG_RATE) || !(given & ARG_SECONDS))
      usage_exit(usage, "--rate and --seconds go together");
    if (given & BENCH_ARG_EVENTS) usage_exit(usage, "--events and --rate exclude each other");
    if (a->rate > MAX_EVENTS / a->seconds)
      usage_exit(usage, "--rate times --seconds is more than 1000000000 events");
    a->events = a->rate * a->seconds;
    /* The default bounds the wait beyond the offered load, not the load itself. */
    if (!timeout_given) a->timeout_s += (int)a->seconds;
    given = (given & ~(BENCH_ARG_RATE | ARG_SECONDS)) | BENCH_ARG_EVENTS;
  }
  if (a->pause_ms && a->rate) usage_exit(usage, "--pause-ms is for the pipeline (--events)");
  if (a->restart_ms && !a->rate)
    usage_exit(usage, "--restart-every restarts the consumer under a load: it needs --rate and"
                      " --seconds");
  /* A run that never restarts its consumer would measure nothing. */
  if (a->restart_ms && a->restart_ms >= a->seconds * 1000)
    usage_exit(usage, "--restart-every must be shorter than --seconds");
  if (a->consumer_of && !a->restart_ms)
    usage_exit(usage, "--consumer-of is for the consumers of a --restart-every run");
  if (given != (accepted & ~(unsigned)(BENCH_ARG_RATE | BENCH_ARG_RESTART | BENCH_ARG_PAUSE)))
    usage_exit(usage, "missing option");
  /* Tells a consumer's messages from its supervisor's, which has the same program name. */
  if (a->consumer_of) {
    size_t used = strlen(bench_name);
    snprintf(bench_name + used, sizeof bench_name - used, " (consumer)");
  }
}

void bench_run_name(char *buf, size_t len, const bench_args *a) {
  static const char allowed[] =
      "0123456789_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  if (a->consumer_of) {
    size_t n = strspn(a->consumer_of, allowed);
    if (a->consumer_of[n] != '\0' || n == 0 || n >= len)
      bench_fail("--consumer-of %s: not a run name", a->consumer_of);
    memcpy(buf, a->consumer_of, n + 1);
    return;
  }
  long stamp = (long)(bench_now() * 1000.0) % 1000000000L;
  snprintf(buf, len, "%ld_%ld", (long)getpid(), stamp);
}

static void watchdog_fire(int sig) {
  (void)sig;
  /* Only async-signal-safe calls here: the process may be stuck inside any library. */
  static const char msg[] = ": watchdog: still running long after the time limit, giving up\n";
  ssize_t r = write(STDERR_FILENO, bench_name, strlen(bench_name));
  r = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)r;
  _exit(3);
}

void bench_watchdog(int seconds) {
  signal(SIGALRM, watchdog_fire);
  alarm((unsigned)seconds);
}

static void payload_fill(unsigned char *buf, const char *head, int len) {
  memset(buf, 'x', bench_payload_size);
  memcpy(buf, head, (size_t)len); /* at most 31 bytes for the allowed ranges: always fits */
}

void bench_payload(unsigned char *buf, long i) {
  char head[32];
  payload_fill(buf, head, snprintf(head, sizeof head, "%ld ", i));
}

void bench_payload_stamped(unsigned char *buf, long i, double sent) {
  char head[32];
  payload_fill(buf, head, snprintf(head, sizeof head, "%ld %lld ", i, (long long)(sent * 1e9)));
}

/* The decimal number at buf[*at], which a space ends; moves *at past the space. -1 if none.
 * At most 18 digits: never overflows. */
static long long payload_number(const unsigned char *p, size_t len, size_t *at) {
  long long v = 0;
  size_t k = *at;
  for (; k < len && k - *at < 18 && p[k] >= '0' && p[k] <= '9'; k++) v = v * 10 + (p[k] - '0');
  if (k == *at || k >= len || p[k] != ' ') return -1;
  *at = k + 1;
  return v;
}

long bench_payload_index(const void *buf, size_t len) {
  size_t at = 0;
  return (long)payload_number(buf, len, &at);
}

double bench_payload_sent(const void *buf, size_t len) {
  size_t at = 0;
  if (payload_number(buf, len, &at) < 0) return -1;
  long long ns = payload_number(buf, len, &at);
  return ns < 0 ? -1 : (double)ns / 1e9;
}

void bench_seen_init(bench_seen *s, long n) {
  s->bits = calloc((size_t)n / 8 + 1, 1);
  if (!s->bits) bench_fail("out of memory");
  s->n = n;
  s->distinct = 0;
}

int bench_seen_add(bench_seen *s, long i) {
  if (i < 0 || i >= s->n) return 0;
  unsigned char bit = (unsigned char)(1u << (i % 8));
  if (s->bits[i / 8] & bit) return 0;
  s->bits[i / 8] |= bit;
  s->distinct++;
  return 1;
}

void bench_seen_free(bench_seen *s) {
  free(s->bits);
  s->bits = NULL;
}

struct sockaddr_un bench_unix_address(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path) bench_fail("socket path too long: %s", path);
  memcpy(sa.sun_path, path, strlen(path) + 1);
  return sa;
}

int bench_write_all(int fd, const void *buf, size_t n) {
  for (const char *p = buf; n > 0;) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

int bench_read_all(int fd, void *buf, size_t n) {
  for (char *p = buf; n > 0;) {
    ssize_t k = read(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k == 0) errno = 0;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}
