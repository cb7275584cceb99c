/* The history a projection's build fetches from other hosts' logs (see projections.h for the
 * build itself). This file owns choreo_build_sources, choreo_build_history and
 * choreo_build_replay, three tables in a build's own file, and every statement on them.
 *
 * A build planned with history first lists the sources this host has applied messages from,
 * each with `upto`, its checkpoint then: everything of a source up to there the live tables
 * have seen, and a build must see too. The host fetches each source's history after
 * `fetched` (history requests, page by page) and the engine stores the messages the projection
 * takes here, leaving out those this host has not applied (waiting for a retry, dead letters:
 * if they succeed later they are kept, and come in with the kept inputs). A source that cannot
 * be fetched (no such host, no answer) is given up with why. Either way the inputs this host
 * kept of it up to `upto` are then merged in (`merged`, a batch per step; they may predate
 * what the peer's retention left), so its history is one list in seq order, once per (source,
 * seq). Once every source is fetched or given up and merged, the build replays
 * the history, per source in seq order (events of one source keep their order; between
 * sources there is none to keep), then goes on with the streams and the kept inputs, skipping
 * those its history covered. Everything is in the build's file, so a `kill -9` resumes. */
#ifndef CHOREO_BUILDHISTORY_H
#define CHOREO_BUILDHISTORY_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "choreo.h"
#include "codec.h"

/* The names of what this file creates in a build's file, as an SQL list: a swap leaves them. */
#define CHOREO_BUILD_HISTORY_OBJECTS \
  "'choreo_build_sources', 'choreo_build_history', 'choreo_build_history_once', " \
  "'choreo_build_replay'"

enum { CHOREO_HISTORY_FETCHING, CHOREO_HISTORY_FETCHED, CHOREO_HISTORY_GIVEN_UP };

typedef struct choreo_history_source {
  char name[CHOREO_NAME_MAX + 1];
  int64_t upto;    /* this host's checkpoint of it when the build was planned */
  int64_t fetched; /* its log is fetched through this seq */
  int64_t gone;    /* of its messages up to upto, those its retention deleted before we asked */
  int state;       /* CHOREO_HISTORY_* */
  int64_t merged;  /* the inputs this host kept of it are in the history through this seq */
  char why[200];   /* why it was given up */
} choreo_history_source;

typedef struct choreo_build_history {
  bool planned;  /* false: a build file from before history, or one not planned yet */
  bool replayed; /* the history is applied: the build is on its streams and kept inputs */
  char replay_source[CHOREO_NAME_MAX + 1]; /* the last history message applied */
  int64_t replay_seq;
  int n;
  choreo_history_source *sources;
} choreo_build_history;

/* Creates the tables in a build's file if they are not there (a build file from before history
 * gets them empty): once, when the file is opened. */
int choreo_build_history_setup(sqlite3 *build);
/* Reads the tables into h. */
int choreo_build_history_read(sqlite3 *build, choreo_build_history *h);
void choreo_build_history_free(choreo_build_history *h);
/* Records the plan: these sources (none for a build without history) and the replay's start. */
int choreo_build_history_plan(sqlite3 *build, const choreo_history_source *sources, int n);
/* The first source still to fetch, or NULL. */
const choreo_history_source *choreo_build_history_wanted(const choreo_build_history *h);
choreo_history_source *choreo_build_history_find(choreo_build_history *h, const char *source,
                                                 size_t len);
/* The first source fetched or given up whose kept inputs are not all merged in, or NULL. */
const choreo_history_source *choreo_build_history_merging(const choreo_build_history *h);
/* Whether the history holds (source, seq): 1, a kept input to skip after it; 0; or
 * CHOREO_EIO. st comes from holds_prepare (the caller finalizes it). */
int choreo_build_history_holds_prepare(sqlite3 *build, sqlite3_stmt **st);
int choreo_build_history_holds(const choreo_build_history *h, sqlite3_stmt *st, choreo_str source,
                               int64_t seq);

/* Storing a page of a source's log: begin, store each message, then say how far the source is
 * fetched (and, once it is fetched or given up, its state); end commits what the page stored,
 * or rolls it back when rc is not 0, and returns rc or its own failure. */
typedef struct choreo_history_page {
  sqlite3 *build;
  sqlite3_stmt *store, *keep;
} choreo_history_page;
int choreo_build_history_begin(sqlite3 *build, choreo_history_page *page);
int choreo_build_history_store(choreo_history_page *page, choreo_str source, int64_t seq,
                               const char *msg, size_t len);
/* What this host kept of a source: replaces a fetched message of the same (source, seq). */
int choreo_build_history_store_kept(choreo_history_page *page, choreo_str source, int64_t seq,
                                    const char *msg, size_t len);
int choreo_build_history_progress(choreo_history_page *page, const choreo_history_source *s);
int choreo_build_history_end(choreo_history_page *page, int rc);

/* Calls fn with up to max messages of the history after (source, seq), in (source, seq) order;
 * *n counts the calls that returned 0. */
int choreo_build_history_replay(sqlite3 *build, const char *source, int64_t seq, int max,
                                int (*fn)(void *ud, int64_t seq, const char *msg, size_t len),
                                void *ud, int *n);
/* The replay went through (source, seq), and is done or not: in the build's open transaction. */
int choreo_build_history_advance(sqlite3 *build, const char *source, int64_t seq, bool done);
/* How many messages of the history are after the replay's position. */
int choreo_build_history_remaining(sqlite3 *build, const choreo_build_history *h, int64_t *n);

#endif
