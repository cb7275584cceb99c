/* The transport ceiling of the "pipeline" benchmark: NNG pub/sub with no durability, the way
 * choreo's bus carries events. A publisher thread sends 100-byte messages flat out; the
 * subscriber counts what arrives. Pub/sub drops when the subscriber falls behind, so the
 * figures are the received rate, the sent rate and the fraction dropped. Send and receive
 * buffers are 8192 messages, NNG's maximum (the defaults drop far more, docs/ARCHITECTURE.md, Measured facts).
 *
 * With --rate, the floor of the "latency" benchmark: one hop over NNG pub/sub between two
 * processes, as a choreo host's frame takes to a subscribing host (whose loop waits on the
 * socket's NNG_OPT_RECVFD, as here), with nothing else on the way. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/supplemental/util/platform.h>

#include "bench_latency.h"
#include "bench_util.h"

#define BUFFERED 8192
#define SILENCE_MS 2000
/* The end marker is sent several times after a pause: one copy may be dropped like any
 * message; if all are, the subscriber stops after SILENCE_MS instead. */
#define END_MARKER "END"
#define END_COPIES 20

static const char usage[] = "--url URL (--events N | --rate EVENTS_PER_S --seconds S) "
                            "[--payload BYTES] [--timeout S]";

typedef struct nng_run {
  nng_socket pub;
  long events;
  double deadline;
  double t_first_send;
  double t_last_send;
  long sent;
  int err;
} nng_run;

static void publish(void *arg) {
  nng_run *run = arg;
  unsigned char payload[BENCH_PAYLOAD_MAX];
  run->t_first_send = bench_now();
  for (long i = 0; i < run->events; i++) {
    /* Cheap enough per message not to change the rate, and it bounds a stuck send. */
    if ((i & 1023) == 0 && bench_now() > run->deadline) {
      run->err = NNG_ETIMEDOUT;
      break;
    }
    bench_payload(payload, i);
    int rv = nng_send(run->pub, payload, bench_payload_size, 0);
    if (rv != 0) {
      run->err = rv;
      break;
    }
    run->sent++;
  }
  run->t_last_send = bench_now();
  nng_msleep(100);
  for (int k = 0; k < END_COPIES; k++) {
    nng_send(run->pub, END_MARKER, sizeof END_MARKER - 1, 0);
    nng_msleep(5);
  }
}

static void must(int rv, const char *what) {
  if (rv != 0) bench_fail("%s: %s", what, nng_strerror(rv));
}

static void latency_send(void *ctx, const unsigned char *payload) {
  must(nng_send(*(nng_socket *)ctx, (void *)payload, bench_payload_size, 0), "nng_send");
}

/* The latency workload's publisher, a process of its own: each event stamped and sent when
 * its time comes, then the end marker. */
static void latency_publish(const bench_args *a) {
  bench_watchdog(a->timeout_s + (int)a->seconds + 15);
  nng_socket pub;
  must(nng_pub0_open(&pub), "nng_pub0_open");
  must(nng_listen(pub, a->url, NULL, 0), a->url);
  nng_msleep(300); /* the subscriber dials meanwhile: what goes before it is dropped by design */
  bench_pace_stamped(a->rate, a->events, latency_send, &pub);
  nng_msleep(100);
  for (int k = 0; k < END_COPIES; k++) {
    nng_send(pub, END_MARKER, sizeof END_MARKER - 1, 0);
    nng_msleep(5);
  }
  nng_close(pub);
}

