/* The wire codec (docs/ARCHITECTURE.md, The wire): messages as msgpack maps keyed by numbered
 * CloudEvents attributes, frames as a header array followed by contiguous messages, and the
 * structure walker that vets every byte from the network before msgpack-c sees it.
 *
 * msgpack-c's C unpacker trusts the lengths it reads: an array header claiming 4 billion
 * elements makes it allocate 4 billion objects before it notices the input is short, and
 * nesting deeper than its fixed 32-level stack is a parse error only after work is done.
 * So every entry point that hands bytes to msgpack-c first runs codec_check_one() over them,
 * which proves that each claimed length fits in what is actually there; msgpack-c then only
 * ever sees well-formed input and allocates at most a small multiple of the input size.
 * Messages never reach msgpack-c: codec_msg_scan reads them in place, checking each length
 * itself, and hands what it does not read (the data) to codec_check_one. */
#include "codec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "choreo.h"
#include "clock.h"
#include "mpput.h"

/* msgpack-c's MSGPACK_EMBED_STACK_SIZE (unpack_define.h, not exported by <msgpack.h>): nothing
 * nested deeper can be unpacked, so checking deeper would only approve undecodable input. */
#define CODEC_MAX_LEVELS 32

/* What one msgpack type byte announces: its kind, how many bytes its big-endian length field
 * takes (0: none, the byte itself gives `n`), header bytes after that field (an ext's type),
 * and `n`, the payload bytes or container elements the byte gives. One lookup per object
 * instead of a chain of comparisons: the walk below runs over every byte that comes in. */
enum { CODEC_INVALID, CODEC_SCALAR, CODEC_ARRAY, CODEC_MAP };

typedef struct codec_type {
  unsigned char kind, width, after, n;
} codec_type;

#define CODEC_IN(b, lo, hi) ((b) >= (lo) && (b) <= (hi))
/* 2^(b - lo) for b in lo..lo+4, without a shift: compilers warn of the negative shifts that
 * the other bytes would bring into the branches not taken. */
#define CODEC_POW2(b, lo)                                                                     \
  ((b) == (lo) ? 1 : (b) == (lo) + 1 ? 2 : (b) == (lo) + 2 ? 4 : (b) == (lo) + 3 ? 8 : 16)
#define CODEC_KIND(b)                                                                         \
  ((b) == 0xc1 ? CODEC_INVALID /* never used */                                               \
   : CODEC_IN(b, 0x80, 0x8f) || (b) == 0xde || (b) == 0xdf ? CODEC_MAP                        \
   : CODEC_IN(b, 0x90, 0x9f) || (b) == 0xdc || (b) == 0xdd ? CODEC_ARRAY                      \
                                                           : CODEC_SCALAR)
#define CODEC_WIDTH(b)                                                                        \
  (CODEC_IN(b, 0xc4, 0xc6)   ? CODEC_POW2(b, 0xc4) /* bin */                                  \
   : CODEC_IN(b, 0xc7, 0xc9) ? CODEC_POW2(b, 0xc7) /* ext */                                  \
   : CODEC_IN(b, 0xd9, 0xdb) ? CODEC_POW2(b, 0xd9) /* str */                                  \
   : CODEC_IN(b, 0xdc, 0xdd) ? 2 * CODEC_POW2(b, 0xdc) /* array */                            \
   : CODEC_IN(b, 0xde, 0xdf) ? 2 * CODEC_POW2(b, 0xde) /* map */                              \
                             : 0)
#define CODEC_N(b)                                                                            \
  (CODEC_IN(b, 0x80, 0x9f)   ? (b) & 0x0f /* fixmap, fixarray */                              \
   : CODEC_IN(b, 0xa0, 0xbf) ? (b) & 0x1f /* fixstr */                                        \
   : (b) == 0xca             ? 4                                                              \
   : (b) == 0xcb             ? 8                                                              \
   : CODEC_IN(b, 0xcc, 0xcf) ? CODEC_POW2(b, 0xcc)                                            \
   : CODEC_IN(b, 0xd0, 0xd3) ? CODEC_POW2(b, 0xd0)                                            \
   : CODEC_IN(b, 0xd4, 0xd8) ? 1 + CODEC_POW2(b, 0xd4) /* fixext */                           \
                             : 0)
#define CODEC_T(b) {CODEC_KIND(b), CODEC_WIDTH(b), CODEC_IN(b, 0xc7, 0xc9), CODEC_N(b)}
#define CODEC_T4(b) CODEC_T(b), CODEC_T((b) + 1), CODEC_T((b) + 2), CODEC_T((b) + 3)
#define CODEC_T16(b) CODEC_T4(b), CODEC_T4((b) + 4), CODEC_T4((b) + 8), CODEC_T4((b) + 12)
#define CODEC_T64(b) CODEC_T16(b), CODEC_T16((b) + 16), CODEC_T16((b) + 32), CODEC_T16((b) + 48)

