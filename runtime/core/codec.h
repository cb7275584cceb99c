/* Wire format (docs/ARCHITECTURE.md, The wire): messages are msgpack maps whose keys are the
 * CloudEvents attributes, numbered (one byte each; names are read too); a frame is a header
 * array [version, source, first_seq, count, head_seq] followed by `count` encoded messages with
 * contiguous seq. Decoding is defensive: every input is validated before msgpack-c sees it, so
 * claimed lengths can never exceed the bytes actually present. */
#ifndef CHOREO_CODEC_H
#define CHOREO_CODEC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "clock.h"

/* Frames of version 2 carry messages keyed by number, version 3 messages whose time may be
 * microseconds since the epoch (an integer) instead of text; a host reads versions 1 to 3. */
#define CHOREO_FRAME_VERSION 3
/* msgpack-c's C unpacker has a fixed stack of 32 levels; the whole message map is one of them. */
#define CHOREO_MAX_DEPTH 30
#define CHOREO_MAX_FRAME (16u << 20)
/* The largest encoded message a host appends (--max-message), by default and at most: a frame
 * of one such message and its header stays well within CHOREO_MAX_FRAME, which every receiver
 * accepts. */
#define CHOREO_DEFAULT_MAX_MESSAGE (1u << 20)
#define CHOREO_MAX_MESSAGE_LIMIT (8u << 20)

/* Service names (a message's source and to): 1..CHOREO_NAME_MAX of [A-Za-z0-9_.-], not
 * starting with '.', since they also name files in the bus directory. */
#define CHOREO_NAME_MAX 100

/* A borrowed string: not NUL-terminated; n == 0 and p == NULL when absent. */
typedef struct choreo_str {
  const char *p;
  size_t n;
} choreo_str;

/* A decoded message. Strings and data point into the buffer it was decoded from; so does the
 * id when the message carries one, else it is "<source>/<seq>" written into id_text (a copy of
 * the struct then borrows it from the original). The time stays as it came: text in `time`, or
 * microseconds in time_us (then `time` is empty), read as text with choreo_msg_time: most
 * handlers never read it, and writing it out for every message showed in profiles. Event
 * sourcing's extensions: an event of a stream carries the stream in `subject`, its version in
 * the stream (streamversion, 0 when absent) and its data's schema (dataschema, "v<N>"); a
 * command may carry the version of the stream its sender saw (expectedversion, -1 when
 * absent). */
typedef struct choreo_msg {
  choreo_str id, source, type, time, subject, kind, to, correlationid, causationid, traceparent;
  choreo_str dataschema;
  int64_t seq;
  int64_t time_us; /* when the time came as microseconds since the epoch, else -1 */
  int64_t streamversion, expectedversion;
  const char *data; /* the data's msgpack encoding, within raw; NULL when there is none */
  size_t data_len;
  const char *raw; /* the whole encoded message, as stored in the log */
  size_t raw_len;
  char id_text[CHOREO_NAME_MAX + 21];
} choreo_msg;

/* A time as text: text as it came, or written into buf from time_us (microseconds since the
 * epoch; -1: none); empty when it has neither. */
choreo_str choreo_time_text(choreo_str text, int64_t time_us, char buf[CHOREO_TIME_TEXT]);
/* The message's time as text (choreo_time_text of its two). */
choreo_str choreo_msg_time(const choreo_msg *m, char buf[CHOREO_TIME_TEXT]);

/* Writes v (at least 1) in decimal without a NUL; returns the digits written. By hand: printf
 * showed in profiles of the publishing path. */
int choreo_seq_digits(char out[20], int64_t v);

/* What a message is built from. NULL strings are left out of the map. `data` is the msgpack
 * encoding of one value (NULL/0 for nil). The id is "<source>/<seq>", which readers derive: it
 * is not written. streamversion 0 and has_expectedversion false leave those out. */
typedef struct choreo_msg_fields {
  const char *source, *type, *kind, *to, *subject, *correlationid, *causationid, *traceparent;
  const char *dataschema;
  const char *time; /* RFC 3339, written as given; NULL: now, written as microseconds */
  int64_t seq;
  int64_t streamversion, expectedversion;
  bool has_expectedversion;
  const char *data;
  size_t data_len;
} choreo_msg_fields;

/* Appends the encoding of one message to `out`. Returns 0 or CHOREO_EINVAL (missing
 * source/type/kind, a source longer than CHOREO_NAME_MAX, seq < 1). */
int choreo_msg_encode(const choreo_msg_fields *f, msgpack_sbuffer *out);

/* Decodes exactly one message occupying buf[0..len); the message borrows from buf. Returns 0
 * or CHOREO_EINVAL (also for a message without an id whose source is too long to derive one). */
int choreo_msg_decode(const char *buf, size_t len, choreo_msg *out);

/* Checks that buf[0..len) holds exactly `count` complete msgpack objects (count == 0: any
 * number, at least one), none nested deeper than max_depth, and no container claiming more
 * elements than bytes remain. Depth counts containers: a scalar is depth 0, [] and [1] are
 * depth 1, [[1]] is depth 2; empty containers count. max_depth is at most 32 (msgpack-c's own
 * limit), else CHOREO_EINVAL. Returns 0 or CHOREO_EINVAL. */
