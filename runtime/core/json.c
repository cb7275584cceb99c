/* JSON at the edges: JSON text given on the command line becomes msgpack data, and msgpack
 * values and whole messages become JSON for people (`choreo tail`, dead letters). cJSON parses
 * and prints; this file owns the mapping between the two type systems.
 *
 * cJSON keeps a number only as a double, which cannot tell 1 from 1.0 and rounds integers past
 * 2^53. Both directions work around it instead of living with it: parsing rereads each number's
 * literal from the source text, and printing emits large integers as raw number text. */
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "choreo.h"

/* ---- JSON -> msgpack ---- */

typedef struct json_packer {
  msgpack_packer pk;
  const char *scan, *end; /* where to look for the next number literal in the source text */
  char *err;
  size_t errlen;
} json_packer;

static void json_error(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Finds the next number literal at or after *cursor and moves *cursor past it. cJSON creates
 * items in document order (duplicate keys included), so the n-th number item of the tree is the
 * n-th literal found here. The text has already been parsed successfully, so every '-' or digit
 * outside a string starts a number, and the literal ends at the first character that cannot
 * continue one (cJSON would have failed on a literal that strtod did not consume entirely). */
static const char *json_next_number(const char **cursor, const char *end, size_t *len) {
  const char *s = *cursor;
  bool in_string = false;
  for (; s < end && *s; s++) {
    if (in_string) {
      if (*s == '\\' && s + 1 < end && s[1]) s++;
      else if (*s == '"') in_string = false;
    } else if (*s == '"') {
      in_string = true;
    } else if (*s == '-' || (*s >= '0' && *s <= '9')) {
      break;
    }
  }
  const char *start = s;
  while (s < end && *s && strchr("+-.0123456789eE", *s)) s++;
  *len = (size_t)(s - start);
  *cursor = s;
  return start;
}

/* Integer literals (no fraction, no exponent) that fit int64 are packed as integers, exactly:
 * the literal is reparsed rather than trusting cJSON's double. Everything else is a double. */
static int json_pack_number(json_packer *jp, const cJSON *item) {
  size_t n;
  const char *lit = json_next_number(&jp->scan, jp->end, &n);
  char digits[24];
  if (n > 0 && n < sizeof digits && strspn(lit, "-0123456789") == n) {
    memcpy(digits, lit, n);
    digits[n] = '\0';
    errno = 0;
    long long v = strtoll(digits, NULL, 10);
    if (errno == 0) return msgpack_pack_int64(&jp->pk, v) ? CHOREO_ENOMEM : 0;
  }
  /* cJSON reads 1e400 as infinity, which JSON cannot say: refuse rather than change it. */
  if (!isfinite(item->valuedouble)) {
    json_error(jp->err, jp->errlen, "number out of range: %.*s", (int)(n < 40 ? n : 40), lit);
    return CHOREO_EINVAL;
  }
  return msgpack_pack_double(&jp->pk, item->valuedouble) ? CHOREO_ENOMEM : 0;
}

/* `level` is the number of containers around `item`; depth is counted as choreo_msgpack_check
 * counts it, so whatever packs here also fits in a message's data. Recursion is bounded by
 * CHOREO_MAX_DEPTH. */
static int json_pack(json_packer *jp, const cJSON *item, int level) {
  if (cJSON_IsArray(item) || cJSON_IsObject(item)) {
    bool object = cJSON_IsObject(item);
    if (level == CHOREO_MAX_DEPTH) {
      json_error(jp->err, jp->errlen, "nesting deeper than %d", CHOREO_MAX_DEPTH);
      return CHOREO_EINVAL;
    }
    size_t n = (size_t)cJSON_GetArraySize(item);
    if ((object ? msgpack_pack_map(&jp->pk, n) : msgpack_pack_array(&jp->pk, n)) != 0)
      return CHOREO_ENOMEM;
    const cJSON *child;
    cJSON_ArrayForEach(child, item) {
      if (object && msgpack_pack_str_with_body(&jp->pk, child->string, strlen(child->string)) != 0)
        return CHOREO_ENOMEM;
      int rc = json_pack(jp, child, level + 1);
      if (rc != 0) return rc;
    }
    return 0;
  }
  int rc;
  /* cJSON ends a string at an escaped \u0000; the rest of that string is lost. */
  if (cJSON_IsString(item))
    rc = msgpack_pack_str_with_body(&jp->pk, item->valuestring, strlen(item->valuestring));
  else if (cJSON_IsNumber(item))
    return json_pack_number(jp, item);
  else if (cJSON_IsBool(item))
    rc = cJSON_IsTrue(item) ? msgpack_pack_true(&jp->pk) : msgpack_pack_false(&jp->pk);
  else
    rc = msgpack_pack_nil(&jp->pk);
  return rc != 0 ? CHOREO_ENOMEM : 0;
}

/* Packs the tree at item into out, all or nothing. */
static int json_pack_all(json_packer *jp, const cJSON *item, msgpack_sbuffer *out) {
  msgpack_packer_init(&jp->pk, out, msgpack_sbuffer_write);
  size_t mark = out->size;
  int rc = json_pack(jp, item, 0);
  if (rc != 0) {
    if (rc == CHOREO_ENOMEM) json_error(jp->err, jp->errlen, "out of memory");
    out->size = mark;
  }
  return rc;
}

int choreo_json_to_msgpack(const char *json, msgpack_sbuffer *out, char *err, size_t errlen) {
  const char *end = json;
  cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
  if (root == NULL) {
    json_error(err, errlen, "invalid JSON at offset %zu", (size_t)(end - json));
    return CHOREO_EINVAL;
  }
  /* end: the text's NUL, where a parse that requires one stops */
  json_packer jp = {.scan = json, .end = end, .err = err, .errlen = errlen};
  int rc = json_pack_all(&jp, root, out);
  cJSON_Delete(root);
  return rc;
}

size_t choreo_json_count_numbers(const cJSON *item) {
  if (cJSON_IsNumber(item)) return 1;
  size_t n = 0;
  const cJSON *child;
  cJSON_ArrayForEach(child, item) n += choreo_json_count_numbers(child);
  return n;
}

void choreo_json_reader_init(choreo_json_reader *r, const char *text, size_t len, size_t skip) {
  size_t n;
  r->scan = text;
  r->end = text + len;
  while (skip--) json_next_number(&r->scan, r->end, &n);
}

int choreo_json_pack_value(choreo_json_reader *r, const cJSON *value, msgpack_sbuffer *out,
                           char *err, size_t errlen) {
  json_packer jp = {.scan = r->scan, .end = r->end, .err = err, .errlen = errlen};
  int rc = json_pack_all(&jp, value, out);
  r->scan = jp.scan;
  return rc;
}

/* ---- msgpack -> cJSON ---- */

/* Strings are bytes in Lua and msgpack, text in JSON. Valid UTF-8 stays a JSON string, NUL
 * bytes included; anything else (binary) is base64, marked as such so nobody mistakes it for
 * text: {"$base64": "..."}. */
#define JSON_BASE64_KEY "$base64"

/* Whether p[0..n) is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
static bool json_utf8_valid(const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || len > n - i) return false;
    uint32_t cp = len == 1 ? c : c & (0x7Fu >> len);
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = cp << 6 | (p[i + k] & 0x3Fu);
    }
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

/* Standard base64 with padding (RFC 4648), as a malloc'd C string. */
static char *json_base64(const unsigned char *p, size_t n) {
  static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
  if (!out) return NULL;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    *o++ = digits[v >> 18 & 63];
    *o++ = digits[v >> 12 & 63];
    *o++ = i + 1 < n ? digits[v >> 6 & 63] : '=';
    *o++ = i + 2 < n ? digits[v & 63] : '=';
  }
  *o = '\0';
  return out;
}

