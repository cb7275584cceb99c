/* One peer's live frames heard ahead of what we have applied from it (a gap before them), held
 * until FETCH has filled the gap and then applied in order. Without them, a host that fell
 * behind a busy peer (started after it began publishing, or slowed down for a moment) dropped
 * every live frame and caught up only through FETCH, a round trip per page, never back to the
 * live stream while the peer kept publishing. Bounded: past CHOREO_AHEAD_FRAMES frames or
 * CHOREO_AHEAD_BYTES bytes, newer frames are let go (FETCH brings their messages instead) and
 * the older ones kept, since those are the next to apply once the gap is filled. */
#ifndef CHOREO_AHEAD_H
#define CHOREO_AHEAD_H

#include <nng/nng.h>
#include <stddef.h>
#include <stdint.h>

#define CHOREO_AHEAD_FRAMES 128
#define CHOREO_AHEAD_BYTES (32u << 20)

typedef struct choreo_ahead_frame {
  nng_msg *msg;
  int64_t first, last; /* the seqs it carries */
} choreo_ahead_frame;

typedef struct choreo_ahead {
  choreo_ahead_frame held[CHOREO_AHEAD_FRAMES]; /* a ring, oldest at start */
  int start, count;
  size_t bytes;
  /* The last seq of the newest frame let go for the bounds (0: none). Nothing else will say
   * that it is missing once the peer stops publishing: FETCH must bring it. */
  int64_t let_go_last;
} choreo_ahead;

/* Takes msg, which carries seqs first..last, and holds it unless the bounds are reached (then
 * frees it, noting `last` in let_go_last). A frame that does not come after the last one held
 * (its publisher started its log over) lets go of everything held before it. */
void choreo_ahead_hold(choreo_ahead *a, nng_msg *msg, int64_t first, int64_t last);
/* The oldest held frame if it goes on from `applied` (its first seq is at most applied + 1),
 * handed over to the caller; frames wholly at or below `applied` are let go on the way. NULL
 * when nothing is held or the oldest still starts past a gap. */
nng_msg *choreo_ahead_next(choreo_ahead *a, int64_t applied);
void choreo_ahead_clear(choreo_ahead *a);

#endif
