/* Unit tests for W3C trace context: which traceparents are read (the specification's rules:
 * lowercase hex, ids not all zeros, version ff refused, a later version's extra fields
 * tolerated), what is taken from them, and the ids made for new traces and spans. */
#include <string.h>

#include "check.h"
#include "tracecontext.h"

static bool parses(const char *tp, choreo_trace_context *out) {
  return choreo_traceparent_parse((choreo_str){tp, strlen(tp)}, out);
}

static void test_valid(void) {
  choreo_trace_context c;
  CHECK(parses("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &c));
  CHECK(strcmp(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736") == 0);
  CHECK(strcmp(c.span_id, "00f067aa0ba902b7") == 0);
  CHECK(strcmp(c.flags, "01") == 0);
  CHECK(parses("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &c));
  /* A later version: its first 55 characters, and fields after a '-'. */
  CHECK(parses("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next", &c));
  CHECK(parses("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &c));
}

static void test_invalid(void) {
  choreo_trace_context c;
  const char *bad[] = {
      "",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",     /* no flags */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* 00 has nothing after */
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* uppercase */
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero trace id */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* zero parent id */
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version ff */
      "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
      "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", /* later: '-' must follow */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    bool parsed = parses(bad[i], &c);
    if (parsed) fprintf(stderr, "  read as valid: '%s'\n", bad[i]);
    CHECK(!parsed);
  }
  CHECK(!choreo_traceparent_parse((choreo_str){NULL, 0}, &c));
}

static void test_new_ids_and_format(void) {
  choreo_trace_context c;
  choreo_trace_id_new(c.trace_id);
  choreo_span_id_new(c.span_id);
  memcpy(c.flags, "01", 3);
  char tp[CHOREO_TRACEPARENT_LEN + 1];
  choreo_traceparent_format(&c, tp);
  CHECK(strlen(tp) == CHOREO_TRACEPARENT_LEN);
  choreo_trace_context back;
  CHECK(parses(tp, &back));
  CHECK(strcmp(back.trace_id, c.trace_id) == 0 && strcmp(back.span_id, c.span_id) == 0);
  char other[17];
  choreo_span_id_new(other);
  CHECK(strcmp(other, c.span_id) != 0);
}

int main(void) {
  RUN(test_valid);
  RUN(test_invalid);
  RUN(test_new_ids_and_format);
  return CHECK_DONE();
}
