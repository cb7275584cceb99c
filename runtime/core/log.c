/* The host's diagnostic log (see log.h). Lines are written with one fprintf so records from
 * the loop never interleave mid-line. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static choreo_log_level log_threshold(void) {
  static int threshold = -1;
  if (threshold < 0) {
    const char *env = getenv("CHOREO_LOG");
    threshold = CHOREO_LOG_INFO;
    for (int i = 0; env && i < 4; i++)
      if (strcmp(env, level_names[i]) == 0) threshold = i;
  }
  return (choreo_log_level)threshold;
}

int choreo_log_enabled(choreo_log_level level) { return level >= log_threshold(); }

void choreo_log(choreo_log_level level, const char *who, const char *fmt, ...) {
  if (!choreo_log_enabled(level)) return;
  char text[2048], now[40];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  choreo_time_now(now, sizeof now);
  fprintf(stderr, "%s %-5s [%s] %s\n", now, level_names[level], who, text);
}
