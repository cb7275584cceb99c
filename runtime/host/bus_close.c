/* See bus_close.h: nng_close on a thread of its own, waited for with a deadline. */
#include "bus_close.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* One close under way; the closing thread and the waiter each hold a reference. */
typedef struct bus_closing {
  nng_socket sock;
  pthread_mutex_t lock;
  pthread_cond_t closed_cv; /* on CLOCK_MONOTONIC */
  bool closed;
  int refs;
} bus_closing;

/* An nng_close has not returned in time: NNG's reaper is stuck for good. */
static atomic_bool bus_nng_stuck;

static void closing_release(bus_closing *c) {
  pthread_mutex_lock(&c->lock);
  bool last = --c->refs == 0;
  pthread_mutex_unlock(&c->lock);
  if (!last) return;
  pthread_cond_destroy(&c->closed_cv);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

static void *closing_run(void *arg) {
  bus_closing *c = arg;
  nng_close(c->sock);
  pthread_mutex_lock(&c->lock);
  c->closed = true;
  pthread_cond_signal(&c->closed_cv);
  pthread_mutex_unlock(&c->lock);
  closing_release(c);
  return NULL;
}

static bus_closing *closing_new(nng_socket s) {
  bus_closing *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  *c = (bus_closing){.sock = s, .refs = 2};
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0) {
    free(c);
    return NULL;
  }
  int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  if (!rc) rc = pthread_cond_init(&c->closed_cv, &attr);
  pthread_condattr_destroy(&attr);
  if (rc || pthread_mutex_init(&c->lock, NULL) != 0) {
    if (!rc) pthread_cond_destroy(&c->closed_cv);
    free(c);
    return NULL;
  }
  return c;
}

static bool closing_start(bus_closing *c) {
  pthread_attr_t attr;
  pthread_t thread;
  if (pthread_attr_init(&attr) != 0) return false;
  bool started = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
                 pthread_create(&thread, &attr, closing_run, c) == 0;
  pthread_attr_destroy(&attr);
  return started;
}

static bool closing_wait(bus_closing *c) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += CHOREO_BUS_CLOSE_WAIT_MS / 1000;
  until.tv_nsec += (CHOREO_BUS_CLOSE_WAIT_MS % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&c->lock);
  while (!c->closed && !atomic_load(&bus_nng_stuck))
    if (pthread_cond_timedwait(&c->closed_cv, &c->lock, &until) != 0) break;
  bool closed = c->closed;
  pthread_mutex_unlock(&c->lock);
  return closed;
}

void choreo_bus_close(nng_socket s) {
  for (int ev = NNG_PIPE_EV_ADD_PRE; ev <= NNG_PIPE_EV_REM_POST; ev++)
    nng_pipe_notify(s, (nng_pipe_ev)ev, NULL, NULL);
  bus_closing *c = closing_new(s);
  if (!c || !closing_start(c)) {
    /* No thread to spare: the plain close, as NNG offers it. */
    if (c) {
      c->refs = 1;
      closing_release(c);
    }
    nng_close(s);
    return;
  }
  if (!closing_wait(c)) atomic_store(&bus_nng_stuck, true);
  closing_release(c);
}

bool choreo_bus_nng_stuck(void) { return atomic_load(&bus_nng_stuck); }
