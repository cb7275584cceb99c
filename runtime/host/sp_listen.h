/* Listening on ipc://PATH with a uv_pipe_t, for the endpoints the loop serves itself (sp_rep.h,
 * sp_pub.h), as NNG's ipc listener listens: a socket file nobody listens on any more (a killed
 * host's) is taken over, one listened on is refused with a reason, and the path is removed
 * when listening stops. */
#ifndef CHOREO_SP_LISTEN_H
#define CHOREO_SP_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/un.h>
#include <uv.h>

typedef struct choreo_sp_listener {
  char url[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
  const char *path; /* in url */
  uv_pipe_t pipe;   /* uv_accept from it; its data is the caller's */
  bool open;        /* initialised and not yet closed */
  bool bound;       /* the path is ours to remove */
} choreo_sp_listener;

/* Listens on url, calling cb for each connection; 0, or CHOREO_EINVAL / CHOREO_EBUS with err
 * set. On failure stop it all the same. */
int choreo_sp_listen(choreo_sp_listener *l, uv_loop_t *loop, const char *url,
                     uv_connection_cb cb, void *data, char *err, size_t errlen);
/* Closes it and removes the path. Safe on a zeroed struct and twice. */
void choreo_sp_unlisten(choreo_sp_listener *l);

#endif
