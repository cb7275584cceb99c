/* Fuzz harness: a request on a host's control socket (runtime/host/control.c), the JSON the
 * command line sends for publish, send, status, dead, sagas, stream and query. Each input opens a
 * fresh host (choreo.h) named "svc" running the Lua service in tests/fuzz/service, on a copy of a
 * database made once at start-up that holds a dead letter (id 1) and a running saga instance
 * (Order, key 7), so that dead retry/drop and sagas show find something. The bytes go to
 * choreo_control_answer, the function behind the socket; the host's loop never runs, so nothing
 * but the request touches it. Every answer must be a JSON object with a boolean "ok", and an
 * "error" string when ok is false. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "choreo.h"
#include "control.h"
#include "engine.h"
#include "fuzz.h"
#include "json.h"
#include "lua_scripts.h"

#define FUZZ_START_MS 1700000000000LL

/* Everything lives in a directory of the harness's own: the bus (no other host can be seen
 * there), the template database and the copy each input's host opens. */
static char fuzz_root[64], fuzz_bus[96], fuzz_db[96];
static char *fuzz_template;
static size_t fuzz_template_len;
static int64_t fuzz_now = FUZZ_START_MS;

static int64_t fuzz_clock(void *ud) {
  (void)ud;
  return fuzz_now;
}

static void fuzz_path(char *out, size_t size, const char *name) {
  snprintf(out, size, "%s/%s", fuzz_root, name);
}

static void fuzz_remove_db(const char *db) {
  const char *suffixes[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    char path[128];
    snprintf(path, sizeof path, "%s%s", db, suffixes[i]);
    unlink(path);
  }
}

static void fuzz_cleanup(void) {
  fuzz_remove_db(fuzz_db);
  rmdir(fuzz_bus);
  rmdir(fuzz_root);
  free(fuzz_template);
}

/* One message from "peer" applied to e. */
static void fuzz_apply(choreo_engine *e, int64_t seq, const char *type, const char *json) {
  msgpack_sbuffer data, frame;
  msgpack_sbuffer_init(&data);
  msgpack_sbuffer_init(&frame);
  FUZZ_CHECK(choreo_json_to_msgpack(json, &data, NULL, 0) == 0);
  choreo_msg_fields f = {.source = "peer", .type = type, .kind = "event", .seq = seq,
                         .data = data.data, .data_len = data.size};
  FUZZ_CHECK(choreo_frame_header(&frame, "peer", seq, 1, seq) == 0);
  FUZZ_CHECK(choreo_msg_encode(&f, &frame) == 0);
  choreo_apply_result res;
  FUZZ_CHECK(choreo_engine_apply_frame(e, frame.data, frame.size, &res) == 0);
  FUZZ_CHECK(res.applied + res.failed == 1);
  msgpack_sbuffer_destroy(&frame);
  msgpack_sbuffer_destroy(&data);
}

/* The database every input starts from, made through the engine with a clock of its own so
 * that a failing message runs out of retries at once. */
static void fuzz_make_template(const char *path) {
  choreo_engine_config cfg = {.name = "svc", .dir = CHOREO_FUZZ_SERVICE, .data = path,
                              .scripts = &choreo_lua_scripts, .now_ms = fuzz_clock};
  char err[512] = "";
  choreo_engine *e = NULL;
  if (choreo_engine_open(&e, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "cannot open the engine: %s\n", err);
    abort();
  }
  fuzz_apply(e, 1, "Fail", "\"boom\"");
  int64_t dead = 0;
  for (int i = 0; i < 10 && dead == 0; i++) {
    choreo_apply_result res;
    fuzz_now += 31000;
    FUZZ_CHECK(choreo_engine_run_retries(e, &res) == 0);
    FUZZ_CHECK(choreo_engine_dead_count(e, &dead) == 0);
  }
  FUZZ_CHECK(dead == 1);
  fuzz_apply(e, 2, "Open", "{\"order\": 7, \"lines\": [1, 2.5, \"x\", null]}");
  int64_t sagas = 0;
  FUZZ_CHECK(choreo_engine_saga_count(e, &sagas) == 0 && sagas == 1);
  choreo_engine_close(e);

  FILE *f = fopen(path, "rb");
  FUZZ_CHECK(f != NULL);
  FUZZ_CHECK(fseek(f, 0, SEEK_END) == 0);
  long len = ftell(f);
  FUZZ_CHECK(len > 0 && fseek(f, 0, SEEK_SET) == 0);
  fuzz_template = malloc((size_t)len);
  FUZZ_CHECK(fuzz_template && fread(fuzz_template, 1, (size_t)len, f) == (size_t)len);
  fuzz_template_len = (size_t)len;
  fclose(f);
  fuzz_remove_db(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* Failing handlers and dead letters are what the template is made of: their logs are noise. */
  setenv("CHOREO_LOG", "error", 0);
  snprintf(fuzz_root, sizeof fuzz_root, "/tmp/choreo-fuzz-XXXXXX");
  FUZZ_CHECK(mkdtemp(fuzz_root) != NULL);
  fuzz_path(fuzz_bus, sizeof fuzz_bus, "bus");
  fuzz_path(fuzz_db, sizeof fuzz_db, "host.db");
  FUZZ_CHECK(mkdir(fuzz_bus, 0700) == 0);
  atexit(fuzz_cleanup);
  char template[96];
  fuzz_path(template, sizeof template, "template.db");
  fuzz_make_template(template);
  return 0;
}

static void fuzz_check_answer(const char *text) {
  cJSON *answer = cJSON_Parse(text);
  FUZZ_CHECK(cJSON_IsObject(answer));
  const cJSON *ok = cJSON_GetObjectItemCaseSensitive(answer, "ok");
  FUZZ_CHECK(cJSON_IsBool(ok));
  if (cJSON_IsFalse(ok))
    FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(answer, "error")));
  cJSON_Delete(answer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_remove_db(fuzz_db);
  FILE *f = fopen(fuzz_db, "wb");
  FUZZ_CHECK(f && fwrite(fuzz_template, 1, fuzz_template_len, f) == fuzz_template_len);
  FUZZ_CHECK(fclose(f) == 0);
  choreo_host_config cfg = {.dir = CHOREO_FUZZ_SERVICE, .name = "svc", .data = fuzz_db,
                            .bus = fuzz_bus, .instruction_limit = 1000000,
                            .memory_limit = 32u << 20};
  char err[512] = "";
  choreo_host *h = NULL;
  if (choreo_host_open(&h, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "cannot open the host: %s\n", err);
    abort();
  }
  char *text = choreo_control_answer(h, (const char *)data, size);
  FUZZ_CHECK(text != NULL);
  fuzz_check_answer(text);
  free(text);
  choreo_host_close(h);
  return 0;
}
