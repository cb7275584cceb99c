/* What flowed through a host, for `choreo map` and `choreo ui`: its journal's entries of a
 * window counted by (source, type, kind, handler), with how many failed and died; and its
 * newest conversations. */
#ifndef CHOREO_FLOWS_H
#define CHOREO_FLOWS_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "engine.h"

#define CHOREO_FLOWS_MAX_ENTRIES 200000 /* read per request: the loop is not held for long */

/* Adds "flows" (an array of {source, type, kind, handler, count, failed, dead}) and "more"
 * (the window held more entries than were read) to answer. 0 or a CHOREO_E* code. */
int choreo_flows_add(choreo_engine *e, int64_t window_ms, cJSON *answer);

#define CHOREO_FLOWS_CONVERSATIONS 50       /* the newest conversations listed */
#define CHOREO_FLOWS_RECENT_ENTRIES 20000   /* newest entries read to find them */

/* Adds "conversations": the newest conversations this host took part in (at most 50, from its
 * newest 20,000 entries), each {correlation, first_ms, last_ms, messages, failed} as far as
 * those entries go. */
int choreo_flows_conversations(choreo_engine *e, cJSON *answer);

#endif
