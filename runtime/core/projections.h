/* Projections (choreo.projection, scripts/choreo/projection.lua): read models that handlers keep
 * in tables of their own. This file owns choreo_projections (a table), the build files and every
 * statement on both.
 *
 * A projection's live tables are in the host's database, under the names its `tables` SQL
 * gave them; its handlers write them in the transaction of the message they handle, like any
 * handler, as long as the live tables are of the version the code declares. A build fills a
 * projection from its first event on (a projection new to a host that has history already, a
 * changed version, `choreo projections rebuild`), from this host's streams and then from the
 * other messages projections took here, kept for that (choreo_projection_inputs, also owned
 * here): into a database file of its own beside the
 * host's, on a connection of its own, so that its tables can take the live ones' names. The
 * file holds its positions too (the seq of the last stream event it applied, the id of the last
 * kept input), committed with what the handlers wrote, so a build resumes after a crash. Once it has applied every stream
 * event the host's own handlers have seen, swap puts its tables in place of the live ones in
 * one transaction of the host's connection. */
#ifndef CHOREO_PROJECTIONS_H
#define CHOREO_PROJECTIONS_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct choreo_projections choreo_projections;

/* What one projection is: as declared by the scripts, as stored, and how its build goes. */
typedef struct choreo_projection_status {
  const char *name;
  int64_t declared;       /* the version the scripts declare; 0 when they no longer do */
  int64_t live;           /* the version of the live tables; 0 when none */
  const char *objects;    /* the live tables, indexes, views, triggers: "name name ..." */
  int64_t building;       /* the version being built; 0 when none */
  int64_t position;       /* the build's last stream event (a seq of this host's log) */
  int64_t inputs;         /* the build's last kept input (see choreo_projections_keep) */
  int64_t applied;        /* events the build has gone through */
  int64_t remaining;      /* events it has still to go through (filled by the engine) */
  double rate;            /* of them per second, since this process took the build up */
  const char *error;      /* why the build stopped, or "" */
  const char *history;    /* how fetching other hosts' history goes, or "" (filled by the engine) */
} choreo_projection_status;

/* Creates the table if needed. data is the host's database path (":memory:" puts build files
 * in the temporary directory); prepare is called with each build connection opened, for the
 * limits that apply to handlers on it, and release before one is closed, for whoever holds
 * statements on it. */
int choreo_projections_open(choreo_projections **out, sqlite3 *db, const char *data,
                            void (*prepare)(void *ud, sqlite3 *build),
                            void (*release)(void *ud, sqlite3 *build), void *ud);
/* Closes the builds' connections; the files of a host on disk stay, to be resumed. */
void choreo_projections_close(choreo_projections *p);

/* Takes the scripts' declarations: a projection new here gets its live tables at once (and a
 * build when the host has streams already, see has_history); one whose version differs from
 * its live tables' gets a build of that version (or resumes the one under way). All new
 * projections' tables are created in one transaction: if any fails, nothing changed and err
 * says which and why. Between batches only. */
typedef struct choreo_projection_decl {
  const char *name;
  int64_t version;
  const char *tables; /* SQL creating its tables */
  const char *types;  /* the event types its handlers take, '\n' after each */
} choreo_projection_decl;
int choreo_projections_sync(choreo_projections *p, const choreo_projection_decl *decl, int n,
                            bool has_history, int64_t now_ms, char *err, size_t errlen);
/* Retention of the kept inputs: deletes up to max_rows of those whose type no declared
 * projection has named since before before_ms (in the caller's transaction); *deleted says how
 * many. Inputs of a type some projection names stay: they are the history a build replays. */
int choreo_projections_expire(choreo_projections *p, int64_t before_ms, int max_rows,
                              int *deleted);

/* Starts the build of a declared projection afresh (`choreo projections rebuild`).
 * CHOREO_ENOENT when the scripts declare none of that name. */
