/* WAL writes gathered into one system call per commit (see walwrites.h).
 *
 * SQLite writes each frame of a commit as two write() calls, its 24-byte header and its page,
 * one after the other at the end of the WAL. Here those that follow each other are copied into
 * a buffer and written together with one pwrite() on a descriptor of our own, when:
 *   - the page of a commit frame (a header whose "database size" field is not 0) is in: before
 *     SQLite makes the commit visible to readers (it updates the WAL index after its writes);
 *   - anything else touches the WAL (a read, a write elsewhere, a sync, a size, a truncation, a
 *     file control, the close): what SQLite reads or syncs is what it wrote;
 *   - the WAL index is published (the database file's shared-memory barrier) or the WAL write
 *     lock released: frames a transaction spilled and then rolled back are written while the
 *     lock is still held, as SQLite would have, never over frames a later writer committed.
 * Writes are never reordered: a write that does not continue the buffer flushes it first. */
#include "walwrites.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FRAME_HEADER 24
#define GATHER_FIRST (64 << 10) /* the buffer's first size; it grows to a commit's */
#define GATHER_MAX (8 << 20)    /* past this, written as it comes */
#define WAL_WRITE_LOCK 0        /* the WAL index's lock a writer holds (SQLite's wal.c) */

typedef struct wal_file {
  sqlite3_file base;
  sqlite3_file *real; /* the default VFS's file, in the same allocation */
  int fd;             /* ours, for the gathered writes; -1: every write goes through at once */
  unsigned char *buf;
  size_t len, cap;
  sqlite3_int64 start; /* the file offset of buf[0] */
  sqlite3_int64 next;  /* where the last write ended; -1 after a truncation */
  bool commit_next;    /* the header gathered last is a commit frame's */
  struct db_file *db;  /* the database whose WAL this is, while both are open */
} wal_file;

/* A database file: everything goes to the default VFS's file; the WAL index's barrier and
 * the release of its write lock flush this connection's WAL first. */
typedef struct db_file {
  sqlite3_file base;
  sqlite3_file *real;
  const char *name;     /* as SQLite passed it: sqlite3_filename_database() of the WAL's */
  wal_file *wal;        /* this connection's WAL, once open */
  struct db_file *next; /* among the open databases */
} db_file;

/* Each of ours is followed by the default VFS's file, aligned as malloc would align it. */
#define ALIGNED(size) (((size) + 15) & ~(size_t)15)
#define LARGER(a, b) ((a) > (b) ? (a) : (b))
#define WRAPPER_SIZE ALIGNED(LARGER(sizeof(wal_file), sizeof(db_file)))

static sqlite3_vfs *real_vfs;
static sqlite3_vfs gather_vfs;
/* The open databases, for a WAL opened after its database to find it. */
static pthread_mutex_t databases_lock = PTHREAD_MUTEX_INITIALIZER;
static db_file *databases;