int choreo_msgpack_check(const char *buf, size_t len, size_t count, int max_depth);

/* Frames. Writing: choreo_frame_header(), then append `count` encoded messages verbatim. */
int choreo_frame_header(msgpack_sbuffer *out, const char *source, int64_t first, uint32_t count,
                        int64_t head);

/* Reading: validates the whole frame on open. Messages borrow from buf and the reader. */
typedef struct choreo_frame_reader {
  const char *buf;
  size_t len, off;
  choreo_str source;
  int64_t first, head;
  int64_t through; /* the last seq the frame covers (first - 1 + count unless sparse) */
  int64_t last;    /* the seq of the last message read that was in its place */
  bool sparse;
  uint32_t count, index;
  msgpack_unpacked header;
} choreo_frame_reader;

int choreo_frame_open(choreo_frame_reader *r, const char *buf, size_t len);
/* The version a frame's header claims (a frame of a newer one is refused as malformed, and this
 * tells the operator why), or -1 when it claims none. */
int64_t choreo_frame_version(const char *buf, size_t len);
/* Also takes a sparse frame, [version, source, first, count, head, through]: messages of the
 * source with seqs ascending from first to through, not every one (an answer to a history
 * request from a log retention trimmed: the stream events it keeps, see choreo_history_*). */
int choreo_frame_open_sparse(choreo_frame_reader *r, const char *buf, size_t len);
int choreo_frame_header_sparse(msgpack_sbuffer *out, const char *source, int64_t first,
                               uint32_t count, int64_t head, int64_t through);
/* Returns 1 with *out filled (valid until the next call), 0 at the end, CHOREO_EINVAL if a
 * message is malformed, its seq is not first + index or its source not the frame's. */
int choreo_frame_next(choreo_frame_reader *r, choreo_msg *out);
void choreo_frame_close(choreo_frame_reader *r);

/* FETCH requests, msgpack ["fetch", after, name]: the host `name` asks for our log after the seq
 * it last applied (which retention notes); a negative `after` asks only for our name and head.
 * name may be absent (older hosts): *name is then empty. decode returns CHOREO_EINVAL for
 * anything else (a negative number reads as -1, one beyond INT64_MAX as INT64_MAX). */
int choreo_fetch_encode(msgpack_sbuffer *out, int64_t after, const char *name);
int choreo_fetch_decode(const char *buf, size_t len, int64_t *after, choreo_str *name);

/* History requests, msgpack ["history", after]: a projection's build on another host asks for
 * our messages after `after`; the answer is our log from there where it has them, else a
 * sparse frame of the stream events we keep from before it (retention does not note the ask). */
int choreo_history_encode(msgpack_sbuffer *out, int64_t after);
int choreo_history_decode(const char *buf, size_t len, int64_t *after);

/* The same socket answers reads of the journal from other machines (choreo trace/map --peer):
 * msgpack ["ask", JSON text of a control request]; the answer is the control answer's JSON
 * text. decode returns CHOREO_EINVAL for anything else; *json points into buf. */
int choreo_ask_encode(msgpack_sbuffer *out, const char *json);
int choreo_ask_decode(const char *buf, size_t len, choreo_str *json);

/* Whether name is a service name (CHOREO_NAME_MAX above). */
bool choreo_name_valid(const char *name);
/* 0, or CHOREO_EINVAL with "invalid name '...' (...)" in err. */
int choreo_name_check(const char *name, char *err, size_t errlen);

/* Whether the n bytes at a and b are the same. The names and keys compared per message are
 * short: two loads each where a call to memcmp branched its way through them (25 calls per
 * consumed event, 3% of a consumer's samples). */
static inline bool choreo_bytes_eq(const void *a, const void *b, size_t n) {
  const unsigned char *x = a, *y = b;
  uint64_t u, v;
  uint32_t s, t;
  if (n >= 8) {
    for (; n > 8; n -= 8, x += 8, y += 8) {
      memcpy(&u, x, 8);
      memcpy(&v, y, 8);
      if (u != v) return false;
    }
    memcpy(&u, x + n - 8, 8); /* the last 8, overlapping what was compared */
    memcpy(&v, y + n - 8, 8);
    return u == v;
  }
  if (n >= 4) {
    memcpy(&s, x, 4);
    memcpy(&t, y, 4);
    if (s != t) return false;
    memcpy(&s, x + n - 4, 4);
    memcpy(&t, y + n - 4, 4);
    return s == t;
  }
  for (size_t i = 0; i < n; i++)
    if (x[i] != y[i]) return false;
  return true;
}

/* True if the borrowed string equals the C string (inline: the C string is mostly a literal,
 * whose length the compiler knows). */
static inline bool choreo_str_eq(choreo_str s, const char *c) {
  size_t n = strlen(c);
  return s.n == n && choreo_bytes_eq(s.p, c, n);
}

#endif
