/* msgpack written straight into a buffer with room reserved for it, for what is written once
 * per message (its encoding, its journal entry): msgpack-c's packer goes through a write
 * callback, with a check of the buffer, for every value, which showed in profiles. The bytes
 * are those msgpack_pack_* writes (tests/unit/test_mpput.c compares them).
 * Each put returns the byte after what it wrote, into room the caller reserved: a string
 * takes at most MP_PUT_STR_HEADER + its length, an integer at most MP_PUT_INT. */
#ifndef CHOREO_MPPUT_H
#define CHOREO_MPPUT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MP_PUT_STR_HEADER 5
#define MP_PUT_INT 9
#define MP_PUT_DOUBLE 9
#define MP_PUT_CONTAINER_HEADER 5 /* an array's or a map's */

/* Room for `need` more bytes after b->size: false when memory ran out. */
static inline bool mp_reserve(msgpack_sbuffer *b, size_t need) {
  if (b->alloc - b->size >= need) return true;
  size_t alloc = b->alloc * 2 > b->size + need ? b->alloc * 2 : b->size + need;
  char *data = realloc(b->data, alloc);
  if (!data) return false;
  b->data = data;
  b->alloc = alloc;
  return true;
}

/* The low `bytes` bytes of v, most significant first, as msgpack writes every width. */
static inline unsigned char *mp_put_be(unsigned char *u, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--) *u++ = (unsigned char)(v >> (8 * i));
  return u;
}

static inline char *mp_put_str_header(char *p, size_t n) {
  unsigned char *u = (unsigned char *)p;
  if (n < 32) {
    *u++ = (unsigned char)(0xa0 | n);
    return (char *)u;
  }
  int bytes = n < 256 ? 1 : n < 65536 ? 2 : 4;
  *u++ = bytes == 1 ? 0xd9 : bytes == 2 ? 0xda : 0xdb;
  return (char *)mp_put_be(u, n, bytes);
}

static inline char *mp_put_str(char *p, const char *s, size_t n) {
  p = mp_put_str_header(p, n);
  if (n) memcpy(p, s, n);
  return p + n;
}

/* A non-negative integer in its shortest form. */
static inline char *mp_put_uint(char *p, uint64_t v) {
  unsigned char *u = (unsigned char *)p;
  int bytes = v < 128 ? 0 : v < 256 ? 1 : v < 65536 ? 2 : v <= UINT32_MAX ? 4 : 8;
  static const unsigned char tag[9] = {0, 0xcc, 0xcd, 0, 0xce, 0, 0, 0, 0xcf};
  if (bytes) *u++ = tag[bytes];
  return (char *)mp_put_be(u, v, bytes ? bytes : 1); /* a positive fixint is its own byte */
}

/* Any integer in its shortest form: a negative one as a negative fixint or int8..int64. */
static inline char *mp_put_int(char *p, int64_t v) {
  if (v >= 0) return mp_put_uint(p, (uint64_t)v);
  unsigned char *u = (unsigned char *)p;
  if (v >= -32) {
    *u++ = (unsigned char)(v & 0xff);
    return (char *)u;
  }
  int bytes = v >= INT8_MIN ? 1 : v >= INT16_MIN ? 2 : v >= INT32_MIN ? 4 : 8;
  static const unsigned char tag[9] = {0, 0xd0, 0xd1, 0, 0xd2, 0, 0, 0, 0xd3};
  *u++ = tag[bytes];
  return (char *)mp_put_be(u, (uint64_t)v, bytes);
}

/* Always float 64, as msgpack_pack_double writes it. */
static inline char *mp_put_double(char *p, double d) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  unsigned char *u = (unsigned char *)p;
  *u++ = 0xcb;
  return (char *)mp_put_be(u, bits, 8);
}

/* The header of an array (map false) or a map of n elements: fix, 16 or 32 bits wide. */
static inline char *mp_put_container_header(char *p, uint32_t n, bool map) {
  unsigned char *u = (unsigned char *)p;
  if (n < 16) {
    *u++ = (unsigned char)((map ? 0x80 : 0x90) | n);
    return (char *)u;
  }
  bool wide = n >= 65536;
  *u++ = map ? (wide ? 0xdf : 0xde) : (wide ? 0xdd : 0xdc);
  return (char *)mp_put_be(u, n, wide ? 4 : 2);
}

static inline char *mp_put_byte(char *p, unsigned char b) {
  *p = (char)b;
  return p + 1;
}

#define MP_NIL 0xc0
#define MP_FALSE 0xc2
#define MP_TRUE 0xc3
#define MP_FIXARRAY(n) (0x90 | (n)) /* n < 16 */

#endif
