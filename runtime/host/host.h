/* What the host's own parts (control.c) need of it beyond the public API in choreo.h: its
 * engine, for the requests that only read or change the database, and the one thing to call
 * after anything committed outside the host's own paths. */
#ifndef CHOREO_HOST_H
#define CHOREO_HOST_H

#include "choreo.h"
#include "engine.h"

choreo_engine *choreo_host_engine(choreo_host *h);
/* The name a host takes when it is given none: the base name of its resolved directory. */
const char *choreo_host_default_name(const char *real_dir);
/* After a commit: publish new rows, let our own handlers see them, re-arm the timers. */
void choreo_host_committed(choreo_host *h);
/* Appends n messages of one type (data msgpack, NULL for none) in one transaction, once per
 * key (see choreo_engine_emit_batch), and publishes them. CHOREO_EINVAL inside a handler, whose
 * transaction is open. */
int choreo_host_append(choreo_host *h, const char *kind, const char *to, const char *type,
                       const choreo_emit_opts *opts, const char *const *data, const size_t *len,
                       int n, const char *key, int64_t *first_seq, bool *repeated);
#endif
