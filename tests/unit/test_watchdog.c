/* Unit tests for the watchdog over calls into scripts (bindings/watchdog.c): a call that runs
 * on gets its arm run on its own thread, a call that has ended gets none, nested watches arm
 * only the innermost call's, and the thread comes and goes with the watches. Each wait is
 * bounded (5 s), and no test asserts how soon anything happens. Under valgrind, run it with
 * --fair-sched=yes: valgrind's default lock lets a thread spinning without system calls (the
 * tests' stand-in for a Lua loop) keep the watchdog thread from ever running. */
#define _GNU_SOURCE /* gettid */
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "watchdog.h"

typedef struct armed {
  atomic_int times;
  atomic_int tid; /* the thread the last arm ran on */
} armed;

/* What scripts' arm does in place of lua_sethook: note it, async-signal-safely. */
static void note_arm(void *ud) {
  armed *a = ud;
  atomic_store(&a->tid, (int)gettid());
  atomic_fetch_add(&a->times, 1);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Spins, as a Lua loop would, until a has been armed or 5 s went by. */
static bool spin_until_armed(armed *a) {
  double until = now_s() + 5;
  while (atomic_load(&a->times) == 0 && now_s() < until) {
  }
  return atomic_load(&a->times) > 0;
}

/* One call that runs until it is armed. */
static void long_call(choreo_watch *w, armed *a) {
  choreo_watch_enter(w);
  CHECK(spin_until_armed(a));
  CHECK(choreo_watch_leave(w));
}

static void sleep_ms(int ms) {
  nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L}, NULL);
}

static void test_a_call_that_runs_on_is_armed_on_its_thread(void) {
  armed a = {0};
  choreo_watch *w = NULL;
  CHECK(choreo_watch_open(&w, note_arm, &a) == 0);
  long_call(w, &a);
  CHECK(atomic_load(&a.tid) == (int)gettid());
  choreo_watch_close(w);
}

static void test_an_ended_call_is_not_armed(void) {
  armed a = {0};
  choreo_watch *w = NULL;
  CHECK(choreo_watch_open(&w, note_arm, &a) == 0);
  long_call(w, &a);
  int after_call = atomic_load(&a.times);
  /* Ten ticks with no call under way, the thread awake and then asleep: nothing is armed,
   * whatever signal for the call was still on its way. */
  sleep_ms(10 * CHOREO_WATCH_TICK_MS);
  CHECK(atomic_load(&a.times) == after_call);
  choreo_watch_close(w);
}

static void test_nested_calls_count_as_the_outermost(void) {
  armed a = {0};
  choreo_watch *w = NULL;
  CHECK(choreo_watch_open(&w, note_arm, &a) == 0);
  choreo_watch_enter(w);
  choreo_watch_enter(w);
  CHECK(!choreo_watch_leave(w)); /* the inner call ends; the outer goes on and is armed */
  CHECK(spin_until_armed(&a));
  CHECK(choreo_watch_leave(w));
  choreo_watch_close(w);
}

static void test_only_the_innermost_watch_is_armed(void) {
  armed outer_armed = {0}, inner_armed = {0};
  choreo_watch *outer = NULL, *inner = NULL;
  CHECK(choreo_watch_open(&outer, note_arm, &outer_armed) == 0);
  CHECK(choreo_watch_open(&inner, note_arm, &inner_armed) == 0);
  choreo_watch_enter(outer); /* a test's Lua calling into a host's scripts */
  choreo_watch_enter(inner);
  CHECK(spin_until_armed(&inner_armed));
  CHECK(atomic_load(&outer_armed.times) == 0);
  CHECK(choreo_watch_leave(inner));
  CHECK(spin_until_armed(&outer_armed)); /* back in the outer call, still running */
  CHECK(choreo_watch_leave(outer));
  choreo_watch_close(inner);
  choreo_watch_close(outer);
}

static void test_the_thread_comes_back_with_a_new_watch(void) {
  for (int round = 0; round < 3; round++) {
    armed a = {0};
    choreo_watch *w = NULL;
    CHECK(choreo_watch_open(&w, note_arm, &a) == 0);
    long_call(w, &a);
    choreo_watch_close(w); /* the last one: the thread is joined */
  }
  CHECK(choreo_watch_signal() >= SIGRTMIN && choreo_watch_signal() <= SIGRTMAX);
}

static void test_a_call_after_a_quiet_spell_wakes_the_thread(void) {
  armed a = {0};
  choreo_watch *w = NULL;
  CHECK(choreo_watch_open(&w, note_arm, &a) == 0);
  sleep_ms(40 * CHOREO_WATCH_TICK_MS); /* past the idle ticks: the thread sleeps */
  long_call(w, &a);
  choreo_watch_close(w);
}

int main(void) {
  RUN(test_a_call_that_runs_on_is_armed_on_its_thread);
  RUN(test_an_ended_call_is_not_armed);
  RUN(test_nested_calls_count_as_the_outermost);
  RUN(test_only_the_innermost_watch_is_armed);
  RUN(test_the_thread_comes_back_with_a_new_watch);
  RUN(test_a_call_after_a_quiet_spell_wakes_the_thread);
  return CHECK_DONE();
}
