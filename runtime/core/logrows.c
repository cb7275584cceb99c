/* Rows appended to the log, not yet written (see logrows.h). */
#include "logrows.h"

#include <string.h>

#include "choreo.h"

/* Copies n bytes (and a NUL when text) to the end of the rows' bytes; *at gets their offset. */
static int log_rows_copy(choreo_log_rows *r, const char *p, size_t n, bool text, size_t *at) {
  *at = r->bytes.size;
  if (msgpack_sbuffer_write(&r->bytes, p, n) || (text && msgpack_sbuffer_write(&r->bytes, "", 1)))
    return CHOREO_ENOMEM;
  return 0;
}

int choreo_log_rows_add(choreo_log_rows *r, int64_t seq, const char *type, const char *kind,
                        const char *to, const char *msg, size_t msg_len, int64_t at_ms) {
  if (r->n == CHOREO_LOG_ROWS_MAX) return CHOREO_EINVAL;
  size_t mark = r->bytes.size;
  choreo_log_row *row = &r->row[r->n];
  *row = (choreo_log_row){.seq = seq, .at_ms = at_ms, .msg_len = msg_len, .has_to = to != NULL};
  int rc = log_rows_copy(r, type, strlen(type), true, &row->type);
  if (!rc) rc = log_rows_copy(r, kind, strlen(kind), true, &row->kind);
  if (!rc && to) rc = log_rows_copy(r, to, strlen(to), true, &row->to);
  if (!rc) rc = log_rows_copy(r, msg, msg_len, false, &row->msg);
  if (rc) {
    r->bytes.size = mark;
    return rc;
  }
  r->n++;
  return 0;
}

void choreo_log_rows_clear(choreo_log_rows *r) {
  r->n = 0;
  r->bytes.size = 0;
}

void choreo_log_rows_free(choreo_log_rows *r) {
  msgpack_sbuffer_destroy(&r->bytes);
  *r = (choreo_log_rows){0};
}
