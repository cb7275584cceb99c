/* The watchdog over calls into scripts (see watchdog.h). One thread for the process, started by
 * the first open watch and stopped with the last. */
#define _GNU_SOURCE /* SA_RESTART */
#include "watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "choreo.h"

/* Ticks without a call before the thread sleeps until the next one: an idle host's process
 * stays asleep, a busy one pays a wake-up per tick, not per call. */
#define IDLE_TICKS 20

struct choreo_watch {
  void (*arm)(void *ud);
  void *ud;
  atomic_ulong call;   /* the number of the outermost call under way, 0: none */
  atomic_ulong armed;  /* the call the thread asked to arm */
  unsigned long calls; /* numbers given so far (the calling thread's) */
  unsigned long seen;  /* the call seen at the last tick (the watchdog thread's) */
  int depth;           /* calls nested (the calling thread's) */
  choreo_watch *outer; /* the thread's watch when this one's outermost call began */
  pthread_t thread;    /* where the calls run, written under the lock */
  bool has_thread;
  choreo_watch *next; /* in the list, under the lock */
};

static struct {
  pthread_mutex_t lifecycle; /* open and close, one at a time: a thread is joined before the next */
  pthread_mutex_t lock;
  pthread_cond_t wake;
  choreo_watch *list; /* the open watches; the thread runs while there is one */
  bool stopping;
  atomic_bool sleeping;
  pthread_t thread;
  int signo;    /* 0 until the handler is installed */
  long tick_ns; /* CHOREO_WATCH_TICK_MS, or the environment's (watch_tick_ns) */
} wd = {.lifecycle = PTHREAD_MUTEX_INITIALIZER,
      .lock = PTHREAD_MUTEX_INITIALIZER,
      .wake = PTHREAD_COND_INITIALIZER};

/* The innermost watch whose call runs on this thread, for the signal handler. Initial-exec, so
 * that reading it there never allocates (in the shared library too). */
static _Thread_local choreo_watch *watch_current __attribute__((tls_model("initial-exec")));

static void watch_on_signal(int signo) {
  (void)signo;
  int saved = errno;
  choreo_watch *w = watch_current;
  if (w) {
    unsigned long call = atomic_load(&w->call);
    /* A signal sent for a call that has ended since finds another number, or none. */
    if (call && call == atomic_load(&w->armed)) w->arm(w->ud);
  }
  errno = saved;
}

static void watch_tick(void) {
  for (choreo_watch *w = wd.list; w; w = w->next) {
    unsigned long call = atomic_load(&w->call);
    if (call && call == w->seen && w->has_thread) {
      atomic_store(&w->armed, call);
      pthread_kill(w->thread, wd.signo);
    }
    w->seen = call;
  }
}

static bool watch_any_call(void) {
  for (choreo_watch *w = wd.list; w; w = w->next)
    if (atomic_load(&w->call)) return true;
  return false;
}

static void *watch_run(void *arg) {
  (void)arg;
  pthread_mutex_lock(&wd.lock);
  int idle = 0;
  while (!wd.stopping) {
    watch_tick();
    idle = watch_any_call() ? 0 : idle + 1;
    if (idle >= IDLE_TICKS) {
      /* Said before looking once more: a call starting meanwhile either is seen now or sees
       * this and wakes the thread (choreo_watch_enter). */
      atomic_store(&wd.sleeping, true);
      if (!watch_any_call() && !wd.stopping) pthread_cond_wait(&wd.wake, &wd.lock);
      atomic_store(&wd.sleeping, false);
      idle = 0;
      continue;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wd.tick_ns / 1000000000L;
    until.tv_nsec += wd.tick_ns % 1000000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&wd.wake, &wd.lock, &until);
  }
  pthread_mutex_unlock(&wd.lock);
  return NULL;
}

/* A longer tick from the environment: under valgrind, whose code runs some fifty times slower,
 * tests/bench/instructions asks for 250 ms so that the calls it counts get the hook as they
 * would at full speed. */
static long watch_tick_ns(void) {
  const char *text = getenv("CHOREO_WATCH_TICK_MS");
  char *end = NULL;
  long ms = text ? strtol(text, &end, 10) : 0;
  if (!text || !*text || *end || ms < 1 || ms > 60000) ms = CHOREO_WATCH_TICK_MS;
  return ms * 1000000L;
}

static int watch_install(void) {
  struct sigaction sa = {.sa_handler = watch_on_signal, .sa_flags = SA_RESTART};
  sigemptyset(&sa.sa_mask);
  /* Real-time, so none of libuv, NNG, SQLite or glibc uses it; not SIGRTMIN itself, the one a
   * program embedding a host would most likely take first. */
  int signo = SIGRTMIN + 2;
  if (sigaction(signo, &sa, NULL) != 0) return CHOREO_EIO;
  wd.signo = signo;
  wd.tick_ns = watch_tick_ns();
  return 0;
}

/* With every signal blocked, so that none meant for the process lands on the watchdog. */
static int watch_start_thread(void) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  wd.stopping = false;
  int rc = pthread_create(&wd.thread, NULL, watch_run, NULL) == 0 ? 0 : CHOREO_ENOMEM;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

int choreo_watch_open(choreo_watch **out, void (*arm)(void *ud), void *ud) {
  choreo_watch *w = calloc(1, sizeof *w);
  if (!w) return CHOREO_ENOMEM;
  w->arm = arm;
  w->ud = ud;
  pthread_mutex_lock(&wd.lifecycle);
  pthread_mutex_lock(&wd.lock);
  int rc = wd.signo ? 0 : watch_install();
  if (!rc && !wd.list) rc = watch_start_thread();
  if (!rc) {
    w->next = wd.list;
    wd.list = w;
  }
  pthread_mutex_unlock(&wd.lock);
  pthread_mutex_unlock(&wd.lifecycle);
  if (rc) {
    free(w);
    return rc;
  }
  *out = w;
  return 0;
}

void choreo_watch_close(choreo_watch *w) {
  if (!w) return;
  pthread_mutex_lock(&wd.lifecycle);
  pthread_mutex_lock(&wd.lock);
  for (choreo_watch **p = &wd.list; *p; p = &(*p)->next)
    if (*p == w) {
      *p = w->next;
      break;
    }
  bool last = !wd.list;
  if (last) {
    wd.stopping = true;
    pthread_cond_signal(&wd.wake);
  }
  pthread_mutex_unlock(&wd.lock);
  if (last) pthread_join(wd.thread, NULL);
  pthread_mutex_unlock(&wd.lifecycle);
  free(w);
}

void choreo_watch_enter(choreo_watch *w) {
  if (w->depth++ > 0) return;
  if (!w->has_thread || !pthread_equal(w->thread, pthread_self())) {
    pthread_mutex_lock(&wd.lock);
    w->thread = pthread_self();
    w->has_thread = true;
    pthread_mutex_unlock(&wd.lock);
  }
  w->outer = watch_current;
  watch_current = w; /* before the number: a signal for this call finds the watch */
  atomic_store(&w->call, ++w->calls);
  if (atomic_load(&wd.sleeping)) {
    pthread_mutex_lock(&wd.lock);
    pthread_cond_signal(&wd.wake);
    pthread_mutex_unlock(&wd.lock);
  }
}

bool choreo_watch_leave(choreo_watch *w) {
  if (--w->depth > 0) return false;
  atomic_store(&w->call, 0); /* before the watch goes: a late signal finds no call */
  watch_current = w->outer;
  return true;
}

int choreo_watch_signal(void) { return wd.signo; }
