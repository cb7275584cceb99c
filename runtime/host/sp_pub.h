/* A PUB endpoint on this machine (ipc://PATH, the bus directory's NAME.pub) whose subscribers'
 * connections the loop accepts and writes to itself (sp_conn.h). A frame sent on NNG 1.5's PUB
 * socket went on from the loop to NNG's task threads, which took the socket's locks in turn with
 * the loop (four context switches a frame on this project's VM: README, "Latency"); and each
 * subscriber of this machine now reads its connection itself (sp_sub.h). Subscribers are SUB
 * sockets, NNG's (choreo tail) or the loop's, that cannot tell it from NNG's PUB. As NNG's PUB
 * does, it never waits for a subscriber: one that has CHOREO_SP_PUB_BEHIND_MAX of frames unread
 * loses the frames sent meanwhile, and fetches them: a gap in the seqs says so, or, when it lost
 * the last frames of a burst, the notice it is sent once it has taken all the rest (a frame
 * without messages that names the publisher's head), where it waited for its periodic FETCH,
 * a second later. */
#ifndef CHOREO_SP_PUB_H
#define CHOREO_SP_PUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sp_listen.h"

#define CHOREO_SP_PUB_BEHIND_MAX ((size_t)32 << 20)
/* A frame header with the longest name fits. */
#define CHOREO_SP_PUB_NOTICE_MAX 160

/* Embedded in its owner, as libuv's handles are: the owner outlives the loop's turns after the
 * stop. */
typedef struct choreo_sp_pub {
  choreo_sp_listener listener; /* its connections are the subscribers' */
  uint64_t dropped;            /* frames a subscriber lost for being behind */
  uint8_t notice[CHOREO_SP_PUB_NOTICE_MAX]; /* for one that lost frames (0 bytes: none) */
  size_t notice_len;
} choreo_sp_pub;

/* Listens on url (ipc://PATH); 0, or CHOREO_EBUS / CHOREO_EINVAL with err set. On failure stop
 * it all the same. */
int choreo_sp_pub_start(choreo_sp_pub *p, uv_loop_t *loop, const char *url, const char *who,
                        char *err, size_t errlen);
/* Subscribers connected and greeted (`choreo status`: subscribers). */
int choreo_sp_pub_subscribers(const choreo_sp_pub *p);
/* Sends a copy of the frame to each subscriber not too far behind; how many it went to. */
int choreo_sp_pub_send(choreo_sp_pub *p, const void *frame, size_t len);
/* What a subscriber that lost frames is sent once it has taken the rest, unless a frame went to
 * it meanwhile: its owner's, set after sending frames that some subscriber lost. Longer than
 * CHOREO_SP_PUB_NOTICE_MAX, none is sent. */
void choreo_sp_pub_set_notice(choreo_sp_pub *p, const void *notice, size_t len);
/* Closes the listener and every connection, and removes the path. Safe on a zeroed struct and
 * twice. */
void choreo_sp_pub_stop(choreo_sp_pub *p);

#endif
