/* The receive queue's size from the frames' size (see queue_bound.h). */
#include "queue_bound.h"

void choreo_queue_bound_init(choreo_queue_bound *q) {
  *q = (choreo_queue_bound){.frame = 0, .frames = CHOREO_QUEUE_FRAMES_MAX};
}

int choreo_queue_bound_note(choreo_queue_bound *q, size_t bytes) {
  size_t frame = q->frame - q->frame / 16;
  q->frame = bytes > frame ? bytes : frame;
  size_t fit = q->frame ? CHOREO_QUEUE_BYTES / q->frame : CHOREO_QUEUE_FRAMES_MAX;
  int want = fit > CHOREO_QUEUE_FRAMES_MAX   ? CHOREO_QUEUE_FRAMES_MAX
             : fit < CHOREO_QUEUE_FRAMES_MIN ? CHOREO_QUEUE_FRAMES_MIN
                                             : (int)fit;
  /* Growing by less than double is not worth the resize: NNG copies the queue each time. */
  if (want < q->frames || (want > q->frames && (want >= 2 * q->frames ||
                                                want == CHOREO_QUEUE_FRAMES_MAX))) {
    q->frames = want;
    return want;
  }
  return 0;
}
