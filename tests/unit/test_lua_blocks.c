/* Unit tests for the store Lua's allocator draws on (bindings/lua_blocks.c): a block given
 * back is handed out again for its size class, contents survive every move between classes
 * and to and from malloc, a shrink never fails, and the lists stop keeping blocks at their
 * bound. Run under the sanitizers and valgrind like every unit test: a block kept wrongly
 * shows there as a leak, a double free or an overflow. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lua_blocks.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

static void fill(unsigned char *p, size_t n, unsigned char seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i);
}

static bool filled(const unsigned char *p, size_t n, unsigned char seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(seed + i)) return false;
  return true;
}

static void test_a_freed_block_serves_its_class_again(void) {
  choreo_lua_blocks b = {0};
  void *p = choreo_lua_blocks_resize(&b, NULL, 0, 40);
  CHECK(p != NULL);
  CHECK(choreo_lua_blocks_resize(&b, p, 40, 0) == NULL);
  CHECK(b.kept == 48); /* the class of 33..48 bytes */
  CHECK(choreo_lua_blocks_resize(&b, NULL, 0, 33) == p);
  CHECK(b.kept == 0);
  void *other = choreo_lua_blocks_resize(&b, NULL, 0, 49); /* the next class: not p */
  CHECK(other != NULL && other != p);
  choreo_lua_blocks_resize(&b, other, 49, 0);
  choreo_lua_blocks_resize(&b, p, 33, 0);
  choreo_lua_blocks_release(&b);
  CHECK(b.kept == 0);
  for (size_t c = 0; c < CHOREO_LUA_BLOCK_CLASSES; c++) CHECK(b.free[c] == NULL);
}

/* take and give, the allocator's short paths, share the lists with resize. */
static void test_take_and_give_share_the_lists(void) {
  choreo_lua_blocks b = {0};
  void *p = choreo_lua_blocks_take(&b, 100);
  CHECK(p != NULL);
  choreo_lua_blocks_give(&b, p, 100);
  CHECK(b.kept == 112); /* the class of 97..112 bytes */
  CHECK(choreo_lua_blocks_resize(&b, NULL, 0, 112) == p);
  CHECK(choreo_lua_blocks_resize(&b, p, 112, 0) == NULL);
  CHECK(choreo_lua_blocks_take(&b, 97) == p);
  void *large = choreo_lua_blocks_take(&b, 4096); /* past the classes: malloc's, never kept */
  CHECK(large != NULL);
  choreo_lua_blocks_give(&b, large, 4096);
  CHECK(b.kept == 0);
  choreo_lua_blocks_give(&b, p, 97);
  choreo_lua_blocks_release(&b);
  CHECK(b.kept == 0);
}

static void test_contents_survive_every_move(void) {
  choreo_lua_blocks b = {0};
  unsigned char *p = choreo_lua_blocks_resize(&b, NULL, 0, 20);
  fill(p, 20, 7);
  unsigned char *q = choreo_lua_blocks_resize(&b, p, 20, 30); /* the same class: in place */
  CHECK(q == p);
  fill(q, 30, 7);
  q = choreo_lua_blocks_resize(&b, q, 30, 200); /* to a larger class */
  CHECK(q != NULL && filled(q, 30, 7));
  fill(q, 200, 9);
  q = choreo_lua_blocks_resize(&b, q, 200, 5000); /* to malloc */
  CHECK(q != NULL && filled(q, 200, 9));
  fill(q, 5000, 11);
  q = choreo_lua_blocks_resize(&b, q, 5000, 9000); /* malloc to malloc */
  CHECK(q != NULL && filled(q, 5000, 11));
  q = choreo_lua_blocks_resize(&b, q, 9000, 100); /* back to a class */
  CHECK(q != NULL && filled(q, 100, 11));
  q = choreo_lua_blocks_resize(&b, q, 100, 10); /* a smaller class */
  CHECK(q != NULL && filled(q, 10, 11));
  choreo_lua_blocks_resize(&b, q, 10, 0);
  choreo_lua_blocks_release(&b);
}

static void test_the_lists_keep_a_bounded_amount(void) {
  choreo_lua_blocks b = {0};
  enum { N = 5000 }; /* 5000 blocks of 512 bytes: more than the 1 MiB kept */
  void **blocks = calloc(N, sizeof *blocks);
  for (int i = 0; i < N; i++) blocks[i] = choreo_lua_blocks_resize(&b, NULL, 0, 512);
  for (int i = 0; i < N; i++) choreo_lua_blocks_resize(&b, blocks[i], 512, 0);
  CHECK(b.kept <= (size_t)1 << 20);
  CHECK(b.kept >= ((size_t)1 << 20) - 512);
  free(blocks);
  choreo_lua_blocks_release(&b);
  CHECK(b.kept == 0);
}

static void test_freeing_nothing(void) {
  choreo_lua_blocks b = {0};
  CHECK(choreo_lua_blocks_resize(&b, NULL, 0, 0) == NULL);
  CHECK(choreo_lua_blocks_resize(&b, NULL, 5, 0) == NULL); /* Lua's osize of a type tag */
  CHECK(b.kept == 0);
  for (size_t c = 0; c < CHOREO_LUA_BLOCK_CLASSES; c++) CHECK(b.free[c] == NULL);
}

/* Under AddressSanitizer a block on a list is poisoned: a use after Lua freed it is reported,
 * as it would be without the lists. */
static void test_a_kept_block_is_poisoned(void) {
#if defined(__SANITIZE_ADDRESS__)
  choreo_lua_blocks b = {0};
  unsigned char *p = choreo_lua_blocks_resize(&b, NULL, 0, 64);
  CHECK(!__asan_address_is_poisoned(p + 63));
  choreo_lua_blocks_resize(&b, p, 64, 0);
  CHECK(__asan_address_is_poisoned(p) && __asan_address_is_poisoned(p + 63));
  CHECK(choreo_lua_blocks_resize(&b, NULL, 0, 64) == p);
  CHECK(!__asan_address_is_poisoned(p) && !__asan_address_is_poisoned(p + 63));
  choreo_lua_blocks_resize(&b, p, 64, 0);
  choreo_lua_blocks_release(&b);
#endif
}

int main(void) {
  RUN(test_a_freed_block_serves_its_class_again);
  RUN(test_take_and_give_share_the_lists);
  RUN(test_contents_survive_every_move);
  RUN(test_the_lists_keep_a_bounded_amount);
  RUN(test_freeing_nothing);
  RUN(test_a_kept_block_is_poisoned);
  return CHECK_DONE();
}
