/* The clocks (see clock.h). */
#include "clock.h"

#include <string.h>
#include <time.h>

int64_t choreo_clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t choreo_clock_monotonic_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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
  static _Thread_local char date[24]; /* "YYYY-MM-DDTHH:MM:SS." */
  static _Thread_local size_t date_len;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != cached_sec) {
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    date_len = strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S.", &tm);
    cached_sec = ts.tv_sec;
  }
  /* The date, six digits and "Z", by hand: even one printf per message showed in profiles. */
  char full[32];
  memcpy(full, date, date_len);
  unsigned us = (unsigned)(ts.tv_nsec / 1000) % 1000000u;
  for (int i = 5; i >= 0; i--, us /= 10) full[date_len + i] = (char)('0' + us % 10);
  full[date_len + 6] = 'Z';
  size_t n = date_len + 7 < size ? date_len + 7 : size ? size - 1 : 0; /* truncated, as printf */
  if (!size) return;
  memcpy(buf, full, n);
  buf[n] = '\0';
}

