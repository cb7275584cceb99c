/* choreo run DIR: a host (choreo.h) on a loop of ours, stopped by SIGINT or SIGTERM. */
#define _GNU_SOURCE /* sched_setaffinity and the CPU_* macros */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "choreo.h"
#include "cli.h"
#include "codec.h"
#include "bus.h"
#include "host.h"
#include "log.h"

static int run_number(const char *flag, const char *text, unsigned long long *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno || *end || !*text || text[0] == '-' || v == 0) return cli_usage("%s needs a positive integer", flag);
  *out = v;
  return CLI_OK;
}

/* --cpu N: keeps the host and every thread it starts (NNG's, the checkpointer) on one CPU. Its
 * messages pass between those threads several times; on a VM, waking a thread on another CPU
 * costs tens of microseconds, which measured as half the publish-to-commit latency. */
static int run_pin(const char *text) {
  char *end;
  errno = 0;
  long cpu = strtol(text, &end, 10);
  cpu_set_t allowed, one;
  if (errno || *end || !*text || cpu < 0 || cpu >= CPU_SETSIZE)
    return cli_usage("--cpu needs a CPU number, got '%s'", text);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || !CPU_ISSET((int)cpu, &allowed))
    return cli_usage("--cpu %s: no such CPU available to this process", text);
  CPU_ZERO(&one);
  CPU_SET((int)cpu, &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0)
    return cli_fail("--cpu: %s", strerror(errno));
  return CLI_OK;
}

/* How long the host may take to stop once a signal asked for it: a handler under way is cut
 * short at once, and NNG is waited for at most CHOREO_BUS_CLOSE_WAIT_MS (bus_close.h), so this
 * is only a bound. */
#define RUN_STOP_WAIT_S 10

/* SIGINT and SIGTERM are taken by a thread of their own (sigwait), not by a uv_signal_t: a
 * handler stuck in a Lua loop or a long query holds the loop, where uv_signal_t callbacks run,
 * and choreo_host_stop called off the loop's thread cuts such a handler short. The signals are
 * blocked before the host starts any thread, so that no other thread takes them. */
typedef struct run_signals {
  pthread_t thread;
  sigset_t set;
  choreo_host *_Atomic host; /* NULL: the run is over, the thread just leaves */
  const char *who;           /* names the host in the log */
  pthread_mutex_t lock;
  pthread_cond_t stopped; /* on CLOCK_MONOTONIC */
  bool loop_done;
} run_signals;

/* Waits at most RUN_STOP_WAIT_S for the loop to end; true once it has. */
static bool run_loop_ended(run_signals *s) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += RUN_STOP_WAIT_S;
  pthread_mutex_lock(&s->lock);
  while (!s->loop_done)
    if (pthread_cond_timedwait(&s->stopped, &s->lock, &until) != 0) break;
  bool done = s->loop_done;
  pthread_mutex_unlock(&s->lock);
  return done;
}

static void *run_wait_signals(void *arg) {
  run_signals *s = arg;
  int sig;
  sigwait(&s->set, &sig);
  choreo_host *host = atomic_load(&s->host);
  if (!host) return NULL;
  choreo_host_stop(host);
  if (!run_loop_ended(s)) {
    /* Stuck outside any transaction, or inside one that the store rolls back: what committed
     * is kept, as after kill -9. */
    choreo_log(CHOREO_LOG_ERROR, s->who, "still not stopped %d s after the signal; exiting",
               RUN_STOP_WAIT_S);
    _exit(EXIT_FAILURE);
  }
  return NULL;
}

