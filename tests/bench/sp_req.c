/* A REQ client its caller's thread reads and writes alone (see sp_req.h). */
#include "sp_req.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "sp_wire.h"

#define REPLY_MAX (64u << 20) /* no control reply comes near it: a longer one is a broken peer */

static int write_all(int fd, struct iovec *iov, int n) {
  while (n > 0) {
    ssize_t k = writev(fd, iov, n);
    if (k <= 0) return -1;
    for (; n > 0 && (size_t)k >= iov->iov_len; iov++, n--) k -= (ssize_t)iov->iov_len;
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + k;
      iov->iov_len -= (size_t)k;
    }
  }
  return 0;
}

static int read_all(int fd, void *buf, size_t n) {
  for (char *p = buf; n > 0;) {
    ssize_t k = read(fd, p, n);
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

int bench_sp_req_open(bench_sp_req *r, const char *url, int timeout_s, char *err, size_t errlen) {
  *r = (bench_sp_req){.fd = -1, .next_id = 1};
  const char *path = choreo_sp_ipc_path(url);
  if (!path) {
    snprintf(err, errlen, "%s is not an ipc:// URL a Unix socket can take", url);
    return -1;
  }
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  memcpy(addr.sun_path, path, strlen(path) + 1);
  struct timeval limit = {.tv_sec = timeout_s};
  uint8_t ours[CHOREO_SP_GREETING_SIZE], theirs[CHOREO_SP_GREETING_SIZE];
  choreo_sp_greeting(ours, CHOREO_SP_REQ);
  struct iovec iov = {ours, sizeof ours};
  r->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (r->fd < 0 || setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) ||
      setsockopt(r->fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit) ||
      connect(r->fd, (struct sockaddr *)&addr, sizeof addr) || write_all(r->fd, &iov, 1) ||
      read_all(r->fd, theirs, sizeof theirs)) {
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

const char *bench_sp_req_call(bench_sp_req *r, const void *req, size_t len, size_t *reply_len) {
  /* The backtrace REP sends back: one word, the request's id with its top bit set. */
  uint32_t id = r->next_id++ | CHOREO_SP_BACKTRACE_END;
  uint8_t head[CHOREO_SP_HEADER_SIZE + 4], reply_head[CHOREO_SP_HEADER_SIZE];
  choreo_sp_header(head, len + 4);
  for (int i = 0; i < 4; i++) head[CHOREO_SP_HEADER_SIZE + i] = (uint8_t)(id >> (24 - 8 * i));
  struct iovec iov[2] = {{head, sizeof head}, {(void *)req, len}};
  uint64_t n;
  if (write_all(r->fd, iov, 2) || read_all(r->fd, reply_head, sizeof reply_head) ||
      !choreo_sp_header_length(reply_head, &n) || n < 4 || n > REPLY_MAX)
    return NULL;
  if (n > r->cap) {
    char *grown = realloc(r->reply, n);
    if (!grown) return NULL;
    r->reply = grown;
    r->cap = n;
  }
  if (read_all(r->fd, r->reply, n) || memcmp(r->reply, head + CHOREO_SP_HEADER_SIZE, 4)) return NULL;
  *reply_len = n - 4;
  return r->reply + 4;
}

void bench_sp_req_close(bench_sp_req *r) {
  if (r->fd >= 0) close(r->fd);
  free(r->reply);
  *r = (bench_sp_req){.fd = -1};
}