static int gather_flush(wal_file *w) {
  size_t done = 0;
  int rc = SQLITE_OK;
  while (done < w->len) {
    ssize_t n = pwrite(w->fd, w->buf + done, w->len - done, (off_t)w->start + (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      rc = n < 0 && errno != ENOSPC ? SQLITE_IOERR_WRITE : SQLITE_FULL;
      break;
    }
    done += (size_t)n;
  }
  w->len = 0;
  w->commit_next = false;
  return rc;
}

/* Room for amt more bytes in the buffer; false if it cannot grow. */
static bool gather_room(wal_file *w, size_t amt) {
  if (w->len + amt <= w->cap) return true;
  size_t cap = w->cap ? w->cap : GATHER_FIRST;
  while (cap < w->len + amt) cap *= 2;
  unsigned char *buf = realloc(w->buf, cap);
  if (!buf) return false;
  w->buf = buf;
  w->cap = cap;
  return true;
}

static int gather_write(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off) {
  wal_file *w = (wal_file *)f;
  /* A run starts with a frame's header where the last write ended, and goes on from there. */
  bool gather = w->fd >= 0 && off == w->next && (w->len || amt == FRAME_HEADER) &&
                amt > 0 && w->len + (size_t)amt <= GATHER_MAX && gather_room(w, (size_t)amt);
  w->next = off + amt;
  if (!gather) {
    int rc = gather_flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xWrite(w->real, data, amt, off);
  }
  if (!w->len) w->start = off;
  memcpy(w->buf + w->len, data, (size_t)amt);
  w->len += (size_t)amt;
  if (amt == FRAME_HEADER) {
    const unsigned char *h = data; /* bytes 4-7: the database's size after a commit, else 0 */
    w->commit_next = (h[4] | h[5] | h[6] | h[7]) != 0;
    return SQLITE_OK;
  }
  return w->commit_next ? gather_flush(w) : SQLITE_OK;
}

static int gather_close(sqlite3_file *f) {
  wal_file *w = (wal_file *)f;
  int rc = gather_flush(w);
  pthread_mutex_lock(&databases_lock);
  if (w->db) w->db->wal = NULL;
  pthread_mutex_unlock(&databases_lock);
  int closed = w->real->pMethods->xClose(w->real);
  free(w->buf);
  if (w->fd >= 0) close(w->fd);
  return rc != SQLITE_OK ? rc : closed;
}

static int gather_read(sqlite3_file *f, void *data, int amt, sqlite3_int64 off) {
  wal_file *w = (wal_file *)f;
  int rc = gather_flush(w);
  return rc != SQLITE_OK ? rc : w->real->pMethods->xRead(w->real, data, amt, off);
}

static int gather_truncate(sqlite3_file *f, sqlite3_int64 size) {
  wal_file *w = (wal_file *)f;
  int rc = gather_flush(w);
  w->next = -1;
  return rc != SQLITE_OK ? rc : w->real->pMethods->xTruncate(w->real, size);
}

static int gather_sync(sqlite3_file *f, int flags) {
  wal_file *w = (wal_file *)f;
  int rc = gather_flush(w);
  return rc != SQLITE_OK ? rc : w->real->pMethods->xSync(w->real, flags);
}

static int gather_size(sqlite3_file *f, sqlite3_int64 *size) {
  wal_file *w = (wal_file *)f;
  int rc = gather_flush(w);
  return rc != SQLITE_OK ? rc : w->real->pMethods->xFileSize(w->real, size);
}

static int gather_control(sqlite3_file *f, int op, void *arg) {
  wal_file *w = (wal_file *)f;
  int rc = gather_flush(w);
  return rc != SQLITE_OK ? rc : w->real->pMethods->xFileControl(w->real, op, arg);
}

/* What neither reads nor writes the file's bytes goes straight through, for both kinds. */
#define REAL(f) (((wal_file *)(f))->real)
_Static_assert(offsetof(wal_file, real) == offsetof(db_file, real), "REAL() serves both");

static int through_lock(sqlite3_file *f, int level) {
  return REAL(f)->pMethods->xLock(REAL(f), level);
}
static int through_unlock(sqlite3_file *f, int level) {
  return REAL(f)->pMethods->xUnlock(REAL(f), level);
}
static int through_reserved(sqlite3_file *f, int *out) {
  return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int through_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int through_device(sqlite3_file *f) {
  return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

/* The database file's bytes, size, controls and shared memory map go straight through too. */
static int through_read(sqlite3_file *f, void *data, int amt, sqlite3_int64 off) {
  return REAL(f)->pMethods->xRead(REAL(f), data, amt, off);
}
static int through_write(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off) {
  return REAL(f)->pMethods->xWrite(REAL(f), data, amt, off);
}
static int through_truncate(sqlite3_file *f, sqlite3_int64 size) {
  return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int through_sync(sqlite3_file *f, int flags) {
  return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int through_size(sqlite3_file *f, sqlite3_int64 *size) {
  return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int through_control(sqlite3_file *f, int op, void *arg) {
  return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int through_shm_map(sqlite3_file *f, int region, int size, int extend,
                           void volatile **out) {
  return REAL(f)->pMethods->xShmMap(REAL(f), region, size, extend, out);
}
static int through_shm_unmap(sqlite3_file *f, int delete_flag) {
  return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}
static int through_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **out) {
  return REAL(f)->pMethods->xFetch(REAL(f), off, amt, out);
}
static int through_unfetch(sqlite3_file *f, sqlite3_int64 off, void *page) {
  return REAL(f)->pMethods->xUnfetch(REAL(f), off, page);
}

static const sqlite3_io_methods wal_methods = {
    .iVersion = 1,
    .xClose = gather_close,
    .xRead = gather_read,
    .xWrite = gather_write,
    .xTruncate = gather_truncate,
    .xSync = gather_sync,
    .xFileSize = gather_size,
    .xLock = through_lock,
    .xUnlock = through_unlock,
    .xCheckReservedLock = through_reserved,
    .xFileControl = gather_control,
    .xSectorSize = through_sector,
    .xDeviceCharacteristics = through_device,
};

static int db_close(sqlite3_file *f) {
  db_file *d = (db_file *)f;
  pthread_mutex_lock(&databases_lock);
  for (db_file **p = &databases; *p; p = &(*p)->next) {
    if (*p == d) {
      *p = d->next;
      break;
    }
  }
  if (d->wal) d->wal->db = NULL;
  pthread_mutex_unlock(&databases_lock);
  return d->real->pMethods->xClose(d->real);
}

static int db_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
  db_file *d = (db_file *)f;
  if (d->wal && offset == WAL_WRITE_LOCK && (flags & SQLITE_SHM_UNLOCK))
    (void)gather_flush(d->wal); /* frames no commit made visible: nothing reads them */
  return d->real->pMethods->xShmLock(d->real, offset, n, flags);
}

static void db_shm_barrier(sqlite3_file *f) {
  db_file *d = (db_file *)f;
  if (d->wal && d->wal->len) (void)gather_flush(d->wal); /* a failure fails the next commit */
  d->real->pMethods->xShmBarrier(d->real);
}

static const sqlite3_io_methods db_methods = {
    .iVersion = 3,
    .xClose = db_close,
    .xRead = through_read,
    .xWrite = through_write,
    .xTruncate = through_truncate,
    .xSync = through_sync,
    .xFileSize = through_size,
    .xLock = through_lock,
    .xUnlock = through_unlock,
    .xCheckReservedLock = through_reserved,
    .xFileControl = through_control,
    .xSectorSize = through_sector,
    .xDeviceCharacteristics = through_device,
    .xShmMap = through_shm_map,
    .xShmLock = db_shm_lock,
    .xShmBarrier = db_shm_barrier,
    .xShmUnmap = through_shm_unmap,
    .xFetch = through_fetch,
    .xUnfetch = through_unfetch,
};

static void wal_link(wal_file *w, sqlite3_filename name) {
  const char *database = sqlite3_filename_database(name);
  pthread_mutex_lock(&databases_lock);
  for (db_file *d = databases; d; d = d->next) {
    if (d->name == database && !d->wal) {
      d->wal = w;
      w->db = d;
      break;
    }
  }
  pthread_mutex_unlock(&databases_lock);
}

static int gather_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
                       int *out_flags) {
  (void)vfs;
  bool wal = flags & SQLITE_OPEN_WAL, db = (flags & SQLITE_OPEN_MAIN_DB) && name;
  if (!wal && !db) return real_vfs->xOpen(real_vfs, name, f, flags, out_flags);
  sqlite3_file *real = (sqlite3_file *)((char *)f + WRAPPER_SIZE);
  memset(f, 0, WRAPPER_SIZE);
  int rc = real_vfs->xOpen(real_vfs, name, real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (real->pMethods) real->pMethods->xClose(real);
    f->pMethods = NULL;
    return rc;
  }
  if (db) {
    db_file *d = (db_file *)f;
    *d = (db_file){.base.pMethods = &db_methods, .real = real, .name = name};
    pthread_mutex_lock(&databases_lock);
    d->next = databases;
    databases = d;
    pthread_mutex_unlock(&databases_lock);
    return SQLITE_OK;
  }
  wal_file *w = (wal_file *)f;
  *w = (wal_file){.base.pMethods = &wal_methods, .real = real, .next = -1,
                  .fd = open(name, O_WRONLY | O_CLOEXEC)};
  wal_link(w, name);
  return SQLITE_OK;
}

static void gather_register(void) {
  real_vfs = sqlite3_vfs_find(NULL);
  if (!real_vfs) return;
  gather_vfs = *real_vfs;
  gather_vfs.zName = "choreo";
  gather_vfs.pNext = NULL;
  gather_vfs.szOsFile = (int)WRAPPER_SIZE + real_vfs->szOsFile;
  gather_vfs.xOpen = gather_open;
  sqlite3_vfs_register(&gather_vfs, 1);
}

void choreo_walwrites_register(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, gather_register);
}
