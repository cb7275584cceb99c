/* A REQ client of an ipc:// endpoint that its calling thread alone reads and writes, as hiredis
 * is for Redis: NNG's REQ socket hands each request and reply between the caller and NNG's own
 * threads, wake-ups that on a two-CPU machine compete with the hosts being measured for the
 * CPUs (README, "Latency"). It speaks what NNG's ipc transport puts on the socket
 * (runtime/host/sp_wire.h), so the endpoint cannot tell it from an NNG REQ socket. */
#ifndef BENCH_SP_REQ_H
#define BENCH_SP_REQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct bench_sp_req {
  int fd;
  int timeout_ms; /* for each reply */
  uint32_t next_id;
  char *out; /* the request being sent, framed */
  size_t out_cap;
  char *reply; /* the last reply, its backtrace first */
  size_t reply_cap;
} bench_sp_req;

/* Connects to url (ipc://PATH) and exchanges the greetings; every read and write afterwards
 * gives up after timeout_s. 0, or -1 with a reason in err. */
int bench_sp_req_open(bench_sp_req *r, const char *url, int timeout_s, char *err, size_t errlen);
/* Sends one request and waits for its reply; the reply's body (valid until the next call), or
 * NULL when the connection failed or timed out, or the reply was not this request's. */
const char *bench_sp_req_call(bench_sp_req *r, const void *req, size_t len, size_t *reply_len);
void bench_sp_req_close(bench_sp_req *r);

#endif
