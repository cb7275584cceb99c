/* Fuzz harness: a FETCH request as a host's REP socket receives it (choreo_fetch_decode,
 * runtime/core/codec.c, called by runtime/host/serve.c). A request that decodes must encode
 * again (choreo_fetch_encode) to one that decodes to the same `after` and name. So must a
 * history request (choreo_history_decode), which is never also a FETCH one. */
#include <string.h>

#include "choreo.h"
#include "codec.h"
#include "fuzz.h"

static void fuzz_history(const uint8_t *data, size_t size, bool fetch) {
  int64_t after;
  int rc = choreo_history_decode((const char *)data, size, &after);
  FUZZ_CHECK(rc == 0 || rc == CHOREO_EINVAL);
  if (rc != 0) return;
  FUZZ_CHECK(!fetch && after >= -1);
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  FUZZ_CHECK(choreo_history_encode(&sb, after) == 0);
  int64_t after2;
  FUZZ_CHECK(choreo_history_decode(sb.data, sb.size, &after2) == 0 && after2 == after);
  msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int64_t after;
  choreo_str name;
  int rc = choreo_fetch_decode((const char *)data, size, &after, &name);
  fuzz_history(data, size, rc == 0);
  FUZZ_CHECK(rc == 0 || rc == CHOREO_EINVAL);
  if (rc != 0) return 0;
  FUZZ_CHECK(after >= -1);
  const char *end = (const char *)data + size;
  FUZZ_CHECK(name.n == 0 || ((const char *)data <= name.p && name.p + name.n <= end));
  /* A name with a NUL in it cannot be a C string: serve.c refuses it as a host name anyway. */
  if (name.n && memchr(name.p, '\0', name.n)) return 0;
  char *cname = name.n ? strndup(name.p, name.n) : NULL;
  FUZZ_CHECK(name.n == 0 || cname != NULL);
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  FUZZ_CHECK(choreo_fetch_encode(&sb, after, cname) == 0);
  int64_t after2;
  choreo_str name2;
  FUZZ_CHECK(choreo_fetch_decode(sb.data, sb.size, &after2, &name2) == 0);
  FUZZ_CHECK(after2 == after && name2.n == name.n);
  FUZZ_CHECK(name.n == 0 || memcmp(name2.p, name.p, name.n) == 0);
  msgpack_sbuffer_destroy(&sb);
  free(cname);
  return 0;
}
