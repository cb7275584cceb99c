/* Error text: the one place a CHOREO_E* code becomes words, so every caller (CLI, logs, Lua
 * error messages) describes a failure the same way. */
#include "choreo.h"

const char *choreo_strerror(int err) {
  switch (err) {
  case CHOREO_OK: return "success";
  case CHOREO_EINVAL: return "invalid argument or malformed input";
  case CHOREO_ENOMEM: return "out of memory";
  case CHOREO_EIO: return "storage failure";
  case CHOREO_EBUS: return "transport failure";
  case CHOREO_ESCRIPT: return "script failure";
  case CHOREO_ENOENT: return "no such entry";
  case CHOREO_ETOOBIG: return "value or frame too large";
  case CHOREO_ESTOPPED: return "the host is stopping";
  default: return "unknown error";
  }
}
