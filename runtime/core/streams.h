/* Event streams (choreo.aggregate, scripts/choreo/aggregate.lua): the tables choreo_streams
 * (each event of each stream: its version in the stream, the seq of its log row and its
 * encoded message, a copy that log retention leaves alone, since a stream is the source of
 * truth; rows in seq order, so appends write at the end, and an index on (stream, version):
 * keyed by stream the rows themselves landed all over the table, and a batch of commands to
 * scattered streams rewrote a page for each, 2.1x the CPU per command at 100,000 events) and choreo_snapshots (the latest snapshot of a stream's state, encoded with the wire
 * codec, with the fingerprint of the code that folded it). This file owns both and every
 * statement on them. */
#ifndef CHOREO_STREAMS_H
#define CHOREO_STREAMS_H

#include <msgpack.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct choreo_streams choreo_streams;

/* Creates the tables if needed and prepares the statements. Returns 0 or CHOREO_EIO. */
int choreo_streams_open(choreo_streams **out, sqlite3 *db);
void choreo_streams_close(choreo_streams *t);

/* The stream's version: its last event's, 0 when it has none. */
int choreo_streams_version(choreo_streams *t, const char *stream, int64_t *version);
/* Records event `version` of the stream: the seq of its log row and its encoded message. A
 * version the stream has already is CHOREO_EINVAL (the caller checked it first). */
int choreo_streams_add(choreo_streams *t, const char *stream, int64_t version, int64_t seq,
                       const char *msg, size_t len);
/* Calls fn with each event after `after`, in order; msg (encoded) is valid during the call
 * only. A non-zero result of fn stops the walk and is returned. */
typedef int (*choreo_stream_fn)(void *ud, int64_t version, const char *msg, size_t len);
int choreo_streams_each(choreo_streams *t, const char *stream, int64_t after,
                        choreo_stream_fn fn, void *ud);

/* Calls fn with up to max events of any stream whose log seq is in (after, upto], in seq order
 * (a projection's build); *n gets how many. A non-zero result of fn stops the walk and is
 * returned. */
typedef int (*choreo_stream_seq_fn)(void *ud, int64_t seq, const char *msg, size_t len);
int choreo_streams_since(choreo_streams *t, int64_t after, int64_t upto, int max,
                         choreo_stream_seq_fn fn, void *ud, int *n);
/* How many events of any stream have their log seq in (after, upto]. */
int choreo_streams_count_since(choreo_streams *t, int64_t after, int64_t upto, int64_t *n);
/* Whether any stream has an event. */
int choreo_streams_any(choreo_streams *t, bool *any);

/* The stream's snapshot if the code that folds it has this fingerprint: its state (copied into
 * state, cleared first) and the version it folds up to. *found is false otherwise. */
int choreo_streams_snapshot_load(choreo_streams *t, const char *stream, const char *fingerprint,
                                 msgpack_sbuffer *state, int64_t *version, bool *found);
int choreo_streams_snapshot_save(choreo_streams *t, const char *stream, int64_t version,
                                 const char *fingerprint, const char *state, size_t len);
/* Drops the snapshots of streams named "<prefix>..." that another fingerprint wrote: stale
 * once the code that folds them changed. *dropped gets how many. */
int choreo_streams_snapshots_drop_stale(choreo_streams *t, const char *prefix,
                                        const char *fingerprint, int *dropped);

#endif