/* Runs the host until a signal stops it. */
static int run_host(const choreo_host_config *cfg, const char *who) {
  run_signals s = {.who = who ? who : "choreo", .lock = PTHREAD_MUTEX_INITIALIZER};
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  int cond = pthread_cond_init(&s.stopped, &attr);
  pthread_condattr_destroy(&attr);
  sigemptyset(&s.set);
  sigaddset(&s.set, SIGINT);
  sigaddset(&s.set, SIGTERM);
  uv_loop_t loop;
  if (cond != 0 || pthread_sigmask(SIG_BLOCK, &s.set, NULL) != 0 ||
      pthread_create(&s.thread, NULL, run_wait_signals, &s) != 0)
    return cli_fail("%s", "cannot watch the signals");
  if (uv_loop_init(&loop) != 0) return cli_fail("%s", "cannot create an event loop");
  choreo_host_config c = *cfg;
  c.loop = &loop;
  choreo_host *host = NULL;
  char err[1024] = "";
  int rc = choreo_host_open(&host, &c, err, sizeof err);
  if (!rc) {
    atomic_store(&s.host, host);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  pthread_mutex_lock(&s.lock);
  s.loop_done = true;
  pthread_cond_signal(&s.stopped);
  pthread_mutex_unlock(&s.lock);
  /* Wakes the thread if no signal came (a failed start); a late signal finds no host. */
  atomic_store(&s.host, NULL);
  pthread_kill(s.thread, SIGTERM);
  pthread_join(s.thread, NULL);
  pthread_cond_destroy(&s.stopped);
  choreo_host_close(host);
  uv_loop_close(&loop);
  return rc ? cli_fail("%s", err) : CLI_OK;
}

/* A count from 1 to 100,000,000. */
static int run_count(const char *opt, const char *text, int *out) {
  unsigned long long n = 0;
  if (run_number(opt, text, &n)) return CLI_USAGE;
  if (n < 1 || n > 100000000) return cli_usage("%s must be from 1 to 100000000", opt);
  *out = (int)n;
  return CLI_OK;
}

int cli_run(const cli_args *a) {
  choreo_host_config o = {.bus = a->bus};
  const char *cpu = NULL;
  const char *listen[a->nrest + 1], *peers[a->nrest + 1];
  o.listen = listen;
  o.peers = peers;
  for (int i = 0; i < a->nrest; i++) {
    const char *arg = a->rest[i];
    if (arg[0] != '-') {
      if (o.dir) return cli_usage("run takes one directory, got also '%s'", arg);
      o.dir = arg;
      continue;
    }
    if (strcmp(arg, "--no-journal") == 0) {
      o.no_journal = true;
      continue;
    }
    if (i + 1 >= a->nrest) return cli_usage("%s needs a value", arg);
    const char *value = a->rest[++i];
    unsigned long long n = 0;
    if (strcmp(arg, "--name") == 0) o.name = value;
    else if (strcmp(arg, "--data") == 0) o.data = value;
    else if (strcmp(arg, "--listen") == 0) listen[o.nlisten++] = value;
    else if (strcmp(arg, "--peer") == 0) peers[o.npeers++] = value;
    else if (strcmp(arg, "--cpu") == 0) cpu = value;
    else if (strcmp(arg, "--otlp-json") == 0) o.otlp_json = value;
    else if (strcmp(arg, "--metrics") == 0) o.metrics = value;
    else if (strcmp(arg, "--http") == 0) {
      if (strncmp(value, "http://", 7) != 0)
        return cli_usage("--http %s: expected http://HOST:PORT", value);
      o.http = value;
    }
    else if (strcmp(arg, "--instructions") == 0) {
      if (run_number(arg, value, &n)) return CLI_USAGE;
      o.instruction_limit = n;
    } else if (strcmp(arg, "--memory") == 0) {
      if (run_number(arg, value, &n)) return CLI_USAGE;
      o.memory_limit = (size_t)n;
    } else if (strcmp(arg, "--retain") == 0) {
      if (cli_duration(arg, value, &o.retain_ms)) return CLI_USAGE;
    } else if (strcmp(arg, "--retain-max") == 0) {
      if (cli_duration(arg, value, &o.retain_max_ms)) return CLI_USAGE;
    } else if (strcmp(arg, "--max-message") == 0) {
      if (run_number(arg, value, &n)) return CLI_USAGE;
      if (n < 1024 || n > CHOREO_MAX_MESSAGE_LIMIT)
        return cli_usage("--max-message must be between 1024 and 8388608 bytes, got %s", value);
      o.max_message = (size_t)n;
    } else if (strcmp(arg, "--page-size") == 0) {
      if (run_number(arg, value, &n)) return CLI_USAGE;
      if (n < 512 || n > 65536 || (n & (n - 1)) != 0)
        return cli_usage("--page-size must be a power of two from 512 to 65536 bytes, got %s",
                         value);
      o.page_size = (int)n;
    } else if (strcmp(arg, "--workflow-cache") == 0) {
      if (run_count(arg, value, &o.workflow_cache)) return CLI_USAGE;
    } else if (strcmp(arg, "--workflow-history-max") == 0) {
      if (run_count(arg, value, &o.workflow_history_max)) return CLI_USAGE;
    } else return cli_usage("run: unknown option '%s'", arg);
  }
  if (!o.dir) return cli_usage("%s", "run needs the scripts directory: choreo run DIR");
  char real[PATH_MAX], err[256];
  const char *name = o.name ? o.name : realpath(o.dir, real) ? choreo_host_default_name(real) : NULL;
  if (name && choreo_name_check(name, err, sizeof err)) return cli_usage("%s", err);
  char rep[PATH_MAX + 64]; /* endpoints that cannot be paired with a FETCH one are usage errors */
  for (size_t i = 0; i < o.nlisten; i++)
    if (choreo_bus_rep_url(o.listen[i], rep, sizeof rep) || strncmp(o.listen[i], "tcp://", 6))
      return cli_usage("--listen %s: expected tcp://HOST:PORT", o.listen[i]);
  for (size_t i = 0; i < o.npeers; i++)
    if (choreo_bus_rep_url(o.peers[i], rep, sizeof rep))
      return cli_usage("--peer %s: expected ipc://DIR/NAME.pub or tcp://HOST:PORT", o.peers[i]);
  int rc = cpu ? run_pin(cpu) : CLI_OK; /* before the host starts any thread */
  return rc ? rc : run_host(&o, name);
}
