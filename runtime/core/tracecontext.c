/* W3C trace context (see tracecontext.h). Ids come from a xorshift generator seeded once per
 * thread from the kernel: they must be unique, not secret, and one per handled message is too
 * many system calls. */
#include "tracecontext.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static bool tracecontext_is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* n lowercase hex digits, not all zeros (an invalid id). */
static bool tracecontext_id(const char *p, size_t n) {
  bool nonzero = false;
  for (size_t i = 0; i < n; i++) {
    if (!tracecontext_is_hex(p[i])) return false;
    nonzero |= p[i] != '0';
  }
  return nonzero;
}

bool choreo_traceparent_parse(choreo_str tp, choreo_trace_context *out) {
  const char *p = tp.p;
  if (!p || tp.n < CHOREO_TRACEPARENT_LEN) return false;
  if (!tracecontext_is_hex(p[0]) || !tracecontext_is_hex(p[1]) || (p[0] == 'f' && p[1] == 'f'))
    return false;
  /* Version 00 is exactly 55 characters; a later one may add fields after a '-'. */
  bool v00 = p[0] == '0' && p[1] == '0';
  if (tp.n > CHOREO_TRACEPARENT_LEN && (v00 || p[CHOREO_TRACEPARENT_LEN] != '-')) return false;
  if (p[2] != '-' || p[35] != '-' || p[52] != '-') return false;
  if (!tracecontext_id(p + 3, 32) || !tracecontext_id(p + 36, 16)) return false;
  if (!tracecontext_is_hex(p[53]) || !tracecontext_is_hex(p[54])) return false;
  memcpy(out->trace_id, p + 3, 32);
  out->trace_id[32] = '\0';
  memcpy(out->span_id, p + 36, 16);
  out->span_id[16] = '\0';
  memcpy(out->flags, p + 53, 2);
  out->flags[2] = '\0';
  return true;
}

static uint64_t tracecontext_next(void) {
  static _Thread_local uint64_t state;
  if (!state) {
    if (getrandom(&state, sizeof state, 0) != sizeof state) { /* no entropy: time and place */
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      state = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16) ^
              (uint64_t)(uintptr_t)&state;
    }
    state |= 1;
  }
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state; /* never 0: xorshift keeps a non-zero state non-zero */
}

void choreo_trace_id_new(char out[33]) {
  uint64_t hi = tracecontext_next(), lo = tracecontext_next();
  snprintf(out, 33, "%016llx%016llx", (unsigned long long)hi, (unsigned long long)lo);
}

void choreo_span_id_new(char out[17]) {
  snprintf(out, 17, "%016llx", (unsigned long long)tracecontext_next());
}

unsigned choreo_traceparent_flags(const choreo_trace_context *c) {
  return (unsigned)strtoul(c->flags, NULL, 16);
}

void choreo_traceparent_format(const choreo_trace_context *c, char *out) {
  snprintf(out, CHOREO_TRACEPARENT_LEN + 1, "00-%s-%s-%s", c->trace_id, c->span_id, c->flags);
}