static cJSON *json_bytes(const char *p, size_t n) {
  char *b64 = json_base64((const unsigned char *)p, n);
  cJSON *o = b64 ? cJSON_CreateObject() : NULL;
  if (o && !cJSON_AddStringToObject(o, JSON_BASE64_KEY, b64)) {
    cJSON_Delete(o);
    o = NULL;
  }
  free(b64);
  return o;
}

/* A JSON string literal of UTF-8 text that may hold NUL bytes, which cJSON's C strings cannot:
 * escaped here and handed to cJSON as raw text. */
static cJSON *json_text_with_nul(const char *p, size_t n) {
  char *lit = malloc(n * 6 + 3), *o = lit; /* each byte at worst \u00XX */
  if (!lit) return NULL;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '"' || c == '\\') {
      *o++ = '\\';
      *o++ = (char)c;
    } else if (c < 0x20) {
      o += sprintf(o, "\\u%04x", c);
    } else {
      *o++ = (char)c;
    }
  }
  *o++ = '"';
  *o = '\0';
  cJSON *item = cJSON_CreateRaw(lit);
  free(lit);
  return item;
}

static cJSON *json_string(const char *p, size_t n) {
  if (!json_utf8_valid((const unsigned char *)p, n)) return json_bytes(p, n);
  if (n && memchr(p, '\0', n)) return json_text_with_nul(p, n);
  char *s = malloc(n + 1); /* msgpack strings are not NUL-terminated; cJSON wants C strings */
  if (s == NULL) return NULL;
  if (n) memcpy(s, p, n);
  s[n] = '\0';
  cJSON *item = cJSON_CreateString(s);
  free(s);
  return item;
}

