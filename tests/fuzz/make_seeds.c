/* Writes the seed corpora of the fuzz harnesses, one file per seed, into OUT/frame, OUT/json,
 * OUT/fetch, OUT/control and OUT/dispatch (usage: make_seeds OUT). Every seed is a valid
 * encoding made by the code that makes it for real: messages and frames by the codec
 * (choreo_msg_encode, choreo_frame_header, _sparse), FETCH and history requests by
 * choreo_fetch_encode and choreo_history_encode, data by
 * choreo_json_to_msgpack from the JSON texts below and by msgpack-c for what JSON cannot say
 * (binary, ext, float32, non-string keys), and control requests as the command line builds
 * them, with cJSON. Starting from these, the fuzzer begins past the outer checks of each
 * format instead of having to find them. Nothing here is committed as a binary file. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "choreo.h"
#include "codec.h"
#include "json.h"

#define MAX_VALUES 64

static const char *out;
static int failures;

static void fail(const char *what) {
  fprintf(stderr, "make_seeds: %s\n", what);
  failures++;
}

static void seed(const char *corpus, const char *name, const char *buf, size_t len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", out, corpus);
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    fail(path);
    return;
  }
  snprintf(path, sizeof path, "%s/%s/%s", out, corpus, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(buf, 1, len, f) != len) fail(path);
  if (f && fclose(f) != 0) fail(path);
}

/* ---- data ---- */

/* What a user may type as data, the corners of JSON included; json_nested adds two more, nested
 * 30 deep (the most data may be) and 31. */
static const char *const json_texts[] = {
    "null", "true", "false", "0", "-0", "1.5", "-2.5e-7", "1E+2", "1e400",
    "9223372036854775807", "-9223372036854775808", "9223372036854775808",
    "18446744073709551616", "\"\"", "\"order 7\"",
    "\"caf\\u00e9 \\ud83d\\ude00 \\n\\t\\\" \\\\ \\/\"", "\"a\\u0000b\"", "[]", "{}",
    "[1, [2, [3, []]], {}]", " { \"a\" : 1 , \"a\" : 2 } ",
    "{\"order\": 7, \"total\": 30.25, \"items\": [{\"sku\": \"x-1\"}], \"paid\": false}",
    "{\"\": \"empty key\", \"1\": \"digit key\", \"k\\\"q\": -1}",
};

static char *json_nested(int depth) {
  char *s = malloc((size_t)depth * 2 + 2);
  if (!s) return NULL;
  memset(s, '[', (size_t)depth);
  s[depth] = '1';
  memset(s + depth + 1, ']', (size_t)depth);
  s[depth * 2 + 1] = '\0';
  return s;
}

/* Data values beyond JSON, packed by msgpack-c: each kind of msgpack object the wire may
 * carry in a message's data. */
static void pack_extra(msgpack_packer *pk, int which) {
  char long_text[300];
  memset(long_text, 'z', sizeof long_text);
  switch (which) {
  case 0: msgpack_pack_bin_with_body(pk, "\x00\x01\xff", 3); break;
  case 1: msgpack_pack_ext_with_body(pk, "abc", 3, 5); break;
  case 2: msgpack_pack_float(pk, 0.25f); break;
  case 3: msgpack_pack_uint64(pk, UINT64_MAX); break;
  case 4: msgpack_pack_int8(pk, -33); break;
  case 5:
    msgpack_pack_map(pk, 3);
    msgpack_pack_int(pk, 1);
    msgpack_pack_str_with_body(pk, "one", 3);
    msgpack_pack_int(pk, -2);
    msgpack_pack_array(pk, 1);
    msgpack_pack_true(pk);
    msgpack_pack_double(pk, 1.5);
    msgpack_pack_nil(pk);
    break;
  case 6: msgpack_pack_str_with_body(pk, long_text, 40); break;
  case 7: msgpack_pack_str_with_body(pk, long_text, sizeof long_text); break;
  case 8:
    msgpack_pack_array(pk, 20);
    for (int i = 0; i < 20; i++) msgpack_pack_int(pk, i * 1000);
    break;
  case 9:
    msgpack_pack_map(pk, 20);
    for (int i = 0; i < 20; i++) {
      char key[8];
      int n = snprintf(key, sizeof key, "k%d", i);
      msgpack_pack_str_with_body(pk, key, (size_t)n);
      msgpack_pack_int(pk, -i);
    }
    break;
  }
}
#define EXTRA_VALUES 10
_Static_assert(sizeof json_texts / sizeof *json_texts + 2 + EXTRA_VALUES <= MAX_VALUES,
               "room for every data value");

