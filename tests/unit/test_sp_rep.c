/* Unit test of the REP endpoint the loop serves itself (runtime/host/sp_rep.h): NNG REQ
 * clients get the answers to their own requests (a wrong backtrace would make NNG's REQ drop
 * them), on the wire as NNG's REP puts them; an answer to a client that hung up goes nowhere;
 * a client that greets as something else is hung up on, and a request without a backtrace is
 * dropped; a path left by a killed listener is taken over, one listened on is refused with a
 * reason, and the stop removes the path; the path appears only once its socket listens (a
 * client dialling it at once is never refused). The loop runs on a thread of its own, the
 * clients on the test's. alarm() bounds the process. */
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "choreo.h"
#include "sp_rep.h"
#include "temp_files.h"

/* What a client dialling probed_path found at the moment a socket began to listen: this
 * test's listen() stands in for libc's (libuv calls it), dials, then listens. */
static const char *probed_path;
static int probed_errno = -1;

__attribute__((visibility("default"))) int listen(int fd, int backlog) {
  if (probed_path) {
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = unix_address(probed_path);
    probed_errno = connect(c, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : errno;
    close(c);
  }
  return (int)syscall(SYS_listen, fd, backlog);
}

typedef struct {
  uv_loop_t loop;
  uv_async_t stop;
  uv_timer_t tick; /* answers the held request once its client is gone */
  choreo_sp_rep rep;
  pthread_t thread;
  temp_endpoint at;
  atomic_int requests;   /* handed to the callback */
  nng_msg *held;         /* a request left unanswered (the loop's) */
  atomic_bool released;  /* and answered after its client went */
} fixture;

/* Echoes "re:" and the request; holds one that says "hold". */
static void on_request(void *ud, nng_msg *request) {
  fixture *f = ud;
  atomic_fetch_add(&f->requests, 1);
  size_t len = nng_msg_len(request);
  if (len == 4 && memcmp(nng_msg_body(request), "hold", 4) == 0) {
    f->held = request;
    return;
  }
  char answer[256];
  int n = snprintf(answer, sizeof answer, "re:%.*s", (int)len, (char *)nng_msg_body(request));
  choreo_sp_rep_reply(&f->rep, request, answer, (size_t)n);
}

/* Whether the connection the held request came on has closed. */
static bool held_client_gone(fixture *f) {
  uint32_t id;
  memcpy(&id, nng_msg_header(f->held), sizeof id);
  return choreo_sp_listener_find(&f->rep.listener, id) == NULL;
}

static void on_tick(uv_timer_t *t) {
  fixture *f = t->data;
  if (f->held && held_client_gone(f)) {
    choreo_sp_rep_reply(&f->rep, f->held, "late", 4);
    f->held = NULL;
    atomic_store(&f->released, true);
  }
}

static void on_stop(uv_async_t *a) {
  fixture *f = a->data;
  choreo_sp_rep_stop(&f->rep);
  uv_close((uv_handle_t *)&f->stop, NULL);
  uv_close((uv_handle_t *)&f->tick, NULL);
}

static void *loop_thread(void *arg) {
  fixture *f = arg;
  uv_run(&f->loop, UV_RUN_DEFAULT);
  return NULL;
}

static void fixture_open(fixture *f) {
  memset(f, 0, sizeof *f);
  temp_endpoint_make(&f->at, "sp-rep", "h.ctl");
  CHECK(uv_loop_init(&f->loop) == 0);
  uv_async_init(&f->loop, &f->stop, on_stop);
  uv_timer_init(&f->loop, &f->tick);
  f->stop.data = f->tick.data = f;
  uv_timer_start(&f->tick, on_tick, 5, 5);
}

static void fixture_run(fixture *f) { CHECK(pthread_create(&f->thread, NULL, loop_thread, f) == 0); }

/* Opened, listening, and its loop running. */
static void fixture_serve(fixture *f) {
  fixture_open(f);
  char err[256] = "";
  CHECK(choreo_sp_rep_start(&f->rep, &f->loop, f->at.url, "test", on_request, f, err,
                            sizeof err) == 0);
  fixture_run(f);
}

static void fixture_close(fixture *f) {
  uv_async_send(&f->stop);
  pthread_join(f->thread, NULL);
  CHECK(uv_loop_close(&f->loop) == 0);
  CHECK(access(f->at.path, F_OK) != 0); /* the stop removed it */
  remove_tree(f->at.dir);
}

static nng_socket client(const fixture *f) {
  nng_socket s;
  CHECK(nng_req0_open(&s) == 0);
  CHECK(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000) == 0);
  CHECK(nng_dial(s, f->at.url, NULL, 0) == 0);
  return s;
}

