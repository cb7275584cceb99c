/* This host's appended messages in runs alike (see ownruns.h). */
#include "ownruns.h"

#include <string.h>

static const char *own_field(const choreo_msg_fields *f, int i) {
  const char *s = i == OWN_TYPE            ? f->type
                  : i == OWN_KIND          ? f->kind
                  : i == OWN_TO            ? f->to
                  : i == OWN_CORRELATIONID ? f->correlationid
                                           : f->subject;
  return s && *s ? s : NULL; /* an empty string is absent once encoded */
}

/* Whether the message is alike the run's messages. */
static bool own_alike(const choreo_own_run *r, const choreo_msg_fields *f) {
  if (r->stream_event != (f->streamversion > 0)) return false;
  for (int i = 0; i < OWN_FIELDS; i++) {
    const char *s = own_field(f, i);
    if (!s) {
      if (r->at[i] != SIZE_MAX) return false;
    } else if (r->at[i] == SIZE_MAX || strlen(s) != r->len[i] ||
               memcmp(r->bytes + r->at[i], s, r->len[i]) != 0) {
      return false;
    }
  }
  return true;
}

/* Starts a run for the message at seq; false when its fields do not fit. */
static bool own_start(choreo_own_run *r, int64_t seq, const choreo_msg_fields *f) {
  r->first = r->last = seq;
  r->stream_event = f->streamversion > 0;
  r->used = 0;
  for (int i = 0; i < OWN_FIELDS; i++) {
    const char *s = own_field(f, i);
    r->at[i] = SIZE_MAX;
    r->len[i] = 0;
    if (!s) continue;
    size_t n = strlen(s);
    if (n > sizeof r->bytes - r->used) return false;
    memcpy(r->bytes + r->used, s, n);
    r->at[i] = r->used;
    r->len[i] = n;
    r->used += n;
  }
  return true;
}

void choreo_own_runs_add(choreo_own_runs *o, uint64_t epoch, int64_t seq,
                         const choreo_msg_fields *f) {
  if (o->n && (o->epoch != epoch || seq != o->run[o->n - 1].last + 1)) o->n = 0;
  o->epoch = epoch;
  if (o->n && own_alike(&o->run[o->n - 1], f)) {
    o->run[o->n - 1].last = seq;
    return;
  }
  if (o->n == CHOREO_OWN_RUNS) o->n = 0;
  if (!own_start(&o->run[o->n], seq, f)) {
    o->n = 0;
    return;
  }
  o->n++;
}

int choreo_own_runs_cover(const choreo_own_runs *o, uint64_t epoch, int64_t from, int64_t to,
                          int *first) {
  if (!o->n || o->epoch != epoch || from > to || from < o->run[0].first ||
      to > o->run[o->n - 1].last)
    return 0;
  int i = 0;
  while (o->run[i].last < from) i++;
  int j = i;
  while (o->run[j].last < to) j++;
  *first = i;
  return j - i + 1;
}

void choreo_own_run_msg(const choreo_own_run *r, const char *source, choreo_msg *m) {
  memset(m, 0, sizeof *m);
  choreo_str *fields[OWN_FIELDS] = {[OWN_TYPE] = &m->type, [OWN_KIND] = &m->kind,
                                    [OWN_TO] = &m->to, [OWN_CORRELATIONID] = &m->correlationid,
                                    [OWN_SUBJECT] = &m->subject};
  for (int i = 0; i < OWN_FIELDS; i++)
    if (r->at[i] != SIZE_MAX) *fields[i] = (choreo_str){r->bytes + r->at[i], r->len[i]};
  m->source = (choreo_str){source, strlen(source)};
  m->seq = r->first;
  m->streamversion = r->stream_event ? 1 : 0;
  m->expectedversion = -1;
}

void choreo_own_runs_drop_through(choreo_own_runs *o, int64_t seq) {
  int i = 0;
  while (i < o->n && o->run[i].last <= seq) i++;
  if (i == 0) return;
  memmove(o->run, o->run + i, (size_t)(o->n - i) * sizeof *o->run);
  o->n -= i;
  if (o->n && o->run[0].first <= seq) o->run[0].first = seq + 1;
}