/* Every data value: the JSON texts that convert, then the extra ones. Returns how many. */
static int data_values(msgpack_sbuffer values[MAX_VALUES]) {
  int n = 0;
  char *deep[2] = {json_nested(CHOREO_MAX_DEPTH), json_nested(CHOREO_MAX_DEPTH + 1)};
  if (!deep[0] || !deep[1]) fail("out of memory");
  size_t ntexts = sizeof json_texts / sizeof *json_texts;
  for (size_t i = 0; i < ntexts + 2; i++) {
    const char *text = i < ntexts ? json_texts[i] : deep[i - ntexts];
    if (!text) continue;
    char name[32], err[256];
    snprintf(name, sizeof name, "text-%02zu", i);
    seed("json", name, text, strlen(text));
    msgpack_sbuffer_init(&values[n]);
    if (choreo_json_to_msgpack(text, &values[n], err, sizeof err) == 0) n++;
    else msgpack_sbuffer_destroy(&values[n]); /* 1e400 and the 31 levels are refused */
  }
  free(deep[0]);
  free(deep[1]);
  for (int i = 0; i < EXTRA_VALUES; i++, n++) {
    msgpack_sbuffer_init(&values[n]);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &values[n], msgpack_sbuffer_write);
    pack_extra(&pk, i);
  }
  return n;
}

/* The extra values as JSON, the way `choreo tail` prints them: JSON seeds of their own. */
static void json_printed(const msgpack_sbuffer *values, int from, int n) {
  for (int i = from; i < n; i++) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    cJSON *tree = NULL;
    char *text = NULL;
    if (msgpack_unpack_next(&u, values[i].data, values[i].size, NULL) == MSGPACK_UNPACK_SUCCESS &&
        (tree = choreo_msgpack_to_cjson(&u.data)) && (text = cJSON_PrintUnformatted(tree))) {
      char name[32];
      snprintf(name, sizeof name, "printed-%02d", i);
      seed("json", name, text, strlen(text));
    } else {
      fail("cannot print a value as JSON");
    }
    free(text);
    cJSON_Delete(tree);
    msgpack_unpacked_destroy(&u);
  }
}

/* ---- messages and frames ---- */

typedef struct {
  const char *type, *kind, *to;
  const msgpack_sbuffer *data; /* NULL: none */
} msg_spec;

static void add_msg(msgpack_sbuffer *frame, const char *source, int64_t seq, const msg_spec *m,
                    bool every_attribute) {
  choreo_msg_fields f = {.source = source, .type = m->type, .kind = m->kind, .to = m->to,
                         .seq = seq, .time = "2026-01-02T03:04:05.000006Z",
                         .data = m->data ? m->data->data : NULL,
                         .data_len = m->data ? m->data->size : 0};
  if (every_attribute) {
    f.subject = "order-7";
    f.correlationid = "peer/1";
    f.causationid = "other/3";
    f.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  }
  if (choreo_msg_encode(&f, frame) != 0) fail("cannot encode a message");
}

static void write_frame(const char *corpus, const char *name, const char *source, int64_t first,
                        const msg_spec *msgs, uint32_t count, bool every_attribute) {
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  if (choreo_frame_header(&frame, source, first, count, first + count - 1) != 0)
    fail("cannot encode a frame header");
  for (uint32_t i = 0; i < count; i++)
    add_msg(&frame, source, first + i, &msgs[i], every_attribute);
  seed(corpus, name, frame.data, frame.size);
  msgpack_sbuffer_destroy(&frame);
}

static void frames(const msgpack_sbuffer *values, int n) {
  char name[32];
  for (int i = 0; i < n; i++) {
    msg_spec m = {"Echo", "event", NULL, &values[i]};
    snprintf(name, sizeof name, "data-%02d", i);
    write_frame("frame", name, "peer", 1, &m, 1, false);
    write_frame("dispatch", name, "peer", 1, &m, 1, false);
  }
  msg_spec three[] = {{"Echo", "event", NULL, &values[0]},
                      {"Ask", "command", "svc", NULL},
                      {"Answer", "reply", "peer", &values[n - 1]}};
  write_frame("frame", "every-attribute", "peer", 5, three, 3, true);
  write_frame("frame", "no-data", "peer", 1, &three[1], 1, false);
  /* The answer to a FETCH for a name: no messages, the head only. */
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  if (choreo_frame_header(&sb, "peer", 43, 0, 42) != 0) fail("cannot encode a frame header");
  seed("frame", "empty", sb.data, sb.size);
  /* A lone message, as a log row or a dead letter holds it. */
  msgpack_sbuffer_clear(&sb);
  add_msg(&sb, "peer", 9, &three[0], true);
  seed("frame", "message", sb.data, sb.size);
  /* A history answer from a trimmed log: stream events 4 and 9 of what lies from 3 to 20. */
  msgpack_sbuffer_clear(&sb);
  if (choreo_frame_header_sparse(&sb, "peer", 3, 2, 40, 20) != 0) fail("cannot encode a header");
  add_msg(&sb, "peer", 4, &three[0], true);
  add_msg(&sb, "peer", 9, &three[2], false);
  seed("frame", "sparse", sb.data, sb.size);
  msgpack_sbuffer_destroy(&sb);
}

