/* A thread that copies the SQLite write-ahead log back into the database file (a WAL
 * checkpoint) off the loop thread. Left to SQLite, every 1000th page written makes the
 * committing transaction do it, which cost a tenth of the loop's time and put multi-millisecond
 * stalls into message latency. The thread has its own connection; SQLite lets a checkpoint run
 * beside a writer on another connection. */
#ifndef CHOREO_CHECKPOINTER_H
#define CHOREO_CHECKPOINTER_H

#include <sqlite3.h>

typedef struct choreo_checkpointer choreo_checkpointer;

/* Starts the thread for the WAL database at path, whose pages are page_size bytes (0: unknown,
 * taken as 4 KiB): it checkpoints when nudged and otherwise once a second. Returns 0 or
 * CHOREO_EIO / CHOREO_ENOMEM (the caller can then leave checkpoints to SQLite). */
int choreo_checkpointer_start(choreo_checkpointer **out, const char *path, int page_size);
/* Called by the writer after each commit (from its wal_hook, with its connection) when the WAL
 * holds `frames` pages: wakes the thread to start writing new pages out, or to checkpoint once
 * enough have piled up since its last checkpoint, and lets the writer copy the last few pages
 * itself when that lets the WAL start over. */
void choreo_checkpointer_committed(choreo_checkpointer *c, sqlite3 *writer, int frames);
/* Stops the thread and closes its connection; NULL is allowed. */
void choreo_checkpointer_stop(choreo_checkpointer *c);

#endif
