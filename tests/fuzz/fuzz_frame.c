/* Fuzz harness: bytes from a peer as the codec reads them (runtime/core/codec.c). The input is
 * tried as one encoded message (choreo_msg_decode: a stored log row, a dead letter) and as a
 * frame (choreo_frame_open, then choreo_frame_next until the end or a bad message), and as a
 * frame that may be sparse (choreo_frame_open_sparse: seqs ascending up to through). Every
 * message that decodes is turned into CloudEvents JSON as `choreo tail` prints it, which must
 * parse again; a message read from a frame must decode alone, from its raw bytes, to the same
 * fields, and so must what choreo_msg_encode writes from those fields. A frame that opens
 * claims a version this host reads (choreo_frame_version, which any bytes go through). */
#include <string.h>

#include "choreo.h"
#include "codec.h"
#include "fuzz.h"
#include "json.h"

/* What `choreo tail` prints must be JSON, whatever bytes the message held. */
static void fuzz_to_json(const choreo_msg *m) {
  char *json = choreo_msg_to_json(m);
  FUZZ_CHECK(json != NULL);
  cJSON *again = cJSON_Parse(json);
  if (!cJSON_IsObject(again)) fprintf(stderr, "printed: %s\n", json);
  FUZZ_CHECK(cJSON_IsObject(again));
  cJSON_Delete(again);
  free(json);
}

static bool fuzz_same_str(choreo_str a, choreo_str b) {
  return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* The time as its text: microseconds and the text they stand for are the same time. */
static bool fuzz_same_msg(const choreo_msg *a, const choreo_msg *b) {
  char time_a[CHOREO_TIME_TEXT], time_b[CHOREO_TIME_TEXT];
  if (!fuzz_same_str(a->id, b->id) || !fuzz_same_str(a->source, b->source) ||
      !fuzz_same_str(a->type, b->type) ||
      !fuzz_same_str(choreo_msg_time(a, time_a), choreo_msg_time(b, time_b)) ||
      !fuzz_same_str(a->subject, b->subject) || !fuzz_same_str(a->kind, b->kind) ||
      !fuzz_same_str(a->to, b->to) || !fuzz_same_str(a->correlationid, b->correlationid) ||
      !fuzz_same_str(a->causationid, b->causationid) ||
      !fuzz_same_str(a->traceparent, b->traceparent))
    return false;
  /* The data is carried verbatim: the same bytes. */
  return a->seq == b->seq && a->data_len == b->data_len && (a->data == NULL) == (b->data == NULL) &&
         (a->data == NULL || memcmp(a->data, b->data, a->data_len) == 0);
}

/* A borrowed string as a C string (NULL when absent); false when it holds a NUL byte, which no
 * C caller could hand to the encoder. */
static bool fuzz_cstr(choreo_str s, char **out) {
  *out = NULL;
  if (s.n == 0) return true;
  if (memchr(s.p, '\0', s.n)) return false;
  *out = strndup(s.p, s.n);
  FUZZ_CHECK(*out != NULL);
  return true;
}

/* A decoded message written again by choreo_msg_encode decodes to the same attributes and data,
 * with its id derived from source and seq (and a time of its own if it had none). */
static void fuzz_reencode(const choreo_msg *m) {
  char time[CHOREO_TIME_TEXT];
  const choreo_str strs[] = {m->source,        m->type,          choreo_msg_time(m, time),
                             m->subject,       m->kind,          m->to,
                             m->correlationid, m->causationid,   m->traceparent};
  enum { N = sizeof strs / sizeof *strs };
  char *c[N];
  bool writable = true;
  for (int i = 0; i < N; i++) writable = fuzz_cstr(strs[i], &c[i]) && writable;
  msgpack_sbuffer out;
  msgpack_sbuffer_init(&out);
  if (writable) {
    choreo_msg_fields f = {.source = c[0], .type = c[1], .time = c[2], .subject = c[3],
                           .kind = c[4], .to = c[5], .correlationid = c[6],
                           .causationid = c[7], .traceparent = c[8], .seq = m->seq,
                           .data = m->data, .data_len = m->data_len};
    FUZZ_CHECK(choreo_msg_encode(&f, &out) == 0);
    choreo_msg again;
    FUZZ_CHECK(choreo_msg_decode(out.data, out.size, &again) == 0);
    char id[CHOREO_NAME_MAX + 24]; /* the encoder leaves the id to be derived */
    snprintf(id, sizeof id, "%.*s/%lld", (int)m->source.n, m->source.p, (long long)m->seq);
    FUZZ_CHECK(choreo_str_eq(again.id, id));
    again.id = m->id;
    if (m->time.n == 0 && m->time_us < 0) again.time_us = -1; /* it had none: stamped anew */
    FUZZ_CHECK(fuzz_same_msg(m, &again));
  }
  msgpack_sbuffer_destroy(&out);
  for (int i = 0; i < N; i++) free(c[i]);
}

/* A frame's message decoded again on its own. */
static void fuzz_alone(const choreo_msg *m) {
  choreo_msg alone;
  FUZZ_CHECK(choreo_msg_decode(m->raw, m->raw_len, &alone) == 0);
  FUZZ_CHECK(fuzz_same_msg(m, &alone));
}

/* Reads a frame to its end: each message's seq in its place, its bytes within the input. */
static void fuzz_read(choreo_frame_reader *r, const char *buf, size_t size) {
  FUZZ_CHECK(r->source.n > 0 && r->first >= 1 && r->through >= r->first - 1 + (int64_t)r->count);
  uint32_t seen = 0;
  int64_t last = r->first - 1;
  int rc;
  choreo_msg m;
  while ((rc = choreo_frame_next(r, &m)) == 1) {
    FUZZ_CHECK(r->sparse ? m.seq > last && m.seq <= r->through : m.seq == r->first + seen);
    FUZZ_CHECK(m.raw >= buf && m.raw + m.raw_len <= buf + size);
    last = m.seq;
    seen++;
    fuzz_to_json(&m);
    fuzz_alone(&m);
    fuzz_reencode(&m);
  }
  FUZZ_CHECK(rc == 0 ? seen == r->count : rc == CHOREO_EINVAL);
  choreo_frame_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *buf = (const char *)data;
  choreo_msg m;
  if (choreo_msg_decode(buf, size, &m) == 0) fuzz_to_json(&m);
  choreo_frame_reader r;
  bool contiguous = choreo_frame_open(&r, buf, size) == 0;
  int64_t version = choreo_frame_version(buf, size); /* what a refusal's log line names */
  if (contiguous) {
    FUZZ_CHECK(!r.sparse && version >= 1 && version <= CHOREO_FRAME_VERSION);
    fuzz_read(&r, buf, size);
  }
  if (choreo_frame_open_sparse(&r, buf, size) != 0) {
    FUZZ_CHECK(!contiguous); /* what the live path takes, a history answer may be */
    return 0;
  }
  fuzz_read(&r, buf, size);
  return 0;
}