static const codec_type codec_types[256] = {CODEC_T64(0), CODEC_T64(64), CODEC_T64(128),
                                            CODEC_T64(192)};

static uint64_t codec_be(const unsigned char *p, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width; i++) v = v << 8 | p[i];
  return v;
}

/* Walks one complete object starting at *pp, without building anything: on success *pp is
 * moved past it. Iterative, with an explicit stack of "elements still expected" per open
 * container, so hostile input costs neither C stack nor memory. Each container adds one level
 * (a scalar is depth 0, [] is depth 1, [[1]] is depth 2); empty containers count too, because
 * msgpack-c reserves a stack slot for them as well. */
static int codec_check_one(const unsigned char **pp, const unsigned char *end, int max_depth) {
  uint64_t left[CODEC_MAX_LEVELS];
  int top = 0;
  const unsigned char *p = *pp;

  do {
    if (p == end) return CHOREO_EINVAL;
    codec_type t = codec_types[*p++];
    uint64_t n = t.n; /* payload bytes, or elements of a container */
    if (t.width) {
      if ((size_t)(end - p) < (size_t)t.width + t.after) return CHOREO_EINVAL;
      n = codec_be(p, t.width);
      p += t.width + t.after;
    }
    if (t.kind == CODEC_SCALAR) {
      if (n > (uint64_t)(end - p)) return CHOREO_EINVAL;
      p += n;
    } else if (t.kind == CODEC_INVALID) {
      return CHOREO_EINVAL;
    } else {
      if (top >= max_depth) return CHOREO_EINVAL;
      if (t.kind == CODEC_MAP) n *= 2; /* at most 2 * (2^32 - 1): no overflow */
      /* Every element takes at least one byte, so a claim beyond the bytes left is refused
       * here, at once, instead of after walking to the end of the input. */
      if (n > (uint64_t)(end - p)) return CHOREO_EINVAL;
      if (n > 0) {
        left[top++] = n;
        continue;
      }
    }
    /* One element is complete, and with it every container whose last element it was. */
    while (top > 0 && --left[top - 1] == 0) top--;
  } while (top > 0);

  *pp = p;
  return 0;
}

int choreo_msgpack_check(const char *buf, size_t len, size_t count, int max_depth) {
  if (buf == NULL || max_depth < 0 || max_depth > CODEC_MAX_LEVELS) return CHOREO_EINVAL;
  const unsigned char *p = (const unsigned char *)buf, *end = p + len;
  size_t seen = 0;
  do {
    if (count && seen == count) return CHOREO_EINVAL; /* trailing bytes */
    if (codec_check_one(&p, end, max_depth) != 0) return CHOREO_EINVAL;
    seen++;
  } while (p < end);
  return count == 0 || seen == count ? 0 : CHOREO_EINVAL;
}

static bool codec_name_ok(const char *name, size_t n) {
  if (n == 0 || n > CHOREO_NAME_MAX || name[0] == '.') return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)name[i]) && (name[i] == '\0' || !strchr("_.-", name[i])))
      return false;
  return true;
}

bool choreo_name_valid(const char *name) { return codec_name_ok(name, strlen(name)); }

int choreo_name_check(const char *name, char *err, size_t errlen) {
  if (name && choreo_name_valid(name)) return 0;
  snprintf(err, errlen, "invalid name '%s' (letters, digits, '_', '-', '.'; at most %d)",
           name ? name : "", CHOREO_NAME_MAX);
  return CHOREO_EINVAL;
}

/* ---- messages ---- */

/* An empty attribute means the same as an absent one (CloudEvents requires optional attributes
 * to be non-empty when present), so "" is never written and never reported as present. */
static bool codec_present(const char *s) { return s != NULL && *s != '\0'; }