/* cJSON prints numbers with %1.15g, which turns integers of 16 digits or more into exponent
 * form or drops digits. Those are emitted as raw number text so the JSON stays exact; smaller
 * ones stay ordinary cJSON numbers. */
#define JSON_EXACT_LIMIT 1000000000000000LL /* 10^15 */

static cJSON *json_uint(uint64_t v) {
  char text[24];
  if (v < JSON_EXACT_LIMIT) return cJSON_CreateNumber((double)v);
  snprintf(text, sizeof text, "%" PRIu64, v);
  return cJSON_CreateRaw(text);
}

static cJSON *json_int(int64_t v) {
  char text[24];
  if (v > -JSON_EXACT_LIMIT && v < JSON_EXACT_LIMIT) return cJSON_CreateNumber((double)v);
  snprintf(text, sizeof text, "%" PRId64, v);
  return cJSON_CreateRaw(text);
}

/* Adds item (which may be NULL after a failed allocation) to an array or, with a key, an
 * object; the item is freed if it cannot be added. */
static bool json_add(cJSON *parent, const char *key, cJSON *item) {
  if (item == NULL) return false;
  if (key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item))
    return true;
  cJSON_Delete(item);
  return false;
}

/* A key that is a map whose own keys are not text is printed with their text, escaped, inside
 * it, and every such level doubles the escapes: 29 levels in a 662-byte message made a key of
 * 512 MB (fuzz_frame found it). Keys within keys this deep are this text instead, which bounds
 * a key's text to a few times the bytes it came from. */
#define JSON_KEY_DEPTH 4
#define JSON_DEEP_KEY "$key:too deep"

static cJSON *json_of(const msgpack_object *o, int key_depth);

/* Map keys must be strings in JSON: text keys are used as they are, any other key is replaced
 * by its JSON text (1 -> "1", [1,2] -> "[1,2]", binary or text holding NUL (which cJSON's keys
 * cannot) -> "$base64:..."). key_depth: how many keys this one is inside. Returns a malloc'd
 * string. */
static char *json_key(const msgpack_object *k, int key_depth) {
  if (k->type == MSGPACK_OBJECT_STR || k->type == MSGPACK_OBJECT_BIN) {
    const char *p = k->type == MSGPACK_OBJECT_STR ? k->via.str.ptr : k->via.bin.ptr;
    size_t n = k->type == MSGPACK_OBJECT_STR ? k->via.str.size : k->via.bin.size;
    if (k->type == MSGPACK_OBJECT_BIN || (n && memchr(p, '\0', n)) ||
        !json_utf8_valid((const unsigned char *)p, n)) {
      char *b64 = json_base64((const unsigned char *)p, n);
      char *s = b64 ? malloc(strlen(b64) + sizeof JSON_BASE64_KEY ":") : NULL;
      if (s) sprintf(s, JSON_BASE64_KEY ":%s", b64);
      free(b64);
      return s;
    }
    char *s = malloc(n + 1);
    if (s == NULL) return NULL;
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
  }
  if (key_depth >= JSON_KEY_DEPTH) return strdup(JSON_DEEP_KEY);
  cJSON *item = json_of(k, key_depth + 1);
  char *s = item ? cJSON_PrintUnformatted(item) : NULL;
  cJSON_Delete(item);
  return s;
}

cJSON *choreo_msgpack_to_cjson(const msgpack_object *o) { return json_of(o, 0); }

