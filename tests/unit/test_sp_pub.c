/* Unit test of the PUB endpoint the loop serves itself (runtime/host/sp_pub.h): an NNG SUB
 * socket and the loop's own subscriber (sp_sub.h) both get every frame, in order; a subscriber
 * that never reads loses frames once it is CHOREO_SP_PUB_BEHIND_MAX behind, while one that
 * reads loses none; once it reads the rest, the one that lost frames is sent the notice after
 * them, the other none; a client that greets as something else is not counted and is hung up
 * on; the stop removes the path. alarm() bounds the process. */
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "choreo.h"
#include "sp_pub.h"
#include "sp_sub.h"
#include "temp_files.h"

#define SMALL 100
/* Frames of 1 MiB: more than a subscriber that never reads can be behind by, its bound and
 * what the kernel may hold for it (up to twice the send buffer asked for). */
#define LARGE ((int)((CHOREO_SP_PUB_BEHIND_MAX + 2 * (size_t)CHOREO_SP_SEND_BUFFER) >> 20) + 8)

typedef struct {
  uv_loop_t loop;
  uv_timer_t tick; /* keeps every turn of the loop short */
  choreo_sp_pub pub;
  choreo_sp_sub sub;
  temp_endpoint at;
  int got;      /* frames the loop's subscriber received */
  bool ordered; /* each carried the number after the last's */
  bool sub_closed;
} fixture;

static void on_tick(uv_timer_t *t) { (void)t; }

static void on_frame(void *ud, nng_msg *frame) {
  fixture *f = ud;
  int n = -1;
  if (nng_msg_len(frame) >= sizeof n) memcpy(&n, nng_msg_body(frame), sizeof n);
  if (n != f->got) f->ordered = false;
  f->got++;
  nng_msg_free(frame);
}

static void on_sub_closed(void *ud) { ((fixture *)ud)->sub_closed = true; }

#define RUN_UNTIL(f, cond)                                                  \
  do {                                                                      \
    uint64_t until_ = uv_hrtime() + 5000000000ull;                          \
    bool held_;                                                             \
    while (!(held_ = (cond)) && uv_hrtime() < until_)                       \
      uv_run(&(f)->loop, UV_RUN_ONCE);                                      \
    CHECK(held_);                                                           \
  } while (0)

/* How many subscribers the frame went to: each connected one, but those too far behind. */
static int send_numbered(fixture *f, int n, size_t len) {
  char *frame = calloc(1, len);
  memcpy(frame, &n, sizeof n);
  int subscribers = choreo_sp_pub_subscribers(&f->pub);
  uint64_t dropped = f->pub.dropped;
  int sent = choreo_sp_pub_send(&f->pub, frame, len);
  CHECK(sent == subscribers - (int)(f->pub.dropped - dropped));
  free(frame);
  return sent;
}

/* A bare client that greets with protocol and then reads nothing. */
static int raw_client(const fixture *f, int protocol) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = temp_endpoint_address(&f->at);
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  const unsigned char greeting[] = {0, 'S', 'P', 0, 0, (unsigned char)protocol, 0, 0};
  CHECK(write(fd, greeting, sizeof greeting) == (ssize_t)sizeof greeting);
  return fd;
}

#define NOTICE "how far the log goes"

/* Reads the raw client's connection, the loop running meanwhile, until a message is the notice
 * (true) or 5 s have passed; *frames: the messages before it. */
static bool raw_read_to_notice(fixture *f, int fd, int *frames) {
  static uint8_t buf[64 << 10];
  uint8_t header[CHOREO_SP_HEADER_SIZE], body[sizeof NOTICE];
  size_t skip = CHOREO_SP_GREETING_SIZE, header_got = 0, body_got = 0;
  uint64_t len = 0, left = 0;
  CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
  *frames = 0;
  for (uint64_t until = uv_hrtime() + 5000000000ull; uv_hrtime() < until;) {
    uv_run(&f->loop, UV_RUN_NOWAIT);
    ssize_t n = read(fd, buf, sizeof buf);
    for (size_t i = 0; n > 0 && i < (size_t)n;) {
      size_t have = (size_t)n - i, take;
      if (skip) {
        take = skip < have ? skip : have;
        skip -= take;
      } else if (header_got < sizeof header) {
        take = 1;
        header[header_got++] = buf[i];
        if (header_got == sizeof header) {
          CHECK(choreo_sp_header_length(header, &len));
          left = len;
          body_got = 0;
        }
      } else {
        take = left < have ? (size_t)left : have;
        size_t keep = take < sizeof body - body_got ? take : sizeof body - body_got;
        memcpy(body + body_got, buf + i, keep);
        body_got += keep;
        left -= take;
      }
      i += take;
      if (header_got == sizeof header && left == 0) {
        if (len == strlen(NOTICE) && memcmp(body, NOTICE, len) == 0) return true;
        header_got = 0;
        (*frames)++;
      }
    }
  }
  return false;
}

