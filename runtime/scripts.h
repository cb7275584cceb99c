/* One generation of a service's scripts: a Lua state with every *.lua file of the directory
 * loaded, run under an instruction budget and a memory ceiling. The engine keeps one and builds
 * a replacement on reload; a state is never patched in place. */
#ifndef CHOREO_SCRIPTS_H
#define CHOREO_SCRIPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"

struct choreo_engine;
typedef struct choreo_scripts choreo_scripts;

/* Loads every .lua file of dir in name order into a new state. On failure returns CHOREO_ESCRIPT with
 * "file:line: message" in err. */
int choreo_scripts_load(choreo_scripts **out, struct choreo_engine *e, const char *dir,
                        uint64_t instruction_limit, size_t memory_limit, char *err,
                        size_t errlen);
void choreo_scripts_free(choreo_scripts *s);

/* True if some handler takes messages of this type. */
bool choreo_scripts_handles(choreo_scripts *s, choreo_str type);

/* Runs every handler for m. Returns 0, or CHOREO_ESCRIPT with the error in err and a malloc'd
 * traceback in *traceback (caller frees; may be NULL). */
int choreo_scripts_deliver(choreo_scripts *s, const choreo_msg *m, char *err, size_t errlen,
                           char **traceback);

/* choreo.on registered a handler: what is known of which types have handlers is stale. A no-op
 * in states that are not a service's scripts. */
void choreo_scripts_handlers_changed(void *lua_state);

/* The engine a binding runs for (stored in the state's extra space). */
struct choreo_engine *choreo_scripts_engine_of(void *lua_state);

#endif
