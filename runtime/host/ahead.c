/* A peer's live frames held past a gap (see ahead.h). */
#include "ahead.h"

static choreo_ahead_frame *ahead_oldest(choreo_ahead *a) { return &a->held[a->start]; }

static nng_msg *ahead_take_oldest(choreo_ahead *a) {
  nng_msg *msg = ahead_oldest(a)->msg;
  ahead_oldest(a)->msg = NULL;
  a->bytes -= nng_msg_len(msg);
  a->start = (a->start + 1) % CHOREO_AHEAD_FRAMES;
  a->count--;
  return msg;
}

static void ahead_drop_oldest(choreo_ahead *a) { nng_msg_free(ahead_take_oldest(a)); }

void choreo_ahead_hold(choreo_ahead *a, nng_msg *msg, int64_t first, int64_t last) {
  if (a->count > 0) {
    const choreo_ahead_frame *newest = &a->held[(a->start + a->count - 1) % CHOREO_AHEAD_FRAMES];
    if (first <= newest->last) choreo_ahead_clear(a);
  }
  size_t len = nng_msg_len(msg);
  if (a->count == CHOREO_AHEAD_FRAMES || (a->count > 0 && a->bytes + len > CHOREO_AHEAD_BYTES)) {
    nng_msg_free(msg);
    if (last > a->let_go_last) a->let_go_last = last;
    return;
  }
  a->held[(a->start + a->count) % CHOREO_AHEAD_FRAMES] =
      (choreo_ahead_frame){.msg = msg, .first = first, .last = last};
  a->count++;
  a->bytes += len;
}

nng_msg *choreo_ahead_next(choreo_ahead *a, int64_t applied) {
  while (a->count > 0 && ahead_oldest(a)->last <= applied) ahead_drop_oldest(a);
  if (a->count == 0 || ahead_oldest(a)->first > applied + 1) return NULL;
  return ahead_take_oldest(a);
}

void choreo_ahead_clear(choreo_ahead *a) {
  while (a->count > 0) ahead_drop_oldest(a);
  a->start = 0;
  a->let_go_last = 0;
}
