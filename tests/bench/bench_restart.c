/* Consumer processes replaced as a deploy would, and their supervisor (see bench_restart.h). */
#define _GNU_SOURCE /* close_range, pipe2 */
#include "bench_restart.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* How long a consumer may take to leave once asked: the read in progress (a second at most,
 * the consumers' idle wait), a commit and an ack, with room to spare. */
#define STOP_GRACE_S 5.0

typedef struct consumer {
  pid_t pid;
  int fd; /* the read end of its pipe */
} consumer;

/* The consumer process while it runs: a supervisor that fails half way (bench_fail, i.e. exit)
 * must not leave it behind. */
static pid_t live_consumer;

static void kill_live_consumer(void) {
  if (live_consumer > 0) {
    kill(live_consumer, SIGKILL);
    waitpid(live_consumer, NULL, 0);
    live_consumer = 0;
  }
}

/* Where this program's file is, as a deploy starts the service's file again. Read once, not
 * exec'd as /proc/self/exe: under valgrind that names valgrind, which this call is told. */
static void program_path(char *buf, size_t len) {
  ssize_t n = readlink("/proc/self/exe", buf, len - 1);
  if (n < 0 || (size_t)n == len - 1) bench_fail("cannot find this program's file");
  buf[n] = '\0';
}

/* `argv` with --consumer-of `run` added: what each consumer process runs. */
static char **consumer_command(char **argv, const char *run) {
  size_t argc = 0;
  while (argv[argc]) argc++;
  char **cmd = malloc((argc + 3) * sizeof *cmd);
  if (!cmd) bench_fail("out of memory");
  memcpy(cmd, argv, argc * sizeof *cmd);
  cmd[argc] = (char *)"--consumer-of";
  cmd[argc + 1] = (char *)run;
  cmd[argc + 2] = NULL;
  return cmd;
}

static void start(consumer *c, const char *path, char **cmd) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) bench_fail("pipe: %s", strerror(errno));
  /* Blocked from its first instruction on: a SIGTERM sent before the new program has set
   * itself up (bench_restart_consumer) stays pending instead of killing it. */
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, &old);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    /* Only async-signal-safe calls until exec: the supervisor may run library threads. */
    if (pipefd[1] == BENCH_RESTART_FD)
      fcntl(BENCH_RESTART_FD, F_SETFD, 0);
    else if (dup2(pipefd[1], BENCH_RESTART_FD) < 0)
      _exit(127);
    /* A fresh process inherits none of the supervisor's connections, databases or pipes.
     * Kernels before 5.9 lack close_range: the first thousand descriptors then. */
    if (close_range(BENCH_RESTART_FD + 1, ~0U, 0) != 0)
      for (int fd = BENCH_RESTART_FD + 1; fd < 1024; fd++) close(fd);
    /* If the supervisor dies (its watchdog), the consumer is stopped as on a deploy. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    execv(path, cmd);
    _exit(127);
  }
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(pipefd[1]);
  if (pid < 0) {
    close(pipefd[0]);
    bench_fail("fork: %s", strerror(fork_errno));
  }
  static int registered;
  if (!registered) registered = atexit(kill_live_consumer) == 0;
  live_consumer = pid;
  c->pid = pid;
  c->fd = pipefd[0];
}

/* Waits until `until` (bench_now() scale) at most for the consumer's pipe and accounts for
 * what came. Returns 0 once the pipe has ended, which it does as the process exits. */
static int collect(consumer *c, bench_tally *t, double until) {
  double left = until - bench_now();
  /* Rounded up, so as not to wake just before `until` and spin; a second at most, so the
   * caller looks at its clock now and then. */
  int ms = left <= 0 ? 0 : left >= 1.0 ? 1000 : (int)(left * 1000.0) + 1;
  struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
  int rc = poll(&pfd, 1, ms);
  if (rc < 0 && errno != EINTR) bench_fail("poll: %s", strerror(errno));
  if (rc <= 0) return 1;
  long n = bench_tally_receive(t, c->fd);
  if (n < 0) bench_fail("reading a consumer's report: %s", strerror(errno));
  return n > 0;
}

