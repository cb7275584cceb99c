/* The scripts watcher (see watch.h). libuv's fs_event is not recursive on Linux (inotify), so
 * each folder has a handle of its own; a folder that appears or goes makes the tree be walked
 * again. Symbolic links to folders are not followed: a link loop would never end. */
#include "watch.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "choreo.h"
#include "log.h"

#define WATCH_DEPTH 16

struct choreo_watched {
  uv_fs_event_t ev;
  choreo_watch *owner;
  char path[]; /* resolved folder; dirs[0] is the root */
};

static void watch_on_event(uv_fs_event_t *ev, const char *file, int events, int status);

static void watch_on_closed(uv_handle_t *handle) {
  choreo_watched *d = handle->data;
  d->owner->on_loop--;
  free(d);
}

static void watch_close(choreo_watched *d) { uv_close((uv_handle_t *)&d->ev, watch_on_closed); }

static bool watch_is_dir(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool watch_has(const choreo_watch *w, const char *path) {
  for (int i = 0; i < w->ndirs; i++)
    if (strcmp(w->dirs[i]->path, path) == 0) return true;
  return false;
}

/* Watches one more folder; false when it could not be. */
static bool watch_add(choreo_watch *w, const char *path) {
  if (watch_has(w, path)) return true;
  if (w->ndirs == CHOREO_WATCH_DIRS) {
    if (!w->warned_full)
      choreo_log(CHOREO_LOG_WARN, w->who, "more than %d folders under the scripts: %s and "
                 "further ones are not watched for reload", CHOREO_WATCH_DIRS, path);
    w->warned_full = true;
    return false;
  }
  size_t n = strlen(path);
  choreo_watched *d = malloc(sizeof *d + n + 1);
  if (!d) return false;
  d->owner = w;
  memcpy(d->path, path, n + 1);
  if (uv_fs_event_init(w->loop, &d->ev)) {
    free(d);
    return false;
  }
  d->ev.data = d;
  w->on_loop++;
  if (uv_fs_event_start(&d->ev, watch_on_event, path, 0)) {
    watch_close(d);
    return false;
  }
  w->dirs[w->ndirs++] = d;
  return true;
}

/* Adds path's folders below it, depth levels deep at most. */
static void watch_walk(choreo_watch *w, const char *path, int depth) {
  DIR *dir = depth < WATCH_DEPTH ? opendir(path) : NULL;
  if (!dir) return;
  struct dirent *entry;
  while ((entry = readdir(dir))) {
    if (entry->d_name[0] == '.') continue; /* ., .., and hidden ones such as .choreo, .git */
    char sub[PATH_MAX];
    if (snprintf(sub, sizeof sub, "%s/%s", path, entry->d_name) >= (int)sizeof sub) continue;
    if (watch_is_dir(sub) && watch_add(w, sub)) watch_walk(w, sub, depth + 1);
  }
  closedir(dir);
}

/* Forgets folders that went, and watches those that came. */
static void watch_rescan(choreo_watch *w) {
  int kept = 1; /* the root stays: when it goes, so does the host's directory */
  for (int i = 1; i < w->ndirs; i++) {
    if (watch_is_dir(w->dirs[i]->path))
      w->dirs[kept++] = w->dirs[i];
    else
      watch_close(w->dirs[i]);
  }
  w->ndirs = kept;
  watch_walk(w, w->dirs[0]->path, 0);
}

/* A folder came (it may hold scripts already: reload) or went (forget it). */
static void watch_on_probed(uv_fs_t *req) {
  choreo_watch *w = req->data;
  w->on_loop--;
  if (!w->stopping &&
      ((req->result == 0 && S_ISDIR(req->statbuf.st_mode)) || watch_has(w, req->path))) {
    watch_rescan(w);
    w->on_change(w->ud);
  }
  uv_fs_req_cleanup(req);
  free(req);
}

static void watch_on_event(uv_fs_event_t *ev, const char *file, int events, int status) {
  (void)events;
  choreo_watched *d = ev->data;
  choreo_watch *w = d->owner;
  if (status < 0 || !file || w->stopping) return;
  size_t n = strlen(file);
  if (n >= 4 && strcmp(file + n - 4, ".lua") == 0) {
    w->on_change(w->ud);
    return;
  }
  char path[PATH_MAX];
  if (file[0] == '.' || snprintf(path, sizeof path, "%s/%s", d->path, file) >= (int)sizeof path)
    return;
  /* Whether the name is a folder is asked off the loop: an editor saves through a temporary
   * file renamed over the script, and while the rename waits for the file system's journal
   * (the databases' syncs beside it), a stat of the name waited with it, 10 ms of handling no
   * message. */
  uv_fs_t *req = malloc(sizeof *req);
  if (!req) return;
  req->data = w;
  if (uv_fs_lstat(w->loop, req, path, watch_on_probed)) {
    free(req);
    return;
  }
  w->on_loop++;
}

int choreo_watch_start(choreo_watch *w, uv_loop_t *loop, const char *root, const char *who,
                       void (*on_change)(void *ud), void *ud) {
  memset(w, 0, sizeof *w);
  w->loop = loop;
  w->who = who;
  w->on_change = on_change;
  w->ud = ud;
  if (!watch_add(w, root)) return CHOREO_EIO;
  watch_walk(w, root, 0);
  return 0;
}

void choreo_watch_stop(choreo_watch *w) {
  if (w->stopping) return;
  w->stopping = true;
  for (int i = 0; i < w->ndirs; i++) watch_close(w->dirs[i]);
  w->ndirs = 0;
}
