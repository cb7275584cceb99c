/* Answering FETCH: the REP socket peers catch up from (ipc://BUS/NAME.rep, and port + 1 of
 * each tcp:// PUB endpoint). A request (codec.h: choreo_fetch_decode) asks for our log after
 * the seq the peer last applied and gets one frame of at most CHOREO_FETCH_ROWS rows
 * (engine.h); a negative `after` gets only our name and head. A history request
 * (choreo_history_decode), from another host's projection build, gets
 * choreo_engine_read_history's page. An "ask" (codec.h: choreo_ask_decode), from `choreo trace
 * --peer` and the like, gets a read of the journal or the status, as the control socket
 * answers it. Anything else is logged and dropped. */
#ifndef CHOREO_SERVE_H
#define CHOREO_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "bus.h"
#include "engine.h"

/* Embedded in its owner, as libuv's handles are: start, stop, then wait for
 * server.watch.on_loop to turn false. */
typedef struct choreo_fetch_server {
  choreo_engine *engine;
  choreo_host *host; /* answers "ask" requests (choreo_control_answer_remote) */
  choreo_bus_server server;
  msgpack_sbuffer frame; /* the answer being built; reused */
} choreo_fetch_server;

/* Listens on `urls` (REP endpoints, already paired with their PUB ones) and answers on loop
 * from engine's log. On failure err holds one line; stop the server all the same. */
int choreo_serve_start(choreo_fetch_server *s, uv_loop_t *loop, choreo_host *host,
                       choreo_engine *engine,
                       const char *const *urls, size_t nurls, char *err, size_t errlen);
/* Receives what is waiting (the host's safety drain). */
void choreo_serve_drain(choreo_fetch_server *s);
/* Safe on a zeroed server that never started, and twice. */
void choreo_serve_stop(choreo_fetch_server *s);

#endif
