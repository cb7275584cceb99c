/* Listening on ipc://PATH with a uv_pipe_t, for the endpoints the loop serves itself (sp_rep.h,
 * sp_pub.h), and the connections it accepts there (sp_conn.h), as NNG's ipc listener listens: a
 * socket file nobody listens on any more (a killed host's) is taken over, one listened on is
 * refused with a reason, and the path is removed when listening stops. Unlike NNG's, the path
 * appears only once its socket listens (sp_listen.c). */
#ifndef CHOREO_SP_LISTEN_H
#define CHOREO_SP_LISTEN_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>
#include <uv.h>

#include "sp_conn.h"

struct choreo_sp_listener;

/* A connection accepted: its conn.data is itself. */
typedef struct choreo_sp_accepted {
  choreo_sp_conn conn;
  struct choreo_sp_listener *listener;
  uint32_t id;                         /* unique in its listener's life */
  bool lost_frames; /* PUB: frames were dropped for it since the last one it was sent */
  struct choreo_sp_accepted *next;
} choreo_sp_accepted;

/* A message that came on a connection; the callee owns msg. */
typedef void (*choreo_sp_accepted_cb)(choreo_sp_accepted *a, nng_msg *msg);
/* A connection took the last of the messages that had waited to be sent to it. */
typedef void (*choreo_sp_accepted_drained_cb)(choreo_sp_accepted *a);

typedef struct choreo_sp_listener {
  uv_loop_t *loop;
  const char *who; /* names the host in the log */
  char url[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
  const char *path; /* in url */
  uint16_t ours, peer; /* the connections' protocols */
  choreo_sp_accepted_cb message_cb;
  choreo_sp_accepted_drained_cb drained_cb; /* optional, set by the owner after the listen */
  void *data; /* the owner's */
  uv_pipe_t pipe;
  bool open;  /* initialised and not yet closed */
  bool bound; /* the path is ours to remove */
  choreo_sp_accepted *conns; /* open; those closing since the stop are off the list */
  uint32_t next_id;
  int on_loop; /* handles of ours the loop holds: the listener's, one per connection */
  bool warned; /* about a connection, since the last good message */
} choreo_sp_listener;

/* Listens on url for peers of protocol peer; 0, or CHOREO_EINVAL / CHOREO_EBUS with err set. On
 * failure stop it all the same. Embedded in its owner, as libuv's handles are: after the stop
 * the owner turns the loop until on_loop is 0. */
int choreo_sp_listen(choreo_sp_listener *l, uv_loop_t *loop, const char *url, const char *who,
                     uint16_t ours, uint16_t peer, choreo_sp_accepted_cb message_cb, void *data,
                     char *err, size_t errlen);
/* The connection of that id, or NULL when it has closed. */
choreo_sp_accepted *choreo_sp_listener_find(choreo_sp_listener *l, uint32_t id);
/* Closes the listener and every connection, and removes the path. Safe on a zeroed struct and
 * twice. */
void choreo_sp_unlisten(choreo_sp_listener *l);

#endif
