/* Unit tests for the wire codec: message and frame round trips, and the defensive decoding that
 * stands between the network and msgpack-c (truncation, hostile lengths, depth, random bytes). */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "choreo.h"
#include "clock.h"
#include "codec.h"

static const char *const TIME = "2026-11-27T03:00:00.123456Z";
static const char *const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/* Whether the map has the numbered key (our writers' keys, codec.c's CODEC_K_*). */
static bool map_has_number(const msgpack_object *map, uint64_t key) {
  for (uint32_t i = 0; i < map->via.map.size; i++) {
    const msgpack_object *k = &map->via.map.ptr[i].key;
    if (k->type == MSGPACK_OBJECT_POSITIVE_INTEGER && k->via.u64 == key) return true;
  }
  return false;
}

static bool map_has(const msgpack_object *map, const char *key) {
  for (uint32_t i = 0; i < map->via.map.size; i++) {
    const msgpack_object *k = &map->via.map.ptr[i].key;
    if (k->type == MSGPACK_OBJECT_STR &&
        choreo_str_eq((choreo_str){k->via.str.ptr, k->via.str.size}, key))
      return true;
  }
  return false;
}

/* Packs a map from (key, tag, value) triples: tag 's' string, 'i' int64_t, 'u' uint64_t,
 * 'd' double, 'n' nil (no value). A NULL key is packed as the integer 99, a number no
 * attribute has (yet). */
static void build_map(msgpack_sbuffer *sb, int n, ...) {
  msgpack_packer pk;
  va_list ap;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, (size_t)n);
  va_start(ap, n);
  for (int i = 0; i < n; i++) {
    const char *key = va_arg(ap, const char *);
    int tag = va_arg(ap, int);
    if (key) msgpack_pack_str_with_body(&pk, key, strlen(key));
    else msgpack_pack_int(&pk, 99);
    switch (tag) {
    case 's': {
      const char *s = va_arg(ap, const char *);
      msgpack_pack_str_with_body(&pk, s, strlen(s));
      break;
    }
    case 'i': msgpack_pack_int64(&pk, va_arg(ap, int64_t)); break;
    case 'u': msgpack_pack_uint64(&pk, va_arg(ap, uint64_t)); break;
    case 'd': msgpack_pack_double(&pk, va_arg(ap, double)); break;
    default: msgpack_pack_nil(&pk); break;
    }
  }
  va_end(ap);
}

/* `depth` nested arrays; the innermost holds 1, or is empty. */
static size_t nested(char *buf, int depth, bool empty_inside) {
  size_t n = 0;
  for (int i = 0; i < depth; i++) buf[n++] = (char)(i == depth - 1 && empty_inside ? 0x90 : 0x91);
  if (!empty_inside || depth == 0) buf[n++] = 0x01;
  return n;
}

static int encode(msgpack_sbuffer *out, const char *source, int64_t seq, const char *data,
                  size_t data_len) {
  choreo_msg_fields f = {.source = source, .type = "OrderPlaced", .kind = "event", .time = TIME,
                         .seq = seq, .data = data, .data_len = data_len};
  return choreo_msg_encode(&f, out);
}

/* A decoded message's data as msgpack-c reads it (unpacked into u), or NULL. */
static const msgpack_object *data_object(const choreo_msg *m, msgpack_unpacked *u) {
  if (!m->data) return NULL;
  size_t off = 0;
  bool whole = msgpack_unpack_next(u, m->data, m->data_len, &off) == MSGPACK_UNPACK_SUCCESS &&
               off == m->data_len;
  return whole ? &u->data : NULL;
}

static void test_msg_round_trip(void) {
  msgpack_sbuffer data, buf;
  msgpack_packer pk;
  msgpack_unpacked u;
  choreo_msg m;
  msgpack_sbuffer_init(&data);
  msgpack_sbuffer_init(&buf);
  msgpack_unpacked_init(&u);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 2);
  msgpack_pack_str_with_body(&pk, "order", 5);
  msgpack_pack_int(&pk, 7);
  msgpack_pack_str_with_body(&pk, "total", 5);
  msgpack_pack_int(&pk, 30);

  choreo_msg_fields f = {.source = "orders", .type = "OrderPlaced", .kind = "command",
                         .to = "shipping", .subject = "order-7", .correlationid = "c-1",
                         .causationid = "orders/41", .traceparent = TRACEPARENT, .time = TIME,
                         .seq = 42, .data = data.data, .data_len = data.size};
  CHECK(choreo_msg_encode(&f, &buf) == 0);
  CHECK(choreo_msg_decode(buf.data, buf.size, &m) == 0);
  CHECK(choreo_str_eq(m.id, "orders/42"));
  CHECK(choreo_str_eq(m.source, "orders"));
  CHECK(choreo_str_eq(m.type, "OrderPlaced"));
  CHECK(choreo_str_eq(m.time, TIME));
  CHECK(choreo_str_eq(m.subject, "order-7"));
  CHECK(choreo_str_eq(m.kind, "command"));
  CHECK(choreo_str_eq(m.to, "shipping"));
  CHECK(choreo_str_eq(m.correlationid, "c-1"));
  CHECK(choreo_str_eq(m.causationid, "orders/41"));
  CHECK(choreo_str_eq(m.traceparent, TRACEPARENT));
  CHECK(m.seq == 42);
  CHECK(m.raw == buf.data && m.raw_len == buf.size);
  CHECK(msgpack_unpack_next(&u, buf.data, buf.size, NULL) == MSGPACK_UNPACK_SUCCESS);
  /* Every key is a number of one byte; the id is not written (readers derive it), nor are the
   * format's constants. */
  CHECK(u.data.via.map.size == 11);
  for (uint32_t i = 0; i < u.data.via.map.size; i++) {
    const msgpack_object *k = &u.data.via.map.ptr[i].key;
    CHECK(k->type == MSGPACK_OBJECT_POSITIVE_INTEGER && k->via.u64 >= 2 && k->via.u64 <= 15);
  }
  CHECK(!map_has_number(&u.data, 1) && !map_has(&u.data, "id"));

  msgpack_unpacked orig, got;
  msgpack_unpacked_init(&orig);
  msgpack_unpacked_init(&got);
  CHECK(msgpack_unpack_next(&orig, data.data, data.size, NULL) == MSGPACK_UNPACK_SUCCESS);
  const msgpack_object *d = data_object(&m, &got);
  CHECK(d != NULL && msgpack_object_equal(*d, orig.data));

  /* Appending keeps what was there: a second message after the first. */
  size_t first_len = buf.size;
  f.seq = 43;
  CHECK(choreo_msg_encode(&f, &buf) == 0);
  CHECK(choreo_msg_decode(buf.data + first_len, buf.size - first_len, &m) == 0);
  CHECK(choreo_str_eq(m.id, "orders/43") && m.seq == 43);

  msgpack_unpacked_destroy(&got);
  msgpack_unpacked_destroy(&orig);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_destroy(&buf);
}

/* The message as msgpack-c's packer writes it, key by key: the reference the encoder's direct
 * writes must match byte for byte. Keys are the attributes' numbers (codec.c, CODEC_K_*). */
enum { K_SOURCE = 2, K_TYPE, K_TIME, K_SUBJECT, K_DATA, K_SEQ, K_KIND, K_TO, K_CORRELATIONID,
       K_CAUSATIONID, K_TRACEPARENT, K_DATASCHEMA, K_STREAMVERSION, K_EXPECTEDVERSION };

static void reference_pack_attr(msgpack_packer *pk, int key, const char *value) {
  if (!value || !*value) return;
  msgpack_pack_int(pk, key);
  msgpack_pack_str_with_body(pk, value, strlen(value));
}

static void reference_encode(const choreo_msg_fields *f, msgpack_sbuffer *out) {
  const char *optional[] = {f->subject, f->to, f->correlationid, f->causationid, f->traceparent,
                            f->dataschema};
  size_t entries = 5 + (f->data ? 1 : 0) + (f->streamversion > 0) + f->has_expectedversion;
  for (size_t i = 0; i < 6; i++) entries += optional[i] && *optional[i];
  msgpack_packer pk;
  msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, entries);
  reference_pack_attr(&pk, K_SOURCE, f->source);
  reference_pack_attr(&pk, K_TYPE, f->type);
  reference_pack_attr(&pk, K_TIME, f->time);
  reference_pack_attr(&pk, K_SUBJECT, f->subject);
  if (f->data) {
    msgpack_pack_int(&pk, K_DATA);
    msgpack_sbuffer_write(out, f->data, f->data_len);
  }
  msgpack_pack_int(&pk, K_SEQ);
  msgpack_pack_int64(&pk, f->seq);
  reference_pack_attr(&pk, K_KIND, f->kind);
  reference_pack_attr(&pk, K_TO, f->to);
  reference_pack_attr(&pk, K_CORRELATIONID, f->correlationid);
  reference_pack_attr(&pk, K_CAUSATIONID, f->causationid);
  reference_pack_attr(&pk, K_TRACEPARENT, f->traceparent);
  reference_pack_attr(&pk, K_DATASCHEMA, f->dataschema);
  if (f->streamversion > 0) {
    msgpack_pack_int(&pk, K_STREAMVERSION);
    msgpack_pack_int64(&pk, f->streamversion);
  }
  if (f->has_expectedversion) {
    msgpack_pack_int(&pk, K_EXPECTEDVERSION);
    msgpack_pack_int64(&pk, f->expectedversion);
  }
}

