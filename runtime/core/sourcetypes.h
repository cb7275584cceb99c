/* Which message types each other host has sent this one, and from which seq on this host has
 * been noting them: a projection's build fetches history only from the hosts that sent a type
 * it takes (or that it cannot tell about), and does not wait for one that never did. This file
 * owns choreo_source_types and every statement on it.
 *
 * Noted in the transaction of the batch that applies the message, for every message of the
 * source (addressed here or not), so the record commits with the checkpoint. The (source,
 * type) pairs noted are remembered until a rollback: after a host's first message of a type,
 * the next cost a few comparisons, not a statement. */
#ifndef CHOREO_SOURCETYPES_H
#define CHOREO_SOURCETYPES_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "codec.h"

typedef struct choreo_source_types choreo_source_types;

int choreo_source_types_open(choreo_source_types **out, sqlite3 *db);
void choreo_source_types_close(choreo_source_types *t);
/* Notes that source sent a message of type (at seq), in the caller's transaction. epoch is
 * the store's (choreo_store_epoch): what was remembered under another may have rolled back. */
int choreo_source_types_note(choreo_source_types *t, choreo_str source, choreo_str type,
                             int64_t seq, uint64_t epoch);
/* Whether source may have sent a type takes(ud, type) says yes to: it did, or this host has no
 * record of its messages from its first on (a database from before the record, a log trimmed
 * before this host first heard it). */
int choreo_source_types_may_have_sent(choreo_source_types *t, const char *source,
                                      bool (*takes)(void *ud, const char *type, size_t len),
                                      void *ud, bool *may);

#endif
