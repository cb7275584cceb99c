/* Rows appended to the log and not yet written to it: the store writes them a group at a time
 * (store.c, choreo_store_append). Each row's text columns and message are copied in, since the
 * caller's buffers do not outlive the append. */
#ifndef CHOREO_LOGROWS_H
#define CHOREO_LOGROWS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHOREO_LOG_ROWS_MAX 64

typedef struct choreo_log_row {
  int64_t seq, at_ms;
  size_t type, kind, to, msg; /* where each starts in the rows' bytes */
  size_t msg_len;
  bool has_to;
} choreo_log_row;

typedef struct choreo_log_rows {
  choreo_log_row row[CHOREO_LOG_ROWS_MAX];
  int n;
  msgpack_sbuffer bytes; /* the rows' text columns and messages, back to back */
} choreo_log_rows;

/* Keeps one row; to may be NULL. CHOREO_ENOMEM, or CHOREO_EINVAL when all CHOREO_LOG_ROWS_MAX
 * rows are taken. */
int choreo_log_rows_add(choreo_log_rows *r, int64_t seq, const char *type, const char *kind,
                        const char *to, const char *msg, size_t msg_len, int64_t at_ms);
/* The bytes kept at offset (a row's type, kind, to or msg). */
static inline const char *choreo_log_rows_at(const choreo_log_rows *r, size_t offset) {
  return r->bytes.data + offset;
}
void choreo_log_rows_clear(choreo_log_rows *r); /* keeps the memory for the next rows */
void choreo_log_rows_free(choreo_log_rows *r);

#endif
