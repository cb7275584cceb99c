/* Unit tests for JSON at the edges: JSON -> msgpack -> JSON round trips, exact integers, error
 * text for bad input, the depth limit, and the CloudEvents JSON form of a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "choreo.h"
#include "codec.h"
#include "json.h"

/* JSON text -> msgpack -> cJSON -> unformatted JSON text; NULL if any step fails. */
static char *round_trip(const char *json) {
  msgpack_sbuffer sb;
  msgpack_unpacked u;
  char err[128], *text = NULL;
  msgpack_sbuffer_init(&sb);
  msgpack_unpacked_init(&u);
  if (choreo_json_to_msgpack(json, &sb, err, sizeof err) == 0 &&
      choreo_msgpack_check(sb.data, sb.size, 1, CHOREO_MAX_DEPTH) == 0 &&
      msgpack_unpack_next(&u, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS) {
    cJSON *tree = choreo_msgpack_to_cjson(&u.data);
    text = cJSON_PrintUnformatted(tree);
    cJSON_Delete(tree);
  }
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
  return text;
}

static bool round_trips(const char *json) {
  char *text = round_trip(json);
  bool same = text && strcmp(text, json) == 0;
  if (!same) fprintf(stderr, "  %s came back as %s\n", json, text ? text : "(null)");
  free(text);
  return same;
}

static void test_round_trip(void) {
  CHECK(round_trips("{\"a\":1,\"b\":[true,false,null,\"x\\\"y\",-5,2.5],\"c\":{\"d\":\"e\"}}"));
  CHECK(round_trips("[]"));
  CHECK(round_trips("{}"));
  CHECK(round_trips("\"text\""));
  CHECK(round_trips("0"));
  CHECK(round_trips("-1"));
  CHECK(round_trips("0.125"));
  CHECK(round_trips("1e+300"));
  CHECK(round_trips("\"caf\xc3\xa9\\n\\\"\\\\\""));
  char *escaped = round_trip("\"\\u00e9\\t\"");
  CHECK(escaped && strcmp(escaped, "\"\xc3\xa9\\t\"") == 0); /* \u escapes come back as UTF-8 */
  free(escaped);
  /* Integers of every size come back digit for digit, past 2^53 and up to int64's ends. */
  CHECK(round_trips("[999999999999999,1000000000000000,9007199254740993,9223372036854775807]"));
  CHECK(round_trips("[-999999999999999,-1000000000000000,-9223372036854775808]"));
  /* Whitespace goes, order stays, duplicate keys both survive. */
  char *text = round_trip(" { \"z\" : 1 , \"a\" : [ 1 , 2 ] , \"z\" : 3 } ");
  CHECK(text && strcmp(text, "{\"z\":1,\"a\":[1,2],\"z\":3}") == 0);
  free(text);
}

static void test_integers_stay_integers(void) {
  const char *json = "[1,-1,0,-0,9007199254740993,9223372036854775807,-9223372036854775808,"
                     "1.0,1e3,2E2,-5e-1,9223372036854775808,18446744073709551615]";
  msgpack_sbuffer sb;
  msgpack_unpacked u;
  msgpack_sbuffer_init(&sb);
  msgpack_unpacked_init(&u);
  CHECK(choreo_json_to_msgpack(json, &sb, NULL, 0) == 0);
  CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);
  CHECK(u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 13);
  if (u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 13) {
    const msgpack_object *a = u.data.via.array.ptr;
    CHECK(a[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[0].via.u64 == 1);
    CHECK(a[1].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && a[1].via.i64 == -1);
    CHECK(a[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[2].via.u64 == 0);
    CHECK(a[3].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[3].via.u64 == 0);
    CHECK(a[4].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[4].via.u64 == 9007199254740993u);
    CHECK(a[5].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[5].via.u64 == INT64_MAX);
    CHECK(a[6].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && a[6].via.i64 == INT64_MIN);
    /* A fraction or an exponent makes a float, even when the value is whole. */
    CHECK(a[7].type == MSGPACK_OBJECT_FLOAT64 && a[7].via.f64 == 1.0);
    CHECK(a[8].type == MSGPACK_OBJECT_FLOAT64 && a[8].via.f64 == 1000.0);
    CHECK(a[9].type == MSGPACK_OBJECT_FLOAT64 && a[9].via.f64 == 200.0);
    CHECK(a[10].type == MSGPACK_OBJECT_FLOAT64 && a[10].via.f64 == -0.5);
    /* Beyond int64: a float, as precise as a double gets. */
    CHECK(a[11].type == MSGPACK_OBJECT_FLOAT64 && a[11].via.f64 == 9223372036854775808.0);
    CHECK(a[12].type == MSGPACK_OBJECT_FLOAT64 && a[12].via.f64 == 18446744073709551615.0);
  }

  /* Digits, minus signs and quotes inside strings and keys do not confuse the literal scan. */
  msgpack_sbuffer_clear(&sb);
  CHECK(choreo_json_to_msgpack("{\"1-2\":\"3e4\\\"-5\\\\\",\"n\":[\"-6\",7,true,null,-8],\"x\":9.5,"
                               "\"y\":10}", &sb, NULL, 0) == 0);
  CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);
  CHECK(u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 4);
  if (u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 4) {
    const msgpack_object_kv *kv = u.data.via.map.ptr;
    const msgpack_object *n = kv[1].val.via.array.ptr;
    CHECK(n[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && n[1].via.u64 == 7);
    CHECK(n[4].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && n[4].via.i64 == -8);
    CHECK(kv[2].val.type == MSGPACK_OBJECT_FLOAT64 && kv[2].val.via.f64 == 9.5);
    CHECK(kv[3].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER && kv[3].val.via.u64 == 10);
  }
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
}

static void test_invalid_json(void) {
  static const struct {
    const char *json;
    const char *offset;
  } bad[] = {
      {"{\"a\":}", "offset 5"}, {"", "offset 0"}, {"[1,2", "offset 4"}, {"1 2", "offset 2"},
      {"nul", "offset "},       {"{'a':1}", "offset "}, {"[1,]", "offset "},
  };
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_sbuffer_write(&sb, "keep", 4);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char err[128] = "";
    CHECK(choreo_json_to_msgpack(bad[i].json, &sb, err, sizeof err) == CHOREO_EINVAL);
    CHECK(strstr(err, "invalid JSON") != NULL);
    if (strstr(err, bad[i].offset) == NULL) fprintf(stderr, "  %s: %s\n", bad[i].json, err);
    CHECK(strstr(err, bad[i].offset) != NULL);
    CHECK(sb.size == 4); /* nothing appended */
  }
  /* The message is cut to the buffer; no buffer at all is fine. */
  char tiny[8];
  CHECK(choreo_json_to_msgpack("{", &sb, tiny, sizeof tiny) == CHOREO_EINVAL);
  CHECK(strcmp(tiny, "invalid") == 0);
  CHECK(choreo_json_to_msgpack("{", &sb, NULL, 0) == CHOREO_EINVAL);
  msgpack_sbuffer_destroy(&sb);
}

/* `depth` nested arrays, or objects {"k": ...}, around a 1. */
static char *nested_json(int depth, bool objects) {
  char *s = malloc((size_t)depth * 6 + 2), *p = s;
  for (int i = 0; i < depth; i++) p += objects ? (memcpy(p, "{\"k\":", 5), 5) : (*p = '[', 1);
  *p++ = '1';
  for (int i = 0; i < depth; i++) *p++ = objects ? '}' : ']';
  *p = '\0';
  return s;
}

static void test_depth(void) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  for (int objects = 0; objects <= 1; objects++) {
    char err[128] = "";
    char *ok = nested_json(CHOREO_MAX_DEPTH, objects);
    char *deep = nested_json(CHOREO_MAX_DEPTH + 1, objects);
    CHECK(choreo_json_to_msgpack(ok, &sb, err, sizeof err) == 0);
    /* What passes here also fits in a message's data. */
    CHECK(choreo_msgpack_check(sb.data, sb.size, 1, CHOREO_MAX_DEPTH) == 0);
    size_t size = sb.size;
    CHECK(choreo_json_to_msgpack(deep, &sb, err, sizeof err) == CHOREO_EINVAL);
    CHECK(strcmp(err, "nesting deeper than 30") == 0);
    CHECK(sb.size == size); /* all or nothing */
    free(ok);
    free(deep);
    msgpack_sbuffer_clear(&sb);
  }
  /* Far beyond cJSON's own limit: refused without trouble. */
  char *abyss = nested_json(5000, false), err[128];
  CHECK(choreo_json_to_msgpack(abyss, &sb, err, sizeof err) == CHOREO_EINVAL);
  free(abyss);
  msgpack_sbuffer_destroy(&sb);
}

