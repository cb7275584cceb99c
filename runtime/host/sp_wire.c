/* The SP greeting and message header on ipc (see sp_wire.h). */
#include "sp_wire.h"

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
