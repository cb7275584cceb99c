/* Where choreo finds the Lua half of itself (scripts/choreo/): next to the binary, as the
 * build and an install lay it out, or in the source tree the binary was built from. */
#ifndef CHOREO_PATHS_H
#define CHOREO_PATHS_H

/* The directory holding choreo/testing.lua and friends; computed once, never NULL. */
const char *choreo_paths_scripts(void);

#endif