static int codec_pack_cstr(msgpack_packer *pk, const char *s) {
  return msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* The attributes by number, the keys our writers put: one byte (a positive fixint) where a
 * name took up to 16 (with the id left out, a quarter of a small message). The numbers are the
 * wire format: never reuse or renumber one. Readers take the names too (codec_attrs below). */
enum {
  CODEC_K_ID = 1, CODEC_K_SOURCE, CODEC_K_TYPE, CODEC_K_TIME, CODEC_K_SUBJECT, CODEC_K_DATA,
  CODEC_K_SEQ, CODEC_K_KIND, CODEC_K_TO, CODEC_K_CORRELATIONID, CODEC_K_CAUSATIONID,
  CODEC_K_TRACEPARENT, CODEC_K_DATASCHEMA, CODEC_K_STREAMVERSION, CODEC_K_EXPECTEDVERSION
};

/* Writing a message is on every publish's path, so it is done with one reservation and plain
 * copies (mpput.h) rather than a packer call, and a buffer check, per key and per value. */
static char *codec_put_attr(char *p, unsigned char key, const char *value, size_t value_len) {
  if (!value_len) return p;
  p = mp_put_byte(p, key);
  return mp_put_str(p, value, value_len);
}

int choreo_seq_digits(char out[20], int64_t v) {
  uint64_t u = (uint64_t)v;
  if (!u) return 0;
  int n = 1; /* counted first, so the digits go straight to their places, last first */
  for (uint64_t ten_to_n = 10; n < 20 && u >= ten_to_n; ten_to_n *= 10) n++;
  for (int i = n - 1; i >= 0; i--, u /= 10) out[i] = (char)('0' + u % 10);
  return n;
}

int choreo_msg_encode(const choreo_msg_fields *f, msgpack_sbuffer *out) {
  bool has_data = f->data != NULL && f->data_len > 0;
  if (!codec_present(f->source) || !codec_present(f->type) || !codec_present(f->kind) ||
      f->seq < 1)
    return CHOREO_EINVAL;
  /* What we append to a log must decode again, or it would poison every reader of the log. */
  if (has_data && choreo_msgpack_check(f->data, f->data_len, 1, CHOREO_MAX_DEPTH) != 0)
    return CHOREO_EINVAL;

  /* A time given is written as given; now, as microseconds since the epoch (9 bytes where the
   * text took 28), which readers turn back into the same text. */
  const char *time = codec_present(f->time) ? f->time : NULL;
  if (f->streamversion < 0 || (f->has_expectedversion && f->expectedversion < 0))
    return CHOREO_EINVAL;
  enum { V_SOURCE, V_TYPE, V_TIME, V_SUBJECT, V_KIND, V_TO, V_CORRELATIONID, V_CAUSATIONID,
         V_TRACEPARENT, V_DATASCHEMA, V_COUNT };
  const char *values[V_COUNT] = {f->source, f->type, time, f->subject, f->kind, f->to,
                                 f->correlationid, f->causationid, f->traceparent, f->dataschema};
  size_t len[V_COUNT]; /* 0 for an absent value: never written */
  size_t entries = 5 + has_data + (f->streamversion > 0) + f->has_expectedversion;
  /* At most: the map's byte, 15 one-byte keys, four 9-byte integers and the data, then each
   * string value with its header. */
  size_t need = 1 + 15 + 4 * 9 + (has_data ? f->data_len : 0);
  for (size_t i = 0; i < V_COUNT; i++) {
    len[i] = values[i] ? strlen(values[i]) : 0;
    if (i >= V_SUBJECT && i != V_KIND) entries += len[i] > 0;
    need += MP_PUT_STR_HEADER + len[i];
  }
  /* Readers derive the id from the source, which must be short enough to be a name. */
  if (len[V_SOURCE] > CHOREO_NAME_MAX) return CHOREO_EINVAL;
  if (!mp_reserve(out, need)) return CHOREO_ENOMEM;
  char *p = out->data + out->size;
  *p++ = (char)(0x80 | entries); /* at most 14 attributes: a fixmap */
  p = codec_put_attr(p, CODEC_K_SOURCE, f->source, len[V_SOURCE]);
  p = codec_put_attr(p, CODEC_K_TYPE, f->type, len[V_TYPE]);
  if (time) {
    p = codec_put_attr(p, CODEC_K_TIME, time, len[V_TIME]);
  } else {
    p = mp_put_byte(p, CODEC_K_TIME);
    p = mp_put_uint(p, (uint64_t)choreo_time_now_us());
  }
  p = codec_put_attr(p, CODEC_K_SUBJECT, f->subject, len[V_SUBJECT]);
  if (has_data) {
    p = mp_put_byte(p, CODEC_K_DATA);
    memcpy(p, f->data, f->data_len);
    p += f->data_len;
  }
  p = mp_put_byte(p, CODEC_K_SEQ);
  p = mp_put_uint(p, (uint64_t)f->seq);
  p = codec_put_attr(p, CODEC_K_KIND, f->kind, len[V_KIND]);
  p = codec_put_attr(p, CODEC_K_TO, f->to, len[V_TO]);
  p = codec_put_attr(p, CODEC_K_CORRELATIONID, f->correlationid, len[V_CORRELATIONID]);
  p = codec_put_attr(p, CODEC_K_CAUSATIONID, f->causationid, len[V_CAUSATIONID]);
  p = codec_put_attr(p, CODEC_K_TRACEPARENT, f->traceparent, len[V_TRACEPARENT]);
  p = codec_put_attr(p, CODEC_K_DATASCHEMA, f->dataschema, len[V_DATASCHEMA]);
  if (f->streamversion > 0) {
    p = mp_put_byte(p, CODEC_K_STREAMVERSION);
    p = mp_put_uint(p, (uint64_t)f->streamversion);
  }
  if (f->has_expectedversion) {
    p = mp_put_byte(p, CODEC_K_EXPECTEDVERSION);
    p = mp_put_uint(p, (uint64_t)f->expectedversion);
  }
  out->size = (size_t)(p - out->data);
  return 0;
}

/* The attributes by number (CODEC_K_ID + index), the order choreo_msg_encode writes them in, with
 * their names, which are read too: hosts wrote names until 2026-12-05 (logs keep them) and
 * other writers may. specversion and datacontenttype are constants of this format ("1.0", data
 * in msgpack), named in messages written before 2026-12-03 and only type-checked. */
#define CODEC_NOWHERE SIZE_MAX
#define CODEC_DATA (SIZE_MAX - 1)
#define CODEC_SEQ (SIZE_MAX - 2)
#define CODEC_STREAMVERSION (SIZE_MAX - 3)
#define CODEC_EXPECTEDVERSION (SIZE_MAX - 4)
#define CODEC_ATTR(name, where) {name, sizeof name - 1, where}
static const struct {
  const char *name;
  size_t len, offset;
} codec_attrs[] = {
    CODEC_ATTR("id", offsetof(choreo_msg, id)),
    CODEC_ATTR("source", offsetof(choreo_msg, source)),
    CODEC_ATTR("type", offsetof(choreo_msg, type)),
    CODEC_ATTR("time", offsetof(choreo_msg, time)),
    CODEC_ATTR("subject", offsetof(choreo_msg, subject)),
    CODEC_ATTR("data", CODEC_DATA),
    CODEC_ATTR("seq", CODEC_SEQ),
    CODEC_ATTR("kind", offsetof(choreo_msg, kind)),
    CODEC_ATTR("to", offsetof(choreo_msg, to)),
    CODEC_ATTR("correlationid", offsetof(choreo_msg, correlationid)),
    CODEC_ATTR("causationid", offsetof(choreo_msg, causationid)),
    CODEC_ATTR("traceparent", offsetof(choreo_msg, traceparent)),
    CODEC_ATTR("dataschema", offsetof(choreo_msg, dataschema)),
    CODEC_ATTR("streamversion", CODEC_STREAMVERSION),
    CODEC_ATTR("expectedversion", CODEC_EXPECTEDVERSION),
    CODEC_ATTR("specversion", CODEC_NOWHERE),
    CODEC_ATTR("datacontenttype", CODEC_NOWHERE),
};
#define CODEC_NATTRS (sizeof codec_attrs / sizeof *codec_attrs)

static bool codec_key_is(const msgpack_object_str *key, const char *name) {
  return choreo_str_eq((choreo_str){key->ptr, key->size}, name);
}

static bool codec_attr_is(choreo_str key, size_t a) {
  return key.n == codec_attrs[a].len && choreo_bytes_eq(key.p, codec_attrs[a].name, key.n);
}

/* The index of the attribute named key, or -1. The search starts where the last one was found:
 * our own writers put the keys in the table's order, so each is found at the first look. */
static int codec_attr_find(choreo_str key, size_t from) {
  for (size_t a = from; a < CODEC_NATTRS; a++)
    if (codec_attr_is(key, a)) return (int)a;
  for (size_t a = 0; a < from && a < CODEC_NATTRS; a++)
    if (codec_attr_is(key, a)) return (int)a;
  return -1;
}

/* The readers below check each length against end themselves: a message's attributes are
 * walked once, by codec_msg_scan, and only what it does not read itself (the data, unknown
 * attributes) by codec_check_one. On failure they leave *pp where it was. */

/* A string at *pp (what msgpack-c calls STR: not BIN), moving *pp past it. */
/* Inline: it reads every key and string value of every message. */
static inline bool codec_take_str(const unsigned char **pp, const unsigned char *end,
                                  choreo_str *out) {
  const unsigned char *p = *pp;
  if (p == end) return false;
  size_t n;
  int width = 0;
  if (*p >= 0xa0 && *p <= 0xbf) {
    n = *p & 0x1f;
  } else if (*p >= 0xd9 && *p <= 0xdb) {
    width = 1 << (*p - 0xd9);
    if (end - p < 1 + width) return false;
    n = (size_t)codec_be(p + 1, width);
  } else {
    return false;
  }
  p += 1 + width;
  if (n > (size_t)(end - p)) return false;
  *out = (choreo_str){(const char *)p, n};
  *pp = p + n;
  return true;
}

/* A non-negative integer at *pp (msgpack-c's POSITIVE_INTEGER: the signed encodings of such
 * values too), moving *pp past it. */
static bool codec_take_uint(const unsigned char **pp, const unsigned char *end, uint64_t *v) {
  const unsigned char *p = *pp;
  if (p == end) return false;
  unsigned b = *p;
  int width = b <= 0x7f ? 0 : b >= 0xcc && b <= 0xcf ? 1 << (b - 0xcc)
                            : b >= 0xd0 && b <= 0xd3 ? 1 << (b - 0xd0) : -1;
  if (width < 0 || end - p < 1 + width) return false;
  uint64_t u = width ? codec_be(p + 1, width) : b;
  if (b >= 0xd0 && u >> (width * 8 - 1)) return false; /* negative */
  *v = u;
  *pp = p + 1 + width;
  return true;
}

/* A whole message map is one level more than its data, which is limited to CHOREO_MAX_DEPTH. */
#define CODEC_MSG_DEPTH (CHOREO_MAX_DEPTH + 1)

/* Fills *m from the message map at *pp, straight from its bytes (any bytes: every length is
 * checked against end), and moves *pp past it. The data is left encoded (m->data), proven
 * well-formed: a handler that never looks at it costs nothing, and Lua reads it without
 * msgpack-c's object tree. Unknown and non-string keys are skipped so that newer writers can
 * add attributes without breaking older readers. */
static int codec_msg_scan(const unsigned char **pp, const unsigned char *end, choreo_msg *m) {
  const unsigned char *p = *pp, *start = p;
  bool have_seq = false;
  memset(m, 0, offsetof(choreo_msg, id_text)); /* the text is written only when needed */
  m->expectedversion = -1;
  m->time_us = -1;
  if (p == end) return CHOREO_EINVAL;
  uint64_t n;
  if (*p >= 0x80 && *p <= 0x8f) {
    n = *p++ & 0x0f;
  } else if (*p == 0xde || *p == 0xdf) {
    int width = *p == 0xde ? 2 : 4;
    if (end - p < 1 + width) return CHOREO_EINVAL;
    n = codec_be(p + 1, width);
    p += 1 + width;
  } else {
    return CHOREO_EINVAL;
  }
  /* Every key and value takes a byte at least: a larger claim is refused before any walk. */
  if (n > (uint64_t)(end - p) / 2) return CHOREO_EINVAL;
  size_t next = 0;
  uint64_t us;
  for (uint64_t i = 0; i < n; i++) {
    choreo_str key = {NULL, 0};
    int a = -1;
    if (p < end && *p >= CODEC_K_ID && *p <= CODEC_K_EXPECTEDVERSION) /* a numbered key */
      a = *p++ - CODEC_K_ID;
    else if (codec_take_str(&p, end, &key))
      a = codec_attr_find(key, next);
    else if (codec_check_one(&p, end, CODEC_MSG_DEPTH - 1) != 0)
      return CHOREO_EINVAL;
    if (a < 0) { /* a key we do not know: skipped with its value */
      if (codec_check_one(&p, end, CODEC_MSG_DEPTH - 1) != 0) return CHOREO_EINVAL;
      continue;
    }
    next = (size_t)a + 1;
    size_t offset = codec_attrs[a].offset;
    if (offset == CODEC_DATA) {
      m->data = (const char *)p;
      if (codec_check_one(&p, end, CODEC_MSG_DEPTH - 1) != 0) return CHOREO_EINVAL;
      m->data_len = (size_t)(p - (const unsigned char *)m->data);
    } else if (offset == CODEC_SEQ) {
      uint64_t seq;
      if (!codec_take_uint(&p, end, &seq) || seq < 1 || seq > INT64_MAX) return CHOREO_EINVAL;
      m->seq = (int64_t)seq;
      have_seq = true;
    } else if (offset == CODEC_STREAMVERSION || offset == CODEC_EXPECTEDVERSION) {
      uint64_t v;
      bool stream = offset == CODEC_STREAMVERSION;
      if (!codec_take_uint(&p, end, &v) || v > INT64_MAX || (stream && v < 1))
        return CHOREO_EINVAL;
      *(stream ? &m->streamversion : &m->expectedversion) = (int64_t)v;
    } else if (offset == offsetof(choreo_msg, time) && codec_take_uint(&p, end, &us)) {
      /* microseconds since the epoch, as our writers put it: read as text when asked */
      if (us > (uint64_t)CHOREO_TIME_US_MAX) return CHOREO_EINVAL;
      m->time_us = (int64_t)us;
    } else {
      choreo_str value;
      if (!codec_take_str(&p, end, &value)) return CHOREO_EINVAL;
      if (offset != CODEC_NOWHERE && value.n > 0) *(choreo_str *)((char *)m + offset) = value;
    }
  }
  if (!have_seq || m->source.n == 0 || m->type.n == 0 || m->kind.n == 0) return CHOREO_EINVAL;
  if (m->id.n == 0) { /* "<source>/<seq>", as our writers leave it out */
    if (m->source.n > CHOREO_NAME_MAX) return CHOREO_EINVAL;
    char *digits = m->id_text + m->source.n + 1;
    memcpy(m->id_text, m->source.p, m->source.n);
    digits[-1] = '/';
    m->id = (choreo_str){m->id_text, (size_t)(digits - m->id_text) +
                                         (size_t)choreo_seq_digits(digits, m->seq)};
  }
  /* These are compared and kept as C strings along the way. */
  const choreo_str names[] = {m->source, m->type, m->kind, m->to};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (names[i].n && memchr(names[i].p, '\0', names[i].n)) return CHOREO_EINVAL;
  m->raw = (const char *)start;
  m->raw_len = (size_t)(p - start);
  *pp = p;
  return 0;
}

int choreo_msg_decode(const char *buf, size_t len, choreo_msg *out) {
  memset(out, 0, sizeof *out);
  if (buf == NULL) return CHOREO_EINVAL;
  const unsigned char *p = (const unsigned char *)buf;
  int rc = codec_msg_scan(&p, p + len, out);
  if (rc == 0 && p != (const unsigned char *)buf + len) rc = CHOREO_EINVAL; /* trailing bytes */
  if (rc != 0) memset(out, 0, sizeof *out);
  return rc;
}

choreo_str choreo_time_text(choreo_str text, int64_t time_us, char buf[CHOREO_TIME_TEXT]) {
  if (text.n || time_us < 0) return text;
  return (choreo_str){buf, choreo_time_format(time_us, buf)};
}

choreo_str choreo_msg_time(const choreo_msg *m, char buf[CHOREO_TIME_TEXT]) {
  return choreo_time_text(m->time, m->time_us, buf);
}

/* ---- frames ---- */

static int codec_frame_header(msgpack_sbuffer *out, const char *source, int64_t first,
                              uint32_t count, int64_t head, const int64_t *through) {
  /* first - 1 + count is the last seq in the frame; it must be representable. */
  if (!codec_present(source) || first < 1 || head < 0 || first - 1 > INT64_MAX - (int64_t)count ||
      (through && (*through < first - 1 + (int64_t)count || *through > head)))
    return CHOREO_EINVAL;
  msgpack_packer pk;
  msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
  size_t mark = out->size;
  int rc = msgpack_pack_array(&pk, through ? 6 : 5);
  rc |= msgpack_pack_int(&pk, CHOREO_FRAME_VERSION);
  rc |= codec_pack_cstr(&pk, source);
  rc |= msgpack_pack_int64(&pk, first);
  rc |= msgpack_pack_uint32(&pk, count);
  rc |= msgpack_pack_int64(&pk, head);
  if (through) rc |= msgpack_pack_int64(&pk, *through);
  if (rc != 0) {
    out->size = mark;
    return CHOREO_ENOMEM;
  }
  return 0;
}

int choreo_frame_header(msgpack_sbuffer *out, const char *source, int64_t first, uint32_t count,
                        int64_t head) {
  return codec_frame_header(out, source, first, count, head, NULL);
}

int choreo_frame_header_sparse(msgpack_sbuffer *out, const char *source, int64_t first,
                               uint32_t count, int64_t head, int64_t through) {
  return codec_frame_header(out, source, first, count, head, &through);
}

static bool codec_uint(const msgpack_object *o, uint64_t max, uint64_t *v) {
  if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max) return false;
  *v = o->via.u64;
  return true;
}

