/* What flowed through a host over a window, for `choreo map`: its journal's entries of the
 * window counted by (source, type, kind, handler), with how many failed and died. */
#ifndef CHOREO_FLOWS_H
#define CHOREO_FLOWS_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "engine.h"

#define CHOREO_FLOWS_MAX_ENTRIES 200000 /* read per request: the loop is not held for long */

/* Adds "flows" (an array of {source, type, kind, handler, count, failed, dead}) and "more"
 * (the window held more entries than were read) to answer. 0 or a CHOREO_E* code. */
int choreo_flows_add(choreo_engine *e, int64_t window_ms, cJSON *answer);

#endif
