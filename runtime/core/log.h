/* The host's diagnostic log: one line per record on stderr, "time level [who] text". */
#ifndef CHOREO_LOG_H
#define CHOREO_LOG_H

typedef enum { CHOREO_LOG_DEBUG, CHOREO_LOG_INFO, CHOREO_LOG_WARN, CHOREO_LOG_ERROR } choreo_log_level;

/* Records below the level from $CHOREO_LOG (debug|info|warn|error; default info) are dropped. */
void choreo_log(choreo_log_level level, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int choreo_log_enabled(choreo_log_level level);

#endif