static bool ask(nng_socket s, const char *request, const char *want) {
  if (nng_send(s, (void *)request, strlen(request), 0) != 0) return false;
  char *answer;
  size_t len;
  if (nng_recv(s, &answer, &len, NNG_FLAG_ALLOC) != 0) return false;
  bool same = len == strlen(want) && memcmp(answer, want, len) == 0;
  nng_free(answer, len);
  return same;
}

static void test_clients_get_the_answers_to_their_own_requests(void) {
  fixture f;
  fixture_serve(&f);
  nng_socket a = client(&f), b = client(&f);
  for (int i = 0; i < 50; i++) {
    char req[32], want[40];
    snprintf(req, sizeof req, "a%d", i);
    snprintf(want, sizeof want, "re:a%d", i);
    CHECK(ask(a, req, want));
    snprintf(req, sizeof req, "b%d", i);
    snprintf(want, sizeof want, "re:b%d", i);
    CHECK(ask(b, req, want));
  }
  /* A request left unanswered, its client gone: the answer goes nowhere. */
  CHECK(nng_socket_set_ms(a, NNG_OPT_RECVTIMEO, 100) == 0);
  CHECK(!ask(a, "hold", "late"));
  nng_close(a);
  for (int i = 0; i < 500 && !atomic_load(&f.released); i++) usleep(10000);
  CHECK(atomic_load(&f.released));
  CHECK(ask(b, "still", "re:still"));
  nng_close(b);
  CHECK(atomic_load(&f.requests) == 102);
  fixture_close(&f);
}

/* A bare connection to the endpoint, reads timing out after 2 s. */
static int raw_connect(const fixture *f) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = temp_endpoint_address(&f->at);
  struct timeval two = {.tv_sec = 2};
  CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &two, sizeof two) == 0);
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  return fd;
}

static size_t read_full(int fd, unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  return got;
}

static void test_the_wire_and_bad_clients(void) {
  fixture f;
  fixture_serve(&f);
  static const unsigned char sub_greeting[] = {0, 'S', 'P', 0, 0, 0x21, 0, 0};
  static const unsigned char req_greeting[] = {0, 'S', 'P', 0, 0, 0x30, 0, 0};
  unsigned char got[64];
  /* Greeting as SUB: our greeting, then the end. */
  int fd = raw_connect(&f);
  CHECK(write(fd, sub_greeting, sizeof sub_greeting) == (ssize_t)sizeof sub_greeting);
  CHECK(read_full(fd, got, 8) == 8 && got[5] == CHOREO_SP_REP);
  CHECK(read(fd, got, 1) == 0);
  close(fd);
  /* As REQ: a request without a backtrace's end is dropped; one with it is answered, its
   * backtrace first. */
  fd = raw_connect(&f);
  CHECK(write(fd, req_greeting, sizeof req_greeting) == (ssize_t)sizeof req_greeting);
  static const unsigned char no_end[] = {1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 7};
  static const unsigned char good[] = {1, 0, 0, 0, 0, 0, 0, 0, 6, 0x80, 0, 0, 7, 'h', 'i'};
  CHECK(write(fd, no_end, sizeof no_end) == (ssize_t)sizeof no_end);
  CHECK(write(fd, good, sizeof good) == (ssize_t)sizeof good);
  CHECK(read_full(fd, got, 8) == 8 && got[5] == CHOREO_SP_REP);
  static const unsigned char answer[] = {1, 0, 0, 0, 0, 0, 0, 0, 9, 0x80, 0, 0, 7,
                                         'r', 'e', ':', 'h', 'i'};
  CHECK(read_full(fd, got, sizeof answer) == sizeof answer);
  CHECK(memcmp(got, answer, sizeof answer) == 0);
  CHECK(atomic_load(&f.requests) == 1);
  close(fd);
  fixture_close(&f);
}