/* Every string-length class (fixstr, str8, str16, str32) and integer width of seq. */
static void test_msg_encoding_is_msgpack_cs(void) {
  static char long_str[70000];
  memset(long_str, 'x', sizeof long_str - 1);
  const size_t lengths[] = {1, 31, 32, 255, 256, 4000, 65535, 65536};
  const int64_t seqs[] = {1, 127, 128, 255, 256, 65535, 65536, 4294967295LL, 4294967296LL,
                          INT64_MAX};
  msgpack_sbuffer got, want;
  msgpack_sbuffer_init(&got);
  msgpack_sbuffer_init(&want);
  for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
    for (size_t j = 0; j < sizeof seqs / sizeof *seqs; j++) {
      size_t n = lengths[i];
      char *value = long_str + sizeof long_str - 1 - n; /* n x's, NUL-terminated */
      char source[CHOREO_NAME_MAX + 1]; /* readers derive the id: a source is a name */
      snprintf(source, sizeof source, "%.*s", (int)(n < CHOREO_NAME_MAX ? n : CHOREO_NAME_MAX),
               long_str);
      const char data[] = {(char)0x81, (char)0xa1, 'k', 0x01};
      choreo_msg_fields f = {.source = source, .type = value, .kind = "command", .to = "b",
                             .time = TIME, .seq = seqs[j], .subject = j % 2 ? value : NULL,
                             .correlationid = "c", .causationid = j % 3 ? NULL : value,
                             .traceparent = TRACEPARENT, .data = j % 2 ? NULL : data,
                             .data_len = j % 2 ? 0 : sizeof data,
                             /* event sourcing's extensions: with all of them and data,
                              * j = 0 and 8 make 13 entries */
                             .dataschema = j % 2 ? NULL : "v2",
                             .streamversion = j % 2 ? 0 : seqs[j],
                             .has_expectedversion = j % 4 == 0, .expectedversion = seqs[j] - 1};
      msgpack_sbuffer_clear(&got);
      msgpack_sbuffer_clear(&want);
      msgpack_sbuffer_write(&got, "prefix", 6); /* appends after what is there */
      msgpack_sbuffer_write(&want, "prefix", 6);
      CHECK(choreo_msg_encode(&f, &got) == 0);
      reference_encode(&f, &want);
      CHECK(got.size == want.size && memcmp(got.data, want.data, got.size) == 0);
      choreo_msg m;
      CHECK(choreo_msg_decode(got.data + 6, got.size - 6, &m) == 0);
      CHECK(m.streamversion == f.streamversion && m.seq == f.seq &&
            m.expectedversion == (j % 4 == 0 ? seqs[j] - 1 : -1));
      if (j == 0) CHECK((unsigned char)got.data[6] == 0x8d); /* a fixmap of 13 */
    }
  }
  msgpack_sbuffer_destroy(&got);
  msgpack_sbuffer_destroy(&want);
}

/* Every attribute at once: fourteen written (the id is derived), all read back. */
static void test_msg_with_every_attribute(void) {
  const char data[] = {(char)0x81, (char)0xa1, 'k', 0x01};
  choreo_msg_fields f = {.source = "a", .type = "T", .kind = "command", .to = "b", .time = TIME,
                         .seq = 9, .subject = "Account/1", .correlationid = "c",
                         .causationid = "a/8", .traceparent = TRACEPARENT, .data = data,
                         .data_len = sizeof data, .dataschema = "v2", .streamversion = 3,
                         .has_expectedversion = true, .expectedversion = 2};
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  CHECK(choreo_msg_encode(&f, &buf) == 0);
  CHECK((unsigned char)buf.data[0] == 0x8e);
  choreo_msg m;
  CHECK(choreo_msg_decode(buf.data, buf.size, &m) == 0);
  CHECK(choreo_str_eq(m.subject, "Account/1") && choreo_str_eq(m.dataschema, "v2") &&
        choreo_str_eq(m.to, "b") && m.streamversion == 3 && m.expectedversion == 2 &&
        m.data_len == sizeof data && choreo_str_eq(m.id, "a/9"));
  msgpack_sbuffer_destroy(&buf);
}

/* A stream's event and a command with the version its sender saw: the extensions come back,
 * a message without them reads as "none", and what cannot be a version is refused both ways. */
static void test_msg_event_sourcing_extensions(void) {
  msgpack_sbuffer buf;
  choreo_msg m;
  msgpack_sbuffer_init(&buf);
  choreo_msg_fields f = {.source = "bank", .type = "Deposited", .kind = "event",
                         .subject = "Account/42", .seq = 9, .dataschema = "v2",
                         .streamversion = 5};
  CHECK(choreo_msg_encode(&f, &buf) == 0);
  CHECK(choreo_msg_decode(buf.data, buf.size, &m) == 0);
  CHECK(choreo_str_eq(m.subject, "Account/42") && choreo_str_eq(m.dataschema, "v2"));
  CHECK(m.streamversion == 5 && m.expectedversion == -1);

  msgpack_sbuffer_clear(&buf);
  f = (choreo_msg_fields){.source = "teller", .type = "Deposit", .kind = "command", .to = "bank",
                          .subject = "Account/42", .seq = 3, .has_expectedversion = true,
                          .expectedversion = 0};
  CHECK(choreo_msg_encode(&f, &buf) == 0);
  CHECK(choreo_msg_decode(buf.data, buf.size, &m) == 0);
  CHECK(m.expectedversion == 0 && m.streamversion == 0 && m.dataschema.p == NULL);

  f.expectedversion = -1;
  CHECK(choreo_msg_encode(&f, &buf) == CHOREO_EINVAL);
  f.has_expectedversion = false;
  f.streamversion = -2;
  CHECK(choreo_msg_encode(&f, &buf) == CHOREO_EINVAL);

  /* On the wire: a stream version of 0, or a negative expected one, is not a message. */
  const char *bad[] = {"streamversion", "expectedversion"};
  for (int i = 0; i < 2; i++) {
    msgpack_sbuffer_clear(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "source", 6);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_str_with_body(&pk, "T", 1);
    msgpack_pack_str_with_body(&pk, "kind", 4);
    msgpack_pack_str_with_body(&pk, "event", 5);
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_int64(&pk, 1);
    msgpack_pack_str_with_body(&pk, bad[i], strlen(bad[i]));
    msgpack_pack_int64(&pk, i == 0 ? 0 : -1);
    CHECK(choreo_msg_decode(buf.data, buf.size, &m) == CHOREO_EINVAL);
  }
  msgpack_sbuffer_destroy(&buf);
}

static void test_msg_minimal(void) {
  msgpack_sbuffer buf;
  msgpack_unpacked u;
  choreo_msg m;
  msgpack_sbuffer_init(&buf);
  msgpack_unpacked_init(&u);
  /* No time (means now), no data, and an empty subject, which counts as absent. */
  choreo_msg_fields f = {.source = "billing", .type = "Paid", .kind = "event", .subject = "",
                         .seq = 1};
  CHECK(choreo_msg_encode(&f, &buf) == 0);
  CHECK(choreo_msg_decode(buf.data, buf.size, &m) == 0);
  CHECK(choreo_str_eq(m.id, "billing/1"));
  CHECK(m.data == NULL);
  CHECK(m.subject.p == NULL && m.subject.n == 0);
  CHECK(m.to.p == NULL && m.correlationid.p == NULL && m.causationid.p == NULL &&
        m.traceparent.p == NULL);
  CHECK(msgpack_unpack_next(&u, buf.data, buf.size, NULL) == MSGPACK_UNPACK_SUCCESS);
  CHECK(u.data.via.map.size == 5 && !map_has_number(&u.data, K_DATA) &&
        !map_has_number(&u.data, K_SUBJECT));
  char time_text[CHOREO_TIME_TEXT];
  choreo_str time = choreo_msg_time(&m, time_text);
  CHECK(time.n == 27 && time.p[4] == '-' && time.p[10] == 'T' && time.p[19] == '.' &&
        time.p[26] == 'Z');
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&buf);
}

