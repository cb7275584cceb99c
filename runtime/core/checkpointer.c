/* The WAL checkpointer thread (see checkpointer.h). PASSIVE checkpoints never wait for the
 * writer: each copies what it can and the next one continues. Each one syncs the WAL and the
 * database file, so they come in pages, not in time: at 1k messages/s a checkpoint every 20 ms
 * was 100 fsyncs a second beside the writer, and showed in its p99 latency. Once a checkpoint
 * has copied the whole WAL, the writer starts it over from its beginning, and SQLite syncs the
 * new WAL header on the writer's thread: the fewer the checkpoints, the fewer those syncs, and
 * the fewer times a page rewritten by many transactions is copied.
 *
 * Under unbroken writes no checkpoint of the thread's finds the whole WAL copied (the writer
 * has appended more meanwhile), and the WAL would grow for ever. A RESTART checkpoint would
 * hold the writer back while it copies and syncs (10-40 ms stalls on our disk). Instead, past
 * WAL_RESTART_BYTES, the thread copies again until little is left, and the writer copies that
 * rest itself, between two of its transactions: nothing is appended meanwhile, so its
 * checkpoint completes and its next transaction starts the WAL over. The writer never waits
 * for a lock; it pays a short copy and the two syncs. */
#define _GNU_SOURCE /* gettid, sync_file_range */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "checkpointer.h"
#include "choreo.h"

/* In bytes of WAL, so that they mean the same whatever the database's page size. */
#define CHECKPOINT_BYTES (16 << 20) /* written since the last nudge */
#define CHECKPOINT_IDLE_MS 1000     /* and whatever is left, once a second */
/* Under the store's journal_size_limit (64 MiB, frame headers included) with room for what the
 * writer appends until the WAL starts over, so that it is not then truncated (and grown again)
 * each time. */
#define WAL_RESTART_BYTES (60 << 20)
/* Before a restart, the thread copies again while more than this is left for the writer, at
 * most CONVERGE_PASSES times: each pass is shorter than the last, and so is what the writer
 * appends meanwhile. */
#define WRITER_SHARE_BYTES (1 << 20)
#define CONVERGE_PASSES 4
/* Every 2 MiB appended, the thread starts writing the WAL's new pages to disk without waiting
 * for them: left to the checkpoint's sync, they all went at once (16 MB and more), and every
 * other sync on the disk (the writer's at a restart, the other hosts') queued behind them. */
#define WRITEOUT_BYTES (2 << 20)

struct choreo_checkpointer {
  sqlite3 *db;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  bool stopping, nudged, write_out;
  int nudged_at;  /* WAL frames at the last nudge; the writer's thread alone uses it */
  int written_at; /* and at the last write-out asked for */
  int wal_fd;     /* the WAL file, for write-outs; -1 when it could not be opened */
  atomic_bool finish_due; /* the thread has copied all it could: the writer's turn */
  /* The byte bounds above in frames of this database's pages: SQLite counts frames. */
  int checkpoint_frames, restart_frames, share_frames, writeout_frames;
};

/* Below the loop thread in the scheduler's eyes: copying pages can wait for a spare moment,
 * a message cannot. On Linux a nice value is the thread's own; failing to set it changes
 * nothing else. */
#define CHECKPOINTER_NICE 10