/* A socket file nobody listens on at path, as a killed host leaves it. */
static void leave_dead_socket(const char *path) {
  int dead = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = unix_address(path);
  CHECK(bind(dead, (struct sockaddr *)&sa, sizeof sa) == 0);
  close(dead);
}

/* The name a listener binds before it renames the socket to the endpoint's path. */
static void staging_path(const fixture *f, char *out, size_t size) {
  snprintf(out, size, "%s~", f->at.path);
}

static void test_paths_taken_over_refused_and_removed(void) {
  fixture f;
  fixture_open(&f);
  leave_dead_socket(f.at.path);
  char err[256] = "";
  CHECK(choreo_sp_rep_start(&f.rep, &f.loop, f.at.url, "test", on_request, &f, err,
                            sizeof err) == 0);
  /* A second endpoint on the path listened on now is refused, and says why. */
  choreo_sp_rep second;
  CHECK(choreo_sp_rep_start(&second, &f.loop, f.at.url, "test", on_request, &f, err,
                            sizeof err) == CHOREO_EBUS);
  CHECK(strstr(err, "is another host with this name running?") != NULL);
  choreo_sp_rep_stop(&second);
  CHECK(access(f.at.path, F_OK) == 0); /* the refused one did not remove the other's path */
  char staging[sizeof f.at.path + 1];
  staging_path(&f, staging, sizeof staging);
  CHECK(access(staging, F_OK) != 0); /* nor left a name of its own */
  choreo_sp_rep no_path;
  CHECK(choreo_sp_rep_start(&no_path, &f.loop, "ipc://", "test", on_request, &f, err,
                            sizeof err) == CHOREO_EINVAL);
  choreo_sp_rep_stop(&no_path);
  choreo_sp_rep zeroed = {0};
  choreo_sp_rep_stop(&zeroed);
  fixture_run(&f);
  nng_socket s = client(&f);
  CHECK(ask(s, "x", "re:x"));
  nng_close(s);
  fixture_close(&f);
}

/* A client dials the path the moment it appears (as hosts on the bus do, watching its
 * directory): before the socket listens there is nothing there to refuse it. A staging name
 * left by a host killed between its bind and its rename is taken over. */
static void test_the_path_appears_once_it_listens(void) {
  fixture f;
  fixture_open(&f);
  char staging[sizeof f.at.path + 1];
  staging_path(&f, staging, sizeof staging);
  leave_dead_socket(staging);
  probed_path = f.at.path;
  char err[256] = "";
  CHECK(choreo_sp_rep_start(&f.rep, &f.loop, f.at.url, "test", on_request, &f, err,
                            sizeof err) == 0);
  probed_path = NULL;
  CHECK(probed_errno == ENOENT); /* not ECONNREFUSED: a socket bound there, not listening */
  CHECK(access(staging, F_OK) != 0);
  fixture_run(&f);
  nng_socket s = client(&f);
  CHECK(ask(s, "x", "re:x"));
  nng_close(s);
  fixture_close(&f);
}

int main(void) {
  alarm(60);
  signal(SIGPIPE, SIG_IGN); /* as choreo_host_open does: the loop writes to clients that hang up */
  RUN(test_clients_get_the_answers_to_their_own_requests);
  RUN(test_the_wire_and_bad_clients);
  RUN(test_paths_taken_over_refused_and_removed);
  RUN(test_the_path_appears_once_it_listens);
  return CHECK_DONE();
}
