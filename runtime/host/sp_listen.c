/* Listening on ipc://PATH with a uv_pipe_t, and the connections accepted (see sp_listen.h). */
#include "sp_listen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "choreo.h"
#include "log.h"
#include "sp_wire.h"

#define LISTEN_BACKLOG 128

static void listen_on_conn_closed(choreo_sp_conn *c) {
  choreo_sp_accepted *a = c->data;
  choreo_sp_listener *l = a->listener;
  choreo_sp_accepted **at = &l->conns;
  while (*at && *at != a) at = &(*at)->next;
  if (*at) *at = a->next; /* (not listed any more once listening stopped) */
  l->on_loop--;
  free(a);
}

static void listen_on_message(choreo_sp_conn *c, nng_msg *msg) {
  choreo_sp_accepted *a = c->data;
  a->listener->message_cb(a, msg);
}

static void listen_on_drained(choreo_sp_conn *c) {
  choreo_sp_accepted *a = c->data;
  if (a->listener->drained_cb) a->listener->drained_cb(a);
}

static void listen_on_closed(uv_handle_t *handle) {
  ((choreo_sp_listener *)handle->data)->on_loop--;
}

static void listen_on_connection(uv_stream_t *stream, int status) {
  choreo_sp_listener *l = stream->data;
  if (status < 0) {
    choreo_log(CHOREO_LOG_WARN, l->who, "%s: cannot take a connection: %s", l->url,
               uv_strerror(status));
    return;
  }
  choreo_sp_accepted *a = malloc(sizeof *a);
  if (!a || choreo_sp_conn_init(&a->conn, l->loop, l->ours, l->peer, l->who, l->url, &l->warned,
                                listen_on_message, listen_on_conn_closed, a) != 0) {
    /* It waits in the backlog, and libuv hears no more until it is accepted. */
    choreo_log(CHOREO_LOG_ERROR, l->who, "%s: no memory for a connection", l->url);
    free(a);
    return;
  }
  l->on_loop++;
  a->conn.drained_cb = listen_on_drained;
  a->listener = l;
  a->id = l->next_id++;
  a->lost_frames = false;
  a->next = l->conns;
  l->conns = a;
  if (uv_accept(stream, (uv_stream_t *)&a->conn.pipe) != 0) choreo_sp_conn_close(&a->conn);
  else choreo_sp_conn_begin(&a->conn);
}

/* What connecting to the socket at path says: 0 (or EAGAIN, a full backlog) when someone
 * listens there, ECONNREFUSED for a socket nobody listens on (a killed host left it), ENOENT
 * for no socket at all. */
static int listen_probe(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return errno;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%.*s", (int)sizeof sa.sun_path - 1, path);
  int said = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : errno;
  close(fd);
  return said;
}

/* Binds the pipe to path, taking over a socket file nobody listens on. */
static int listen_bind(choreo_sp_listener *l, const char *path) {
  int rc = uv_pipe_bind(&l->pipe, path);
  if (rc == UV_EADDRINUSE && listen_probe(path) == ECONNREFUSED) {
    unlink(path);
    rc = uv_pipe_bind(&l->pipe, path);
  }
  return rc;
}

/* The socket is bound and listened on under a name of its own (the path and a "~"), then
 * renamed to the path: hosts on this machine dial a path the moment it appears in the bus
 * directory, and one bound but not yet listened on refused them, which cost a subscriber its
 * redial interval of live frames (a consumer started with its producer fetched the first
 * 100 ms of them). A path a host listens on is refused, as binding it would be. */
int choreo_sp_listen(choreo_sp_listener *l, uv_loop_t *loop, const char *url, const char *who,
                     uint16_t ours, uint16_t peer, choreo_sp_accepted_cb message_cb, void *data,
                     char *err, size_t errlen) {
  *l = (choreo_sp_listener){.loop = loop, .who = who, .ours = ours, .peer = peer,
                            .message_cb = message_cb, .data = data};
  if (!choreo_sp_ipc_path(url)) {
    snprintf(err, errlen, "cannot listen on %s: not ipc:// with a path a socket can take", url);
    return CHOREO_EINVAL;
  }
  snprintf(l->url, sizeof l->url, "%s", url);
  l->path = l->url + 6;
  uv_pipe_init(loop, &l->pipe, 0); /* cannot fail */
  l->pipe.data = l;
  l->open = true;
  l->on_loop = 1;
  char staging[sizeof l->url];
  snprintf(staging, sizeof staging, "%s~", l->path);
  int probe = listen_probe(l->path);
  int rc = probe == 0 || probe == EAGAIN ? UV_EADDRINUSE : listen_bind(l, staging);
  bool staged = rc == 0;
  if (!rc) rc = uv_listen((uv_stream_t *)&l->pipe, LISTEN_BACKLOG, listen_on_connection);
  if (!rc && rename(staging, l->path) != 0) rc = uv_translate_sys_error(errno);
  l->bound = rc == 0;
  if (rc && staged) unlink(staging);
  if (rc) {
    snprintf(err, errlen, "cannot listen on %s: %s%s", url, uv_strerror(rc),
             rc == UV_EADDRINUSE ? " (is another host with this name running?)" : "");
    return CHOREO_EBUS;
  }
  return 0;
}

choreo_sp_accepted *choreo_sp_listener_find(choreo_sp_listener *l, uint32_t id) {
  for (choreo_sp_accepted *a = l->conns; a; a = a->next)
    if (a->id == id) return a;
  return NULL;
}

void choreo_sp_unlisten(choreo_sp_listener *l) {
  if (!l->open) return;
  l->open = false;
  uv_close((uv_handle_t *)&l->pipe, listen_on_closed);
  if (l->bound) unlink(l->path);
  l->bound = false;
  for (choreo_sp_accepted *a = l->conns; a; a = a->next) choreo_sp_conn_close(&a->conn);
  l->conns = NULL;
}
