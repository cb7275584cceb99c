/* Unit test of the subscriber the loop reads itself (runtime/host/sp_sub.h), against a real NNG
 * PUB socket over ipc: frames of every size arrive whole and in order (freed by the callee,
 * or given back to be read into again), a turn of the loop takes at most
 * CHOREO_DRAIN_PER_WAKE of them and the next turns the rest, and a publisher that restarts is
 * dialled again (at once when the subscriber is told its endpoint appeared). Against a fake
 * publisher (a bare Unix socket): a greeting from anything but PUB, bytes that are not SP, and
 * a frame over CHOREO_MAX_FRAME each end the connection without a frame delivered and it is
 * dialled again; a stop while nothing listens lets the loop close. alarm() bounds the
 * process. */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "bus.h"
#include "check.h"
#include "choreo.h"
#include "codec.h"
#include "sp_sub.h"
#include "temp_files.h"

#define MANY 300

typedef struct {
  uv_loop_t loop;
  uv_timer_t tick; /* keeps every turn of the loop short */
  choreo_sp_sub sub;
  temp_endpoint at;
  int count;         /* frames received */
  int turn_count;    /* in the current turn */
  int most_per_turn; /* over all turns */
  int next;          /* the number the next small frame must carry; -1 once one did not */
  size_t last_len;
  bool last_intact; /* the last large frame held the bytes sent */
  unsigned char seed; /* of the bytes of the large frame on its way */
  bool recycle;       /* frames go back to the subscriber (choreo_sp_sub_recycle), not freed */
  bool closed;
} fixture;

static void on_tick(uv_timer_t *t) { (void)t; }

static void on_frame(void *ud, nng_msg *frame) {
  fixture *f = ud;
  f->count++;
  if (++f->turn_count > f->most_per_turn) f->most_per_turn = f->turn_count;
  size_t len = nng_msg_len(frame);
  const unsigned char *body = nng_msg_body(frame);
  f->last_len = len;
  if (len == sizeof(int)) {
    int n;
    memcpy(&n, body, sizeof n);
    if (n != f->next) f->next = -1;
    else f->next++;
  } else {
    f->last_intact = true;
    for (size_t i = 0; i < len; i++)
      if (body[i] != (unsigned char)(i * 7 + f->seed)) f->last_intact = false;
  }
  if (f->recycle)
    choreo_sp_sub_recycle(&f->sub, frame);
  else
    nng_msg_free(frame);
}

static void on_closed(void *ud) { ((fixture *)ud)->closed = true; }

static void fixture_open(fixture *f) {
  memset(f, 0, sizeof *f);
  temp_endpoint_make(&f->at, "sp-sub", "p.pub");
  CHECK(uv_loop_init(&f->loop) == 0);
  uv_timer_init(&f->loop, &f->tick);
  uv_timer_start(&f->tick, on_tick, 5, 5);
  CHECK(choreo_sp_sub_start(&f->sub, &f->loop, f->at.url, "test", on_frame, f) == 0);
}

/* Turns the loop until cond holds (evaluated once before each turn) or 5 s pass; the frames
 * counted in f->turn_count are the last turn's. */
#define RUN_UNTIL(f, cond)                                                  \
  do {                                                                      \
    uint64_t until_ = uv_hrtime() + 5000000000ull;                          \
    bool held_;                                                             \
    while (!(held_ = (cond)) && uv_hrtime() < until_) {                     \
      (f)->turn_count = 0;                                                  \
      uv_run(&(f)->loop, UV_RUN_ONCE);                                      \
    }                                                                       \
    CHECK(held_);                                                           \
  } while (0)

static void fixture_close(fixture *f) {
  CHECK(choreo_sp_sub_stop(&f->sub, on_closed));
  CHECK(!choreo_sp_sub_stop(&f->sub, on_closed)); /* twice: nothing more */
  uv_close((uv_handle_t *)&f->tick, NULL);
  RUN_UNTIL(f, f->closed);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&f->loop) == 0);
  remove_tree(f->at.dir);
}

static void publish_small(nng_socket pub, int n) { CHECK(nng_send(pub, &n, sizeof n, 0) == 0); }

/* Sends numbered frames until one arrives: the PUB socket drops what it sends before it has
 * taken our connection. */
static void wait_heard(fixture *f, nng_socket pub) {
  uint64_t until = uv_hrtime() + 5000000000ull;
  while (f->count == 0 && uv_hrtime() < until) {
    f->next = 0;
    publish_small(pub, 0);
    for (int i = 0; i < 20 && f->count == 0; i++) uv_run(&f->loop, UV_RUN_ONCE);
  }
  CHECK(f->count > 0);
  CHECK(choreo_sp_sub_up(&f->sub));
}

