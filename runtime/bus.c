/* NNG on the libuv loop and endpoint naming (see bus.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus.h"
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

void choreo_bus_watch_stop(choreo_bus_watch *w, uv_close_cb done) {
  if (!w->started) return;
  w->started = 0;
  uv_close((uv_handle_t *)&w->poll, done);
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

int choreo_bus_dir(const char *given, char *out, size_t size, char *err, size_t errlen) {
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  if (given)
    snprintf(out, size, "%s", given);
  else if (xdg && *xdg)
    snprintf(out, size, "%s/choreo", xdg);
  else
    snprintf(out, size, "/tmp/choreo-%u", (unsigned)getuid());
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

int choreo_bus_valid_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > CHOREO_NAME_MAX || name[0] == '.') return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)name[i]) && !strchr("_.-", name[i])) return 0;
  return 1;
}
