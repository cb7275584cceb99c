/* NNG's SP protocols as its ipc transport puts them on a Unix socket, for the connections the
 * loop reads and writes itself (sp_sub.h). Each side of a connection first sends an 8-byte
 * greeting: 0, 'S', 'P', 0, its protocol's number (16 bits, big-endian), 0, 0. Then each
 * message is a byte 1, its length (64 bits, big-endian) and its bytes. An NNG socket at the
 * other end cannot tell such a connection from one of its own. */
#ifndef CHOREO_SP_WIRE_H
#define CHOREO_SP_WIRE_H

#include <stdbool.h>
#include <stdint.h>

#define CHOREO_SP_GREETING_SIZE 8
#define CHOREO_SP_HEADER_SIZE 9
/* The protocols' numbers, as NNG's pub0/sub0 and req0/rep0 name them. */
#define CHOREO_SP_PUB 0x20
#define CHOREO_SP_SUB 0x21
#define CHOREO_SP_REQ 0x30
#define CHOREO_SP_REP 0x31
/* A request's backtrace: 32-bit words, the last (the request's id) with this bit set. */
#define CHOREO_SP_BACKTRACE_END 0x80000000u
#define CHOREO_SP_BACKTRACE_MAX 8 /* words, as NNG's REP takes at most */

void choreo_sp_greeting(uint8_t out[CHOREO_SP_GREETING_SIZE], uint16_t protocol);
/* The protocol a greeting names, or -1 when it is not an SP greeting. */
int choreo_sp_greeting_protocol(const uint8_t in[CHOREO_SP_GREETING_SIZE]);
/* The socket path of url if it is ipc://PATH with a path the loop serves: one a Unix socket
 * can take, with a character to spare for the name a listener stages it under (sp_listen.c);
 * else NULL (NNG serves a longer one). */
const char *choreo_sp_ipc_path(const char *url);
/* "PUB", "SUB", "REQ", "REP", or "an unknown protocol". */
const char *choreo_sp_protocol_name(int protocol);
void choreo_sp_header(uint8_t out[CHOREO_SP_HEADER_SIZE], uint64_t len);
/* Whether in is a message's header; *len gets the length it announces. */
bool choreo_sp_header_length(const uint8_t in[CHOREO_SP_HEADER_SIZE], uint64_t *len);

#endif
