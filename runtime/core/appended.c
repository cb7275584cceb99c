/* The log's latest rows as appended (see appended.h). */
#include "appended.h"

#include <stdlib.h>

/* Enough for a 10,000-event transaction of small messages; larger runs start over. */
#define APPENDED_MAX_BYTES (8u << 20)

void choreo_appended_init(choreo_appended *a) {
  *a = (choreo_appended){0};
  msgpack_sbuffer_init(&a->bytes);
}

void choreo_appended_free(choreo_appended *a) {
  msgpack_sbuffer_destroy(&a->bytes);
  free(a->ends);
  *a = (choreo_appended){0};
}

static void appended_restart(choreo_appended *a, uint64_t epoch, int64_t seq) {
  a->bytes.size = 0;
  a->count = 0;
  a->first = seq;
  a->epoch = epoch;
}

void choreo_appended_add(choreo_appended *a, uint64_t epoch, int64_t seq, const char *msg,
                         size_t len) {
  if (a->first == 0 || a->epoch != epoch || seq != a->first + (int64_t)a->count ||
      a->bytes.size + len > APPENDED_MAX_BYTES)
    appended_restart(a, epoch, seq);
  if (a->count == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 1024;
    size_t *ends = realloc(a->ends, cap * sizeof *ends);
    if (!ends) {
      a->first = 0;
      return;
    }
    a->ends = ends;
    a->cap = cap;
  }
  if (msgpack_sbuffer_write(&a->bytes, msg, len)) {
    a->first = 0;
    return;
  }
  a->ends[a->count++] = a->bytes.size;
}

void choreo_appended_trimmed(choreo_appended *a, int64_t upto) {
  if (a->first != 0 && upto >= a->first) a->first = 0;
}

bool choreo_appended_slice(const choreo_appended *a, uint64_t epoch, int64_t from, int max_count,
                           size_t max_bytes, const char **bytes, size_t *len, uint32_t *count) {
  if (a->first == 0 || a->epoch != epoch || from < a->first ||
      from - a->first >= (int64_t)a->count || max_count < 1)
    return false;
  size_t i = (size_t)(from - a->first), start = i ? a->ends[i - 1] : 0, n = 1;
  while (i + n < a->count && n < (size_t)max_count && a->ends[i + n] - start <= max_bytes) n++;
  *bytes = a->bytes.data + start;
  *len = a->ends[i + n - 1] - start;
  *count = (uint32_t)n;
  return true;
}