/* Validates the header fields [version, source, first, count, head], and through after them
 * when sparse frames are allowed (r->sparse on entry; left true only for a sparse one). */
static int codec_frame_read_header(choreo_frame_reader *r) {
  const msgpack_object *h = &r->header.data;
  uint64_t version, first, count, head, through = 0;
  if (h->type != MSGPACK_OBJECT_ARRAY ||
      (h->via.array.size != 5 && (!r->sparse || h->via.array.size != 6)))
    return CHOREO_EINVAL;
  r->sparse = h->via.array.size == 6;
  const msgpack_object *f = h->via.array.ptr;
  /* Version 1's messages are keyed by name, version 3's may carry their time as an integer:
   * the one message reader takes every version's. */
  if (!codec_uint(&f[0], UINT64_MAX, &version) || version < 1 || version > CHOREO_FRAME_VERSION)
    return CHOREO_EINVAL;
  /* The source is a host's name: one with a NUL byte would read as another host's in C. */
  if (f[1].type != MSGPACK_OBJECT_STR || !codec_name_ok(f[1].via.str.ptr, f[1].via.str.size))
    return CHOREO_EINVAL;
  if (!codec_uint(&f[2], INT64_MAX, &first) || first < 1 ||
      !codec_uint(&f[3], UINT32_MAX, &count) || !codec_uint(&f[4], INT64_MAX, &head) ||
      first - 1 > (uint64_t)INT64_MAX - count)
    return CHOREO_EINVAL;
  /* A sparse frame's messages lie between first and through, ascending, not all of them; it
   * covers no seq past the log's head. */
  if (r->sparse && (!codec_uint(&f[5], INT64_MAX, &through) || through < first - 1 + count ||
                    through > head))
    return CHOREO_EINVAL;
  r->source = (choreo_str){f[1].via.str.ptr, f[1].via.str.size};
  r->first = (int64_t)first;
  r->count = (uint32_t)count;
  r->head = (int64_t)head;
  r->through = r->sparse ? (int64_t)through : r->first - 1 + (int64_t)r->count;
  r->last = r->first - 1;
  return 0;
}

