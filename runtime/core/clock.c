/* The wall clock (see clock.h). */
#include "clock.h"

#include <stdio.h>
#include <time.h>

int64_t choreo_clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double choreo_clock_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000) / 1e6;
}

void choreo_time_now(char *buf, size_t size) {
  /* Every message is stamped, and formatting the date showed in profiles: it changes once a
   * second, so it is kept (per thread: the CLI and the host may stamp from different ones). */
  static _Thread_local time_t cached_sec = -1;
  static _Thread_local char date[24]; /* small enough to prove the result fits in 32 bytes */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != cached_sec) {
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    if (strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm) == 0) date[0] = '\0';
    cached_sec = ts.tv_sec;
  }
  int n = snprintf(buf, size, "%s.", date);
  unsigned us = (unsigned)(ts.tv_nsec / 1000) % 1000000u;
  if (n > 0 && (size_t)n + 8 <= size) { /* six digits and "Z" by hand: cheaper than printf */
    for (int i = 5; i >= 0; i--, us /= 10) buf[n + i] = (char)('0' + us % 10);
    buf[n + 6] = 'Z';
    buf[n + 7] = '\0';
  }
}

