/* The SP greeting and message header on ipc (see sp_wire.h). */
#include "sp_wire.h"

#include <string.h>
#include <sys/un.h>

const char *choreo_sp_ipc_path(const char *url) {
  if (strncmp(url, "ipc://", 6) != 0 || !url[6] ||
      strlen(url + 6) + 1 >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return NULL;
  return url + 6;
}

void choreo_sp_greeting(uint8_t out[CHOREO_SP_GREETING_SIZE], uint16_t protocol) {
  const uint8_t greeting[CHOREO_SP_GREETING_SIZE] = {0, 'S', 'P', 0, (uint8_t)(protocol >> 8),
                                                     (uint8_t)protocol, 0, 0};
  for (int i = 0; i < CHOREO_SP_GREETING_SIZE; i++) out[i] = greeting[i];
}

int choreo_sp_greeting_protocol(const uint8_t in[CHOREO_SP_GREETING_SIZE]) {
  if (in[0] != 0 || in[1] != 'S' || in[2] != 'P' || in[3] != 0 || in[6] != 0 || in[7] != 0)
    return -1;
  return in[4] << 8 | in[5];
}

bool choreo_sp_header_length(const uint8_t in[CHOREO_SP_HEADER_SIZE], uint64_t *len) {
  if (in[0] != 1) return false;
  uint64_t n = 0;
  for (int i = 1; i < CHOREO_SP_HEADER_SIZE; i++) n = n << 8 | in[i];
  *len = n;
  return true;
}

const char *choreo_sp_protocol_name(int protocol) {
  switch (protocol) {
  case CHOREO_SP_PUB: return "PUB";
  case CHOREO_SP_SUB: return "SUB";
  case CHOREO_SP_REQ: return "REQ";
  case CHOREO_SP_REP: return "REP";
  default: return "an unknown protocol";
  }
}

void choreo_sp_header(uint8_t out[CHOREO_SP_HEADER_SIZE], uint64_t len) {
  out[0] = 1;
  for (int i = CHOREO_SP_HEADER_SIZE - 1; i >= 1; i--, len >>= 8) out[i] = (uint8_t)len;
}