static int latency_run(const bench_args *a) {
  pid_t child = fork();
  if (child < 0) bench_fail("fork failed");
  if (child == 0) {
    latency_publish(a);
    _exit(0);
  }
  nng_socket sub;
  int fd;
  must(nng_sub0_open(&sub), "nng_sub0_open");
  must(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0), "SUB_SUBSCRIBE");
  must(nng_dial(sub, a->url, NULL, NNG_FLAG_NONBLOCK), a->url);
  must(nng_socket_get_int(sub, NNG_OPT_RECVFD, &fd), "RECVFD");
  bench_latency lat;
  bench_latency_init(&lat, a->events);
  for (int end = 0; !end;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, SILENCE_MS + 300) <= 0) break; /* every end marker dropped */
    nng_msg *msg;
    while (!end && nng_recvmsg(sub, &msg, NNG_FLAG_NONBLOCK) == 0) {
      double now = bench_now(), sent = bench_payload_sent(nng_msg_body(msg), nng_msg_len(msg));
      if (sent >= 0 && lat.n < lat.cap) bench_latency_add(&lat, now - sent);
      end = sent < 0;
      nng_msg_free(msg);
    }
  }
  nng_close(sub);
  int status;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    bench_fail("the publisher process failed");
  if (lat.n == 0) bench_fail("no event arrived");
  long received = lat.n;
  printf("{\"p50_us\": %.0f, \"p99_us\": %.0f, \"p999_us\": %.0f, \"received\": %ld, "
         "\"sent\": %ld}\n",
         bench_latency_percentile(&lat, 0.50) * 1e6, bench_latency_percentile(&lat, 0.99) * 1e6,
         bench_latency_percentile(&lat, 0.999) * 1e6, received, a->events);
  bench_latency_free(&lat);
  return 0;
}

int main(int argc, char **argv) {
  bench_args a;
  bench_args_parse(&a, argc, argv, BENCH_ARG_URL | BENCH_ARG_EVENTS | BENCH_ARG_RATE, usage);
  if (a.rate > 0) return latency_run(&a);
  bench_watchdog(a.timeout_s + 15);
  nng_run run = {.events = a.events, .deadline = bench_now() + a.timeout_s};

  nng_socket sub;
  must(nng_pub0_open(&run.pub), "nng_pub0_open");
  must(nng_sub0_open(&sub), "nng_sub0_open");
  must(nng_socket_set_int(run.pub, NNG_OPT_SENDBUF, BUFFERED), "SENDBUF");
  must(nng_socket_set_int(sub, NNG_OPT_RECVBUF, BUFFERED), "RECVBUF");
  must(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, SILENCE_MS), "RECVTIMEO");
  /* nng_socket_set, not _set_string: the empty topic must have length 0, not 1 (docs/ARCHITECTURE.md, Measured facts). */
  must(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0), "SUB_SUBSCRIBE");
  must(nng_listen(run.pub, a.url, NULL, 0), a.url);
  must(nng_dial(sub, a.url, NULL, 0), a.url);
  /* A dial returns before the pipe is attached on the publisher's side; anything published
   * before that is dropped by design, which is not what this measures. */
  nng_msleep(200);

  nng_thread *thr;
  must(nng_thread_create(&thr, publish, &run), "nng_thread_create");
  long received = 0;
  double t_last_recv = 0;
  for (;;) {
    nng_msg *msg;
    int rv = nng_recvmsg(sub, &msg, 0);
    if (rv == NNG_ETIMEDOUT) break;
    must(rv, "nng_recvmsg");
    size_t len = nng_msg_len(msg);
    int end = len == sizeof END_MARKER - 1 && memcmp(nng_msg_body(msg), END_MARKER, len) == 0;
    nng_msg_free(msg);
    if (end) break;
    received++;
    t_last_recv = bench_now();
    if ((received & 1023) == 0 && bench_now() > run.deadline + 5) break;
  }
  nng_thread_destroy(thr); /* joins the publisher */
  nng_close(sub);
  nng_close(run.pub);
  if (run.err) bench_fail("publisher: %s after %ld messages", nng_strerror(run.err), run.sent);

  double send_s = run.t_last_send - run.t_first_send;
  double recv_s = t_last_recv - run.t_first_send;
  printf("{\"received_per_s\": %.0f, \"sent_per_s\": %.0f, \"drop_rate\": %.4f}\n",
         recv_s > 0 ? (double)received / recv_s : 0.0, (double)run.sent / send_s,
         1.0 - (double)received / (double)run.sent);
  return 0;
}
