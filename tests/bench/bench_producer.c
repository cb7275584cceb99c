/* Forked producer process with a go pipe and a report pipe (see bench_producer.h). */
#include "bench_producer.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

/* The child of this run while it may still be running: a parent that fails half way (through
 * bench_fail, i.e. exit) must not leave a producer publishing into a stream nobody reads. */
static pid_t live_child;

static void kill_live_child(void) {
  if (live_child > 0) {
    kill(live_child, SIGKILL);
    waitpid(live_child, NULL, 0);
    live_child = 0;
  }
}

static void child_main(int go_fd, int report_fd, bench_producer_fn fn, void *arg, int timeout_s) {
  bench_watchdog(timeout_s + 15);
  bench_producer_report r;
  memset(&r, 0, sizeof r);
  char go;
  ssize_t n;
  do n = read(go_fd, &go, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1) _exit(1); /* the parent gave up before starting us */
  r.ok = fn(arg, &r) == 0;
  r.cpu_s = bench_cpu_process();
  /* Smaller than PIPE_BUF: one atomic write that never blocks on an empty pipe. */
  if (write(report_fd, &r, sizeof r) != (ssize_t)sizeof r) _exit(1);
  _exit(r.ok ? 0 : 1);
}

int bench_producer_fork(bench_producer *p, bench_producer_fn fn, void *arg, int timeout_s) {
  int go[2], report[2];
  if (pipe(go) != 0) return -1;
  if (pipe(report) != 0) {
    close(go[0]);
    close(go[1]);
    return -1;
  }
  fflush(NULL); /* or the child would flush the parent's buffered output a second time */
  pid_t pid = fork();
  if (pid < 0) {
    close(go[0]);
    close(go[1]);
    close(report[0]);
    close(report[1]);
    return -1;
  }
  if (pid == 0) {
    close(go[1]);
    close(report[0]);
    child_main(go[0], report[1], fn, arg, timeout_s);
  }
  close(go[0]);
  close(report[1]);
  static int registered;
  if (!registered) registered = atexit(kill_live_child) == 0;
  live_child = pid;
  p->pid = pid;
  p->go_fd = go[1];
  p->report_fd = report[0];
  return 0;
}

int bench_producer_go(bench_producer *p) {
  char go = 'g';
  return write(p->go_fd, &go, 1) == 1 ? 0 : -1;
}

int bench_producer_finish(bench_producer *p, bench_producer_report *r, double deadline) {
  int got = 0;
  size_t have = 0;
  close(p->go_fd); /* a child still waiting for "go" now reads EOF and leaves */
  while (have < sizeof *r) {
    int ms = (int)((deadline - bench_now()) * 1000.0);
    if (ms <= 0) break;
    struct pollfd pfd = {.fd = p->report_fd, .events = POLLIN};
    int rc = poll(&pfd, 1, ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) break;
    ssize_t n = read(p->report_fd, (char *)r + have, sizeof *r - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += (size_t)n;
  }
  got = have == sizeof *r;
  close(p->report_fd);
  if (!got) kill(p->pid, SIGKILL);
  int status;
  while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {
  }
  live_child = 0;
  return got ? 0 : -1;
}
