/* Fuzz harness: bytes from a peer as the codec reads them (runtime/core/codec.c). The input is
 * tried as one encoded message (choreo_msg_decode: a stored log row, a dead letter) and as a
 * frame (choreo_frame_open, then choreo_frame_next until the end or a bad message). Every
 * message that decodes is turned into CloudEvents JSON as `choreo tail` prints it, which must
 * parse again, and a message read from a frame must decode alone, from its raw bytes, to the
 * same fields. */
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

/* Compared packed, not with msgpack_object_equal: a NaN is not equal to itself. */
static bool fuzz_same_data(const msgpack_object *a, const msgpack_object *b) {
  msgpack_sbuffer pa, pb;
  msgpack_sbuffer_init(&pa);
  msgpack_sbuffer_init(&pb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &pa, msgpack_sbuffer_write);
  FUZZ_CHECK(msgpack_pack_object(&pk, *a) == 0);
  msgpack_packer_init(&pk, &pb, msgpack_sbuffer_write);
  FUZZ_CHECK(msgpack_pack_object(&pk, *b) == 0);
  bool same = pa.size == pb.size && memcmp(pa.data, pb.data, pa.size) == 0;
  msgpack_sbuffer_destroy(&pa);
  msgpack_sbuffer_destroy(&pb);
  return same;
}

static bool fuzz_same_msg(const choreo_msg *a, const choreo_msg *b) {
  if (!fuzz_same_str(a->id, b->id) || !fuzz_same_str(a->source, b->source) ||
      !fuzz_same_str(a->type, b->type) || !fuzz_same_str(a->time, b->time) ||
      !fuzz_same_str(a->subject, b->subject) || !fuzz_same_str(a->kind, b->kind) ||
      !fuzz_same_str(a->to, b->to) || !fuzz_same_str(a->correlationid, b->correlationid) ||
      !fuzz_same_str(a->causationid, b->causationid) ||
      !fuzz_same_str(a->traceparent, b->traceparent))
    return false;
  if (a->seq != b->seq || (a->data == NULL) != (b->data == NULL)) return false;
  return a->data == NULL || fuzz_same_data(a->data, b->data);
}

/* A frame's message decoded again on its own. */
static void fuzz_alone(const choreo_msg *m) {
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  choreo_msg alone;
  FUZZ_CHECK(choreo_msg_decode(m->raw, m->raw_len, &u, &alone) == 0);
  FUZZ_CHECK(fuzz_same_msg(m, &alone));
  msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *buf = (const char *)data;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  choreo_msg m;
  if (choreo_msg_decode(buf, size, &u, &m) == 0) fuzz_to_json(&m);
  msgpack_unpacked_destroy(&u);

  choreo_frame_reader r;
  if (choreo_frame_open(&r, buf, size) != 0) return 0;
  FUZZ_CHECK(r.source.n > 0 && r.first >= 1);
  uint32_t seen = 0;
  int rc;
  while ((rc = choreo_frame_next(&r, &m)) == 1) {
    FUZZ_CHECK(m.seq == r.first + seen && m.raw >= buf && m.raw + m.raw_len <= buf + size);
    seen++;
    fuzz_to_json(&m);
    fuzz_alone(&m);
  }
  FUZZ_CHECK(rc == 0 ? seen == r.count : rc == CHOREO_EINVAL);
  choreo_frame_close(&r);
  return 0;
}