/* A value packed by msgpack-c from a JSON text (which is known to convert). */
static void value_of(msgpack_sbuffer *sb, const char *json) {
  msgpack_sbuffer_init(sb);
  if (choreo_json_to_msgpack(json, sb, NULL, 0) != 0) fail(json);
}

/* Frames for the Lua service of tests/fuzz/service: one per way a message goes, then all of
 * them in one frame, one that leaves a gap and one that claims to be from the host itself. */
static void dispatch_frames(void) {
  msgpack_sbuffer n1, list, text, table, order, total, other, box, unpack;
  value_of(&n1, "{\"n\": 1}");
  value_of(&list, "[1, 2, {\"x\": null}]");
  value_of(&text, "\"boom\"");
  value_of(&table, "{\"why\": \"a table\"}");
  value_of(&order, "{\"order\": 7, \"total\": 30}");
  value_of(&total, "{\"order\": 7}");
  value_of(&other, "{\"order\": \"seven\"}");
  value_of(&box, "{\"box\": 3, \"items\": [1, 2.5, \"x\"]}");
  /* Unpack's data: a string holding an encoded value. */
  msgpack_sbuffer_init(&unpack);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &unpack, msgpack_sbuffer_write);
  msgpack_pack_str_with_body(&pk, order.data, order.size);
  const msg_spec ways[] = {
      {"Echo", "event", NULL, &n1},          {"Ask", "command", "svc", &list},
      {"Forward", "command", "svc", &text},  {"Later", "event", NULL, &n1},
      {"Fail", "event", NULL, &text},        {"Fail", "event", NULL, &table},
      {"Unpack", "event", NULL, &unpack},    {"Open", "event", NULL, &order},
      {"Close", "event", NULL, &total},      {"Close", "event", NULL, &other},
      {"Open", "event", NULL, &other},       {"Ask", "command", "elsewhere", &list},
      {"Answer", "reply", "svc", &list},     {"Due", "timeout", "svc", &n1},
      {"Nobody", "event", NULL, NULL},       {"Nobody", "command", "svc", &n1},
      {"Put", "command", "svc", &box},       {"Put", "command", "svc", &table},
  };
  uint32_t count = sizeof ways / sizeof *ways;
  char name[32];
  for (uint32_t i = 0; i < count; i++) {
    snprintf(name, sizeof name, "way-%02u-%s", i, ways[i].type);
    write_frame("dispatch", name, "peer", 1, &ways[i], 1, false);
  }
  write_frame("dispatch", "all-ways", "peer", 1, ways, count, true);
  write_frame("dispatch", "gap", "peer", 3, ways, 2, false);
  write_frame("dispatch", "own-name", "svc", 1, ways, 1, false);
  msgpack_sbuffer *all[] = {&n1, &list, &text, &table, &order, &total, &other, &box, &unpack};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) msgpack_sbuffer_destroy(all[i]);
}

/* ---- FETCH requests ---- */

static void fetch_requests(void) {
  const struct {
    int64_t after;
    const char *name;
  } reqs[] = {{0, "peer"}, {-1, NULL}, {-1, "peer"}, {41, NULL}, {123456789, "a-b.c_d"},
              {INT64_MAX, "peer"}};
  for (size_t i = 0; i < sizeof reqs / sizeof *reqs; i++) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char name[32];
    snprintf(name, sizeof name, "fetch-%02zu", i);
    if (choreo_fetch_encode(&sb, reqs[i].after, reqs[i].name) != 0) fail("cannot encode FETCH");
    seed("fetch", name, sb.data, sb.size);
    msgpack_sbuffer_clear(&sb);
    snprintf(name, sizeof name, "history-%02zu", i);
    if (choreo_history_encode(&sb, reqs[i].after) != 0) fail("cannot encode a history request");
    seed("fetch", name, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
  }
}

