/* The "latency" workload of the broker peers: the producer offers events at a fixed rate, each
 * stamped with the time it is sent (bench_payload_stamped); the consumer notes, for each event,
 * the time right after the SQLite COMMIT that holds it; the figures are percentiles of the
 * difference. Both sides read CLOCK_MONOTONIC on the same machine. */
#ifndef BENCH_LATENCY_H
#define BENCH_LATENCY_H

/* The producer's schedule: event i is due at start + i / rate. A rate of 0 makes every event
 * due at once: the pipeline workload's producer, flat out. */
typedef struct bench_pace {
  double start; /* bench_now() when the schedule began */
  double rate;
  long events;
  long next; /* the first event not handed out yet */
} bench_pace;

void bench_pace_start(bench_pace *p, long rate, long events);

/* Sleeps until the next event is due, unless it is already, then hands out the run of events
 * due by now, at most `max`: sets *first to the first index and returns their number, or 0
 * once every event was handed out. Times count from the start, never from the last wakeup, so
 * a late wakeup does not shift the schedule: the events it made late go out at once. */
long bench_pace_due(bench_pace *p, long max, long *first);

/* The one-hop floors' publishers: `events` payloads at `rate`, each stamped with its send time
 * (bench_payload_stamped) and handed to send(ctx, payload) when its time comes. */
void bench_pace_stamped(long rate, long events,
                        void (*send)(void *ctx, const unsigned char *payload), void *ctx);

/* A record of latencies, one per event. */
typedef struct bench_latency {
  double *v;
  long n;
  long cap;
} bench_latency;

/* Room for `events` events. */
void bench_latency_init(bench_latency *l, long events);

/* Notes one event's latency in seconds. Fails (bench_fail) beyond the room made. */
void bench_latency_add(bench_latency *l, double seconds);

/* The latency in seconds below which a fraction `p` of the committed events fall: sorted
 * latencies, index min(n - 1, floor(p * n)). Sorts the record; needs at least one latency. */
double bench_latency_percentile(bench_latency *l, double p);

void bench_latency_free(bench_latency *l);

#endif
