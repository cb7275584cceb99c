/* The log's latest rows as they were encoded when appended, kept for the store to serve the
 * frame that publishes them after the commit without reading them back from SQLite (reading
 * them back was a tenth of a producing host's instructions). Only a contiguous run of seqs
 * under one store epoch is kept: the store's epoch moves on every rollback, which voids
 * whatever was appended under the old one. Bounded in bytes; past the bound it starts over
 * at the next append, and what it no longer holds is read from the log as before. */
#ifndef CHOREO_APPENDED_H
#define CHOREO_APPENDED_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct choreo_appended {
  msgpack_sbuffer bytes; /* the messages back to back */
  size_t *ends;          /* where each one ends in bytes */
  size_t count, cap;
  int64_t first;  /* seq of the first kept, 0 when none */
  uint64_t epoch; /* the store's epoch they were appended under */
} choreo_appended;

void choreo_appended_init(choreo_appended *a);
void choreo_appended_free(choreo_appended *a);
/* Keeps the message appended as seq under epoch. On failure (memory) it keeps nothing, which
 * only means the next frame is read from the log. */
void choreo_appended_add(choreo_appended *a, uint64_t epoch, int64_t seq, const char *msg,
                         size_t len);
/* The log's rows up to seq `upto` were deleted (retention): none of them may be served again,
 * so a run that holds any of them is let go. */
void choreo_appended_trimmed(choreo_appended *a, int64_t upto);
/* The kept messages from seq `from` on, as one run of bytes: at most max_count of them and
 * within max_bytes unless the first alone is larger (as the log's frames). False when from is
 * not kept under this epoch. */
bool choreo_appended_slice(const choreo_appended *a, uint64_t epoch, int64_t from, int max_count,
                           size_t max_bytes, const char **bytes, size_t *len, uint32_t *count);

#endif