static void test_msg_data_values(void) {
  msgpack_sbuffer data, buf;
  msgpack_packer pk;
  msgpack_unpacked u, orig;
  choreo_msg m;
  msgpack_sbuffer_init(&data);
  msgpack_sbuffer_init(&buf);
  msgpack_unpacked_init(&u);
  msgpack_unpacked_init(&orig);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 3);
  msgpack_pack_str_with_body(&pk, "list", 4);
  msgpack_pack_array(&pk, 13);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_int(&pk, -1);
  msgpack_pack_int64(&pk, INT64_MIN);
  msgpack_pack_uint64(&pk, UINT64_MAX);
  msgpack_pack_double(&pk, 1.5);
  msgpack_pack_float(&pk, 0.25f);
  msgpack_pack_str_with_body(&pk, "text", 4);
  msgpack_pack_true(&pk);
  msgpack_pack_false(&pk);
  msgpack_pack_nil(&pk);
  msgpack_pack_array(&pk, 0);
  msgpack_pack_map(&pk, 0);
  msgpack_pack_bin_with_body(&pk, "\0\1", 2);
  msgpack_pack_str_with_body(&pk, "nested", 6);
  msgpack_pack_map(&pk, 1);
  msgpack_pack_str_with_body(&pk, "deeper", 6);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_map(&pk, 1);
  msgpack_pack_int(&pk, 3); /* a non-string key */
  msgpack_pack_str_with_body(&pk, "three", 5);
  msgpack_pack_str_with_body(&pk, "", 0);
  msgpack_pack_str_with_body(&pk, "ext", 3);
  msgpack_pack_ext_with_body(&pk, "abc", 3, 5);

  CHECK(encode(&buf, "orders", 9, data.data, data.size) == 0);
  CHECK(choreo_msg_decode(buf.data, buf.size, &m) == 0);
  CHECK(msgpack_unpack_next(&orig, data.data, data.size, NULL) == MSGPACK_UNPACK_SUCCESS);
  const msgpack_object *d = data_object(&m, &u);
  CHECK(d != NULL && msgpack_object_equal(*d, orig.data));
  if (d != NULL) {
    const msgpack_object *list = &d->via.map.ptr[0].val;
    CHECK(list->type == MSGPACK_OBJECT_ARRAY && list->via.array.size == 13);
    CHECK(list->via.array.ptr[2].type == MSGPACK_OBJECT_NEGATIVE_INTEGER &&
          list->via.array.ptr[2].via.i64 == INT64_MIN);
    CHECK(list->via.array.ptr[3].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
          list->via.array.ptr[3].via.u64 == UINT64_MAX);
    CHECK(list->via.array.ptr[5].type == MSGPACK_OBJECT_FLOAT32 &&
          list->via.array.ptr[5].via.f64 == 0.25);
  }

  /* A lone nil is data too; only NULL/0 means "no data". */
  msgpack_sbuffer_clear(&buf);
  CHECK(encode(&buf, "orders", 10, "\xc0", 1) == 0);
  CHECK(choreo_msg_decode(buf.data, buf.size, &m) == 0);
  d = data_object(&m, &u);
  CHECK(d != NULL && d->type == MSGPACK_OBJECT_NIL && m.data_len == 1);

  msgpack_unpacked_destroy(&orig);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_destroy(&buf);
}

static void test_msg_encode_rejects(void) {
  msgpack_sbuffer buf;
  char deep[64];
  msgpack_sbuffer_init(&buf);
  choreo_msg_fields ok = {.source = "s", .type = "T", .kind = "event", .seq = 1};
  choreo_msg_fields f = ok;
  f.source = NULL;
  CHECK(choreo_msg_encode(&f, &buf) == CHOREO_EINVAL);
  f = ok, f.type = "";
  CHECK(choreo_msg_encode(&f, &buf) == CHOREO_EINVAL);
  f = ok, f.kind = NULL;
  CHECK(choreo_msg_encode(&f, &buf) == CHOREO_EINVAL);
  f = ok, f.seq = 0;
  CHECK(choreo_msg_encode(&f, &buf) == CHOREO_EINVAL);
  f = ok, f.seq = -5;
  CHECK(choreo_msg_encode(&f, &buf) == CHOREO_EINVAL);
  /* a source too long to derive the id from, which readers would refuse */
  char long_source[CHOREO_NAME_MAX + 2];
  memset(long_source, 's', sizeof long_source - 1);
  long_source[sizeof long_source - 1] = '\0';
  f = ok, f.source = long_source;
  CHECK(choreo_msg_encode(&f, &buf) == CHOREO_EINVAL);
  long_source[CHOREO_NAME_MAX] = '\0';
  CHECK(choreo_msg_encode(&f, &buf) == 0);
  buf.size = 0;
  /* data must be exactly one complete value within the depth limit */
  f = ok, f.data = "\x01\x02", f.data_len = 2;
  CHECK(choreo_msg_encode(&f, &buf) == CHOREO_EINVAL);
  f = ok, f.data = "\x92\x01", f.data_len = 2;
  CHECK(choreo_msg_encode(&f, &buf) == CHOREO_EINVAL);
  f = ok, f.data = deep, f.data_len = nested(deep, CHOREO_MAX_DEPTH + 1, false);
  CHECK(choreo_msg_encode(&f, &buf) == CHOREO_EINVAL);
  CHECK(buf.size == 0); /* nothing appended by a failed encode */
  f.data_len = nested(deep, CHOREO_MAX_DEPTH, false);
  CHECK(choreo_msg_encode(&f, &buf) == 0);
  msgpack_sbuffer_destroy(&buf);
}

static int decode_map(msgpack_sbuffer *sb) {
  choreo_msg m;
  int rc = choreo_msg_decode(sb->data, sb->size, &m);
  msgpack_sbuffer_clear(sb);
  return rc;
}

static void test_msg_decode_rejects(void) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  /* The minimum: source, type, kind, seq. Unknown keys, even non-string ones, are ignored. */
  build_map(&sb, 4, "source", 's', "a", "type", 's', "T", "kind", 's', "event", "seq", 'i',
            (int64_t)1);
  CHECK(decode_map(&sb) == 0);
  build_map(&sb, 6, "source", 's', "a", "type", 's', "T", "kind", 's', "event", "seq", 'i',
            (int64_t)1, "future", 'd', 2.5, NULL, 's', "x");
  CHECK(decode_map(&sb) == 0);

  build_map(&sb, 3, "type", 's', "T", "kind", 's', "event", "seq", 'i', (int64_t)1);
  CHECK(decode_map(&sb) == CHOREO_EINVAL); /* no source */
  build_map(&sb, 3, "source", 's', "a", "kind", 's', "event", "seq", 'i', (int64_t)1);
  CHECK(decode_map(&sb) == CHOREO_EINVAL); /* no type */
  build_map(&sb, 3, "source", 's', "a", "type", 's', "T", "seq", 'i', (int64_t)1);
  CHECK(decode_map(&sb) == CHOREO_EINVAL); /* no kind */
  build_map(&sb, 3, "source", 's', "a", "type", 's', "T", "kind", 's', "event");
  CHECK(decode_map(&sb) == CHOREO_EINVAL); /* no seq */
  build_map(&sb, 4, "source", 's', "", "type", 's', "T", "kind", 's', "event", "seq", 'i',
            (int64_t)1);
  CHECK(decode_map(&sb) == CHOREO_EINVAL); /* empty source */
  /* A NUL byte in a name-like attribute: it would read as another name in C. */
  for (int field = 0; field < 3; field++) {
    static const char *const keys[] = {"source", "type", "kind"};
    msgpack_sbuffer_clear(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    for (int k = 0; k < 3; k++) {
      msgpack_pack_str_with_body(&pk, keys[k], strlen(keys[k]));
      msgpack_pack_str_with_body(&pk, k == field ? "a\0b" : "a", k == field ? 3 : 1);
    }
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_int64(&pk, 1);
    CHECK(decode_map(&sb) == CHOREO_EINVAL);
  }

  build_map(&sb, 4, "source", 's', "a", "type", 's', "T", "kind", 's', "event", "seq", 'i',
            (int64_t)0);
  CHECK(decode_map(&sb) == CHOREO_EINVAL);
  build_map(&sb, 4, "source", 's', "a", "type", 's', "T", "kind", 's', "event", "seq", 'i',
            (int64_t)-3);
  CHECK(decode_map(&sb) == CHOREO_EINVAL);
  build_map(&sb, 4, "source", 's', "a", "type", 's', "T", "kind", 's', "event", "seq", 'd', 1.0);
  CHECK(decode_map(&sb) == CHOREO_EINVAL);
  build_map(&sb, 4, "source", 's', "a", "type", 's', "T", "kind", 's', "event", "seq", 's', "1");
  CHECK(decode_map(&sb) == CHOREO_EINVAL);
  build_map(&sb, 4, "source", 's', "a", "type", 's', "T", "kind", 's', "event", "seq", 'u',
            UINT64_MAX);
  CHECK(decode_map(&sb) == CHOREO_EINVAL);

  /* Non-string values for string attributes. */
  build_map(&sb, 4, "source", 's', "a", "type", 'i', (int64_t)5, "kind", 's', "event", "seq", 'i',
            (int64_t)1);
  CHECK(decode_map(&sb) == CHOREO_EINVAL);
  build_map(&sb, 5, "source", 's', "a", "type", 's', "T", "kind", 's', "event", "seq", 'i',
            (int64_t)1, "subject", 'n');
  CHECK(decode_map(&sb) == CHOREO_EINVAL);
  build_map(&sb, 5, "source", 's', "a", "type", 's', "T", "kind", 's', "event", "seq", 'i',
            (int64_t)1, "specversion", 'd', 1.0);
  CHECK(decode_map(&sb) == CHOREO_EINVAL);
  /* As written before 2026-12-03, with the format's constants: read as before. */
  build_map(&sb, 6, "specversion", 's', "1.0", "source", 's', "a", "type", 's', "T",
            "datacontenttype", 's', "application/msgpack", "kind", 's', "event", "seq", 'i',
            (int64_t)1);
  CHECK(decode_map(&sb) == 0);

  /* Not a map; a map followed by a stray byte; nothing at all. */
  msgpack_sbuffer_write(&sb, "\x93\x01\x02\x03", 4);
  CHECK(decode_map(&sb) == CHOREO_EINVAL);
  build_map(&sb, 4, "source", 's', "a", "type", 's', "T", "kind", 's', "event", "seq", 'i',
            (int64_t)1);
  msgpack_sbuffer_write(&sb, "\xc0", 1);
  CHECK(decode_map(&sb) == CHOREO_EINVAL);
  msgpack_unpacked u;
  choreo_msg m;
  msgpack_unpacked_init(&u);
  CHECK(choreo_msg_decode("", 0, &m) == CHOREO_EINVAL);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
}

