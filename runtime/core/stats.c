/* The engine's counters (see stats.h). A type is found by a linear search that starts at the
 * type found last; at 256 types a hash table would pay, but then the labels would be a
 * cardinality problem for Prometheus first. */
#include "stats.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "choreo.h"

const double choreo_duration_bounds[CHOREO_DURATION_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1};
const double choreo_batch_bounds[CHOREO_BATCH_BUCKETS] = {1, 10, 50, 100, 500, 1000};

static bool stats_is(const choreo_type_stats *t, choreo_str type) {
  return type.n < sizeof t->type && t->type[type.n] == '\0' &&
         choreo_bytes_eq(t->type, type.p, type.n);
}

/* Whether a type can be a label: UTF-8 without control characters (a peer may send anything,
 * and one bad label makes Prometheus refuse the whole page). */
bool choreo_stats_printable(choreo_str t) {
  const unsigned char *p = (const unsigned char *)t.p, *end = p + t.n;
  while (p < end) {
    int more = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 : (*p & 0xF8) == 0xF0 ? 3 : -1;
    if (more < 0 || *p < 0x20 || *p == 0x7F || end - p <= more) return false;
    for (int i = 1; i <= more; i++)
      if ((p[i] & 0xC0) != 0x80) return false;
    p += more + 1;
  }
  return true;
}

static choreo_type_stats *stats_find(choreo_stats *s, choreo_str type) {
  if (s->ntypes && stats_is(&s->types[s->last], type)) return &s->types[s->last];
  for (int i = 0; i < s->ntypes; i++) {
    if (stats_is(&s->types[i], type)) {
      s->last = i;
      return &s->types[i];
    }
  }
  if (s->ntypes == CHOREO_STATS_TYPES || type.n == 0 || type.n >= sizeof s->types[0].type ||
      !choreo_stats_printable(type))
    return &s->other;
  choreo_type_stats *t = &s->types[s->ntypes];
  memcpy(t->type, type.p, type.n);
  t->type[type.n] = '\0';
  s->last = s->ntypes++;
  return t;
}

static int stats_bucket(const double *bounds, int n, double v) {
  int i = 0;
  while (i < n && v > bounds[i]) i++;
  return i;
}

int choreo_stats_note(choreo_stats *s, choreo_str type, choreo_stats_outcome outcome,
                      double seconds) {
  if (s->nnoted == s->capnoted) {
    int cap = s->capnoted ? s->capnoted * 2 : 256;
    choreo_stats_noted *grown = realloc(s->noted, (size_t)cap * sizeof *grown);
    if (!grown) return CHOREO_ENOMEM;
    s->noted = grown;
    s->capnoted = cap;
  }
  s->noted[s->nnoted++] = (choreo_stats_noted){stats_find(s, type), outcome, seconds};
  return 0;
}

void choreo_stats_commit(choreo_stats *s) {
  for (int i = 0; i < s->nnoted; i++) {
    const choreo_stats_noted *n = &s->noted[i];
    choreo_type_stats *t = n->type;
    if (n->outcome == CHOREO_STATS_OK) t->handled++;
    else t->failed++;
    if (n->outcome == CHOREO_STATS_DEAD) t->dead++;
    t->duration.buckets[stats_bucket(choreo_duration_bounds, CHOREO_DURATION_BUCKETS, n->seconds)]++;
    t->duration.count++;
    t->duration.sum += n->seconds;
  }
  if (s->nnoted) {
    s->batch_buckets[stats_bucket(choreo_batch_bounds, CHOREO_BATCH_BUCKETS, s->nnoted)]++;
    s->batches++;
    s->batch_messages += (uint64_t)s->nnoted;
  }
  s->nnoted = 0;
}

void choreo_stats_discard(choreo_stats *s) { s->nnoted = 0; }

void choreo_stats_free(choreo_stats *s) {
  free(s->noted);
  s->noted = NULL;
  s->nnoted = s->capnoted = 0;
}
