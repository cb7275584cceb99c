/* Beside nng_raw's hop, the floor of the "latency" benchmark for a transport with one hand-off
 * per hop: a Unix domain socket that the receiving process's libuv loop reads itself, as Redis
 * and its clients do with theirs. NNG 1.5 hands a received message from its poller thread to a
 * task thread, then to the socket's queue, whose notification pipe wakes the loop; on a virtual
 * machine whose idle CPUs halt at once, each hand-off to a thread on the other CPU costs tens
 * of µs. What this measures is what choreo's bus would take per hop without those hand-offs.
 *
 * A publisher process listens, takes one connection and writes each event (a stamped payload
 * of --payload bytes) when its time comes, then closes; the loop reads the stream, cuts it into
 * events of that size and records each one's latency. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "bench_latency.h"
#include "bench_util.h"

static const char usage[] = "--url ipc://PATH --rate EVENTS_PER_S --seconds S [--payload BYTES] "
                            "[--timeout S]";

static const char *socket_path(const char *url) {
  if (strncmp(url, "ipc://", 6) != 0) bench_fail("--url %s: expected ipc://PATH", url);
  return url + 6;
}

static void send_event(void *ctx, const unsigned char *payload) {
  if (bench_write_all(*(int *)ctx, payload, bench_payload_size))
    bench_fail("write: %s", strerror(errno));
}

/* The publisher, a process of its own: the listening socket is made before the fork, so the
 * loop's connect finds it. */
static void publish(int listener, const bench_args *a) {
  bench_watchdog(a->timeout_s + (int)a->seconds + 15);
  int fd = accept(listener, NULL, NULL);
  if (fd < 0) bench_fail("accept: %s", strerror(errno));
  bench_pace_stamped(a->rate, a->events, send_event, &fd);
  close(fd);
}

typedef struct receiver {
  uv_pipe_t pipe;
  uv_connect_t connect;
  unsigned char event[BENCH_PAYLOAD_MAX];
  size_t have; /* bytes of the event being read */
  bench_latency lat;
} receiver;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static char space[1 << 16]; /* each read is cut into events before the next one */
  *buf = uv_buf_init(space, sizeof space);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  receiver *r = s->data;
  if (nread < 0) { /* the publisher is done */
    uv_close((uv_handle_t *)s, NULL);
    return;
  }
  double now = bench_now();
  for (ssize_t k = 0; k < nread;) {
    size_t take = bench_payload_size - r->have;
    if (take > (size_t)(nread - k)) take = (size_t)(nread - k);
    memcpy(r->event + r->have, buf->base + k, take);
    r->have += take;
    k += (ssize_t)take;
    if (r->have < bench_payload_size) break;
    r->have = 0;
    double sent = bench_payload_sent(r->event, bench_payload_size);
    if (sent >= 0 && r->lat.n < r->lat.cap) bench_latency_add(&r->lat, now - sent);
  }
}

static void on_connect(uv_connect_t *c, int status) {
  if (status < 0) bench_fail("connect: %s", uv_strerror(status));
  uv_read_start(c->handle, on_alloc, on_read);
}

int main(int argc, char **argv) {
  bench_args a;
  bench_args_parse(&a, argc, argv, BENCH_ARG_URL | BENCH_ARG_EVENTS | BENCH_ARG_RATE, usage);
  if (a.rate <= 0) bench_fail("uv_raw measures latency only: give --rate and --seconds");
  const char *path = socket_path(a.url);
  struct sockaddr_un sa = bench_unix_address(path);
  unlink(path);
  int listener = socket(AF_UNIX, SOCK_STREAM, 0);
  if (listener < 0 || bind(listener, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      listen(listener, 1) != 0)
    bench_fail("cannot listen on %s: %s", path, strerror(errno));
  pid_t child = fork();
  if (child < 0) bench_fail("fork failed");
  if (child == 0) {
    publish(listener, &a);
    _exit(0);
  }
  close(listener);
  bench_watchdog(a.timeout_s + (int)a.seconds + 15);
  receiver r = {0};
  bench_latency_init(&r.lat, a.events);
  uv_loop_t *loop = uv_default_loop();
  uv_pipe_init(loop, &r.pipe, 0);
  r.pipe.data = &r;
  uv_pipe_connect(&r.connect, &r.pipe, path, on_connect);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  unlink(path);
  int status;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    bench_fail("the publisher process failed");
  if (r.lat.n == 0) bench_fail("no event arrived");
  printf("{\"p50_us\": %.0f, \"p99_us\": %.0f, \"p999_us\": %.0f, \"received\": %ld, "
         "\"sent\": %ld}\n",
         bench_latency_percentile(&r.lat, 0.50) * 1e6, bench_latency_percentile(&r.lat, 0.99) * 1e6,
         bench_latency_percentile(&r.lat, 0.999) * 1e6, r.lat.n, a.events);
  bench_latency_free(&r.lat);
  return 0;
}
