/* What the engine counts for metrics (`choreo run --metrics`): per message type, how many were
 * handled, failed every immediate attempt, or died, and a histogram of the handlers' time;
 * batch sizes; reloads. Plain counters in memory, written by the loop only; the host copies
 * them into its metrics page between batches. A batch's handlings count once it commits (one
 * that rolls back runs again), so they are noted first and counted at the commit. */
#ifndef CHOREO_STATS_H
#define CHOREO_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"

#define CHOREO_STATS_TYPES 256 /* types counted apart; the rest as one */
#define CHOREO_DURATION_BUCKETS 12
#define CHOREO_BATCH_BUCKETS 6

/* Upper bounds of the histograms' buckets (the last is +Inf, not listed). */
extern const double choreo_duration_bounds[CHOREO_DURATION_BUCKETS]; /* seconds */
extern const double choreo_batch_bounds[CHOREO_BATCH_BUCKETS];       /* messages */

typedef struct choreo_histogram_duration {
  uint64_t buckets[CHOREO_DURATION_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
  uint64_t count;
  double sum;
} choreo_histogram_duration;

typedef struct choreo_type_stats {
  char type[64]; /* "" for the types past CHOREO_STATS_TYPES */
  uint64_t handled, failed, dead;
  choreo_histogram_duration duration;
} choreo_type_stats;

typedef enum choreo_stats_outcome { CHOREO_STATS_OK, CHOREO_STATS_FAILED, CHOREO_STATS_DEAD } choreo_stats_outcome;

typedef struct choreo_stats_noted {
  choreo_type_stats *type;
  choreo_stats_outcome outcome;
  double seconds;
} choreo_stats_noted;

typedef struct choreo_stats {
  choreo_type_stats types[CHOREO_STATS_TYPES];
  int ntypes;
  choreo_type_stats other;
  int last; /* the type found last: messages come in runs of one type */
  uint64_t batch_buckets[CHOREO_BATCH_BUCKETS + 1];
  uint64_t batches, batch_messages;
  uint64_t reloads, reload_failures;
  double last_reload_seconds;
  choreo_stats_noted *noted; /* the batch under way's */
  int nnoted, capnoted;
} choreo_stats;

/* Notes a handling of the batch under way; 0 or CHOREO_ENOMEM. */
int choreo_stats_note(choreo_stats *s, choreo_str type, choreo_stats_outcome outcome,
                      double seconds);
/* The batch committed: count what it noted. */
void choreo_stats_commit(choreo_stats *s);
/* It rolled back: forget it. */
void choreo_stats_discard(choreo_stats *s);
void choreo_stats_free(choreo_stats *s);
/* Whether a message type can be a Prometheus label as it is (UTF-8, no control characters). */
bool choreo_stats_printable(choreo_str type);

#endif
