/* C handlers (choreo_host_on in choreo.h): a registry of (pattern, function) pairs kept by the
 * engine beside the scripts, and the choreo_ctx they work with. They run inside the engine's
 * dispatch, in the message's savepoint, before the Lua handlers; they are not part of a
 * scripts generation, so a reload keeps them. */
#ifndef CHOREO_HANDLERS_H
#define CHOREO_HANDLERS_H

#include <stdbool.h>
#include <stddef.h>

#include "choreo.h"
#include "codec.h"

struct choreo_engine;
typedef struct choreo_handlers choreo_handlers;

/* An empty registry; NULL when memory runs out. */
choreo_handlers *choreo_handlers_new(void);
void choreo_handlers_free(choreo_handlers *hs);

/* pattern: an exact type, or a prefix ending in '*'. CHOREO_EINVAL for an empty pattern or a
 * NULL function. */
int choreo_handlers_add(choreo_handlers *hs, const char *pattern, choreo_handler_fn fn, void *ud);
bool choreo_handlers_match(const choreo_handlers *hs, choreo_str type);

/* Runs every matching handler for m, in registration order, stopping at the first failure:
 * returns 0, or CHOREO_ESCRIPT with the reason in err. */
int choreo_handlers_run(const choreo_handlers *hs, struct choreo_engine *e, const choreo_msg *m,
                        char *err, size_t errlen);

#endif
