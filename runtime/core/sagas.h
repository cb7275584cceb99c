/* Saga instances (choreo.saga, scripts/choreo/saga.lua): the tables choreo_sagas (one row per
 * running instance: its state, encoded with the wire codec, and the version of the definition
 * that wrote it) and choreo_saga_misses (messages that found no instance, counted by saga and
 * type). This file owns both and every statement on them; scripts reach them through the
 * engine while a handler runs, inside the message's transaction. */
#ifndef CHOREO_SAGAS_H
#define CHOREO_SAGAS_H

#include <msgpack.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct choreo_sagas choreo_sagas;

/* Creates the tables if needed and prepares the statements. Returns 0 or CHOREO_EIO. */
int choreo_sagas_open(choreo_sagas **out, sqlite3 *db);
void choreo_sagas_close(choreo_sagas *t);

/* An instance as stored; strings and state are valid during the callback only. */
typedef struct choreo_saga_row {
  const char *name, *key, *updated;
  int64_t version;
  const char *state; /* msgpack; NULL when listing */
  size_t state_len;
} choreo_saga_row;

/* The instance's state (copied into state, cleared first) and version; *found is false when
 * there is no such instance. */
int choreo_sagas_load(choreo_sagas *t, const char *name, const char *key, msgpack_sbuffer *state,
                      int64_t *version, bool *found);
int choreo_sagas_save(choreo_sagas *t, const char *name, const char *key, const char *state,
                      size_t state_len, int64_t version);
int choreo_sagas_remove(choreo_sagas *t, const char *name, const char *key);
/* Counts a message of this type that found no instance of the saga. */
int choreo_sagas_miss(choreo_sagas *t, const char *name, const char *type);

/* How many instances are running. */
int choreo_sagas_count(choreo_sagas *t, int64_t *count);
/* Calls fn for each instance (of saga `name`, or of all when NULL) in name and key order, at
 * most 10,000, without state; with a key, for that one instance, with its state. A negative
 * result of fn stops the walk and is returned. */
typedef int (*choreo_saga_fn)(void *ud, const choreo_saga_row *row);
int choreo_sagas_each(choreo_sagas *t, const char *name, const char *key, choreo_saga_fn fn,
                      void *ud);

#endif
