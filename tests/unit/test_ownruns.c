/* Unit tests for the runs of what a host appended (runtime/core/ownruns.c): messages alike
 * join a run and any difference in a routing field starts one; only a contiguous range under
 * one epoch is covered; a gap, a new epoch, too many runs or a field too long start over;
 * applied runs are dropped, a run applied in part keeps its rest. */
#include <string.h>

#include "check.h"
#include "ownruns.h"

static choreo_msg_fields event(const char *type) {
  return (choreo_msg_fields){.type = type, .kind = "event", .correlationid = "c1"};
}

static void test_alike_messages_make_one_run(void) {
  choreo_own_runs o = {0};
  choreo_msg_fields a = event("A"), b = event("B");
  for (int64_t seq = 1; seq <= 3; seq++) choreo_own_runs_add(&o, 7, seq, &a);
  choreo_own_runs_add(&o, 7, 4, &b);
  choreo_msg_fields a2 = a;
  a2.correlationid = "c2"; /* another conversation: another run */
  choreo_own_runs_add(&o, 7, 5, &a2);
  choreo_msg_fields a3 = a2;
  a3.streamversion = 4; /* a stream's event: another run */
  choreo_own_runs_add(&o, 7, 6, &a3);
  CHECK(o.n == 4);
  int first = -1;
  CHECK(choreo_own_runs_cover(&o, 7, 1, 6, &first) == 4 && first == 0);
  CHECK(choreo_own_runs_cover(&o, 7, 2, 3, &first) == 1 && first == 0);
  CHECK(choreo_own_runs_cover(&o, 7, 3, 5, &first) == 3 && first == 0);
  CHECK(choreo_own_runs_cover(&o, 7, 5, 5, &first) == 1 && first == 2);
  CHECK(choreo_own_runs_cover(&o, 7, 1, 7, &first) == 0); /* 7 was not appended */
  CHECK(choreo_own_runs_cover(&o, 8, 1, 6, &first) == 0); /* another epoch */
  choreo_msg m;
  choreo_own_run_msg(&o.run[2], "svc", &m);
  CHECK(m.type.n == 1 && memcmp(m.type.p, "A", 1) == 0);
  CHECK(m.correlationid.n == 2 && memcmp(m.correlationid.p, "c2", 2) == 0);
  CHECK(m.kind.n == 5 && m.to.p == NULL && m.subject.p == NULL && m.streamversion == 0);
  CHECK(m.source.n == 3 && m.seq == 5);
  choreo_own_run_msg(&o.run[3], "svc", &m);
  CHECK(m.streamversion > 0);
}

static void test_empty_strings_are_absent(void) {
  choreo_own_runs o = {0};
  choreo_msg_fields a = event("A"), b = event("A");
  b.to = "";
  b.subject = "";
  choreo_own_runs_add(&o, 1, 1, &a);
  choreo_own_runs_add(&o, 1, 2, &b); /* encoded, "" is no field: alike */
  CHECK(o.n == 1 && o.run[0].last == 2);
}

static void test_gaps_epochs_and_bounds_start_over(void) {
  choreo_own_runs o = {0};
  choreo_msg_fields a = event("A"), b = event("B");
  choreo_own_runs_add(&o, 1, 1, &a);
  choreo_own_runs_add(&o, 1, 2, &a);
  choreo_own_runs_add(&o, 1, 2, &b); /* seq 2 again: a savepoint took the first away */
  int first;
  CHECK(o.n == 1 && o.run[0].first == 2);
  CHECK(choreo_own_runs_cover(&o, 1, 1, 2, &first) == 0);
  choreo_own_runs_add(&o, 2, 3, &b); /* a rollback moved the epoch on */
  CHECK(o.n == 1 && o.run[0].first == 3);
  for (int64_t seq = 4; seq < 4 + CHOREO_OWN_RUNS; seq++)
    choreo_own_runs_add(&o, 2, seq, seq % 2 ? &b : &a);
  CHECK(o.n == 1 && o.run[0].first == 3 + CHOREO_OWN_RUNS); /* too many: started over */
  char huge[CHOREO_OWN_RUN_BYTES + 1];
  memset(huge, 'x', sizeof huge - 1);
  huge[sizeof huge - 1] = '\0';
  choreo_msg_fields h = event(huge);
  choreo_own_runs_add(&o, 2, 4 + CHOREO_OWN_RUNS, &h);
  CHECK(o.n == 0); /* not kept: whatever comes next starts over */
  CHECK(choreo_own_runs_cover(&o, 2, 3, 3, &first) == 0);
}

static void test_applied_runs_are_dropped(void) {
  choreo_own_runs o = {0};
  choreo_msg_fields a = event("A"), b = event("B");
  for (int64_t seq = 1; seq <= 4; seq++) choreo_own_runs_add(&o, 1, seq, seq <= 2 ? &a : &b);
  choreo_own_runs_drop_through(&o, 3); /* A's run whole, B's in part */
  int first;
  CHECK(o.n == 1 && o.run[0].first == 4 && o.run[0].last == 4);
  CHECK(choreo_own_runs_cover(&o, 1, 3, 4, &first) == 0);
  CHECK(choreo_own_runs_cover(&o, 1, 4, 4, &first) == 1 && first == 0);
  choreo_own_runs_drop_through(&o, 4);
  CHECK(o.n == 0);
  choreo_own_runs_add(&o, 1, 5, &a); /* and it goes on from there */
  CHECK(o.n == 1 && choreo_own_runs_cover(&o, 1, 5, 5, &first) == 1);
}

int main(void) {
  RUN(test_alike_messages_make_one_run);
  RUN(test_empty_strings_are_absent);
  RUN(test_gaps_epochs_and_bounds_start_over);
  RUN(test_applied_runs_are_dropped);
  return CHECK_DONE();
}