/* The JSON text of the msgpack value in sb, or NULL when it does not unpack. */
static char *json_text_of(const msgpack_sbuffer *sb) {
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  char *text = NULL;
  if (msgpack_unpack_next(&u, sb->data, sb->size, NULL) == MSGPACK_UNPACK_SUCCESS) {
    cJSON *tree = choreo_msgpack_to_cjson(&u.data);
    text = tree ? cJSON_PrintUnformatted(tree) : NULL;
    cJSON_Delete(tree);
  }
  msgpack_unpacked_destroy(&u);
  return text;
}

static void test_msgpack_types(void) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 8);
  msgpack_pack_str_with_body(&pk, "bin", 3);
  msgpack_pack_bin_with_body(&pk, "raw", 3);
  msgpack_pack_str_with_body(&pk, "ext", 3);
  msgpack_pack_ext_with_body(&pk, "xy", 2, 4);
  msgpack_pack_str_with_body(&pk, "f32", 3);
  msgpack_pack_float(&pk, 0.5f);
  msgpack_pack_int(&pk, 1); /* non-string keys are printed */
  msgpack_pack_str_with_body(&pk, "one", 3);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_int(&pk, 2);
  msgpack_pack_true(&pk);
  msgpack_pack_nil(&pk);
  msgpack_pack_nil(&pk);
  msgpack_pack_str_with_body(&pk, "big", 3);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_uint64(&pk, UINT64_MAX);
  msgpack_pack_int64(&pk, INT64_MIN);
  msgpack_pack_str_with_body(&pk, "cut\0here", 8);
  msgpack_pack_str_with_body(&pk, "a\0b", 3);
  char *text = json_text_of(&sb);
  const char *want = "{\"bin\":{\"$base64\":\"cmF3\"},\"ext\":{\"$base64\":\"eHk=\",\"exttype\":4},"
                     "\"f32\":0.5,\"1\":\"one\",\"[1,2]\":true,\"null\":null,"
                     "\"big\":[18446744073709551615,-9223372036854775808],"
                     "\"$base64:Y3V0AGhlcmU=\":\"a\\u0000b\"}";
  CHECK(text && strcmp(text, want) == 0);
  if (text && strcmp(text, want) != 0) fprintf(stderr, "  got %s\n", text);
  free(text);
  msgpack_sbuffer_destroy(&sb);
}