static void *checkpointer_run(void *arg) {
  choreo_checkpointer *c = arg;
  (void)setpriority(PRIO_PROCESS, (id_t)gettid(), CHECKPOINTER_NICE);
  pthread_mutex_lock(&c->lock);
  struct timespec until; /* of the next checkpoint, unless nudged first; write-outs keep it */
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += CHECKPOINT_IDLE_MS / 1000;
  while (!c->stopping) {
    while (!c->nudged && !c->write_out && !c->stopping &&
           pthread_cond_timedwait(&c->wake, &c->lock, &until) == 0) {
      /* woken without a nudge: wait on until the deadline */
    }
    if (c->stopping) break;
    if (c->write_out && !c->nudged) {
      c->write_out = false;
      pthread_mutex_unlock(&c->lock);
      if (c->wal_fd >= 0) (void)sync_file_range(c->wal_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
      pthread_mutex_lock(&c->lock);
      continue;
    }
    c->nudged = c->write_out = false;
    pthread_mutex_unlock(&c->lock);
    int in_wal = 0, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &in_wal, &copied);
    if (rc == SQLITE_OK && in_wal > c->restart_frames) {
      for (int pass = 0; rc == SQLITE_OK && in_wal - copied > c->share_frames &&
                         pass < CONVERGE_PASSES;
           pass++)
        rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &in_wal, &copied);
      atomic_store(&c->finish_due, true);
    }
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += CHECKPOINT_IDLE_MS / 1000;
    pthread_mutex_lock(&c->lock);
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

/* Whether the connection has read the database header and so opened its WAL. Until it has, a
 * fresh connection takes the file for a rollback-journal one, and sqlite3_wal_checkpoint_v2 on it
 * returns SQLITE_OK having done nothing: the WAL would grow for as long as the host runs. */
static bool checkpointer_sees_wal(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  bool wal = sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW &&
             sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
  sqlite3_finalize(st);
  return wal;
}

static void checkpointer_size(choreo_checkpointer *c, int page_size) {
  int frame = page_size + 24; /* each page in the WAL has a frame header */
  c->checkpoint_frames = CHECKPOINT_BYTES / frame;
  c->restart_frames = WAL_RESTART_BYTES / frame;
  c->share_frames = WRITER_SHARE_BYTES / frame;
  c->writeout_frames = WRITEOUT_BYTES / frame;
}

int choreo_checkpointer_start(choreo_checkpointer **out, const char *path, int page_size) {
  choreo_checkpointer *c = calloc(1, sizeof *c);
  if (!c) return CHOREO_ENOMEM;
  if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
      !checkpointer_sees_wal(c->db)) {
    sqlite3_close(c->db);
    free(c);
    return CHOREO_EIO;
  }
  checkpointer_size(c, page_size > 0 ? page_size : 4096);
  /* Reading the database above opened its WAL, so the file is there; without it, write-outs
   * are left to the checkpoint's sync as before. */
  char *wal = sqlite3_mprintf("%s-wal", path);
  c->wal_fd = wal ? open(wal, O_RDONLY | O_CLOEXEC) : -1;
  sqlite3_free(wal);
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->wake, NULL);
  if (pthread_create(&c->thread, NULL, checkpointer_run, c) != 0) {
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    if (c->wal_fd >= 0) close(c->wal_fd);
    sqlite3_close(c->db);
    free(c);
    return CHOREO_ENOMEM;
  }
  *out = c;
  return 0;
}

void choreo_checkpointer_committed(choreo_checkpointer *c, sqlite3 *writer, int frames) {
  /* Once per turn, done or not: a reader holding an old snapshot keeps a checkpoint from
   * completing, and the writer must not then pay for a checkpoint at every commit. A passive
   * checkpoint calls no busy handler, so this never waits for a lock. */
  if (atomic_exchange(&c->finish_due, false))
    sqlite3_wal_checkpoint_v2(writer, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  if (frames < c->nudged_at) c->nudged_at = 0; /* the WAL was started over from its beginning */
  if (frames < c->written_at) c->written_at = 0;
  /* Past the restart bound at once, not at the next step of checkpoint_frames: a restart begun
   * only there (64 MiB) left the WAL over the journal_size_limit, truncated and grown again at
   * every restart (on the loop thread: 0.4-0.8 ms, once a second at 1k messages/s). */
  bool nudge = frames - c->nudged_at >= c->checkpoint_frames ||
               (frames > c->restart_frames && c->nudged_at <= c->restart_frames);
  bool write_out = frames - c->written_at >= c->writeout_frames;
  if (!nudge && !write_out) return;
  if (nudge) c->nudged_at = frames;
  c->written_at = frames;
  pthread_mutex_lock(&c->lock);
  c->nudged |= nudge;
  c->write_out = true;
  pthread_cond_signal(&c->wake);
  pthread_mutex_unlock(&c->lock);
}

void choreo_checkpointer_stop(choreo_checkpointer *c) {
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  c->stopping = true;
  pthread_cond_signal(&c->wake);
  pthread_mutex_unlock(&c->lock);
  pthread_join(c->thread, NULL);
  if (c->wal_fd >= 0) close(c->wal_fd);
  pthread_cond_destroy(&c->wake);
  pthread_mutex_destroy(&c->lock);
  sqlite3_close(c->db);
  free(c);
}
