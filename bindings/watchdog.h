/* The watchdog over calls into scripts: a thread that notices a call running longer than a tick
 * and, by a signal to the thread making it, runs that call's arm function there.
 *
 * Lua's count hook is what stops a runaway handler, but while it is set Lua checks it at every
 * instruction: Lua code ran 2.2 times slower under it (a loop of arithmetic, lua5.4 with and
 * without debug.sethook). So a call starts without it, and only a call still running a tick
 * later gets it (armed from the signal handler: lua_sethook is safe there, as Lua's own lua.c
 * uses it on Ctrl-C). Calls that end sooner never pay for it.
 *
 * The thread ticks every CHOREO_WATCH_TICK_MS (the environment's CHOREO_WATCH_TICK_MS, if set,
 * for measurements under valgrind) while calls come, and sleeps once none has come for a while;
 * a call starting then wakes it. It runs while any watch is open. */
#ifndef CHOREO_WATCHDOG_H
#define CHOREO_WATCHDOG_H

#include <stdbool.h>

#define CHOREO_WATCH_TICK_MS 5

typedef struct choreo_watch choreo_watch;

/* arm(ud) runs in a signal handler, on the thread of a call that has run for one to two ticks,
 * and again at every tick after while that call goes on: async-signal-safe code only. Returns
 * 0, or CHOREO_ENOMEM / CHOREO_EIO (no thread, no signal handler). */
int choreo_watch_open(choreo_watch **out, void (*arm)(void *ud), void *ud);
void choreo_watch_close(choreo_watch *w);

/* Around each call. Calls of one watch may nest: only the outermost counts. Calls of several
 * watches on one thread nest too (a test's hosts), as long as they leave in reverse order.
 * leave returns true when the outermost call has ended: no arm runs for it after that. */
void choreo_watch_enter(choreo_watch *w);
bool choreo_watch_leave(choreo_watch *w);

/* The signal the watchdog sends (a real-time one, taken by the first open). */
int choreo_watch_signal(void);

#endif