/* Numbered keys as another writer may put them: any order, mixed with names, an id of its own
 * or none (then "<source>/<seq>", which needs a source short enough to be a name). */
static void test_msg_numbered_keys(void) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  choreo_msg m;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 6);
  msgpack_pack_int(&pk, K_SEQ);
  msgpack_pack_int(&pk, 12);
  msgpack_pack_int(&pk, K_KIND);
  msgpack_pack_str_with_body(&pk, "event", 5);
  msgpack_pack_int(&pk, 16); /* a number no attribute has: skipped */
  msgpack_pack_array(&pk, 1);
  msgpack_pack_nil(&pk);
  msgpack_pack_str_with_body(&pk, "type", 4);
  msgpack_pack_str_with_body(&pk, "T", 1);
  msgpack_pack_int(&pk, 0); /* nor has 0 */
  msgpack_pack_true(&pk);
  msgpack_pack_int(&pk, K_SOURCE);
  msgpack_pack_str_with_body(&pk, "ledger", 6);
  CHECK(choreo_msg_decode(sb.data, sb.size, &m) == 0);
  CHECK(choreo_str_eq(m.id, "ledger/12") && choreo_str_eq(m.type, "T") && m.seq == 12);
  /* A copy borrows the derived id from the original. */
  choreo_msg copy = m;
  CHECK(choreo_str_eq(copy.id, "ledger/12"));

  msgpack_sbuffer_clear(&sb);
  msgpack_pack_map(&pk, 5);
  msgpack_pack_int(&pk, 1); /* the id, by number */
  msgpack_pack_str_with_body(&pk, "x-1", 3);
  msgpack_pack_int(&pk, K_SOURCE);
  msgpack_pack_str_with_body(&pk, "ledger", 6);
  msgpack_pack_int(&pk, K_TYPE);
  msgpack_pack_str_with_body(&pk, "T", 1);
  msgpack_pack_int(&pk, K_KIND);
  msgpack_pack_str_with_body(&pk, "event", 5);
  msgpack_pack_int(&pk, K_SEQ);
  msgpack_pack_str_with_body(&pk, "1", 1); /* a numbered key's value is checked as a named one's */
  CHECK(choreo_msg_decode(sb.data, sb.size, &m) == CHOREO_EINVAL);
  sb.size -= 2;
  msgpack_pack_int(&pk, 1);
  CHECK(choreo_msg_decode(sb.data, sb.size, &m) == 0 && choreo_str_eq(m.id, "x-1"));

  /* No id, and a source of 100 bytes: derived; of 101: no id can be, no message. */
  char source[102];
  memset(source, 's', sizeof source - 1);
  source[sizeof source - 1] = '\0';
  for (size_t n = 100; n <= 101; n++) {
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_int(&pk, K_SOURCE);
    msgpack_pack_str_with_body(&pk, source, n);
    msgpack_pack_int(&pk, K_TYPE);
    msgpack_pack_str_with_body(&pk, "T", 1);
    msgpack_pack_int(&pk, K_KIND);
    msgpack_pack_str_with_body(&pk, "event", 5);
    msgpack_pack_int(&pk, K_SEQ);
    msgpack_pack_int64(&pk, INT64_MAX);
    int rc = choreo_msg_decode(sb.data, sb.size, &m);
    CHECK(n == 100 ? rc == 0 && m.id.n == 100 + 1 + 19 && m.id.p[100] == '/' &&
                         memcmp(m.id.p + 101, "9223372036854775807", 19) == 0
                   : rc == CHOREO_EINVAL);
  }
  msgpack_sbuffer_destroy(&sb);
}

/* A message whose time is `us` microseconds, written as our writers write it: an integer. */
static int decode_with_time(msgpack_sbuffer *sb, uint64_t us, bool negative, choreo_msg *m) {
  msgpack_packer pk;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  msgpack_sbuffer_clear(sb);
  msgpack_pack_map(&pk, 5);
  msgpack_pack_int(&pk, K_SOURCE);
  msgpack_pack_str_with_body(&pk, "ledger", 6);
  msgpack_pack_int(&pk, K_TYPE);
  msgpack_pack_str_with_body(&pk, "T", 1);
  msgpack_pack_int(&pk, K_TIME);
  if (negative)
    msgpack_pack_int64(&pk, -(int64_t)us);
  else
    msgpack_pack_uint64(&pk, us);
  msgpack_pack_int(&pk, K_KIND);
  msgpack_pack_str_with_body(&pk, "event", 5);
  msgpack_pack_int(&pk, K_SEQ);
  msgpack_pack_int(&pk, 3);
  return choreo_msg_decode(sb->data, sb->size, m);
}

/* Our writers stamp a message with microseconds since the epoch; readers hand out the RFC 3339
 * text it stands for, as it was written before, and take text from other writers as it is. */
static void test_msg_time_as_microseconds(void) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  choreo_msg m;
  static const struct {
    uint64_t us;
    const char *text;
  } times[] = {
      {0, "1970-01-01T00:00:00.000000Z"},
      {1764958577123456, "2025-12-05T18:16:17.123456Z"},
      {1764958577000001, "2025-12-05T18:16:17.000001Z"},
      {951782400999999, "2000-02-29T00:00:00.999999Z"},
      {CHOREO_TIME_US_MAX, "9999-12-31T23:59:59.999999Z"},
  };
  for (size_t i = 0; i < sizeof times / sizeof *times; i++) {
    CHECK(decode_with_time(&sb, times[i].us, false, &m) == 0);
    char text[CHOREO_TIME_TEXT];
    /* kept as microseconds, written out when read */
    CHECK(m.time.n == 0 && m.time_us == (int64_t)times[i].us);
    CHECK(choreo_str_eq(choreo_msg_time(&m, text), times[i].text));
    CHECK(choreo_time_format((int64_t)times[i].us, text) == 27);
    CHECK(strcmp(text, times[i].text) == 0);
  }
  /* Past year 9999 no text has four digits for the year; before 1970 our clock never was. */
  CHECK(decode_with_time(&sb, (uint64_t)CHOREO_TIME_US_MAX + 1, false, &m) == CHOREO_EINVAL);
  CHECK(decode_with_time(&sb, UINT64_MAX, false, &m) == CHOREO_EINVAL);
  CHECK(decode_with_time(&sb, 1, true, &m) == CHOREO_EINVAL);

  /* What the encoder writes for "now": key 4, then a uint64, read back within a second. */
  msgpack_sbuffer_clear(&sb);
  choreo_msg_fields f = {.source = "ledger", .type = "T", .kind = "event", .seq = 1};
  int64_t before = choreo_time_now_us();
  CHECK(choreo_msg_encode(&f, &sb) == 0);
  const unsigned char *p = (const unsigned char *)sb.data;
  CHECK(p[0] == 0x85 && p[1] == K_SOURCE && p[9] == K_TYPE && p[12] == K_TIME && p[13] == 0xcf);
  uint64_t us = 0;
  for (int i = 0; i < 8; i++) us = us << 8 | p[14 + i];
  CHECK((int64_t)us >= before && (int64_t)us <= before + 1000000);
  CHECK(choreo_msg_decode(sb.data, sb.size, &m) == 0 && m.time_us == (int64_t)us);
  char text[CHOREO_TIME_TEXT], read[CHOREO_TIME_TEXT];
  choreo_time_format((int64_t)us, text);
  CHECK(choreo_str_eq(choreo_msg_time(&m, read), text));
  /* A time given is written as given, text. */
  msgpack_sbuffer_clear(&sb);
  f.time = "2024-01-01T00:00:00+02:00";
  CHECK(choreo_msg_encode(&f, &sb) == 0 && ((const unsigned char *)sb.data)[13] == (0xa0 | 25));
  CHECK(choreo_msg_decode(sb.data, sb.size, &m) == 0 && choreo_str_eq(m.time, f.time) &&
        m.time_us == -1 && choreo_str_eq(choreo_msg_time(&m, read), f.time));
  msgpack_sbuffer_destroy(&sb);
}

/* A frame of `n` messages with seqs[i] and data [i, "x"]; offsets[i] is where message i starts
 * (offsets[n]: the end). */