/* Open proves the header, and that `count` messages could fit in what follows it; each message
 * is proven as choreo_frame_next reads it (with the frame's end after the last one), so every
 * byte of a frame is walked once. */
static int codec_frame_validate(choreo_frame_reader *r) {
  const unsigned char *p = (const unsigned char *)r->buf, *end = p + r->len;
  size_t off = 0;
  if (r->len > CHOREO_MAX_FRAME) return CHOREO_ETOOBIG;
  if (codec_check_one(&p, end, 1) != 0) return CHOREO_EINVAL;
  size_t header_len = (size_t)(p - (const unsigned char *)r->buf);
  if (msgpack_unpack_next(&r->header, r->buf, header_len, &off) != MSGPACK_UNPACK_SUCCESS)
    return CHOREO_ENOMEM;
  int rc = codec_frame_read_header(r);
  if (rc != 0) return rc;
  /* A message takes a byte at least; an empty frame is the header alone. */
  if (r->count > (size_t)(end - p) || (r->count == 0 && p != end)) return CHOREO_EINVAL;
  r->off = header_len;
  return 0;
}

static int codec_frame_open(choreo_frame_reader *r, const char *buf, size_t len, bool sparse) {
  memset(r, 0, sizeof *r);
  msgpack_unpacked_init(&r->header);
  if (buf == NULL) return CHOREO_EINVAL;
  r->buf = buf;
  r->len = len;
  r->sparse = sparse;
  int rc = codec_frame_validate(r);
  if (rc != 0) {
    /* Leave the reader closed and empty: closing it again is harmless, next() finds no
     * message. */
    choreo_frame_close(r);
    memset(r, 0, sizeof *r);
  }
  return rc;
}

