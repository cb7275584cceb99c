/* What the host's own parts (control.c) need of it beyond the public API in choreo.h: its
 * engine, for the requests that only read or change the database, and the one thing to call
 * after anything committed outside the host's own paths. */
#ifndef CHOREO_HOST_H
#define CHOREO_HOST_H

#include "choreo.h"
#include "engine.h"

choreo_engine *choreo_host_engine(choreo_host *h);
/* After a commit: publish new rows, let our own handlers see them, re-arm the timers. */
void choreo_host_committed(choreo_host *h);

#endif
