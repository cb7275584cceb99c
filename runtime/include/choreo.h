/* choreo — an event-driven runtime hosting Lua handlers, connected by NNG, durable in SQLite.
 *
 * This is the public C interface: error codes and the host. Nothing here mentions Lua; the Lua
 * interface is documented in README.md. Functions return 0 or a negative CHOREO_E* code, which
 * choreo_strerror() turns into text. */
#ifndef CHOREO_H
#define CHOREO_H

#include <stddef.h>
#include <stdint.h>

#define CHOREO_VERSION "0.1.0"

/* Error codes, always negative. */
enum {
  CHOREO_OK = 0,
  CHOREO_EINVAL = -1,    /* bad argument or malformed input */
  CHOREO_ENOMEM = -2,    /* out of memory */
  CHOREO_EIO = -3,       /* storage failure (SQLite) */
  CHOREO_EBUS = -4,      /* transport failure (NNG) */
  CHOREO_ESCRIPT = -5,   /* a script failed to load or a handler failed */
  CHOREO_ENOENT = -6,    /* no such thing (directory, dead letter, host) */
  CHOREO_ETOOBIG = -7,   /* a value or frame exceeds a limit */
};

/* Returns a static description of an error code. */
const char *choreo_strerror(int err);

/* How a host is started; see `choreo run` in README.md. All strings are borrowed for the call. */
typedef struct choreo_host_options {
  const char *name;         /* service name; unique on the bus */
  const char *dir;          /* directory of the Lua scripts */
  const char *data;         /* SQLite database file */
  const char *bus;          /* bus directory holding the ipc:// endpoints */
  const char **listen;      /* extra PUB endpoints (tcp://host:port); FETCH is served on port+1 */
  size_t nlisten;
  const char **peers;       /* extra peers' PUB endpoints, same convention */
  size_t npeers;
  uint64_t instruction_limit; /* per handler call; 0 = default */
  size_t memory_limit;        /* bytes for the scripts' Lua state; 0 = default */
} choreo_host_options;

/* Runs a host until SIGINT/SIGTERM. Returns 0 after a clean stop, or a negative error after
 * printing one line on stderr. */
int choreo_host_run(const choreo_host_options *opts);

#endif
