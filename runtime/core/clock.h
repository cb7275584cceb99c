/* The wall clock, in the two forms choreo uses: milliseconds since the epoch (due times of
 * retries and timeouts) and RFC 3339 text (message and dead-letter stamps); and a monotonic
 * one for durations. */
#ifndef CHOREO_CLOCK_H
#define CHOREO_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the Unix epoch. */
int64_t choreo_clock_ms(void);
/* Microseconds of a clock that never goes back, for durations. */
int64_t choreo_clock_monotonic_us(void);
/* Seconds since the Unix epoch, with microseconds. */
double choreo_clock_seconds(void);
/* Microseconds since the Unix epoch: a message's time as our writers put it on the wire. */
int64_t choreo_time_now_us(void);
/* Writes the current UTC time as RFC 3339 with microseconds into buf (at least 32 bytes). */
void choreo_time_now(char *buf, size_t size);

/* The latest time choreo_time_format takes: 9999-12-31T23:59:59.999999Z. */
#define CHOREO_TIME_US_MAX INT64_C(253402300799999999)
/* RFC 3339 with microseconds, UTC ("2026-12-05T18:06:17.123456Z", 27 bytes): at most 31 bytes
 * and a NUL, the text choreo_time_now writes. us is 0..CHOREO_TIME_US_MAX. Returns the length. */
#define CHOREO_TIME_TEXT 32
size_t choreo_time_format(int64_t us, char out[CHOREO_TIME_TEXT]);

#endif
