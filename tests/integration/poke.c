/* choreo_poke: feeds arbitrary bytes to a host's sockets, for the hostile-input integration
 * tests (test_bad_input.py). It speaks only NNG's framing; what goes inside is the test's
 * business, read from a file so that any byte string can be sent.
 *
 *   choreo_poke pub URL FILE COUNT [WAIT_MS [SUBSCRIBERS]]
 *       listen PUB on URL, wait up to WAIT_MS (5000) for SUBSCRIBERS (1) to connect, then
 *       send FILE's bytes COUNT times, a little apart; prints "sent N to K subscribers".
 *   choreo_poke req URL FILE [WAIT_MS]
 *       dial REQ, send FILE's bytes once, wait up to WAIT_MS (1000) for a reply; prints
 *       "reply N bytes: TEXT" (non-printable bytes as '.') or "no reply".
 *   choreo_poke rep URL FILE SECONDS
 *       listen REP on URL and answer every request with FILE's bytes for SECONDS; prints
 *       "answered N requests".
 *
 * Exit codes: 0 done, 1 a socket could not be set up, 2 usage, 3 too few subscribers came. */
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int usage(void) {
  fputs("usage: choreo_poke pub URL FILE COUNT [WAIT_MS [SUBSCRIBERS]]\n"
        "       choreo_poke req URL FILE [WAIT_MS]\n"
        "       choreo_poke rep URL FILE SECONDS\n",
        stderr);
  return 2;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
    n += got;
    if (n == cap) {
      char *bigger = realloc(buf, cap *= 2);
      if (!bigger) free(buf);
      buf = bigger;
    }
  }
  fclose(f);
  *len = n;
  return buf;
}

static long number(const char *text, long fallback) {
  if (!text) return fallback;
  char *end;
  long v = strtol(text, &end, 10);
  return *end || v < 0 ? -1 : v;
}

static int fail(const char *what, int rv) {
  fprintf(stderr, "choreo_poke: %s: %s\n", what, nng_strerror(rv));
  return 1;
}

static nng_mtx *pipes_mtx;
static int pipes;

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg) {
  (void)p;
  (void)arg;
  nng_mtx_lock(pipes_mtx);
  pipes += ev == NNG_PIPE_EV_ADD_POST ? 1 : -1;
  nng_mtx_unlock(pipes_mtx);
}

static int connected(void) {
  nng_mtx_lock(pipes_mtx);
  int n = pipes;
  nng_mtx_unlock(pipes_mtx);
  return n;
}

static int poke_pub(const char *url, const char *buf, size_t len, long count, long wait_ms,
                    long subscribers) {
  nng_socket s;
  int rv;
  if ((rv = nng_mtx_alloc(&pipes_mtx)) != 0) return fail("mutex", rv);
  if ((rv = nng_pub0_open(&s)) != 0) return fail("pub socket", rv);
  nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, on_pipe, NULL);
  nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, on_pipe, NULL);
  if ((rv = nng_listen(s, url, NULL, 0)) != 0) return fail(url, rv);
  for (long waited = 0; connected() < subscribers && waited < wait_ms; waited += 10)
    nng_msleep(10);
  if (connected() < subscribers) {
    printf("only %d of %ld subscribers came\n", connected(), subscribers);
    nng_close(s);
    return 3;
  }
  nng_msleep(100); /* let the subscriber's side of the pipe settle */
  long sent = 0;
  for (long i = 0; i < count; i++) {
    if (nng_send(s, (void *)buf, len, 0) == 0) sent++;
    nng_msleep(10);
  }
  nng_msleep(300); /* give the last messages time to leave before the socket closes */
  printf("sent %ld to %d subscribers\n", sent, connected());
  nng_close(s);
  return 0;
}

static int poke_req(const char *url, const char *buf, size_t len, long wait_ms) {
  nng_socket s;
  int rv;
  if ((rv = nng_req0_open(&s)) != 0) return fail("req socket", rv);
  nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, (nng_duration)wait_ms);
  nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 5000);
  nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 0);
  if ((rv = nng_dial(s, url, NULL, 0)) != 0) return fail(url, rv);
  if ((rv = nng_send(s, (void *)buf, len, 0)) != 0) return fail("send", rv);
  char *reply = NULL;
  size_t n = 0;
  if (nng_recv(s, &reply, &n, NNG_FLAG_ALLOC) != 0) {
    puts("no reply");
  } else {
    printf("reply %zu bytes: ", n);
    for (size_t i = 0; i < n && i < 16384; i++) /* a status answer whole; not 17 MiB of junk */
      putchar(reply[i] >= 32 && reply[i] < 127 ? reply[i] : '.');
    putchar('\n');
    nng_free(reply, n);
  }
  /* Leave without nng_close: with an oversized request still queued for resending, closing
   * was seen to hang for over a minute, and the kernel closes the connection just as well. */
  fflush(stdout);
  _exit(0);
}

static int poke_rep(const char *url, const char *buf, size_t len, long seconds) {
  nng_socket s;
  int rv;
  if ((rv = nng_rep0_open(&s)) != 0) return fail("rep socket", rv);
  nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 100);
  if ((rv = nng_listen(s, url, NULL, 0)) != 0) return fail(url, rv);
  long answered = 0;
  nng_time until = nng_clock() + (nng_time)seconds * 1000;
  while (nng_clock() < until) {
    char *req = NULL;
    size_t n = 0;
    if (nng_recv(s, &req, &n, NNG_FLAG_ALLOC) != 0) continue;
    nng_free(req, n);
    if (nng_send(s, (void *)buf, len, 0) == 0) answered++;
  }
  printf("answered %ld requests\n", answered);
  fflush(stdout);
  nng_close(s);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) return usage();
  const char *mode = argv[1], *url = argv[2];
  size_t len = 0;
  char *buf = slurp(argv[3], &len);
  if (!buf) {
    fprintf(stderr, "choreo_poke: cannot read %s\n", argv[3]);
    return 1;
  }
  int rc;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(mode, "pub") == 0 && argc >= 5 && argc <= 7) {
    long count = number(argv[4], 1), wait_ms = number(argc >= 6 ? argv[5] : NULL, 5000);
    long subscribers = number(argc == 7 ? argv[6] : NULL, 1);
    rc = count < 0 || wait_ms < 0 || subscribers < 1
             ? usage()
             : poke_pub(url, buf, len, count, wait_ms, subscribers);
  } else if (strcmp(mode, "req") == 0 && (argc == 4 || argc == 5)) {
    long wait_ms = number(argc == 5 ? argv[4] : NULL, 1000);
    rc = wait_ms < 0 ? usage() : poke_req(url, buf, len, wait_ms);
  } else if (strcmp(mode, "rep") == 0 && argc == 5) {
    long seconds = number(argv[4], 1);
    rc = seconds < 0 ? usage() : poke_rep(url, buf, len, seconds);
  } else {
    rc = usage();
  }
  free(buf);
  return rc;
}