/* ---- control requests ---- */

static void control_request(const char *name, cJSON *req) {
  char *text = req ? cJSON_PrintUnformatted(req) : NULL;
  if (text) seed("control", name, text, strlen(text));
  else fail("cannot print a control request");
  free(text);
  cJSON_Delete(req);
}

/* The shapes runtime/cli/cli_client.c sends, and the batch form. */
static cJSON *control_op(const char *op, const char *action) {
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "op", op);
  if (action) cJSON_AddStringToObject(req, "action", action);
  return req;
}

static void control_requests(void) {
  cJSON *req = control_op("publish", NULL);
  cJSON_AddStringToObject(req, "type", "Echo");
  cJSON_AddStringToObject(req, "data", "{\"order\": 7, \"items\": [1, 2.5, \"x\", null]}");
  cJSON_AddStringToObject(req, "key", "cli-1234-1");
  control_request("publish", req);

  req = control_op("publish", NULL);
  cJSON_AddStringToObject(req, "type", "Open");
  const char *batch[] = {"{\"order\": 8}", "null", "[[[]]]"};
  cJSON_AddItemToObject(req, "batch", cJSON_CreateStringArray(batch, 3));
  control_request("publish-batch", req);

  req = control_op("publish", NULL); /* data as values, numbers before them */
  cJSON_AddStringToObject(req, "type", "Open");
  cJSON_AddNumberToObject(req, "expect", 3);
  cJSON_AddItemToObject(req, "batch", cJSON_Parse("[{\"order\": 9007199254740993}, "
                                                  "\"[1]\", [-1.5e3, true]]"));
  control_request("publish-values", req);

  req = control_op("send", NULL);
  cJSON_AddStringToObject(req, "to", "svc");
  cJSON_AddStringToObject(req, "type", "Ask");
  cJSON_AddStringToObject(req, "data", "\"question\"");
  cJSON_AddStringToObject(req, "key", "cli-1234-2");
  control_request("send", req);

  req = control_op("send", NULL);
  cJSON_AddStringToObject(req, "to", "elsewhere");
  cJSON_AddStringToObject(req, "type", "Forward");
  control_request("send-elsewhere", req);

  control_request("status", control_op("status", NULL));
  control_request("dead-list", control_op("dead", "list"));
  req = control_op("dead", "retry");
  cJSON_AddNumberToObject(req, "id", 1);
  control_request("dead-retry", req);
  req = control_op("dead", "drop");
  cJSON_AddNumberToObject(req, "id", 1);
  control_request("dead-drop", req);
  control_request("sagas-list", control_op("sagas", "list"));
  req = control_op("sagas", "show");
  cJSON_AddStringToObject(req, "name", "Order");
  cJSON_AddStringToObject(req, "key", "7");
  control_request("sagas-show", req);

  req = control_op("send", NULL);
  cJSON_AddStringToObject(req, "to", "svc");
  cJSON_AddStringToObject(req, "type", "Put");
  cJSON_AddStringToObject(req, "data", "{\"n\": 1}");
  cJSON_AddStringToObject(req, "subject", "Box/3");
  cJSON_AddNumberToObject(req, "expect", 0);
  control_request("send-expect", req);
  req = control_op("stream", NULL);
  cJSON_AddStringToObject(req, "stream", "Box/3");
  cJSON_AddNumberToObject(req, "after", 0);
  control_request("stream", req);
  req = control_op("query", NULL);
  cJSON_AddStringToObject(req, "name", "echo");
  cJSON_AddItemToObject(req, "args", cJSON_Parse("{\"a\": [1, \"b\", null]}"));
  control_request("query", req);
  control_request("projections", control_op("projections", "list"));
  req = control_op("projections", "rebuild");
  cJSON_AddStringToObject(req, "name", "boxes");
  control_request("projections-rebuild", req);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_seeds OUT_DIR\n");
    return 2;
  }
  out = argv[1];
  if (mkdir(out, 0755) != 0 && errno != EEXIST) fail(out);
  msgpack_sbuffer values[MAX_VALUES];
  int n = data_values(values);
  json_printed(values, n - EXTRA_VALUES, n);
  frames(values, n);
  dispatch_frames();
  fetch_requests();
  control_requests();
  for (int i = 0; i < n; i++) msgpack_sbuffer_destroy(&values[i]);
  return failures ? 1 : 0;
}
