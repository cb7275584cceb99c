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

int64_t choreo_time_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

size_t choreo_time_format(int64_t us, char out[CHOREO_TIME_TEXT]) {
  /* Every message read or stamped has one, and formatting the date showed in profiles: it
   * changes once a second, so it is kept (per thread: the CLI and the host may format from
   * different ones). */
  static _Thread_local time_t cached_sec = -1;
  static _Thread_local char date[24]; /* "YYYY-MM-DDTHH:MM:SS." */
  static _Thread_local size_t date_len;
  time_t sec = (time_t)(us / 1000000);
  if (sec != cached_sec) {
    struct tm tm;
    gmtime_r(&sec, &tm);
    date_len = strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S.", &tm);
    cached_sec = sec;
  }
  /* The date, six digits and "Z", by hand: even one printf per message showed in profiles. */
  memcpy(out, date, date_len);
  unsigned frac = (unsigned)(us % 1000000);
  for (int i = 5; i >= 0; i--, frac /= 10) out[date_len + i] = (char)('0' + frac % 10);
  out[date_len + 6] = 'Z';
  out[date_len + 7] = '\0';
  return date_len + 7;
}

void choreo_time_now(char *buf, size_t size) {
  char full[CHOREO_TIME_TEXT];
  size_t n = choreo_time_format(choreo_time_now_us(), full);
  if (!size) return;
  if (n >= size) n = size - 1; /* truncated, as printf */
  memcpy(buf, full, n);
  buf[n] = '\0';
}
