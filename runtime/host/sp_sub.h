/* A subscriber to one PUB endpoint on this machine (ipc://PATH) whose connection the loop reads
 * itself (sp_conn.h). NNG 1.5 hands each message it receives from its poller thread to a task thread, then
 * through the socket's queue and notification pipe to the loop: on a virtual machine whose idle
 * CPUs halt, each hand-off to a thread on the other CPU costs tens of µs, and a frame's hop
 * between two hosts took ~100 µs at the median where a socket read by the loop takes 5-6 (the
 * benchmark's nng_raw and uv_raw). So frames from hosts of this machine come over a Unix socket
 * in a uv_pipe_t, speaking SP as NNG's ipc transport does (sp_wire.h): the PUB side is the
 * publisher's NNG socket as before, which cannot tell us from an NNG subscriber.
 *
 * It dials until stopped, again CHOREO_SP_REDIAL_MS after each failure or hang-up (or at once
 * when told the endpoint has appeared: choreo_sp_sub_dial_now), and hands each frame to the
 * callback as an nng_msg, as the NNG watches do (bus.h). A frame larger than CHOREO_MAX_FRAME,
 * or a greeting from anything but a PUB endpoint, ends the connection (the frames it misses
 * are fetched). */
#ifndef CHOREO_SP_SUB_H
#define CHOREO_SP_SUB_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>
#include <uv.h>

#include "sp_conn.h"

#define CHOREO_SP_REDIAL_MS 100

typedef void (*choreo_sp_sub_frame_cb)(void *ud, nng_msg *frame); /* the callee owns frame */
typedef void (*choreo_sp_sub_closed_cb)(void *ud);

/* Embedded in its owner, as libuv's handles are: start, stop, then wait for closed. */
typedef struct choreo_sp_sub {
  uv_loop_t *loop;
  const char *who; /* names the host in the log */
  char url[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
  const char *path; /* in url */
  choreo_sp_sub_frame_cb frame_cb;
  choreo_sp_sub_closed_cb closed_cb;
  void *ud;
  choreo_sp_conn conn;
  bool conn_open; /* initialised and not yet let go of by the loop */
  uv_connect_t connect;
  uv_timer_t redial;
  bool redial_open;
  bool stopping;
  bool warned; /* about the endpoint, since the last frame that came */
} choreo_sp_sub;

/* 0, or CHOREO_EINVAL when url is not ipc://PATH with a path a Unix socket can take, or
 * CHOREO_ENOMEM. Connecting goes on in the background. */
int choreo_sp_sub_start(choreo_sp_sub *s, uv_loop_t *loop, const char *url, const char *who,
                        choreo_sp_sub_frame_cb frame_cb, void *ud);
/* Whether a PUB endpoint has greeted us on the connection open now. */
bool choreo_sp_sub_up(const choreo_sp_sub *s);
/* The endpoint's path has (re)appeared: a subscriber waiting to redial dials now, so that a
 * publisher restarting loses no more of its first frames than the dial takes (its listener
 * makes the path appear only once it listens: sp_listen.h). Does nothing otherwise. */
void choreo_sp_sub_dial_now(choreo_sp_sub *s);
/* Gives back a frame frame_cb was handed and is done with (choreo_sp_conn_recycle). */
void choreo_sp_sub_recycle(choreo_sp_sub *s, nng_msg *frame);
/* Hangs up for good; closed(ud) runs once the loop has let go (s may be freed then). Returns
 * whether it was started: if not, closed is not called. Safe on a zeroed struct and twice. */
bool choreo_sp_sub_stop(choreo_sp_sub *s, choreo_sp_sub_closed_cb closed);

#endif