static cJSON *json_of(const msgpack_object *o, int key_depth) {
  cJSON *c = NULL;
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: return cJSON_CreateNull();
  case MSGPACK_OBJECT_BOOLEAN: return cJSON_CreateBool(o->via.boolean);
  case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_uint(o->via.u64);
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_int(o->via.i64);
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: return cJSON_CreateNumber(o->via.f64);
  case MSGPACK_OBJECT_STR: return json_string(o->via.str.ptr, o->via.str.size);
  case MSGPACK_OBJECT_BIN: return json_bytes(o->via.bin.ptr, o->via.bin.size);
  case MSGPACK_OBJECT_EXT:
    /* No JSON equivalent: keep both parts visible. */
    c = json_bytes(o->via.ext.ptr, o->via.ext.size);
    if (c && json_add(c, "exttype", cJSON_CreateNumber(o->via.ext.type))) return c;
    break;
  case MSGPACK_OBJECT_ARRAY:
    c = cJSON_CreateArray();
    for (uint32_t i = 0; c && i < o->via.array.size; i++)
      if (!json_add(c, NULL, json_of(&o->via.array.ptr[i], key_depth))) goto fail;
    return c;
  case MSGPACK_OBJECT_MAP:
    c = cJSON_CreateObject();
    for (uint32_t i = 0; c && i < o->via.map.size; i++) {
      char *key = json_key(&o->via.map.ptr[i].key, key_depth);
      bool ok = key && json_add(c, key, json_of(&o->via.map.ptr[i].val, key_depth));
      free(key);
      if (!ok) goto fail;
    }
    return c;
  }
fail:
  cJSON_Delete(c);
  return NULL;
}

/* ---- messages ---- */

static bool json_add_attr(cJSON *obj, const char *key, choreo_str s) {
  return s.n == 0 || json_add(obj, key, json_string(s.p, s.n));
}

cJSON *choreo_msg_to_cjson(const choreo_msg *m) {
  cJSON *root = cJSON_CreateObject();
  char time[CHOREO_TIME_TEXT];
  /* The order follows the CloudEvents attribute list, then the extensions. */
  bool ok = root && json_add(root, "specversion", cJSON_CreateString("1.0")) &&
            json_add_attr(root, "id", m->id) &&
            json_add_attr(root, "source", m->source) && json_add_attr(root, "type", m->type) &&
            json_add_attr(root, "time", choreo_msg_time(m, time)) &&
            json_add_attr(root, "subject", m->subject);
  /* The data was proven well-formed with the message: it can only fail to unpack for want of
   * memory, and then it is left out. */
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  const msgpack_object *d =
      m->data && msgpack_unpack_next(&u, m->data, m->data_len, NULL) == MSGPACK_UNPACK_SUCCESS
          ? &u.data : NULL;
  /* CloudEvents carries a payload that is binary as a whole in data_base64. */
  bool binary = d && (d->type == MSGPACK_OBJECT_BIN ||
                      (d->type == MSGPACK_OBJECT_STR &&
                       !json_utf8_valid((const unsigned char *)d->via.str.ptr, d->via.str.size)));
  if (ok && binary) {
    bool bin = d->type == MSGPACK_OBJECT_BIN;
    char *b64 = json_base64((const unsigned char *)(bin ? d->via.bin.ptr : d->via.str.ptr),
                            bin ? d->via.bin.size : d->via.str.size);
    ok = b64 && json_add(root, "datacontenttype", cJSON_CreateString("application/octet-stream")) &&
         json_add(root, "data_base64", cJSON_CreateString(b64));
    free(b64);
  } else if (ok && d) {
    ok = json_add(root, "datacontenttype", cJSON_CreateString("application/json")) &&
         json_add(root, "data", choreo_msgpack_to_cjson(d));
  }
  msgpack_unpacked_destroy(&u);
  ok = ok && json_add(root, "seq", json_int(m->seq)) && json_add_attr(root, "kind", m->kind) &&
       json_add_attr(root, "to", m->to) &&
       json_add_attr(root, "correlationid", m->correlationid) &&
       json_add_attr(root, "causationid", m->causationid) &&
       json_add_attr(root, "traceparent", m->traceparent) &&
       json_add_attr(root, "dataschema", m->dataschema) &&
       (m->streamversion <= 0 || json_add(root, "streamversion", json_int(m->streamversion))) &&
       (m->expectedversion < 0 || json_add(root, "expectedversion", json_int(m->expectedversion)));
  if (ok) return root;
  cJSON_Delete(root);
  return NULL;
}

char *choreo_msg_to_json(const choreo_msg *m) {
  cJSON *root = choreo_msg_to_cjson(m);
  char *text = root ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  return text;
}
