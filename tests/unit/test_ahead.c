/* Unit tests for a peer's live frames held past a gap (runtime/host/ahead.c): nothing comes
 * out while a gap is left before the oldest; once it is filled they come out in order; frames
 * already applied are let go on the way; the bounds keep the oldest and remember the newest
 * they let go (FETCH owes it); a frame that does not come after the newest lets go of the
 * rest. Valgrind and LeakSanitizer see that every frame let go is freed. */
#include <nng/nng.h>

#include "ahead.h"
#include "check.h"

/* A frame of `bytes` bytes whose first byte says which one it is. */
static nng_msg *frame(char tag, size_t bytes) {
  nng_msg *m = NULL;
  CHECK(nng_msg_alloc(&m, bytes) == 0);
  if (m) ((char *)nng_msg_body(m))[0] = tag;
  return m;
}

/* Takes the next frame out and says which one it was: '-' for none. */
static char next(choreo_ahead *a, int64_t applied) {
  nng_msg *m = choreo_ahead_next(a, applied);
  if (!m) return '-';
  char tag = ((char *)nng_msg_body(m))[0];
  nng_msg_free(m);
  return tag;
}

static void test_frames_wait_for_the_gap_then_come_in_order(void) {
  choreo_ahead a = {0};
  choreo_ahead_hold(&a, frame('a', 10), 11, 20);
  choreo_ahead_hold(&a, frame('b', 10), 21, 30);
  choreo_ahead_hold(&a, frame('c', 10), 41, 50); /* another gap before this one */
  CHECK(a.count == 3 && a.bytes == 30);
  CHECK(next(&a, 0) == '-');  /* 1..10 are missing */
  CHECK(next(&a, 9) == '-');  /* 10 still is */
  CHECK(a.count == 3);
  CHECK(next(&a, 10) == 'a'); /* FETCH brought 1..10 */
  CHECK(next(&a, 20) == 'b');
  CHECK(next(&a, 30) == '-'); /* 31..40 are missing */
  CHECK(next(&a, 45) == 'c'); /* a frame applied in part comes out: the engine skips the rest */
  CHECK(next(&a, 50) == '-' && a.count == 0 && a.bytes == 0);
}

static void test_frames_already_applied_are_let_go(void) {
  choreo_ahead a = {0};
  choreo_ahead_hold(&a, frame('a', 10), 11, 20);
  choreo_ahead_hold(&a, frame('b', 10), 21, 30);
  choreo_ahead_hold(&a, frame('c', 10), 31, 40);
  CHECK(next(&a, 30) == 'c'); /* FETCH brought all of a and b */
  CHECK(a.count == 0 && a.bytes == 0);
}

static void test_the_bounds_keep_the_oldest(void) {
  choreo_ahead a = {0};
  for (int i = 0; i < CHOREO_AHEAD_FRAMES + 5; i++)
    choreo_ahead_hold(&a, frame((char)('0' + i % 10), 1), 10 + i * 10, 19 + i * 10);
  CHECK(a.count == CHOREO_AHEAD_FRAMES);
  /* the newest let go is remembered: FETCH owes it */
  CHECK(a.let_go_last == 19 + (CHOREO_AHEAD_FRAMES + 4) * 10);
  CHECK(next(&a, 9) == '0'); /* the first held, not a later one */
  choreo_ahead_clear(&a);
  CHECK(a.let_go_last == 0);

  choreo_ahead_hold(&a, frame('a', CHOREO_AHEAD_BYTES - 100), 11, 20);
  choreo_ahead_hold(&a, frame('b', 200), 21, 30); /* over the bytes bound: let go */
  CHECK(a.count == 1 && a.bytes == CHOREO_AHEAD_BYTES - 100 && a.let_go_last == 30);
  CHECK(next(&a, 10) == 'a' && a.let_go_last == 30); /* still owed once the held are applied */
  choreo_ahead_clear(&a);

  choreo_ahead_hold(&a, frame('a', CHOREO_AHEAD_BYTES + 1), 11, 20); /* one alone may pass it */
  CHECK(a.count == 1);
  CHECK(next(&a, 10) == 'a');
}

static void test_a_log_started_over_lets_go_of_what_was_held(void) {
  choreo_ahead a = {0};
  choreo_ahead_hold(&a, frame('a', 10), 101, 110);
  choreo_ahead_hold(&a, frame('b', 10), 111, 120);
  a.let_go_last = 130;
  choreo_ahead_hold(&a, frame('c', 10), 5, 8); /* the peer's log begins again */
  CHECK(a.count == 1 && a.bytes == 10 && a.let_go_last == 0); /* nothing of the old log owed */
  CHECK(next(&a, 4) == 'c');
  choreo_ahead_hold(&a, frame('d', 10), 21, 30);
  choreo_ahead_clear(&a);
  CHECK(a.count == 0 && a.bytes == 0 && next(&a, 100) == '-');
}

int main(void) {
  RUN(test_frames_wait_for_the_gap_then_come_in_order);
  RUN(test_frames_already_applied_are_let_go);
  RUN(test_the_bounds_keep_the_oldest);
  RUN(test_a_log_started_over_lets_go_of_what_was_held);
  nng_fini();
  return CHECK_DONE();
}