/* Reaps the consumer, whose pipe has ended: it has exited or is about to. Returns its wait
 * status. */
static int reap(consumer *c) {
  int status;
  while (waitpid(c->pid, &status, 0) < 0)
    if (errno != EINTR) bench_fail("waitpid: %s", strerror(errno));
  live_consumer = 0;
  close(c->fd);
  return status;
}

static void fail_ended(pid_t pid, int status, const char *how) {
  if (WIFSIGNALED(status))
    bench_fail("consumer process %d %s: killed by signal %d", (int)pid, how, WTERMSIG(status));
  bench_fail("consumer process %d %s: exit status %d", (int)pid, how, WEXITSTATUS(status));
}

/* A consumer that left without being asked is a failed run, whatever its exit status. */
static void ended_unasked(consumer *c) {
  pid_t pid = c->pid;
  fail_ended(pid, reap(c), "ended without being asked to");
}

/* What a deploy does: SIGTERM, then wait (bounded) for the consumer to finish and leave. */
static void stop(consumer *c, bench_tally *t) {
  if (kill(c->pid, SIGTERM) != 0) bench_fail("kill: %s", strerror(errno));
  double deadline = bench_now() + STOP_GRACE_S;
  /* Its last transactions come in until the pipe ends. */
  int running = 1;
  while (running && bench_now() < deadline) running = collect(c, t, deadline);
  if (running)
    bench_fail("consumer process %d did not stop within %.0f s of SIGTERM", (int)c->pid,
               STOP_GRACE_S);
  pid_t pid = c->pid;
  int status = reap(c);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_ended(pid, status, "failed to stop");
}

long bench_restart_run(char **argv, const char *run, const bench_args *a, bench_producer *p,
                       bench_tally *t, double deadline) {
  char path[4096];
  program_path(path, sizeof path);
  char **cmd = consumer_command(argv, run);
  consumer c;
  start(&c, path, cmd);
  /* The load starts once a consumer is there, as in a service that is up. */
  while (t->ready == 0) {
    if (bench_now() > deadline) bench_fail("the first consumer process never became ready");
    if (!collect(&c, t, deadline)) ended_unasked(&c);
  }
  if (bench_producer_go(p) != 0) bench_fail("cannot start the producer");
  /* Deploy k is due k periods after the load started, while the load lasts; counted in whole
   * milliseconds, so that rounding never adds or drops one at the end. */
  double t0 = bench_now();
  long slot = 1, restarts = 0;
  while (t->seen.distinct < a->events) {
    double now = bench_now();
    if (now > deadline)
      bench_fail("time limit of %d s reached with %ld of %ld events committed", a->timeout_s,
                 t->seen.distinct, a->events);
    int deploying = slot * a->restart_ms < a->seconds * 1000;
    double due = t0 + (double)(slot * a->restart_ms) / 1000.0;
    if (deploying && now >= due) {
      stop(&c, t);
      start(&c, path, cmd);
      restarts++;
      /* One that took longer than a period skips the deploys it overran, as a deploy
       * pipeline does not start one while another is under way. */
      while (t0 + (double)(slot * a->restart_ms) / 1000.0 <= bench_now()) slot++;
      continue;
    }
    if (!collect(&c, t, deploying ? due : deadline)) ended_unasked(&c);
  }
  stop(&c, t);
  free(cmd);
  return restarts;
}

void bench_restart_consumer(bench_tally *t) {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  /* Library threads started later inherit the mask: SIGTERM stays pending for the process. */
  pthread_sigmask(SIG_BLOCK, &term, NULL);
  if (fcntl(BENCH_RESTART_FD, F_GETFD) < 0)
    bench_fail("no pipe on descriptor %d: --consumer-of is how a --restart-every run starts"
               " its consumers",
               BENCH_RESTART_FD);
  bench_tally_forward(t, BENCH_RESTART_FD);
}

int bench_restart_stopping(void) {
  sigset_t pending;
  return sigpending(&pending) == 0 && sigismember(&pending, SIGTERM) == 1;
}