/* Keys that are maps whose keys are maps, 30 levels deep: each level escapes the text of the
 * one inside it, which doubled the key's length per level (512 MB at 29 levels). */
static void test_keys_within_keys(void) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  enum { LEVELS = 30 }; /* msgpack-c unpacks 32 levels at most */
  for (int i = 0; i < LEVELS; i++) msgpack_pack_map(&pk, 1); /* each one's key is the next */
  msgpack_pack_str_with_body(&pk, "k\"", 2);
  for (int i = 0; i < LEVELS; i++) msgpack_pack_int(&pk, i); /* the values, inside out */
  char *text = json_text_of(&sb);
  CHECK(text && strlen(text) < 4096);
  CHECK(text && strstr(text, "$key:too deep") != NULL);
  free(text);
  /* Three levels keep their text: {{{"k":0}:1}:2} */
  msgpack_sbuffer_clear(&sb);
  for (int i = 0; i < 3; i++) msgpack_pack_map(&pk, 1);
  msgpack_pack_str_with_body(&pk, "k", 1);
  for (int i = 0; i < 3; i++) msgpack_pack_int(&pk, i);
  text = json_text_of(&sb);
  const char *want = "{\"{\\\"{\\\\\\\"k\\\\\\\":0}\\\":1}\":2}";
  CHECK(text && strcmp(text, want) == 0);
  if (text && strcmp(text, want) != 0) fprintf(stderr, "  got %s\n", text);
  free(text);
  msgpack_sbuffer_destroy(&sb);
}

static const char *json_str(const cJSON *obj, const char *key) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(item) ? item->valuestring : NULL;
}

static bool str_is(const char *s, const char *want) { return s && strcmp(s, want) == 0; }