/* recycle: each frame's buffer goes back for the next to be read into (grown, shrunk, or over
 * CHOREO_SP_SPARE_MAX and freed), which must not change what arrives. */
static void frames_arrive_whole_and_in_order_a_bounded_number_per_turn(bool recycle) {
  fixture f;
  fixture_open(&f);
  f.recycle = recycle;
  RUN_UNTIL(&f, f.sub.conn_open && !f.sub.conn.up); /* dialling a path nobody listens on */
  nng_socket pub;
  CHECK(nng_pub0_open(&pub) == 0);
  CHECK(nng_socket_set_int(pub, NNG_OPT_SENDBUF, MANY + 8) == 0);
  CHECK(nng_listen(pub, f.at.url, NULL, 0) == 0);
  wait_heard(&f, pub);
  /* Sent while the loop does not turn: they wait in the socket, more than a turn may take. */
  f.count = 0;
  f.next = 1;
  for (int i = 1; i <= MANY; i++) publish_small(pub, i);
  usleep(200000);
  f.most_per_turn = 0;
  RUN_UNTIL(&f, f.count == MANY);
  CHECK(f.next == MANY + 1);
  CHECK(f.most_per_turn == CHOREO_DRAIN_PER_WAKE);
  /* A large frame (read straight into the message), an empty one, one of a few bytes, larger
   * ones, one over what a spare may hold, and a small one after it. */
  size_t sizes[] = {1u << 20, 0, 3, 70000, 2u << 20, CHOREO_SP_SPARE_MAX + 1, 100};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    nng_msg *msg;
    CHECK(nng_msg_alloc(&msg, sizes[k]) == 0);
    unsigned char *body = nng_msg_body(msg);
    f.seed = (unsigned char)(k + 1); /* a recycled buffer holds the last frame's bytes */
    for (size_t i = 0; i < sizes[k]; i++) body[i] = (unsigned char)(i * 7 + f.seed);
    int before = f.count;
    f.last_intact = false;
    CHECK(nng_sendmsg(pub, msg, 0) == 0);
    RUN_UNTIL(&f, f.count == before + 1);
    CHECK(f.last_len == sizes[k]);
    CHECK(f.last_intact);
  }
  /* The publisher restarts on the same path: dialled again, heard again. */
  nng_close(pub);
  RUN_UNTIL(&f, !choreo_sp_sub_up(&f.sub));
  CHECK(nng_pub0_open(&pub) == 0);
  CHECK(nng_listen(pub, f.at.url, NULL, 0) == 0);
  f.count = 0;
  wait_heard(&f, pub);
  fixture_close(&f);
  nng_close(pub);
}

static void test_frames_arrive_whole_and_in_order_a_bounded_number_per_turn(void) {
  frames_arrive_whole_and_in_order_a_bounded_number_per_turn(false);
}

static void test_frames_read_into_buffers_given_back_arrive_the_same(void) {
  frames_arrive_whole_and_in_order_a_bounded_number_per_turn(true);
}

/* What a PUB endpoint greets its subscriber with (sp_wire.h). */
static const unsigned char pub_greeting[] = {0, 'S', 'P', 0, 0, CHOREO_SP_PUB, 0, 0};

/* A fake publisher: a Unix socket listening on f's path, its connections taken by hand. */
static int fake_listen(const fixture *f) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_un sa = temp_endpoint_address(&f->at);
  CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 8) == 0);
  return fd;
}

