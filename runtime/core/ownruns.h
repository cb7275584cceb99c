/* What this host appended to its log, as runs of consecutive messages alike in everything
 * that decides whether a handler here takes one: type, kind, destination, correlation,
 * subject, and whether it is an event of one of this host's streams. Its own dispatch passes
 * over a run that no handler here takes without reading its messages back through the codec
 * (a producer's own events, read back and passed over one by one, were an eighth of its
 * instructions). As choreo_appended: one contiguous range of seqs under one store epoch (every
 * rollback moves the epoch on), bounded; past the bound, after a gap (a script's ROLLBACK TO
 * made the log shorter), or for a field too long to keep, it starts over at the next append. */
#ifndef CHOREO_OWNRUNS_H
#define CHOREO_OWNRUNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define CHOREO_OWN_RUNS 16
#define CHOREO_OWN_RUN_BYTES 512 /* the routing fields' bytes, per run */

enum { OWN_TYPE, OWN_KIND, OWN_TO, OWN_CORRELATIONID, OWN_SUBJECT, OWN_FIELDS };

typedef struct choreo_own_run {
  int64_t first, last;
  bool stream_event; /* has a streamversion */
  /* each field's offset and length in bytes; SIZE_MAX offset: absent */
  size_t at[OWN_FIELDS], len[OWN_FIELDS];
  size_t used;
  char bytes[CHOREO_OWN_RUN_BYTES];
} choreo_own_run;

typedef struct choreo_own_runs {
  choreo_own_run run[CHOREO_OWN_RUNS];
  int n;
  uint64_t epoch;
} choreo_own_runs;

/* Notes the message appended as seq under epoch. */
void choreo_own_runs_add(choreo_own_runs *o, uint64_t epoch, int64_t seq,
                         const choreo_msg_fields *f);
/* The runs holding seqs from..to under epoch (*first is the index of the first; count
 * returned), or 0 when not all of them are known. */
int choreo_own_runs_cover(const choreo_own_runs *o, uint64_t epoch, int64_t from, int64_t to,
                          int *first);
/* A run's routing fields as a message from source (its seq the run's first): what the
 * engine's decisions read. The strings point into the run. */
void choreo_own_run_msg(const choreo_own_run *r, const char *source, choreo_msg *m);
/* Forgets the runs up to seq (applied). */
void choreo_own_runs_drop_through(choreo_own_runs *o, int64_t seq);

#endif
