/* The scripts watcher: hot reload must see an edit to any .lua file under the scripts
 * directory, the modules in its subfolders included (require "lib.helper"). */
#ifndef CHOREO_WATCH_H
#define CHOREO_WATCH_H

#include <stdbool.h>
#include <uv.h>

#define CHOREO_WATCH_DIRS 256 /* folders watched at most; more are logged and left out */

typedef struct choreo_watched choreo_watched;

typedef struct choreo_watch {
  uv_loop_t *loop;
  const char *who; /* for the log */
  void (*on_change)(void *ud);
  void *ud;
  choreo_watched *dirs[CHOREO_WATCH_DIRS];
  int ndirs;
  int on_loop; /* handles (closed ones until their callback) and folder checks the loop holds */
  bool stopping, warned_full;
} choreo_watch;

/* Watches root and every folder below it (hidden ones, like .choreo, aside). on_change is
 * called for every change to a .lua file, and when a folder appears (it may hold some). 0, or
 * CHOREO_EIO when root itself cannot be watched. */
int choreo_watch_start(choreo_watch *w, uv_loop_t *loop, const char *root, const char *who,
                       void (*on_change)(void *ud), void *ud);
/* Closes every handle; on_loop drops to 0 as the loop finishes closing them and the checks
 * under way. */
void choreo_watch_stop(choreo_watch *w);

#endif
