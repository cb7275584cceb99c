/* W3C trace context (https://www.w3.org/TR/trace-context/): the `traceparent` a message
 * carries ("00-<trace id, 32 hex>-<parent span id, 16 hex>-<flags, 2 hex>"), read strictly, and
 * new ids. The handling of a message is a span of the trace its traceparent names; what the
 * handlers emit carries a traceparent whose parent is that span. */
#ifndef CHOREO_TRACECONTEXT_H
#define CHOREO_TRACECONTEXT_H

#include <stdbool.h>

#include "codec.h"

#define CHOREO_TRACEPARENT_LEN 55
#define CHOREO_TRACEPARENT_EXPECTED                                                            \
  "traceparent must be a W3C traceparent: 00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 " \
  "hex>, ids not all zeros"

typedef struct choreo_trace_context {
  char trace_id[33];
  char span_id[17]; /* in a parsed traceparent: the parent's */
  char flags[3];
} choreo_trace_context;

/* Whether tp is a valid traceparent of version 00 (or a later version's first 55 characters,
 * as the specification asks), with ids that are not all zeros; *out filled when it is. */
bool choreo_traceparent_parse(choreo_str tp, choreo_trace_context *out);
/* A new random trace id or span id, lowercase hex, NUL-terminated (never all zeros). */
void choreo_trace_id_new(char out[33]);
void choreo_span_id_new(char out[17]);
/* The flags as a number (bit 0: sampled). */
unsigned choreo_traceparent_flags(const choreo_trace_context *c);
/* "00-TRACE-SPAN-FLAGS" into out (at least CHOREO_TRACEPARENT_LEN + 1 bytes). */
void choreo_traceparent_format(const choreo_trace_context *c, char *out);

#endif