int choreo_frame_open(choreo_frame_reader *r, const char *buf, size_t len) {
  return codec_frame_open(r, buf, len, false);
}

int choreo_frame_open_sparse(choreo_frame_reader *r, const char *buf, size_t len) {
  return codec_frame_open(r, buf, len, true);
}

int choreo_frame_next(choreo_frame_reader *r, choreo_msg *out) {
  if (r->index == r->count) return 0;
  /* Each message is proven as it is read, in place. */
  const unsigned char *p = (const unsigned char *)r->buf + r->off;
  const unsigned char *end = (const unsigned char *)r->buf + r->len;
  r->index++;
  int rc = codec_msg_scan(&p, end, out);
  if (rc == 0 && r->index == r->count && p != end) rc = CHOREO_EINVAL; /* trailing bytes */
  if (rc != 0) return rc;
  r->off = (size_t)((const char *)p - r->buf);
  /* A frame is a run of one source's log: a message claiming another source is forged. */
  bool same_source = out->source.n == r->source.n &&
                     memcmp(out->source.p, r->source.p, r->source.n) == 0;
  bool in_place = r->sparse ? out->seq > r->last && out->seq <= r->through
                            : out->seq == r->first + (int64_t)r->index - 1;
  if (!same_source || !in_place) return CHOREO_EINVAL;
  r->last = out->seq;
  return 1;
}

