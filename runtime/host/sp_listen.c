/* Listening on ipc://PATH with a uv_pipe_t (see sp_listen.h). */
#include "sp_listen.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "choreo.h"
#include "sp_wire.h"

#define LISTEN_BACKLOG 128

/* Whether the socket at path is one nobody listens on (a host that was killed left it). */
static bool listen_stale(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  bool stale = connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno == ECONNREFUSED;
  close(fd);
  return stale;
}

int choreo_sp_listen(choreo_sp_listener *l, uv_loop_t *loop, const char *url,
                     uv_connection_cb cb, void *data, char *err, size_t errlen) {
  memset(l, 0, sizeof *l);
  if (!choreo_sp_ipc_path(url)) {
    snprintf(err, errlen, "cannot listen on %s: not ipc:// with a path a socket can take", url);
    return CHOREO_EINVAL;
  }
  snprintf(l->url, sizeof l->url, "%s", url);
  l->path = l->url + 6;
  uv_pipe_init(loop, &l->pipe, 0); /* cannot fail */
  l->pipe.data = data;
  l->open = true;
  int rc = uv_pipe_bind(&l->pipe, l->path);
  if (rc == UV_EADDRINUSE && listen_stale(l->path)) {
    unlink(l->path);
    rc = uv_pipe_bind(&l->pipe, l->path);
  }
  l->bound = rc == 0;
  if (!rc) rc = uv_listen((uv_stream_t *)&l->pipe, LISTEN_BACKLOG, cb);
  if (rc) {
    snprintf(err, errlen, "cannot listen on %s: %s%s", url, uv_strerror(rc),
             rc == UV_EADDRINUSE ? " (is another host with this name running?)" : "");
    return CHOREO_EBUS;
  }
  return 0;
}

void choreo_sp_unlisten(choreo_sp_listener *l) {
  if (!l->open) return;
  l->open = false;
  uv_close((uv_handle_t *)&l->pipe, NULL);
  if (l->bound) unlink(l->path);
  l->bound = false;
}
