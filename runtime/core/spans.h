/* Spans for OpenTelemetry (`choreo run --otlp-json PATH`): the handling of each message as a
 * span, written as OTLP/JSON, one line per committed batch (an ExportTraceServiceRequest:
 * resourceSpans → scopeSpans → spans), which OpenTelemetry's file receiver and other tools
 * import. Spans of a batch that rolled back are never written; a crash may lose the spans of
 * the last batches (they are written after the commit, without a sync). Each line is one
 * write() to a file opened O_APPEND, so hosts may share a file. */
#ifndef CHOREO_SPANS_H
#define CHOREO_SPANS_H

#include <stdint.h>

#include "codec.h"
#include "tracecontext.h"

typedef struct choreo_spans choreo_spans;

/* path: a file to append to, or an existing directory (then DIR/SERVICE.otlp.jsonl). */
int choreo_spans_open(choreo_spans **out, const char *path, const char *service, char *err,
                      size_t errlen);
void choreo_spans_close(choreo_spans *s);

typedef struct choreo_span {
  const choreo_trace_context *context; /* the trace, and this span's id */
  const char *parent_span_id;          /* NULL: a root span */
  const choreo_msg *msg;
  int64_t start_us, end_us;            /* microseconds since the epoch */
  const char *handler, *outcome, *error; /* as in the journal; error NULL when ok */
} choreo_span;

int choreo_spans_note(choreo_spans *s, const choreo_span *span);
/* Writes the spans noted since the last flush or discard as one line: after the commit. */
int choreo_spans_flush(choreo_spans *s);
void choreo_spans_discard(choreo_spans *s);

#endif
