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
/* Writes the current UTC time as RFC 3339 with microseconds into buf (at least 32 bytes). */
void choreo_time_now(char *buf, size_t size);

#endif
