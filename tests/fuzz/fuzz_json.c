/* Fuzz harness: JSON text as the command line takes it (`choreo publish TYPE JSON`, and the
 * "data" of a control request), through choreo_json_to_msgpack (runtime/core/json.c). What it
 * accepts must be one msgpack value that fits in a message's data (choreo_msgpack_check at
 * CHOREO_MAX_DEPTH); what it refuses must leave the buffer as it was and say why. An accepted
 * value goes back to JSON (choreo_msgpack_to_cjson, as `choreo tail` prints data), and that
 * JSON must be accepted in turn. */
#include <string.h>

#include "choreo.h"
#include "codec.h"
#include "fuzz.h"
#include "json.h"

/* The printed form of a packed value, converted again. */
static void fuzz_round_trip(const char *packed, size_t len) {
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  FUZZ_CHECK(msgpack_unpack_next(&u, packed, len, NULL) == MSGPACK_UNPACK_SUCCESS);
  cJSON *tree = choreo_msgpack_to_cjson(&u.data);
  FUZZ_CHECK(tree != NULL);
  char *text = cJSON_PrintUnformatted(tree);
  FUZZ_CHECK(text != NULL);
  msgpack_sbuffer again;
  msgpack_sbuffer_init(&again);
  char err[256] = "";
  if (choreo_json_to_msgpack(text, &again, err, sizeof err) != 0) {
    fprintf(stderr, "printed as %s, refused: %s\n", text, err);
    FUZZ_CHECK(!"the JSON printed for an accepted value is accepted");
  }
  msgpack_sbuffer_destroy(&again);
  free(text);
  cJSON_Delete(tree);
  msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *json = malloc(size + 1); /* the command line hands over a C string */
  FUZZ_CHECK(json != NULL);
  memcpy(json, data, size);
  json[size] = '\0';
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  /* Something already in the buffer, as when control.c packs a batch: it must stay. */
  FUZZ_CHECK(msgpack_sbuffer_write(&sb, "\xc0", 1) == 0);
  char err[256] = "";
  int rc = choreo_json_to_msgpack(json, &sb, err, sizeof err);
  if (rc == 0) {
    FUZZ_CHECK(choreo_msgpack_check(sb.data + 1, sb.size - 1, 1, CHOREO_MAX_DEPTH) == 0);
    fuzz_round_trip(sb.data + 1, sb.size - 1);
  } else {
    FUZZ_CHECK(rc == CHOREO_EINVAL && sb.size == 1 && err[0] != '\0');
  }
  msgpack_sbuffer_destroy(&sb);
  free(json);
  return 0;
}
