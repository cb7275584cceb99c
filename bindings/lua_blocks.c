/* Lua's memory, through free lists of small blocks. A handled event makes and drops some six
 * small objects (tables, their slots, strings, the msg copy), and glibc's malloc and free
 * were 7% of a consumed event's instructions: the collector frees in bursts, which overflow
 * glibc's per-thread cache into its slower bins. A state is used by one thread only, so its
 * own lists need no locks; the well-kept general allocators lost here (jemalloc, preloaded:
 * 1.8x the CPU per event; Debian's mimalloc only ships as a whole-process override). */
#include <stdlib.h>
#include <string.h>

#include "lua_blocks.h"

/* A block on a list is still allocated for AddressSanitizer: poisoned, a use after Lua freed
 * it is reported as one. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define BLOCK_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define BLOCK_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define BLOCK_POISON(p, n) ((void)(p), (void)(n))
#define BLOCK_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define BLOCK_STEP 16 /* malloc's alignment: every class size keeps it */
#define BLOCK_SMALL (BLOCK_STEP * CHOREO_LUA_BLOCK_CLASSES)
/* What the lists may hold at most; a block given back beyond it goes to free(). */
#define BLOCK_KEEP_MAX ((size_t)1 << 20)

static size_t block_class(size_t n) {
  return (n - 1) / BLOCK_STEP;
}

static size_t block_class_size(size_t c) {
  return (c + 1) * BLOCK_STEP;
}

/* A block for n bytes: a small one from its class's list, or from malloc at its class's size
 * (so that any block of the class can serve any request of it). */
void *choreo_lua_blocks_take(choreo_lua_blocks *b, size_t n) {
  if (n > BLOCK_SMALL) return malloc(n);
  size_t c = block_class(n);
  void *p = b->free[c];
  if (!p) return malloc(block_class_size(c));
  BLOCK_UNPOISON(p, block_class_size(c));
  memcpy(&b->free[c], p, sizeof p); /* the next one on the list */
  b->kept -= block_class_size(c);
  return p;
}

/* Gives back a block that held n bytes; its room is n's class size at least. */
void choreo_lua_blocks_give(choreo_lua_blocks *b, void *p, size_t n) {
  size_t c = block_class(n);
  if (n > BLOCK_SMALL || b->kept + block_class_size(c) > BLOCK_KEEP_MAX) {
    free(p);
    return;
  }
  memcpy(p, &b->free[c], sizeof p);
  b->free[c] = p;
  b->kept += block_class_size(c);
  BLOCK_POISON(p, block_class_size(c));
}

void *choreo_lua_blocks_resize(choreo_lua_blocks *b, void *ptr, size_t old, size_t n) {
  if (!ptr) return n ? choreo_lua_blocks_take(b, n) : NULL;
  if (n == 0) {
    choreo_lua_blocks_give(b, ptr, old);
    return NULL;
  }
  if (old > BLOCK_SMALL && n > BLOCK_SMALL) {
    void *p = realloc(ptr, n);
    return p ? p : n < old ? ptr : NULL; /* Lua counts on a shrink never failing */
  }
  if (old <= BLOCK_SMALL && n <= BLOCK_SMALL && block_class(old) == block_class(n)) return ptr;
  void *p = choreo_lua_blocks_take(b, n);
  if (!p) return n < old ? ptr : NULL; /* kept where it is: its room is larger than n's class */
  memcpy(p, ptr, n < old ? n : old);
  choreo_lua_blocks_give(b, ptr, old);
  return p;
}

void choreo_lua_blocks_release(choreo_lua_blocks *b) {
  for (size_t c = 0; c < CHOREO_LUA_BLOCK_CLASSES; c++) {
    while (b->free[c]) {
      void *p = b->free[c];
      BLOCK_UNPOISON(p, block_class_size(c));
      memcpy(&b->free[c], p, sizeof p);
      free(p);
    }
  }
  b->kept = 0;
}
