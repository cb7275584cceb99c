/* Closing an NNG socket without waiting forever. NNG 1.5 can hang for good in nng_close once
 * one of its connections was closed in the middle of a message (docs/ARCHITECTURE.md, on NNG
 * 1.5): its only reaper thread then waits for that connection forever, and every later
 * nng_close in the process waits behind it. A host that stops must not hang with it: by then
 * it has nothing left to commit. */
#ifndef CHOREO_BUS_CLOSE_H
#define CHOREO_BUS_CLOSE_H

#include <nng/nng.h>
#include <stdbool.h>

#define CHOREO_BUS_CLOSE_WAIT_MS 2000

/* Ends the socket's pipe notifications (nothing of the caller's is called back afterwards),
 * then closes it on a thread of its own and waits for NNG at most CHOREO_BUS_CLOSE_WAIT_MS. A
 * socket NNG still holds then is NNG's for good: its endpoints and connections are closed, only
 * the wait for NNG's reaper never ends. From then on later closes in the process do not wait at
 * all: they would wait behind it. */
void choreo_bus_close(nng_socket s);
/* Whether an nng_close in this process has not returned in time. */
bool choreo_bus_nng_stuck(void);

#endif
