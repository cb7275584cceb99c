/* Preloaded into a host by test_failures.py (LD_PRELOAD): an nng_close that never returns, as
 * NNG 1.5's does once one of its connections was closed in the middle of a message
 * (docs/ARCHITECTURE.md, on NNG 1.5). That bug depends on a race; this makes it certain. */
#include <nng/nng.h>
#include <unistd.h>

/* Exported although the build hides symbols by default: it must take NNG's place. */
__attribute__((visibility("default"))) int nng_close(nng_socket s) {
  (void)s;
  for (;;) pause();
}
