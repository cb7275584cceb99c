/* Unit tests for msgpack written straight into a buffer (runtime/core/mpput.h): every integer
 * width and sign, every string-length class, doubles and container headers, byte for byte as
 * msgpack-c's packer writes them, and a reservation that grows the buffer only when it must. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "mpput.h"

/* What msgpack-c packs for v, and what mp_put_int writes: the same bytes. */
static void check_int(int64_t v) {
  msgpack_sbuffer want;
  msgpack_sbuffer_init(&want);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &want, msgpack_sbuffer_write);
  msgpack_pack_int64(&pk, v);
  char got[MP_PUT_INT];
  size_t n = (size_t)(mp_put_int(got, v) - got);
  if (n != want.size || memcmp(got, want.data, n) != 0) {
    fprintf(stderr, "mp_put_int(%lld): %zu bytes, msgpack-c %zu\n", (long long)v, n, want.size);
    CHECK(0);
  }
  if (v >= 0) {
    n = (size_t)(mp_put_uint(got, (uint64_t)v) - got);
    CHECK(n == want.size && memcmp(got, want.data, n) == 0);
  }
  msgpack_sbuffer_destroy(&want);
}

static void test_integers_as_msgpack_c_packs_them(void) {
  const int64_t edges[] = {0,         1,          31,         32,          127,
                           128,       255,        256,        65535,       65536,
                           UINT32_MAX, (int64_t)UINT32_MAX + 1, INT64_MAX, -1,  -31,
                           -32,       -33,        INT8_MIN,   INT8_MIN - 1, INT16_MIN,
                           INT16_MIN - 1, INT32_MIN, (int64_t)INT32_MIN - 1, INT64_MIN};
  for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) check_int(edges[i]);
  char got[MP_PUT_INT];
  CHECK(mp_put_uint(got, UINT64_MAX) - got == 9 && (unsigned char)got[0] == 0xcf);
}

static void test_strings_as_msgpack_c_packs_them(void) {
  static char text[70000];
  memset(text, 'q', sizeof text);
  static char got[70000 + MP_PUT_STR_HEADER];
  const size_t lengths[] = {0, 1, 31, 32, 255, 256, 65535, 65536, sizeof text};
  for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
    msgpack_sbuffer want;
    msgpack_sbuffer_init(&want);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &want, msgpack_sbuffer_write);
    msgpack_pack_str_with_body(&pk, text, lengths[i]);
    size_t n = (size_t)(mp_put_str(got, text, lengths[i]) - got);
    CHECK(n == want.size && memcmp(got, want.data, n) == 0);
    CHECK(n - lengths[i] <= MP_PUT_STR_HEADER);
    msgpack_sbuffer_destroy(&want);
  }
  CHECK(mp_put_str(got, NULL, 0) - got == 1 && (unsigned char)got[0] == 0xa0);
}

static void test_doubles_as_msgpack_c_packs_them(void) {
  const double values[] = {0.0, -0.0, 0.5, -1.25, 1e300, -1e-300, 3.0, 1.0 / 0.0};
  for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
    msgpack_sbuffer want;
    msgpack_sbuffer_init(&want);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &want, msgpack_sbuffer_write);
    msgpack_pack_double(&pk, values[i]);
    char got[MP_PUT_DOUBLE];
    size_t n = (size_t)(mp_put_double(got, values[i]) - got);
    CHECK(n == want.size && memcmp(got, want.data, n) == 0);
    msgpack_sbuffer_destroy(&want);
  }
}

static void test_container_headers_as_msgpack_c_packs_them(void) {
  const uint32_t sizes[] = {0, 1, 15, 16, 255, 256, 65535, 65536, UINT32_MAX};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    for (int map = 0; map <= 1; map++) {
      msgpack_sbuffer want;
      msgpack_sbuffer_init(&want);
      msgpack_packer pk;
      msgpack_packer_init(&pk, &want, msgpack_sbuffer_write);
      if (map)
        msgpack_pack_map(&pk, sizes[i]);
      else
        msgpack_pack_array(&pk, sizes[i]);
      char got[MP_PUT_CONTAINER_HEADER];
      size_t n = (size_t)(mp_put_container_header(got, sizes[i], map) - got);
      if (n != want.size || memcmp(got, want.data, n) != 0) {
        fprintf(stderr, "%s of %u: %zu bytes, msgpack-c %zu\n", map ? "map" : "array", sizes[i],
                n, want.size);
        CHECK(0);
      }
      msgpack_sbuffer_destroy(&want);
    }
  }
}

static void test_reserve_grows_only_when_needed(void) {
  msgpack_sbuffer b;
  msgpack_sbuffer_init(&b);
  CHECK(mp_reserve(&b, 10) && b.alloc >= 10 && b.size == 0);
  char *data = b.data;
  size_t alloc = b.alloc;
  b.size = alloc - 4;
  CHECK(mp_reserve(&b, 4) && b.data == data && b.alloc == alloc);
  CHECK(mp_reserve(&b, 5) && b.alloc >= b.size + 5);
  CHECK(mp_reserve(&b, 1000000) && b.alloc >= b.size + 1000000);
  msgpack_sbuffer_destroy(&b);
}

int main(void) {
  RUN(test_integers_as_msgpack_c_packs_them);
  RUN(test_strings_as_msgpack_c_packs_them);
  RUN(test_doubles_as_msgpack_c_packs_them);
  RUN(test_container_headers_as_msgpack_c_packs_them);
  RUN(test_reserve_grows_only_when_needed);
  return CHECK_DONE();
}