static void test_msg_to_json(void) {
  msgpack_sbuffer data, buf;
  choreo_msg m;
  msgpack_sbuffer_init(&data);
  msgpack_sbuffer_init(&buf);
  CHECK(choreo_json_to_msgpack("{\"order\":7,\"items\":[1,2.5,\"x\"],\"ok\":true}", &data, NULL,
                               0) == 0);
  choreo_msg_fields f = {.source = "orders", .type = "OrderPlaced", .kind = "command",
                         .to = "shipping", .subject = "order-7", .correlationid = "c-1",
                         .causationid = "orders/41", .traceparent = "00-ab-cd-01",
                         .time = "2026-11-27T03:00:00.123456Z", .seq = 42, .data = data.data,
                         .data_len = data.size};
  CHECK(choreo_msg_encode(&f, &buf) == 0);
  CHECK(choreo_msg_decode(buf.data, buf.size, &m) == 0);
  char *text = choreo_msg_to_json(&m);
  CHECK(text != NULL && strchr(text, '\n') == NULL);
  cJSON *ce = cJSON_Parse(text);
  CHECK(cJSON_IsObject(ce));
  CHECK(str_is(json_str(ce, "specversion"), "1.0"));
  CHECK(str_is(json_str(ce, "id"), "orders/42"));
  CHECK(str_is(json_str(ce, "source"), "orders"));
  CHECK(str_is(json_str(ce, "type"), "OrderPlaced"));
  CHECK(str_is(json_str(ce, "time"), "2026-11-27T03:00:00.123456Z"));
  CHECK(str_is(json_str(ce, "subject"), "order-7"));
  CHECK(str_is(json_str(ce, "datacontenttype"), "application/json"));
  CHECK(str_is(json_str(ce, "kind"), "command"));
  CHECK(str_is(json_str(ce, "to"), "shipping"));
  CHECK(str_is(json_str(ce, "correlationid"), "c-1"));
  CHECK(str_is(json_str(ce, "causationid"), "orders/41"));
  CHECK(str_is(json_str(ce, "traceparent"), "00-ab-cd-01"));
  const cJSON *seq = cJSON_GetObjectItemCaseSensitive(ce, "seq");
  CHECK(cJSON_IsNumber(seq) && seq->valuedouble == 42);
  cJSON *want = cJSON_Parse("{\"order\":7,\"items\":[1,2.5,\"x\"],\"ok\":true}");
  CHECK(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(ce, "data"), want, 1));
  CHECK(cJSON_GetArraySize(ce) == 14);
  cJSON_Delete(want);
  cJSON_Delete(ce);
  free(text);

  /* Without data and optional attributes, their keys are absent. */
  choreo_msg_fields bare = {.source = "billing", .type = "Paid", .kind = "event", .seq = 3};
  msgpack_sbuffer_clear(&buf);
  CHECK(choreo_msg_encode(&bare, &buf) == 0);
  CHECK(choreo_msg_decode(buf.data, buf.size, &m) == 0);
  text = choreo_msg_to_json(&m);
  ce = cJSON_Parse(text);
  CHECK(str_is(json_str(ce, "id"), "billing/3")); /* not written: the reader derived it */
  CHECK(json_str(ce, "time") != NULL);
  static const char *const absent[] = {"data", "datacontenttype", "subject", "to",
                                       "correlationid", "causationid", "traceparent"};
  for (size_t i = 0; i < sizeof absent / sizeof *absent; i++)
    CHECK(!cJSON_HasObjectItem(ce, absent[i]));
  cJSON_Delete(ce);
  free(text);

  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_destroy(&buf);
}

/* The JSON of one msgpack string holding n bytes of p. */
static char *string_json(const char *p, size_t n) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
  msgpack_sbuffer_init(&sb);
  msgpack_unpacked_init(&u);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_str_with_body(&pk, p, n);
  CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);
  cJSON *tree = choreo_msgpack_to_cjson(&u.data);
  char *text = cJSON_PrintUnformatted(tree);
  cJSON_Delete(tree);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
  return text;
}

static void check_string_json(const char *p, size_t n, const char *want) {
  char *text = string_json(p, n);
  CHECK(text && strcmp(text, want) == 0);
  if (text && strcmp(text, want) != 0) fprintf(stderr, "  %s: got %s\n", want, text);
  /* Whatever it is, it parses as JSON. */
  cJSON *back = text ? cJSON_Parse(text) : NULL;
  CHECK(back != NULL);
  cJSON_Delete(back);
  free(text);
}

