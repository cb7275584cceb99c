/* What the runtime gets from bindings/, in C terms only (no Lua header): the engine's
 * scripting language (choreo_scripts_ops, engine.h) implemented for Lua, and the busted runner
 * behind `choreo test`. */
#ifndef CHOREO_LUA_SCRIPTS_H
#define CHOREO_LUA_SCRIPTS_H

#include "engine.h"

/* One generation of a service's scripts is a Lua state with every *.lua file of the directory
 * loaded in name order, run under an instruction budget and a memory ceiling; a reload builds
 * a new one, a state is never patched in place. */
extern const choreo_scripts_ops choreo_lua_scripts;

/* Runs the busted specs in DIR/spec inside a Lua state with choreo's bindings; args go to
 * busted. *passed tells whether every spec passed; a negative CHOREO_E* code with err set
 * means busted could not run at all: CHOREO_EINVAL for arguments busted does not take. */
int choreo_lua_run_tests(const char *dir, const char *const *args, int nargs, bool *passed,
                         char *err, size_t errlen);

#endif