static void build_frame(msgpack_sbuffer *out, int64_t first, uint32_t count, const int64_t *seqs,
                        int n, size_t *offsets) {
  CHECK(choreo_frame_header(out, "orders", first, count, first + count + 1) == 0);
  for (int i = 0; i < n; i++) {
    char data[] = {(char)0x92, (char)i, (char)0xa1, 'x'};
    if (offsets) offsets[i] = out->size;
    CHECK(encode(out, "orders", seqs[i], data, sizeof data) == 0);
  }
  if (offsets) offsets[n] = out->size;
}

/* Reads a frame to its end, as a host applying it does: 0 if the header and every message are
 * good, else the first error. Each message is proven as it is read, so a frame is only known
 * good once read whole. On an exactly sized copy, so the sanitizer sees any read past the end. */
static int read_copy(const char *buf, size_t len) {
  char *copy = malloc(len ? len : 1);
  choreo_frame_reader r;
  choreo_msg m;
  memcpy(copy, buf, len);
  int rc = choreo_frame_open(&r, copy, len), next = 0;
  while (rc == 0 && (next = choreo_frame_next(&r, &m)) == 1) {
  }
  if (rc == 0 && next < 0) rc = next;
  choreo_frame_close(&r);
  free(copy);
  return rc;
}

static void test_frame_round_trip(void) {
  static const int64_t seqs[] = {5, 6, 7};
  size_t offsets[4];
  msgpack_sbuffer sb;
  choreo_frame_reader r;
  choreo_msg m;
  msgpack_sbuffer_init(&sb);
  build_frame(&sb, 5, 3, seqs, 3, offsets);

  CHECK(choreo_frame_open(&r, sb.data, sb.size) == 0);
  CHECK(choreo_str_eq(r.source, "orders"));
  CHECK(r.first == 5 && r.count == 3 && r.head == 9);
  for (int i = 0; i < 3; i++) {
    CHECK(choreo_frame_next(&r, &m) == 1);
    CHECK(m.seq == seqs[i] && choreo_str_eq(m.source, "orders"));
    CHECK(m.raw == sb.data + offsets[i] && m.raw_len == offsets[i + 1] - offsets[i]);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *d = data_object(&m, &u);
    CHECK(d && d->type == MSGPACK_OBJECT_ARRAY && d->via.array.ptr[0].via.u64 == (uint64_t)i);
    msgpack_unpacked_destroy(&u);
  }
  CHECK(choreo_frame_next(&r, &m) == 0);
  CHECK(choreo_frame_next(&r, &m) == 0);
  choreo_frame_close(&r);
  choreo_frame_close(&r); /* closing twice is harmless */

  /* A header alone is a valid empty frame. */
  msgpack_sbuffer_clear(&sb);
  CHECK(choreo_frame_header(&sb, "orders", 10, 0, 9) == 0);
  CHECK(choreo_frame_open(&r, sb.data, sb.size) == 0);
  CHECK(choreo_frame_next(&r, &m) == 0);
  choreo_frame_close(&r);

  CHECK(choreo_frame_header(&sb, NULL, 1, 0, 0) == CHOREO_EINVAL);
  CHECK(choreo_frame_header(&sb, "orders", 0, 0, 0) == CHOREO_EINVAL);
  CHECK(choreo_frame_header(&sb, "orders", 1, 0, -1) == CHOREO_EINVAL);
  CHECK(choreo_frame_header(&sb, "orders", INT64_MAX, 2, 0) == CHOREO_EINVAL);
  msgpack_sbuffer_destroy(&sb);
}

/* A sparse frame (a history answer from a trimmed log): ascending seqs up to through, taken
 * only by choreo_frame_open_sparse; a plain frame is taken by it too. */
static void test_sparse_frames(void) {
  msgpack_sbuffer sb;
  choreo_frame_reader r;
  choreo_msg m;
  msgpack_sbuffer_init(&sb);
  char data[] = {(char)0xa1, 'x'};
  CHECK(choreo_frame_header_sparse(&sb, "orders", 3, 3, 40, 20) == 0);
  static const int64_t seqs[] = {4, 9, 20};
  for (int i = 0; i < 3; i++) CHECK(encode(&sb, "orders", seqs[i], data, sizeof data) == 0);
  CHECK(choreo_frame_open(&r, sb.data, sb.size) == CHOREO_EINVAL);
  choreo_frame_close(&r);
  CHECK(choreo_frame_open_sparse(&r, sb.data, sb.size) == 0);
  CHECK(r.sparse && r.first == 3 && r.through == 20 && r.count == 3 && r.head == 40);
  for (int i = 0; i < 3; i++) CHECK(choreo_frame_next(&r, &m) == 1 && m.seq == seqs[i]);
  CHECK(choreo_frame_next(&r, &m) == 0);
  choreo_frame_close(&r);

  /* Out of place: not ascending, past through, before first. */
  static const int64_t bad[][3] = {{4, 4, 9}, {4, 9, 21}, {2, 4, 9}};
  static const int want[][3] = {{1, CHOREO_EINVAL, 1}, {1, 1, CHOREO_EINVAL}, {CHOREO_EINVAL, 1, 1}};
  for (int k = 0; k < 3; k++) {
    msgpack_sbuffer_clear(&sb);
    CHECK(choreo_frame_header_sparse(&sb, "orders", 3, 3, 40, 20) == 0);
    for (int i = 0; i < 3; i++) CHECK(encode(&sb, "orders", bad[k][i], data, sizeof data) == 0);
    CHECK(choreo_frame_open_sparse(&r, sb.data, sb.size) == 0);
    for (int i = 0; i < 3; i++) CHECK(choreo_frame_next(&r, &m) == want[k][i]);
    choreo_frame_close(&r);
  }
  /* through before the messages could end, or absent where six fields are */
  msgpack_sbuffer_clear(&sb);
  CHECK(choreo_frame_header_sparse(&sb, "orders", 3, 3, 40, 4) == CHOREO_EINVAL);
  /* nor past the head of the log it comes from */
  CHECK(choreo_frame_header_sparse(&sb, "orders", 3, 0, 40, 41) == CHOREO_EINVAL);
  CHECK(choreo_frame_open_sparse(&r, "\x96\x01\xa1s\x01\x00\x02\x05", 8) == CHOREO_EINVAL);
  choreo_frame_close(&r);
  CHECK(choreo_frame_open_sparse(&r, "\x96\x01\xa1s\x01\x00\x05\x05", 8) == 0 && r.through == 5);
  choreo_frame_close(&r);
  CHECK(choreo_frame_header_sparse(&sb, "orders", 3, 0, 40, 2) == 0);
  CHECK(choreo_frame_open_sparse(&r, sb.data, sb.size) == 0 && r.through == 2);
  CHECK(choreo_frame_next(&r, &m) == 0);
  choreo_frame_close(&r);

  /* A plain frame, through the sparse door: contiguous as ever. */
  msgpack_sbuffer_clear(&sb);
  CHECK(choreo_frame_header(&sb, "orders", 5, 2, 9) == 0);
  CHECK(encode(&sb, "orders", 5, data, sizeof data) == 0);
  CHECK(encode(&sb, "orders", 7, data, sizeof data) == 0);
  CHECK(choreo_frame_open_sparse(&r, sb.data, sb.size) == 0);
  CHECK(!r.sparse && r.through == 6);
  CHECK(choreo_frame_next(&r, &m) == 1);
  CHECK(choreo_frame_next(&r, &m) == CHOREO_EINVAL);
  choreo_frame_close(&r);

  /* History requests: not FETCH ones, and the other way round; no name. */
  int64_t after = -5;
  choreo_str name;
  msgpack_sbuffer_clear(&sb);
  CHECK(choreo_history_encode(&sb, 42) == 0);
  CHECK(choreo_history_decode(sb.data, sb.size, &after) == 0 && after == 42);
  CHECK(choreo_fetch_decode(sb.data, sb.size, &after, &name) == CHOREO_EINVAL);
  msgpack_sbuffer_clear(&sb);
  CHECK(choreo_fetch_encode(&sb, 42, "tills") == 0);
  CHECK(choreo_history_decode(sb.data, sb.size, &after) == CHOREO_EINVAL);
  msgpack_sbuffer_destroy(&sb);
}

