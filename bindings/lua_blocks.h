/* An allocator's store for one Lua state (lua_blocks.c), used from one thread: blocks up to
 * 512 bytes are kept on free lists by 16-byte class, up to 1 MiB in all, and handed out again;
 * larger ones go to malloc. Apart from bindings.h so that it can be tested without Lua. */
#ifndef CHOREO_LUA_BLOCKS_H
#define CHOREO_LUA_BLOCKS_H

#include <stddef.h>

#define CHOREO_LUA_BLOCK_CLASSES 32
typedef struct choreo_lua_blocks {
  void *free[CHOREO_LUA_BLOCK_CLASSES];
  size_t kept; /* bytes on the lists */
} choreo_lua_blocks;

/* lua_Alloc's contract: ptr NULL (old 0) asks for a new block, n 0 frees, and a shrink never
 * fails. A zeroed choreo_lua_blocks is an empty store. */
void *choreo_lua_blocks_resize(choreo_lua_blocks *b, void *ptr, size_t old, size_t n);
/* Its two common cases on their own, for an allocator to call without the others' paths: a new
 * block for n bytes (n > 0; NULL when out of memory), and a block that held n bytes given back. */
void *choreo_lua_blocks_take(choreo_lua_blocks *b, size_t n);
void choreo_lua_blocks_give(choreo_lua_blocks *b, void *p, size_t n);
/* Frees what the lists hold: after lua_close, when no block is in use any more. */
void choreo_lua_blocks_release(choreo_lua_blocks *b);

#endif