static int fake_accept(fixture *f, int listener) {
  int fd = -1;
  RUN_UNTIL(f, (fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0);
  return fd;
}

static void fake_send(int fd, const void *bytes, size_t n) {
  CHECK(write(fd, bytes, n) == (ssize_t)n);
}

/* Whether our side hung up: the fake's connection reads end of file. */
static bool hung_up(int fd) {
  char c;
  return read(fd, &c, 1) == 0;
}

static void test_bad_publishers_are_hung_up_on_and_dialled_again(void) {
  fixture f;
  fixture_open(&f);
  int listener = fake_listen(&f);
  static const unsigned char rep_greeting[] = {0, 'S', 'P', 0, 0, 0x31, 0, 0};
  unsigned char huge[CHOREO_SP_HEADER_SIZE] = {1};
  uint64_t too_long = (uint64_t)CHOREO_MAX_FRAME + 1;
  for (int i = 0; i < 8; i++) huge[1 + i] = (unsigned char)(too_long >> (56 - 8 * i));
  const struct {
    const void *bytes;
    size_t n;
  } cases[] = {
      {rep_greeting, sizeof rep_greeting},  /* not a PUB endpoint */
      {"HTTP/1.1 200 OK\r\n", 17},          /* not SP at all */
      {"\2\0\0\0\0\0\0\0\4abcd", 13},       /* after a good greeting: not a message */
      {huge, sizeof huge},                  /* after a good greeting: too large */
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    int conn = fake_accept(&f, listener);
    unsigned char greeting[CHOREO_SP_GREETING_SIZE];
    RUN_UNTIL(&f, read(conn, greeting, sizeof greeting) == (ssize_t)sizeof greeting);
    CHECK(greeting[5] == CHOREO_SP_SUB);
    if (k >= 2) fake_send(conn, pub_greeting, sizeof pub_greeting);
    fake_send(conn, cases[k].bytes, cases[k].n);
    RUN_UNTIL(&f, hung_up(conn));
    CHECK(f.count == 0);
    close(conn);
  }
  /* And a good one after them all is heard. */
  int conn = fake_accept(&f, listener);
  fake_send(conn, pub_greeting, sizeof pub_greeting);
  unsigned char frame[CHOREO_SP_HEADER_SIZE + sizeof(int)] = {1, 0, 0, 0, 0, 0, 0, 0, 4};
  int zero = 0;
  memcpy(frame + CHOREO_SP_HEADER_SIZE, &zero, sizeof zero);
  fake_send(conn, frame, sizeof frame);
  RUN_UNTIL(&f, f.count == 1);
  CHECK(f.next == 1);
  fixture_close(&f);
  close(conn);
  close(listener);
}

static bool waiting_to_redial(const fixture *f) {
  return !f->sub.conn_open && uv_is_active((const uv_handle_t *)&f->sub.redial);
}

/* Told that its endpoint appeared, a subscriber waiting to redial dials then and there (its
 * timer stopped, the connection on its way); told again while that connection is open, or
 * once stopped, it does nothing. */
static void test_a_subscriber_told_its_endpoint_appeared_dials_at_once(void) {
  fixture f;
  fixture_open(&f);
  RUN_UNTIL(&f, waiting_to_redial(&f)); /* the first dial found nothing there */
  int listener = fake_listen(&f);
  choreo_sp_sub_dial_now(&f.sub);
  CHECK(f.sub.conn_open);
  CHECK(!uv_is_active((uv_handle_t *)&f.sub.redial));
  int conn = fake_accept(&f, listener);
  choreo_sp_sub_dial_now(&f.sub); /* connected: no second connection */
  fake_send(conn, pub_greeting, sizeof pub_greeting);
  RUN_UNTIL(&f, choreo_sp_sub_up(&f.sub));
  choreo_sp_sub_dial_now(&f.sub);
  CHECK(accept4(listener, NULL, NULL, SOCK_NONBLOCK) < 0 && errno == EAGAIN);
  CHECK(choreo_sp_sub_up(&f.sub));
  /* The publisher goes: waiting to redial again; stopped, told it appeared, it stays stopped. */
  close(conn);
  RUN_UNTIL(&f, waiting_to_redial(&f));
  fixture_close(&f);
  choreo_sp_sub_dial_now(&f.sub);
  CHECK(!f.sub.conn_open);
  close(listener);
}

static void test_a_stop_while_dialling_lets_the_loop_close(void) {
  fixture f;
  fixture_open(&f);
  RUN_UNTIL(&f, f.sub.conn_open);
  fixture_close(&f);
  CHECK(f.closed);
  choreo_sp_sub zeroed = {0};
  CHECK(!choreo_sp_sub_stop(&zeroed, on_closed));
  CHECK(choreo_sp_sub_start(&zeroed, &f.loop, "tcp://127.0.0.1:1", "test", on_frame, &f) ==
        CHOREO_EINVAL);
  char long_url[200] = "ipc:///tmp/";
  memset(long_url + 11, 'x', 150);
  CHECK(choreo_sp_sub_start(&zeroed, &f.loop, long_url, "test", on_frame, &f) == CHOREO_EINVAL);
}

int main(void) {
  alarm(60);
  RUN(test_frames_arrive_whole_and_in_order_a_bounded_number_per_turn);
  RUN(test_frames_read_into_buffers_given_back_arrive_the_same);
  RUN(test_bad_publishers_are_hung_up_on_and_dialled_again);
  RUN(test_a_subscriber_told_its_endpoint_appeared_dials_at_once);
  RUN(test_a_stop_while_dialling_lets_the_loop_close);
  return CHECK_DONE();
}
