/* NNG on the libuv loop and endpoint naming (see bus.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus.h"

#include <nng/protocol/reqrep0/rep.h>
#include "choreo.h"
#include "codec.h"

static void bus_on_readable(uv_poll_t *poll, int status, int events) {
  (void)status;
  (void)events;
  choreo_bus_watch_drain(poll->data);
}

int choreo_bus_watch_start(choreo_bus_watch *w, uv_loop_t *loop, nng_socket sock,
                           choreo_bus_recv_cb cb, void *ud) {
  int fd;
  if (nng_socket_get_int(sock, NNG_OPT_RECVFD, &fd) != 0) return CHOREO_EBUS;
  w->sock = sock;
  w->cb = cb;
  w->ud = ud;
  if (uv_poll_init(loop, &w->poll, fd) != 0) return CHOREO_EBUS;
  w->poll.data = w;
  w->started = 1;
  w->on_loop = true;
  return uv_poll_start(&w->poll, UV_READABLE, bus_on_readable) ? CHOREO_EBUS : 0;
}

void choreo_bus_watch_drain(choreo_bus_watch *w) {
  if (!w->started) return;
  for (int i = 0; i < CHOREO_DRAIN_PER_WAKE && w->started; i++) {
    nng_msg *msg;
    if (nng_recvmsg(w->sock, &msg, NNG_FLAG_NONBLOCK) != 0) return;
    w->cb(w->ud, msg);
  }
}

static void bus_on_closed(uv_handle_t *handle) {
  choreo_bus_watch *w = handle->data;
  w->on_loop = false; /* before the callback, which may free the watch */
  if (w->closed) w->closed(w->ud);
}

int choreo_bus_watch_stop(choreo_bus_watch *w, choreo_bus_closed_cb closed) {
  if (!w->started) return 0;
  w->started = 0;
  w->closed = closed;
  uv_close((uv_handle_t *)&w->poll, bus_on_closed);
  return 1;
}

#define BUS_REPLY_WAIT_MS 100

int choreo_bus_server_start(choreo_bus_server *s, uv_loop_t *loop, const char *const *urls,
                            size_t nurls, choreo_bus_recv_cb cb, void *ud, const char *what,
                            char *err, size_t errlen) {
  *s = (choreo_bus_server){.open = false};
  if (nng_rep0_open(&s->sock) != 0) {
    snprintf(err, errlen, "cannot open the %s socket", what);
    return CHOREO_EBUS;
  }
  s->open = true;
  nng_socket_set_ms(s->sock, NNG_OPT_SENDTIMEO, BUS_REPLY_WAIT_MS);
  int rc = 0;
  for (size_t i = 0; !rc && i < nurls; i++) rc = choreo_bus_listen(s->sock, urls[i], err, errlen);
  if (rc) return rc;
  rc = choreo_bus_watch_start(&s->watch, loop, s->sock, cb, ud);
  if (rc) snprintf(err, errlen, "cannot watch the %s socket", what);
  return rc;
}

void choreo_bus_server_reply(choreo_bus_server *s, nng_msg *request, const void *body,
                             size_t len) {
  nng_msg_clear(request);
  if (nng_msg_append(request, body, len) != 0 || nng_sendmsg(s->sock, request, 0) != 0)
    nng_msg_free(request);
}

void choreo_bus_server_stop(choreo_bus_server *s) {
  choreo_bus_watch_stop(&s->watch, NULL);
  if (s->open) nng_close(s->sock);
  s->open = false;
}

int choreo_bus_listen(nng_socket s, const char *url, char *err, size_t errlen) {
  nng_listener l;
  int rv = nng_listener_create(&l, s, url);
  if (!rv) rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, CHOREO_MAX_FRAME);
  if (!rv) rv = nng_listener_start(l, 0);
  if (rv) {
    snprintf(err, errlen, "cannot listen on %s: %s%s", url, nng_strerror(rv),
             rv == NNG_EADDRINUSE ? " (is another host with this name running?)" : "");
    return CHOREO_EBUS;
  }
  return 0;
}

int choreo_bus_dial(nng_socket s, const char *url, nng_dialer *dialer) {
  nng_dialer d;
  int rv = nng_dialer_create(&d, s, url);
  if (!rv) rv = nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, CHOREO_MAX_FRAME);
  if (!rv) rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
  if (!rv && dialer) *dialer = d;
  return rv ? CHOREO_EBUS : 0;
}

int choreo_bus_dir(const char *given, bool create, char *out, size_t size, char *err,
                   size_t errlen) {
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  if (given)
    snprintf(out, size, "%s", given);
  else if (xdg && *xdg)
    snprintf(out, size, "%s/choreo", xdg);
  else
    snprintf(out, size, "/tmp/choreo-%u", (unsigned)getuid());
  struct stat st;
  if (!create) {
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    snprintf(err, errlen, "no host is running on bus %s (no such directory)", out);
    return CHOREO_ENOENT;
  }
  if (mkdir(out, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create the bus directory %s: %s", out, strerror(errno));
    return CHOREO_EIO;
  }
  return 0;
}

void choreo_bus_ipc_url(char *out, size_t size, const char *dir, const char *name,
                        const char *suffix) {
  snprintf(out, size, "ipc://%s/%s.%s", dir, name, suffix);
}

int choreo_bus_rep_url(const char *pub_url, char *out, size_t size) {
  size_t n = strlen(pub_url);
  if (strncmp(pub_url, "ipc://", 6) == 0 && n > 4 && strcmp(pub_url + n - 4, ".pub") == 0) {
    snprintf(out, size, "%.*s.rep", (int)(n - 4), pub_url);
    return 0;
  }
  const char *colon = strrchr(pub_url, ':');
  if (!colon || strstr(pub_url, "://") == NULL || colon < strstr(pub_url, "://") + 3)
    return CHOREO_EINVAL;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end != '\0' || port < 1 || port > 65534) return CHOREO_EINVAL;
  snprintf(out, size, "%.*s:%ld", (int)(colon - pub_url), pub_url, port + 1);
  return 0;
}

int choreo_bus_each_host(const char *dir, const char *suffix, choreo_bus_host_fn fn, void *ud) {
  DIR *d = opendir(dir);
  if (!d) return CHOREO_EIO;
  size_t tail = strlen(suffix) + 1; /* ".SUFFIX" */
  for (struct dirent *ent; (ent = readdir(d));) {
    size_t n = strlen(ent->d_name);
    if (n <= tail || n - tail > CHOREO_NAME_MAX || ent->d_name[n - tail] != '.' ||
        strcmp(ent->d_name + n - tail + 1, suffix) != 0)
      continue;
    char name[CHOREO_NAME_MAX + 1];
    snprintf(name, sizeof name, "%.*s", (int)(n - tail), ent->d_name);
    if (choreo_name_valid(name)) fn(ud, name);
  }
  closedir(d);
  return 0;
}
