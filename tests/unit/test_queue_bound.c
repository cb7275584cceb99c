/* Unit tests for the receive queue's size from the frames' size (runtime/host/queue_bound.c):
 * small frames leave it at its largest; a large frame shrinks it at once to what fits the
 * budget, never below the least; it grows back in doublings as frames shrink, and the largest
 * frame lately falls by a sixteenth a frame. */
#include "check.h"
#include "queue_bound.h"

static void test_small_frames_keep_the_largest_queue(void) {
  choreo_queue_bound q;
  choreo_queue_bound_init(&q);
  CHECK(q.frames == CHOREO_QUEUE_FRAMES_MAX);
  for (int i = 0; i < 100; i++) CHECK(choreo_queue_bound_note(&q, 64u << 10) == 0);
  CHECK(q.frames == CHOREO_QUEUE_FRAMES_MAX); /* 1,024 of 64 KiB: exactly the budget */
  CHECK(choreo_queue_bound_note(&q, 0) == 0);
}

static void test_a_large_frame_shrinks_it_at_once_within_the_bounds(void) {
  choreo_queue_bound q;
  choreo_queue_bound_init(&q);
  CHECK(choreo_queue_bound_note(&q, 1u << 20) == 64); /* 64 of 1 MiB */
  CHECK(choreo_queue_bound_note(&q, 2u << 20) == 32);
  CHECK(choreo_queue_bound_note(&q, 16u << 20) == CHOREO_QUEUE_FRAMES_MIN); /* 4 fit: 16 */
  CHECK(q.frames == CHOREO_QUEUE_FRAMES_MIN);
  CHECK(choreo_queue_bound_note(&q, 16u << 20) == 0);
}

static void test_it_grows_back_in_doublings_as_frames_shrink(void) {
  choreo_queue_bound q;
  choreo_queue_bound_init(&q);
  CHECK(choreo_queue_bound_note(&q, 4u << 20) == 16);
  int sizes[16], n = 0, frames = 0;
  for (int i = 0; i < 200 && q.frames < CHOREO_QUEUE_FRAMES_MAX; i++, frames++) {
    int set = choreo_queue_bound_note(&q, 1024);
    if (set) {
      CHECK(n < 16);
      if (n < 16) sizes[n++] = set;
    }
  }
  CHECK(q.frames == CHOREO_QUEUE_FRAMES_MAX);
  /* Each size at least double the one before (or the largest), and the whole climb from
   * 4 MiB frames down to 1 KiB ones takes the decay's ~16 frames per halving. */
  int before = 16;
  for (int i = 0; i < n; i++) {
    CHECK(sizes[i] >= 2 * before || sizes[i] == CHOREO_QUEUE_FRAMES_MAX);
    before = sizes[i];
  }
  CHECK(n >= 2 && frames > 40 && frames < 120);
}

static void test_the_largest_frame_lately_falls_by_a_sixteenth(void) {
  choreo_queue_bound q;
  choreo_queue_bound_init(&q);
  choreo_queue_bound_note(&q, 1600);
  CHECK(q.frame == 1600);
  choreo_queue_bound_note(&q, 10);
  CHECK(q.frame == 1500);
  choreo_queue_bound_note(&q, 2000);
  CHECK(q.frame == 2000);
}

int main(void) {
  RUN(test_small_frames_keep_the_largest_queue);
  RUN(test_a_large_frame_shrinks_it_at_once_within_the_bounds);
  RUN(test_it_grows_back_in_doublings_as_frames_shrink);
  RUN(test_the_largest_frame_lately_falls_by_a_sixteenth);
  return CHECK_DONE();
}