void choreo_frame_close(choreo_frame_reader *r) { msgpack_unpacked_destroy(&r->header); }

int64_t choreo_frame_version(const char *buf, size_t len) {
  const unsigned char *p = (const unsigned char *)buf;
  if (!buf || len == 0) return -1;
  codec_type t = codec_types[*p];
  if (t.kind != CODEC_ARRAY || len <= 1u + t.width) return -1;
  if ((t.width ? codec_be(p + 1, t.width) : t.n) == 0) return -1; /* an empty array */
  p += 1 + t.width;
  uint64_t version;
  if (!codec_take_uint(&p, (const unsigned char *)buf + len, &version) || version > INT64_MAX)
    return -1;
  return (int64_t)version;
}

/* ---- FETCH requests ---- */

static int codec_request_encode(msgpack_sbuffer *out, const char *word, int64_t after,
                                const char *name) {
  msgpack_packer pk;
  msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
  size_t mark = out->size;
  int rc = msgpack_pack_array(&pk, name ? 3 : 2);
  rc |= codec_pack_cstr(&pk, word);
  rc |= msgpack_pack_int64(&pk, after < 0 ? -1 : after);
  if (name) rc |= codec_pack_cstr(&pk, name);
  if (rc != 0) {
    out->size = mark;
    return CHOREO_ENOMEM;
  }
  return 0;
}