int choreo_projections_rebuild(choreo_projections *p, const char *name, char *err, size_t errlen);

/* Whether the live tables of `name` are of `version`. */
bool choreo_projections_live(choreo_projections *p, const char *name, int64_t version);
/* Whether the handlers of `version` write the live tables of `name` for a message: they are of
 * that version, and the message is not a stream event of this host's (own_stream_seq, its seq;
 * 0 for any other message) that their build applied already. */
bool choreo_projections_applies(choreo_projections *p, const char *name, int64_t version,
                                int64_t own_stream_seq);

/* Whether the scripts declare `name` at version. */
bool choreo_projections_declared(choreo_projections *p, const char *name, int64_t version);
/* Whether a build has work: one under way that has not failed. */
bool choreo_projections_building(choreo_projections *p);
/* The next build to step: its name and the connection to its file, with *position the last
 * stream event it applied and *inputs the last kept input (choreo_projections_keep); false
 * when no build is under way (or all have failed). */
bool choreo_projections_next_build(choreo_projections *p, const char **name, sqlite3 **build,
                                   int64_t *position, int64_t *inputs);
/* The build of `name` went through stream events up to `position` and kept inputs up to
 * `inputs` (n of them in all) in the build connection's open transaction: records it there,
 * and commits every few steps, and when the build has caught up. */
int choreo_projections_advance(choreo_projections *p, const char *name, int64_t position,
                               int64_t inputs, int64_t n, bool caught_up);
/* Keeps a copy of a message a projection's handler takes that is not one of this host's stream
 * events (those a build finds in the streams), once per (source, seq), in the transaction that
 * handles it: a build replays them, in the order they were kept. */
int choreo_projections_keep(choreo_projections *p, const char *source, size_t source_len,
                            int64_t seq, const char *type, size_t type_len, const char *msg,
                            size_t len);
/* Calls fn with up to max kept inputs of source with seqs in (after, upto], in seq order,
 * until fn returns non-zero, which is returned; *n counts the calls that returned 0. */
int choreo_projections_inputs_of(choreo_projections *p, const char *source, int64_t after,
                                 int64_t upto, int max,
                                 int (*fn)(void *ud, int64_t seq, const char *msg, size_t len),
                                 void *ud, int *n);
/* Whether the declared handlers of `name` take events of this type. */
bool choreo_projections_takes(choreo_projections *p, const char *name, const char *type,
                              size_t len);
/* The connection to the build file of `name` if this process has it open, else NULL. */
sqlite3 *choreo_projections_build_of(choreo_projections *p, const char *name);
/* How many kept inputs there are after id `after`. */
int choreo_projections_inputs_after(choreo_projections *p, int64_t after, int64_t *n);
/* Calls fn with up to max kept inputs after id `after`, in order; *n gets how many. */
int choreo_projections_inputs_since(choreo_projections *p, int64_t after, int max,
                                    int (*fn)(void *ud, int64_t id, const char *msg, size_t len),
                                    void *ud, int *n);
/* A handler failed in the build of `name`: its open transaction rolls back, and it stops, with
 * why, until the next reload or rebuild, which start it afresh. When the transaction had ended
 * under the handlers already (what they wrote after it may be in the file), the file goes, so
 * that a restart starts it afresh too. */
void choreo_projections_fail(choreo_projections *p, const char *name, const char *why);
/* Closes the build's connection, its open transaction rolling back: the next step takes the
 * build up from its file's last commit. */
void choreo_projections_put_down(choreo_projections *p, const char *name);
/* The build of `name` has caught up: its tables replace the live ones in one transaction of
 * the host's connection, its file goes. On failure the build stops with the reason. */
int choreo_projections_swap(choreo_projections *p, const char *name);

/* Calls fn with each projection declared or stored. */
typedef void (*choreo_projection_fn)(void *ud, const choreo_projection_status *s);
void choreo_projections_each(choreo_projections *p, choreo_projection_fn fn, void *ud);

#endif