static void test_every_subscriber_gets_every_frame_unless_it_falls_behind(void) {
  fixture f = {.ordered = true};
  temp_endpoint_make(&f.at, "sp-pub", "h.pub");
  CHECK(uv_loop_init(&f.loop) == 0);
  uv_timer_init(&f.loop, &f.tick);
  uv_timer_start(&f.tick, on_tick, 5, 5);
  char err[256];
  CHECK(choreo_sp_pub_start(&f.pub, &f.loop, f.at.url, "test", err, sizeof err) == 0);
  CHECK(choreo_sp_sub_start(&f.sub, &f.loop, f.at.url, "test", on_frame, &f) == 0);
  nng_socket nsub;
  CHECK(nng_sub0_open(&nsub) == 0);
  CHECK(nng_socket_set(nsub, NNG_OPT_SUB_SUBSCRIBE, "", 0) == 0);
  CHECK(nng_socket_set_int(nsub, NNG_OPT_RECVBUF, SMALL) == 0);
  CHECK(nng_socket_set_ms(nsub, NNG_OPT_RECVTIMEO, 5000) == 0);
  CHECK(nng_dial(nsub, f.at.url, NULL, NNG_FLAG_NONBLOCK) == 0);
  int wrong = raw_client(&f, 0x30); /* REQ */
  RUN_UNTIL(&f, choreo_sp_pub_subscribers(&f.pub) == 2);
  for (int i = 0; i < SMALL; i++) CHECK(send_numbered(&f, i, 64) == 2);
  RUN_UNTIL(&f, f.got == SMALL);
  for (int i = 0; i < SMALL; i++) {
    void *buf;
    size_t len;
    int n = -1;
    CHECK(nng_recv(nsub, &buf, &len, NNG_FLAG_ALLOC) == 0);
    if (len >= sizeof n) memcpy(&n, buf, sizeof n);
    CHECK(n == i);
    nng_free(buf, len);
  }
  nng_close(nsub);
  unsigned char greeting[CHOREO_SP_GREETING_SIZE + 1];
  size_t got = 0;
  for (ssize_t r; got < sizeof greeting &&
                  (r = read(wrong, greeting + got, sizeof greeting - got)) > 0;)
    got += (size_t)r;
  CHECK(got == CHOREO_SP_GREETING_SIZE); /* our greeting, then the end: hung up on */
  close(wrong);
  /* One that never reads, beside the loop's subscriber, which reads each frame as it comes;
   * once NNG's has gone, so that every frame is sent to it. */
  RUN_UNTIL(&f, choreo_sp_pub_subscribers(&f.pub) == 1);
  int idle = raw_client(&f, CHOREO_SP_SUB);
  RUN_UNTIL(&f, choreo_sp_pub_subscribers(&f.pub) == 2);
  f.got = 0;
  choreo_sp_pub_set_notice(&f.pub, NOTICE, strlen(NOTICE));
  for (int i = 0; i < LARGE; i++) {
    send_numbered(&f, i, 1u << 20);
    RUN_UNTIL(&f, f.got == i + 1);
  }
  CHECK(f.ordered);
  CHECK(f.pub.dropped > 0);
  CHECK(f.pub.dropped < LARGE);
  int frames;
  CHECK(raw_read_to_notice(&f, idle, &frames));
  CHECK(frames == LARGE - (int)f.pub.dropped);
  CHECK(f.got == LARGE); /* the loop's subscriber lost nothing: no notice */
  close(idle);
  CHECK(choreo_sp_sub_stop(&f.sub, on_sub_closed));
  choreo_sp_pub_stop(&f.pub);
  choreo_sp_pub_stop(&f.pub);
  CHECK(access(f.at.path, F_OK) != 0);
  uv_close((uv_handle_t *)&f.tick, NULL);
  RUN_UNTIL(&f, f.sub_closed);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&f.loop) == 0);
  remove_tree(f.at.dir);
}

int main(void) {
  alarm(60);
  signal(SIGPIPE, SIG_IGN); /* as choreo_host_open does */
  RUN(test_every_subscriber_gets_every_frame_unless_it_falls_behind);
  return CHECK_DONE();
}
