/* Fuzz harness: the whole engine (runtime/core/engine.c) dispatching a frame from a peer, as
 * the host does with what its SUB and REQ sockets receive. Each input gets a fresh engine named
 * "svc" over an in-memory database, running the Lua service in tests/fuzz/service: the bytes
 * are applied as a frame (choreo_engine_apply_frame), then what the handlers emitted is
 * dispatched to the service's own handlers, and the clock is moved on so that retries and
 * timeouts come due, as the host's timers would have them. Then what it kept must read back:
 * its log as frames, its dead letters as messages, its sagas' state as values. A fresh engine
 * per input keeps each run independent of the ones before it. */
#include <stdlib.h>

#include "choreo.h"
#include "engine.h"
#include "fuzz.h"
#include "json.h"
#include "lua_scripts.h"

#define FUZZ_START_MS 1700000000000LL
#define FUZZ_STEP_MS 31000 /* past the longest retry delay (30 s) */
#define FUZZ_STEPS 4       /* three delayed retries, then the dead letter */
#define FUZZ_OWN_ROUNDS 8  /* own batches per step: handlers answering themselves stop here */

static int64_t fuzz_now;

static int64_t fuzz_clock(void *ud) {
  (void)ud;
  return fuzz_now;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* Failing handlers and dead letters are what fuzzing is for: their warnings are noise. */
  setenv("CHOREO_LOG", "error", 0);
  return 0;
}

static void fuzz_own(choreo_engine *e) {
  bool pending = true;
  for (int i = 0; i < FUZZ_OWN_ROUNDS && pending; i++) {
    choreo_apply_result res;
    int rc = choreo_engine_apply_own(e, 100, &pending, &res);
    FUZZ_CHECK(rc == 0);
  }
}

/* ---- what the engine kept must read back ---- */

/* Our log, served as FETCH answers, opens as frames whose every message decodes: whatever data
 * the handlers sent on, every peer can read it. */
static void fuzz_read_log(choreo_engine *e) {
  int64_t head, after = 0;
  FUZZ_CHECK(choreo_engine_head(e, &head) == 0);
  msgpack_sbuffer frame;
  msgpack_sbuffer_init(&frame);
  while (after < head) {
    int rows = 0;
    msgpack_sbuffer_clear(&frame);
    FUZZ_CHECK(choreo_engine_read_log(e, after, 2000, 4u << 20, &frame, &rows) == 0 && rows > 0);
    choreo_frame_reader r;
    FUZZ_CHECK(choreo_frame_open(&r, frame.data, frame.size) == 0 && r.first == after + 1);
    choreo_msg m;
    int got, n = 0;
    while ((got = choreo_frame_next(&r, &m)) == 1) n++;
    FUZZ_CHECK(got == 0 && n == rows);
    choreo_frame_close(&r);
    after += rows;
  }
  msgpack_sbuffer_destroy(&frame);
}

/* A dead letter holds the message as it came: it decodes and prints, as `choreo dead show`
 * shows it. */
static int fuzz_dead(void *ud, const choreo_dead_letter *d) {
  (void)ud;
  choreo_msg m;
  FUZZ_CHECK(choreo_msg_decode(d->raw, d->raw_len, &m) == 0);
  char *json = choreo_msg_to_json(&m);
  FUZZ_CHECK(json != NULL);
  free(json);
  return 0;
}

/* A saga instance's state, as `choreo sagas show` reads it. */
static int fuzz_saga_state(void *ud, const choreo_saga_row *row) {
  (void)ud;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  FUZZ_CHECK(row->state && choreo_msgpack_check(row->state, row->state_len, 1,
                                                CHOREO_MAX_DEPTH + 1) == 0);
  FUZZ_CHECK(msgpack_unpack_next(&u, row->state, row->state_len, NULL) == MSGPACK_UNPACK_SUCCESS);
  cJSON *tree = choreo_msgpack_to_cjson(&u.data);
  FUZZ_CHECK(tree != NULL);
  cJSON_Delete(tree);
  msgpack_unpacked_destroy(&u);
  return 0;
}

static int fuzz_saga(void *ud, const choreo_saga_row *row) {
  return choreo_engine_sagas_each(ud, row->name, row->key, fuzz_saga_state, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_now = FUZZ_START_MS;
  choreo_engine_config cfg = {.name = "svc", .dir = CHOREO_FUZZ_SERVICE, .data = ":memory:",
                              .scripts = &choreo_lua_scripts, .instruction_limit = 1000000,
                              .memory_limit = 32u << 20, .now_ms = fuzz_clock};
  char err[512] = "";
  choreo_engine *e = NULL;
  if (choreo_engine_open(&e, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "cannot open the engine: %s\n", err);
    abort();
  }
  choreo_apply_result res;
  int rc = choreo_engine_apply_frame(e, (const char *)data, size, &res);
  /* Anything else would mean storage broke, which an in-memory database never should. */
  FUZZ_CHECK(rc == 0 || rc == CHOREO_EINVAL);
  /* Each message of a frame applied whole is applied, skipped or failed; a gap applies none. */
  if (rc == 0)
    FUZZ_CHECK(res.gap ? res.applied + res.failed == 0
                       : res.applied + res.skipped + res.failed == (int)res.count);
  fuzz_own(e);
  for (int step = 0; step < FUZZ_STEPS; step++) {
    fuzz_now += FUZZ_STEP_MS;
    FUZZ_CHECK(choreo_engine_fire_timeouts(e) == 0);
    FUZZ_CHECK(choreo_engine_run_retries(e, &res) == 0);
    fuzz_own(e);
  }
  fuzz_read_log(e);
  FUZZ_CHECK(choreo_engine_dead_each(e, fuzz_dead, NULL) == 0);
  FUZZ_CHECK(choreo_engine_sagas_each(e, NULL, NULL, fuzz_saga, e) == 0);
  choreo_engine_close(e);
  return 0;
}
