/* A REQ client its caller's thread reads and writes alone (see sp_req.h). */
#include "sp_req.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench_util.h"
#include "sp_wire.h"

#define REPLY_MAX (64u << 20) /* no control reply comes near it: a longer one is a broken peer */

/* Room for n bytes in *buf, grown as needed; false when there is no memory. */
static bool room(char **buf, size_t *cap, size_t n) {
  if (n <= *cap) return true;
  char *grown = realloc(*buf, n);
  if (!grown) return false;
  *buf = grown;
  *cap = n;
  return true;
}

int bench_sp_req_open(bench_sp_req *r, const char *url, int timeout_s, char *err, size_t errlen) {
  *r = (bench_sp_req){.fd = -1, .next_id = 1, .timeout_ms = timeout_s * 1000};
  const char *path = choreo_sp_ipc_path(url);
  if (!path) {
    snprintf(err, errlen, "%s is not an ipc:// URL a Unix socket can take", url);
    return -1;
  }
  struct sockaddr_un addr = bench_unix_address(path);
  struct timeval limit = {.tv_sec = timeout_s};
  uint8_t ours[CHOREO_SP_GREETING_SIZE], theirs[CHOREO_SP_GREETING_SIZE];
  choreo_sp_greeting(ours, CHOREO_SP_REQ);
  r->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (r->fd < 0 || setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) ||
      setsockopt(r->fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit) ||
      connect(r->fd, (struct sockaddr *)&addr, sizeof addr) ||
      bench_write_all(r->fd, ours, sizeof ours) || bench_read_all(r->fd, theirs, sizeof theirs)) {
    snprintf(err, errlen, "cannot connect to %s", url);
    bench_sp_req_close(r);
    return -1;
  }
  if (choreo_sp_greeting_protocol(theirs) != CHOREO_SP_REP) {
    snprintf(err, errlen, "%s answers as %s, not REP", url,
             choreo_sp_protocol_name(choreo_sp_greeting_protocol(theirs)));
    bench_sp_req_close(r);
    return -1;
  }
  return 0;
}

/* Waits in poll(2) for the reply, not in read(2): a reader blocked on a Unix socket is woken
 * each time its peer reads what it sent (the kernel tells the socket's sleepers that there is
 * room to write, and a blocked read does not filter what it is woken for), and on a two-CPU
 * machine that wake-up lands on the host's CPU while it handles the request. An NNG REQ socket
 * or any client on poll or epoll is not woken so; hiredis over TCP, the Redis peer's, is not
 * either (TCP wakes writers only when one ran out of room). */
static bool sp_req_readable(bench_sp_req *r) {
  struct pollfd p = {.fd = r->fd, .events = POLLIN};
  int rc;
  do rc = poll(&p, 1, r->timeout_ms);
  while (rc < 0 && errno == EINTR);
  return rc == 1;
}

const char *bench_sp_req_call(bench_sp_req *r, const void *req, size_t len, size_t *reply_len) {
  /* The backtrace REP sends back: one word, the request's id with its top bit set. */
  uint32_t id = r->next_id++ | CHOREO_SP_BACKTRACE_END;
  size_t size = CHOREO_SP_HEADER_SIZE + 4 + len; /* one write: header, backtrace, request */
  if (!room(&r->out, &r->out_cap, size)) return NULL;
  uint8_t *m = (uint8_t *)r->out, reply_head[CHOREO_SP_HEADER_SIZE];
  choreo_sp_header(m, len + 4);
  for (int i = 0; i < 4; i++) m[CHOREO_SP_HEADER_SIZE + i] = (uint8_t)(id >> (24 - 8 * i));
  memcpy(m + CHOREO_SP_HEADER_SIZE + 4, req, len);
  uint64_t n;
  if (bench_write_all(r->fd, m, size) || !sp_req_readable(r) ||
      bench_read_all(r->fd, reply_head, sizeof reply_head) ||
      !choreo_sp_header_length(reply_head, &n) || n < 4 || n > REPLY_MAX ||
      !room(&r->reply, &r->reply_cap, n) || bench_read_all(r->fd, r->reply, n) ||
      memcmp(r->reply, m + CHOREO_SP_HEADER_SIZE, 4))
    return NULL;
  *reply_len = n - 4;
  return r->reply + 4;
}

void bench_sp_req_close(bench_sp_req *r) {
  if (r->fd >= 0) close(r->fd);
  free(r->out);
  free(r->reply);
  *r = (bench_sp_req){.fd = -1};
}