/* Text stays text, NUL and control bytes escaped; bytes that are not UTF-8 become base64. */
static void test_strings_and_bytes(void) {
  check_string_json("", 0, "\"\"");
  check_string_json("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 12, "\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  check_string_json("a\0b\n\"\\", 6, "\"a\\u0000b\\u000a\\\"\\\\\"");
  check_string_json("\xff\xfe", 2, "{\"$base64\":\"//4=\"}");
  check_string_json("\xc3", 1, "{\"$base64\":\"ww==\"}");              /* cut short */
  check_string_json("\xc0\xaf", 2, "{\"$base64\":\"wK8=\"}");          /* overlong '/' */
  check_string_json("\xed\xa0\x80", 3, "{\"$base64\":\"7aCA\"}");      /* a surrogate */
  check_string_json("\xf4\x90\x80\x80", 4, "{\"$base64\":\"9JCAgA==\"}"); /* past U+10FFFF */
  check_string_json("\x80", 1, "{\"$base64\":\"gA==\"}");
}

/* A payload that is binary as a whole travels as CloudEvents' data_base64. */
static void test_binary_payload(void) {
  msgpack_sbuffer data, buf;
  msgpack_packer pk;
  choreo_msg m;
  msgpack_sbuffer_init(&data);
  msgpack_sbuffer_init(&buf);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_str_with_body(&pk, "\x89PNG\r\n\x1a\n", 8);
  choreo_msg_fields f = {.source = "img", .type = "Uploaded", .kind = "event", .seq = 1,
                         .data = data.data, .data_len = data.size};
  CHECK(choreo_msg_encode(&f, &buf) == 0);
  CHECK(choreo_msg_decode(buf.data, buf.size, &m) == 0);
  char *text = choreo_msg_to_json(&m);
  cJSON *ce = text ? cJSON_Parse(text) : NULL;
  CHECK(cJSON_IsObject(ce));
  CHECK(str_is(json_str(ce, "data_base64"), "iVBORw0KGgo="));
  CHECK(str_is(json_str(ce, "datacontenttype"), "application/octet-stream"));
  CHECK(!cJSON_HasObjectItem(ce, "data"));
  cJSON_Delete(ce);
  free(text);
  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_destroy(&buf);
}

/* Values packed from a parsed document: each integer exact, read from its own literal even
 * when numbers come before the values and strings between them hold digits; the text ends
 * without a NUL (a request off the wire), which the reader must not read past. */
static void test_values_of_a_document(void) {
  static const char doc[] = "{\"pad\": [1, 2.5, -3e2], \"s\": \"9 \\\" 8\", \"batch\": "
                            "[{\"x\": 9007199254740993}, \"7\", [-9223372036854775808, 0.5]]}";
  size_t len = sizeof doc - 1;
  char *text = malloc(len); /* no NUL after it */
  memcpy(text, doc, len);
  cJSON *root = cJSON_ParseWithLength(text, len);
  CHECK(root != NULL);
  const cJSON *batch = cJSON_GetObjectItemCaseSensitive(root, "batch");
  size_t before = 0;
  for (const cJSON *m = root->child; m != batch; m = m->next) before += choreo_json_count_numbers(m);
  CHECK(before == 3);
  choreo_json_reader r;
  choreo_json_reader_init(&r, text, len, before);
  const char *want[] = {"{\"x\":9007199254740993}", NULL, "[-9223372036854775808,0.5]"};
  char err[128];
  for (int i = 0; i < 3; i++) {
    const cJSON *item = cJSON_GetArrayItem(batch, i);
    if (!want[i]) continue; /* a string among the values holds no literal of theirs */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CHECK(choreo_json_pack_value(&r, item, &sb, err, sizeof err) == 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);
    cJSON *tree = choreo_msgpack_to_cjson(&u.data);
    char *back = cJSON_PrintUnformatted(tree);
    CHECK(back && strcmp(back, want[i]) == 0);
    if (back && strcmp(back, want[i]) != 0) fprintf(stderr, "  item %d came back as %s\n", i, back);
    free(back);
    cJSON_Delete(tree);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
  }
  /* a value JSON cannot say is refused with the text of its literal, nothing packed */
  static const char bad[] = "{\"data\": [1, 1e400]}";
  cJSON *broken = cJSON_ParseWithLength(bad, sizeof bad - 1);
  choreo_json_reader_init(&r, bad, sizeof bad - 1, 0);
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  CHECK(choreo_json_pack_value(&r, broken->child, &sb, err, sizeof err) == CHOREO_EINVAL);
  CHECK(strcmp(err, "number out of range: 1e400") == 0 && sb.size == 0);
  msgpack_sbuffer_destroy(&sb);
  cJSON_Delete(broken);
  cJSON_Delete(root);
  free(text);
}

int main(void) {
  RUN(test_round_trip);
  RUN(test_integers_stay_integers);
  RUN(test_invalid_json);
  RUN(test_depth);
  RUN(test_msgpack_types);
  RUN(test_keys_within_keys);
  RUN(test_msg_to_json);
  RUN(test_strings_and_bytes);
  RUN(test_binary_payload);
  RUN(test_values_of_a_document);
  return CHECK_DONE();
}