static void test_frame_rejects(void) {
  static const int64_t good[] = {5, 6, 7}, bad[] = {5, 7, 6};
  msgpack_sbuffer sb;
  choreo_frame_reader r;
  choreo_msg m;
  msgpack_sbuffer_init(&sb);

  /* Seq out of order: found message by message, each bad one reported, the rest still read. */
  build_frame(&sb, 5, 3, bad, 3, NULL);
  CHECK(choreo_frame_open(&r, sb.data, sb.size) == 0);
  CHECK(choreo_frame_next(&r, &m) == 1);
  CHECK(choreo_frame_next(&r, &m) == CHOREO_EINVAL);
  CHECK(choreo_frame_next(&r, &m) == CHOREO_EINVAL);
  CHECK(choreo_frame_next(&r, &m) == 0);
  choreo_frame_close(&r);

  /* Header first seq disagrees with the messages. */
  msgpack_sbuffer_clear(&sb);
  build_frame(&sb, 4, 3, good, 3, NULL);
  CHECK(choreo_frame_open(&r, sb.data, sb.size) == 0);
  CHECK(choreo_frame_next(&r, &m) == CHOREO_EINVAL);
  choreo_frame_close(&r);

  /* Count disagrees with what is there, or there is trailing garbage. */
  msgpack_sbuffer_clear(&sb);
  build_frame(&sb, 5, 4, good, 3, NULL);
  CHECK(read_copy(sb.data, sb.size) == CHOREO_EINVAL);
  msgpack_sbuffer_clear(&sb);
  build_frame(&sb, 5, 2, good, 3, NULL);
  CHECK(read_copy(sb.data, sb.size) == CHOREO_EINVAL);
  msgpack_sbuffer_clear(&sb);
  build_frame(&sb, 5, 3, good, 3, NULL);
  CHECK(read_copy(sb.data, sb.size) == 0);
  msgpack_sbuffer_write(&sb, "\xc0", 1);
  CHECK(read_copy(sb.data, sb.size) == CHOREO_EINVAL);
  msgpack_sbuffer_write(&sb, "\x01\x02", 2);
  CHECK(read_copy(sb.data, sb.size) == CHOREO_EINVAL);

  /* Bad headers: wrong version, wrong shape, bad fields. */
  static const struct {
    const char *bytes;
    size_t len;
  } headers[] = {
      {"\x95\x04\xa1s\x01\x00\x00", 7},     /* version 4 */
      {"\x95\x00\xa1s\x01\x00\x00", 7},     /* version 0 */
      {"\x94\x01\xa1s\x01\x00", 6},         /* four fields */
      {"\x96\x01\xa1s\x01\x00\x00\x00", 8}, /* six fields */
      {"\x95\x01\xa0\x01\x00\x00", 6},      /* empty source */
      {"\x95\x01\xa3s\0x\x01\x00\x00", 9}, /* a NUL in the source: "s" to C */
      {"\x95\x01\xa3s/x\x01\x00\x00", 9},   /* a source that is no host name */
      {"\x95\x01\x01\x01\x00\x00", 6},      /* source not a string */
      {"\x95\x01\xa1s\x00\x00\x00", 7},     /* first seq 0 */
      {"\x95\x01\xa1s\xff\x00\x00", 7},     /* first seq -1 */
      {"\x95\x01\xa1s\x01\xff\x00", 7},     /* count -1 */
      {"\x95\x01\xa1s\x01\x00\xff", 7},     /* head -1 */
      {"\x95\x01\xa1s\x01\xcf\x00\x00\x00\x01\x00\x00\x00\x00\x00", 15}, /* count > 2^32 */
      {"\x85\x01\x01\x02\x02\x03\x03\x04\x04\x05\x05", 11},            /* a map */
      {"\x01", 1},                                                          /* a scalar */
  };
  for (size_t i = 0; i < sizeof headers / sizeof *headers; i++)
    CHECK(read_copy(headers[i].bytes, headers[i].len) == CHOREO_EINVAL);
  CHECK(read_copy("\x95\x01\xa1s\x01\x00\x00", 7) == 0); /* well-formed, of every version */
  CHECK(read_copy("\x95\x02\xa1s\x01\x00\x00", 7) == 0);
  CHECK(read_copy("\x95\x03\xa1s\x01\x00\x00", 7) == 0);
  /* The version a refused frame claims, for the log: a newer one is told from garbage. */
  CHECK(choreo_frame_version("\x95\x04\xa1s\x01\x00\x00", 7) == 4);
  CHECK(choreo_frame_version("\x95\x01", 2) == 1);
  CHECK(choreo_frame_version("\xdc\x00\x05\xcd\x01\x00", 6) == 256); /* array16 */
  CHECK(choreo_frame_version("\xdc\x00\x05", 3) == -1);                 /* cut after the count */
  CHECK(choreo_frame_version("\xdc\x00\x00\x01", 4) == -1);            /* empty array16 */
  CHECK(choreo_frame_version("\x90\x01", 2) == -1);                      /* empty fixarray */
  CHECK(choreo_frame_version("\x95\xff", 2) == -1);                      /* negative */
  CHECK(choreo_frame_version("\x95\xa1s", 3) == -1);                     /* not a number */
  CHECK(choreo_frame_version("\x85\x01\x01", 3) == -1);                 /* a map */
  CHECK(choreo_frame_version("\x95", 1) == -1 && choreo_frame_version("", 0) == -1);
  CHECK(choreo_frame_version(NULL, 5) == -1);

  /* A message that is well-formed msgpack but no message. */
  msgpack_sbuffer_clear(&sb);
  CHECK(choreo_frame_header(&sb, "orders", 1, 1, 1) == 0);
  msgpack_sbuffer_write(&sb, "\x01", 1);
  CHECK(choreo_frame_open(&r, sb.data, sb.size) == 0);
  CHECK(choreo_frame_next(&r, &m) == CHOREO_EINVAL);
  CHECK(choreo_frame_next(&r, &m) == 0);
  choreo_frame_close(&r);

  /* Too large, whatever it holds. */
  char *huge = calloc(1, CHOREO_MAX_FRAME + 1);
  CHECK(choreo_frame_open(&r, huge, CHOREO_MAX_FRAME + 1) == CHOREO_ETOOBIG);
  choreo_frame_close(&r);
  free(huge);
  msgpack_sbuffer_destroy(&sb);
}

static void test_truncated(void) {
  static const int64_t seqs[] = {5, 6, 7};
  size_t offsets[4];
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  build_frame(&sb, 5, 3, seqs, 3, offsets);
  for (size_t len = 0; len < sb.size; len++) CHECK(read_copy(sb.data, len) == CHOREO_EINVAL);
  CHECK(read_copy(sb.data, sb.size) == 0);

  /* Every prefix of a single message, too. */
  const char *msg = sb.data + offsets[1];
  size_t msg_len = offsets[2] - offsets[1];
  choreo_msg m;
  for (size_t len = 0; len < msg_len; len++) {
    char *copy = malloc(len ? len : 1);
    memcpy(copy, msg, len);
    CHECK(choreo_msgpack_check(copy, len, 1, CHOREO_MAX_DEPTH + 1) == CHOREO_EINVAL);
    CHECK(choreo_msg_decode(copy, len, &m) == CHOREO_EINVAL);
    free(copy);
  }
  CHECK(choreo_msg_decode(msg, msg_len, &m) == 0 && m.seq == 6);
  msgpack_sbuffer_destroy(&sb);
}