static int codec_request_decode(const char *buf, size_t len, const char *word, int64_t *after,
                                choreo_str *name) {
  *name = (choreo_str){NULL, 0};
  if (choreo_msgpack_check(buf, len, 1, 1) != 0) return CHOREO_EINVAL;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  int rc = msgpack_unpack_next(&u, buf, len, NULL) == MSGPACK_UNPACK_SUCCESS ? 0 : CHOREO_ENOMEM;
  const msgpack_object *o = &u.data;
  size_t items = !rc && o->type == MSGPACK_OBJECT_ARRAY ? o->via.array.size : 0;
  if (!rc && ((items != 2 && items != 3) || o->via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
              !codec_key_is(&o->via.array.ptr[0].via.str, word) ||
              (items == 3 && o->via.array.ptr[2].type != MSGPACK_OBJECT_STR)))
    rc = CHOREO_EINVAL;
  /* The name points into buf (msgpack-c's strings do), so it outlives the unpacked object. */
  if (!rc && items == 3)
    *name = (choreo_str){o->via.array.ptr[2].via.str.ptr, o->via.array.ptr[2].via.str.size};
  const msgpack_object *n = rc ? NULL : &o->via.array.ptr[1];
  if (n && n->type == MSGPACK_OBJECT_POSITIVE_INTEGER) /* past any log: answered with the head */
    *after = n->via.u64 > INT64_MAX ? INT64_MAX : (int64_t)n->via.u64;
  else if (n && n->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
    *after = -1;
  else if (!rc)
    rc = CHOREO_EINVAL;
  msgpack_unpacked_destroy(&u);
  return rc;
}

int choreo_fetch_encode(msgpack_sbuffer *out, int64_t after, const char *name) {
  return codec_request_encode(out, "fetch", after, name);
}

int choreo_fetch_decode(const char *buf, size_t len, int64_t *after, choreo_str *name) {
  return codec_request_decode(buf, len, "fetch", after, name);
}

int choreo_history_encode(msgpack_sbuffer *out, int64_t after) {
  return codec_request_encode(out, "history", after, NULL);
}

int choreo_history_decode(const char *buf, size_t len, int64_t *after) {
  choreo_str name;
  int rc = codec_request_decode(buf, len, "history", after, &name);
  return rc ? rc : name.n ? CHOREO_EINVAL : 0;
}

int choreo_ask_encode(msgpack_sbuffer *out, const char *json) {
  msgpack_packer pk;
  msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
  size_t mark = out->size;
  int rc = msgpack_pack_array(&pk, 2);
  rc |= codec_pack_cstr(&pk, "ask");
  rc |= codec_pack_cstr(&pk, json);
  if (rc != 0) {
    out->size = mark;
    return CHOREO_ENOMEM;
  }
  return 0;
}

int choreo_ask_decode(const char *buf, size_t len, choreo_str *json) {
  if (choreo_msgpack_check(buf, len, 1, 1) != 0) return CHOREO_EINVAL;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  int rc = msgpack_unpack_next(&u, buf, len, NULL) == MSGPACK_UNPACK_SUCCESS ? 0 : CHOREO_ENOMEM;
  const msgpack_object *o = &u.data;
  if (!rc && (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2 ||
              o->via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
              !codec_key_is(&o->via.array.ptr[0].via.str, "ask") ||
              o->via.array.ptr[1].type != MSGPACK_OBJECT_STR))
    rc = CHOREO_EINVAL;
  if (!rc) /* points into buf, as msgpack-c's strings do */
    *json = (choreo_str){o->via.array.ptr[1].via.str.ptr, o->via.array.ptr[1].via.str.size};
  msgpack_unpacked_destroy(&u);
  return rc;
}