/* One object of every msgpack format, each spelled out byte by byte. */
static const struct {
  const char *bytes;
  size_t len;
  msgpack_object_type type;
} every_format[] = {
    {"\x05", 1, MSGPACK_OBJECT_POSITIVE_INTEGER},         /* positive fixint */
    {"\xe0", 1, MSGPACK_OBJECT_NEGATIVE_INTEGER},         /* negative fixint */
    {"\xc0", 1, MSGPACK_OBJECT_NIL},
    {"\xc2", 1, MSGPACK_OBJECT_BOOLEAN},
    {"\xc3", 1, MSGPACK_OBJECT_BOOLEAN},
    {"\xca\x3e\x80\x00\x00", 5, MSGPACK_OBJECT_FLOAT32},
    {"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 9, MSGPACK_OBJECT_FLOAT64},
    {"\xcc\xff", 2, MSGPACK_OBJECT_POSITIVE_INTEGER},
    {"\xcd\xff\xff", 3, MSGPACK_OBJECT_POSITIVE_INTEGER},
    {"\xce\xff\xff\xff\xff", 5, MSGPACK_OBJECT_POSITIVE_INTEGER},
    {"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, MSGPACK_OBJECT_POSITIVE_INTEGER},
    {"\xd0\x80", 2, MSGPACK_OBJECT_NEGATIVE_INTEGER},
    {"\xd1\x80\x00", 3, MSGPACK_OBJECT_NEGATIVE_INTEGER},
    {"\xd2\x80\x00\x00\x00", 5, MSGPACK_OBJECT_NEGATIVE_INTEGER},
    {"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, MSGPACK_OBJECT_NEGATIVE_INTEGER},
    {"\xa3" "abc", 4, MSGPACK_OBJECT_STR},                /* fixstr */
    {"\xd9\x02" "hi", 4, MSGPACK_OBJECT_STR},
    {"\xda\x00\x01" "x", 4, MSGPACK_OBJECT_STR},
    {"\xdb\x00\x00\x00\x01" "y", 6, MSGPACK_OBJECT_STR},
    {"\xc4\x01\xff", 3, MSGPACK_OBJECT_BIN},
    {"\xc5\x00\x02\x01\x02", 5, MSGPACK_OBJECT_BIN},
    {"\xc6\x00\x00\x00\x01\x00", 6, MSGPACK_OBJECT_BIN},
    {"\xd4\x01\xaa", 3, MSGPACK_OBJECT_EXT},              /* fixext 1, 2, 4, 8, 16 */
    {"\xd5\x01\xaa\xbb", 4, MSGPACK_OBJECT_EXT},
    {"\xd6\x01" "abcd", 6, MSGPACK_OBJECT_EXT},
    {"\xd7\x01" "abcdefgh", 10, MSGPACK_OBJECT_EXT},
    {"\xd8\x01" "abcdefghijklmnop", 18, MSGPACK_OBJECT_EXT},
    {"\xc7\x02\x01" "ab", 5, MSGPACK_OBJECT_EXT},
    {"\xc8\x00\x01\x01" "a", 5, MSGPACK_OBJECT_EXT},
    {"\xc9\x00\x00\x00\x01\x01" "a", 7, MSGPACK_OBJECT_EXT},
    {"\x92\x01\x02", 3, MSGPACK_OBJECT_ARRAY},            /* fixarray */
    {"\xdc\x00\x01\xc0", 4, MSGPACK_OBJECT_ARRAY},
    {"\xdd\x00\x00\x00\x02\xc0\xc0", 7, MSGPACK_OBJECT_ARRAY},
    {"\x81\xa1k\x01", 4, MSGPACK_OBJECT_MAP},             /* fixmap */
    {"\xde\x00\x01\x01\x02", 5, MSGPACK_OBJECT_MAP},
    {"\xdf\x00\x00\x00\x01\xc0\xc0", 7, MSGPACK_OBJECT_MAP},
    {"\x90", 1, MSGPACK_OBJECT_ARRAY},
    {"\x80", 1, MSGPACK_OBJECT_MAP},
};
#define EVERY_FORMAT (sizeof every_format / sizeof *every_format)

static void test_every_format(void) {
  msgpack_sbuffer all;
  msgpack_unpacked u;
  msgpack_sbuffer_init(&all);
  msgpack_unpacked_init(&u);
  for (size_t i = 0; i < EVERY_FORMAT; i++) {
    size_t off = 0;
    CHECK(choreo_msgpack_check(every_format[i].bytes, every_format[i].len, 1, 1) == 0);
    CHECK(msgpack_unpack_next(&u, every_format[i].bytes, every_format[i].len, &off) ==
          MSGPACK_UNPACK_SUCCESS);
    CHECK(off == every_format[i].len && u.data.type == every_format[i].type);
    for (size_t len = 0; len < every_format[i].len; len++)
      CHECK(choreo_msgpack_check(every_format[i].bytes, len, 1, 1) == CHOREO_EINVAL);
    msgpack_sbuffer_write(&all, every_format[i].bytes, every_format[i].len);
  }
  /* All of them in a row: exactly that many, any number, but not one more or fewer. */
  CHECK(choreo_msgpack_check(all.data, all.size, EVERY_FORMAT, 1) == 0);
  CHECK(choreo_msgpack_check(all.data, all.size, 0, 1) == 0);
  CHECK(choreo_msgpack_check(all.data, all.size, EVERY_FORMAT - 1, 1) == CHOREO_EINVAL);
  CHECK(choreo_msgpack_check(all.data, all.size, EVERY_FORMAT + 1, 1) == CHOREO_EINVAL);
  for (size_t len = 0; len < all.size; len++)
    CHECK(choreo_msgpack_check(all.data, len, EVERY_FORMAT, 1) == CHOREO_EINVAL);
  CHECK(choreo_msgpack_check("\xc1", 1, 0, 1) == CHOREO_EINVAL); /* the unused type byte */
  CHECK(choreo_msgpack_check("", 0, 0, 1) == CHOREO_EINVAL);
  CHECK(choreo_msgpack_check(NULL, 0, 0, 1) == CHOREO_EINVAL);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&all);
}

static void test_huge_claims(void) {
  /* Headers that claim far more than is there, followed by a little real content. */
  static const struct {
    const char *bytes;
    size_t len;
  } claims[] = {
      {"\xdd\xff\xff\xff\xff", 5},                       /* array32 of 4294967295 */
      {"\xdd\xff\xff\xff\xff\xc0\xc0\xc0\xc0", 9},
      {"\xdf\xff\xff\xff\xff\xc0\xc0", 7},               /* map32 */
      {"\xdb\xff\xff\xff\xff" "abc", 8},                 /* str32 of 4 GiB */
      {"\xc6\xff\xff\xff\xff" "abc", 8},                 /* bin32 */
      {"\xc9\xff\xff\xff\xff\x01" "abc", 9},             /* ext32 */
      {"\xdc\xff\xff\xc0", 4},                           /* array16 */
      {"\x93\x01\x02", 3},                               /* fixarray of 3 holding 2 */
      {"\x82\x01\x02\x03", 4},                           /* fixmap: 2 entries need 4 objects */
      {"\xde\x00\x02\x01\x02\x03", 6},
  };
  choreo_msg m;
  for (size_t i = 0; i < sizeof claims / sizeof *claims; i++) {
    CHECK(choreo_msgpack_check(claims[i].bytes, claims[i].len, 0, CHOREO_MAX_DEPTH) ==
          CHOREO_EINVAL);
    CHECK(choreo_msg_decode(claims[i].bytes, claims[i].len, &m) == CHOREO_EINVAL);
    CHECK(read_copy(claims[i].bytes, claims[i].len) == CHOREO_EINVAL);
  }
  /* A frame header claiming 4294967295 messages while three follow. */
  static const int64_t seqs[] = {1, 2, 3};
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  build_frame(&sb, 1, UINT32_MAX, seqs, 3, NULL);
  CHECK(read_copy(sb.data, sb.size) == CHOREO_EINVAL);
  msgpack_sbuffer_destroy(&sb);
}

static void test_depth(void) {
  char buf[128];
  size_t n;
  for (int empty = 0; empty <= 1; empty++) {
    n = nested(buf, 30, empty);
    CHECK(choreo_msgpack_check(buf, n, 1, 30) == 0);
    n = nested(buf, 31, empty);
    CHECK(choreo_msgpack_check(buf, n, 1, 30) == CHOREO_EINVAL);
    CHECK(choreo_msgpack_check(buf, n, 1, 31) == 0);
  }
  /* Maps count the same: {"k": {"k": ... 1}} */
  n = 0;
  for (int i = 0; i < 31; i++) buf[n++] = (char)0x81, buf[n++] = (char)0xa1, buf[n++] = 'k';
  buf[n++] = 0x01;
  CHECK(choreo_msgpack_check(buf, n, 1, 30) == CHOREO_EINVAL);
  CHECK(choreo_msgpack_check(buf + 3, n - 3, 1, 30) == 0);
  /* Depth 0 allows scalars only; [] is depth 1. */
  CHECK(choreo_msgpack_check("\x01", 1, 1, 0) == 0);
  CHECK(choreo_msgpack_check("\x90", 1, 1, 0) == CHOREO_EINVAL);
  CHECK(choreo_msgpack_check("\x90", 1, 1, 1) == 0);
  CHECK(choreo_msgpack_check("\x91\x90", 2, 1, 1) == CHOREO_EINVAL);
  /* Siblings do not add up: [[1], [1]] is depth 2. */
  CHECK(choreo_msgpack_check("\x92\x91\x01\x91\x01", 5, 1, 2) == 0);
  CHECK(choreo_msgpack_check("\x01", 1, 1, -1) == CHOREO_EINVAL);
  CHECK(choreo_msgpack_check("\x01", 1, 1, 33) == CHOREO_EINVAL);

  /* The limit of 32 is msgpack-c's: it unpacks 32 levels and refuses 33. */
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  n = nested(buf, 32, false);
  CHECK(choreo_msgpack_check(buf, n, 1, 32) == 0);
  CHECK(msgpack_unpack_next(&u, buf, n, NULL) == MSGPACK_UNPACK_SUCCESS);
  n = nested(buf, 33, false);
  CHECK(choreo_msgpack_check(buf, n, 1, 32) == CHOREO_EINVAL);
  CHECK(msgpack_unpack_next(&u, buf, n, NULL) != MSGPACK_UNPACK_SUCCESS);

  /* A message is one level more than its data: data at the limit decodes. */
  msgpack_sbuffer sb;
  choreo_msg m;
  msgpack_sbuffer_init(&sb);
  n = nested(buf, CHOREO_MAX_DEPTH, false);
  CHECK(encode(&sb, "orders", 1, buf, n) == 0);
  CHECK(choreo_msg_decode(sb.data, sb.size, &m) == 0);
  /* Hand-built, one level deeper than any encoder would write: refused. */
  msgpack_sbuffer_clear(&sb);
  build_map(&sb, 4, "source", 's', "a", "type", 's', "T", "kind", 's', "event", "seq", 'i',
            (int64_t)1);
  sb.data[0] = (char)0x85; /* one more entry: data */
  msgpack_sbuffer_write(&sb, "\xa4" "data", 5);
  n = nested(buf, CHOREO_MAX_DEPTH + 1, false);
  msgpack_sbuffer_write(&sb, buf, n);
  CHECK(choreo_msg_decode(sb.data, sb.size, &m) == CHOREO_EINVAL);
  msgpack_sbuffer_destroy(&sb);
  msgpack_unpacked_destroy(&u);
}

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

/* Runs every decoder over buf[0..len): none may crash, each must give the same answer twice,
 * and whatever the walker accepts, msgpack-c must decode completely. Returns whether the frame
 * opened. */
static bool fuzz_one(const char *buf, size_t len) {
  int rc = choreo_msgpack_check(buf, len, 0, CHOREO_MAX_DEPTH);
  CHECK(rc == choreo_msgpack_check(buf, len, 0, CHOREO_MAX_DEPTH));
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  if (rc == 0) {
    size_t off = 0;
    while (off < len) {
      size_t before = off;
      if (msgpack_unpack_next(&u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off == before) {
        CHECK(!"msgpack-c refused what the walker accepted");
        break;
      }
    }
  }

  choreo_msg m;
  rc = choreo_msg_decode(buf, len, &m);
  CHECK(rc == 0 || rc == CHOREO_EINVAL);
  CHECK(rc == choreo_msg_decode(buf, len, &m));
  if (rc == 0) CHECK(m.source.n > 0 && m.seq >= 1 && m.raw_len == len);

  choreo_frame_reader r;
  rc = choreo_frame_open(&r, buf, len);
  CHECK(rc == 0 || rc == CHOREO_EINVAL);
  int whole = rc; /* the first error reading it to its end */
  if (rc == 0) {
    uint32_t seen = 0;
    int next;
    while ((next = choreo_frame_next(&r, &m)) != 0) {
      CHECK(next == 1 || next == CHOREO_EINVAL);
      if (next == 1) CHECK(m.seq == r.first + seen && m.raw >= buf && m.raw + m.raw_len <= buf + len);
      if (next < 0 && whole == 0) whole = next;
      seen++;
    }
    CHECK(seen == r.count);
  }
  choreo_frame_close(&r);
  CHECK(whole == read_copy(buf, len));
  msgpack_unpacked_destroy(&u);
  return rc == 0;
}

static void test_random_bytes(void) {
  /* Pure noise, mostly short, with headers chosen often enough to build structures. */
  for (int i = 0; i < 10000; i++) {
    size_t len = rng() % (i % 10 ? 32 : 512);
    char *buf = malloc(len ? len : 1);
    for (size_t j = 0; j < len; j++) {
      uint64_t x = rng();
      buf[j] = x % 4 ? (char)(x >> 8) : "\x90\x91\x92\x80\x81\xa1\xc0\x01\xdc\xdd"[(x >> 8) % 10];
    }
    fuzz_one(buf, len);
    free(buf);
  }

  /* Valid frames with a few bytes changed, or cut short, or extended. */
  static const int64_t seqs[] = {5, 6, 7};
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  build_frame(&sb, 5, 3, seqs, 3, NULL);
  int opened = 0;
  for (int i = 0; i < 10000; i++) {
    size_t len = sb.size;
    switch (rng() % 4) {
    case 0: len = rng() % sb.size; break;
    case 1: len = sb.size + rng() % 8; break;
    default: break;
    }
    char *buf = malloc(len ? len : 1);
    for (size_t j = 0; j < len; j++) buf[j] = j < sb.size ? sb.data[j] : (char)rng();
    for (int k = (int)(rng() % 4); k > 0 && len > 0; k--) buf[rng() % len] = (char)rng();
    opened += fuzz_one(buf, len);
    free(buf);
  }
  CHECK(opened > 100); /* the mutations left enough frames intact to reach frame_next */

  /* Single messages with a byte or two changed. */
  msgpack_sbuffer_clear(&sb);
  CHECK(encode(&sb, "orders", 12, "\x82\xa1" "a\x01\xa1" "b\x92\xc3\xa0", 9) == 0);
  int decoded = 0;
  for (int i = 0; i < 5000; i++) {
    char *buf = malloc(sb.size);
    memcpy(buf, sb.data, sb.size);
    for (int k = 1 + (int)(rng() % 2); k > 0; k--) buf[rng() % sb.size] = (char)rng();
    choreo_msg m;
    decoded += choreo_msg_decode(buf, sb.size, &m) == 0;
    fuzz_one(buf, sb.size);
    free(buf);
  }
  CHECK(decoded > 100);
  msgpack_sbuffer_destroy(&sb);
}

static void test_helpers(void) {
  char small[8], now[32];
  CHECK(choreo_str_eq((choreo_str){NULL, 0}, ""));
  CHECK(choreo_str_eq((choreo_str){"abc", 3}, "abc"));
  CHECK(!choreo_str_eq((choreo_str){"abc", 2}, "abc"));
  CHECK(!choreo_str_eq((choreo_str){"abc", 3}, "abd"));
  choreo_time_now(now, sizeof now);
  CHECK(strlen(now) == 27 && now[26] == 'Z' && strncmp(now, "20", 2) == 0);
  choreo_time_now(small, sizeof small); /* truncates, stays terminated */
  CHECK(strlen(small) == 7);
  for (int e = CHOREO_ETOOBIG; e <= CHOREO_OK; e++)
    CHECK(strcmp(choreo_strerror(e), choreo_strerror(1)) != 0);
}

/* choreo_bytes_eq against memcmp: every length up to 40 (its byte, 4-byte and 8-byte paths and
 * their overlapping tails), at unaligned offsets, a difference at each position in turn. */
static void test_bytes_eq(void) {
  char a[64], b[64];
  for (size_t i = 0; i < sizeof a; i++) a[i] = b[i] = (char)('a' + i % 26);
  CHECK(choreo_bytes_eq(NULL, NULL, 0));
  for (size_t off = 0; off < 3; off++) {
    for (size_t n = 0; n <= 40; n++) {
      CHECK(choreo_bytes_eq(a + off, b + off, n));
      for (size_t at = 0; at < n; at++) {
        b[off + at] ^= 0x20;
        CHECK(!choreo_bytes_eq(a + off, b + off, n));
        CHECK(memcmp(a + off, b + off, n) != 0);
        b[off + at] ^= 0x20;
      }
      b[off + n] ^= 0x20; /* past the end: not compared */
      CHECK(choreo_bytes_eq(a + off, b + off, n));
      b[off + n] ^= 0x20;
    }
  }
}

/* FETCH requests: ["fetch", after]. Past INT64_MAX is past any log (answered with the head,
 * never read as negative); a negative number asks for the name and head only. */
static void test_fetch_requests(void) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  int64_t after = -99;
  choreo_str name;
  CHECK(choreo_fetch_encode(&sb, 41, "orders") == 0);
  CHECK(choreo_fetch_decode(sb.data, sb.size, &after, &name) == 0 && after == 41);
  CHECK(choreo_str_eq(name, "orders")); /* who asks: retention keeps what it still needs */
  msgpack_sbuffer_clear(&sb);
  CHECK(choreo_fetch_encode(&sb, -7, NULL) == 0);
  CHECK(choreo_fetch_decode(sb.data, sb.size, &after, &name) == 0 && after == -1);
  CHECK(name.n == 0); /* older hosts send no name */

  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  uint64_t huge[] = {(uint64_t)INT64_MAX + 1, UINT64_MAX};
  for (int i = 0; i < 2; i++) {
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_str_with_body(&pk, "fetch", 5);
    msgpack_pack_uint64(&pk, huge[i]);
    CHECK(choreo_fetch_decode(sb.data, sb.size, &after, &name) == 0 && after == INT64_MAX);
  }
  /* Anything else is refused. */
  msgpack_sbuffer_clear(&sb);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_str_with_body(&pk, "fetch", 5);
  msgpack_pack_str_with_body(&pk, "1", 1);
  CHECK(choreo_fetch_decode(sb.data, sb.size, &after, &name) == CHOREO_EINVAL);
  msgpack_sbuffer_clear(&sb);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_str_with_body(&pk, "fetcH", 5);
  msgpack_pack_int64(&pk, 1);
  CHECK(choreo_fetch_decode(sb.data, sb.size, &after, &name) == CHOREO_EINVAL);
  msgpack_sbuffer_clear(&sb);
  msgpack_pack_array(&pk, 3);
  msgpack_pack_str_with_body(&pk, "fetch", 5);
  msgpack_pack_int64(&pk, 1);
  msgpack_pack_int64(&pk, 1);
  CHECK(choreo_fetch_decode(sb.data, sb.size, &after, &name) == CHOREO_EINVAL);
  CHECK(choreo_fetch_decode(sb.data, 3, &after, &name) == CHOREO_EINVAL); /* truncated */
  msgpack_sbuffer_destroy(&sb);
}

int main(void) {
  RUN(test_msg_with_every_attribute);
  RUN(test_fetch_requests);
  RUN(test_msg_round_trip);
  RUN(test_msg_minimal);
  RUN(test_msg_event_sourcing_extensions);
  RUN(test_msg_encoding_is_msgpack_cs);
  RUN(test_msg_data_values);
  RUN(test_msg_encode_rejects);
  RUN(test_msg_decode_rejects);
  RUN(test_msg_numbered_keys);
  RUN(test_msg_time_as_microseconds);
  RUN(test_frame_round_trip);
  RUN(test_frame_rejects);
  RUN(test_sparse_frames);
  RUN(test_truncated);
  RUN(test_every_format);
  RUN(test_huge_claims);
  RUN(test_depth);
  RUN(test_random_bytes);
  RUN(test_helpers);
  RUN(test_bytes_eq);
  return CHECK_DONE();
}
