/* The running host's state, shared by the files that make it up: host.c (loop, publishing,
 * reload, shutdown), peers.c (discovery, live frames, FETCH catch-up), serve.c (answering
 * FETCH) and control.c (the CLI's control socket). */
#ifndef CHOREO_HOST_H
#define CHOREO_HOST_H

#include <limits.h>
#include <nng/nng.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "bus.h"
#include "choreo.h"
#include "engine.h"

#define CHOREO_URL_MAX (PATH_MAX + 32)
#define CHOREO_MAX_PEERS 256
#define CHOREO_FETCH_ROWS 2000
#define CHOREO_FETCH_BYTES (4u << 20)

typedef struct choreo_peer {
  struct choreo_host *host;
  char name[CHOREO_NAME_MAX + 1]; /* "" until its first answer, for --peer endpoints */
  char pub_url[CHOREO_URL_MAX], rep_url[CHOREO_URL_MAX];
  nng_socket req;
  nng_dialer req_dialer;
  choreo_bus_watch watch;
  bool in_flight;
  atomic_bool connected; /* set by NNG's thread when a connection comes up, taken by the loop */
  uint64_t asked_at;   /* loop time (ms) of the request in flight */
  uint64_t answered_at;
  int64_t head;        /* the peer's last seq, as it last told us */
} choreo_peer;

typedef struct choreo_host {
  uv_loop_t loop;
  choreo_engine *engine;
  const choreo_host_options *opts;
  char bus[PATH_MAX];
  nng_socket pub, sub, rep, ctl;
  choreo_bus_watch sub_watch, rep_watch, ctl_watch;
  choreo_peer *peers[CHOREO_MAX_PEERS];
  int npeers;
  uv_timer_t tick, retry_timer, timeout_timer, reload_timer;
  uv_idle_t own_idle;
  uv_async_t peer_connected; /* wakes the loop to FETCH from a peer that just connected */
  bool peer_connected_open;
  uv_fs_event_t watch_dir;
  uv_signal_t sigint, sigterm;
  int64_t published; /* the last seq published on PUB */
  uint64_t ticks;
  msgpack_sbuffer frame;
  /* A published frame that starts where our own handlers are: the next batch for them. */
  msgpack_sbuffer own_frame;
  bool own_frame_ready;
  bool stopping;
} choreo_host;

/* host.c: after anything committed — publish new rows, let our own handlers see them, and
 * re-arm the retry timer. */
void choreo_host_committed(choreo_host *h);
/* Logs what an apply did when it failed or dead-lettered something. */
void choreo_host_report(choreo_host *h, const char *from, int rc, const choreo_apply_result *r);

/* peers.c */
int choreo_peers_start(choreo_host *h, char *err, size_t errlen);
void choreo_peers_tick(choreo_host *h);  /* discovery, periodic FETCH */
void choreo_peers_drain(choreo_host *h); /* the safety drain of every peer socket */
void choreo_peers_stop(choreo_host *h);
/* Appends {name, url, checkpoint, head, lag} objects for `choreo status`. */
struct cJSON;
void choreo_peers_status(choreo_host *h, struct cJSON *array);

/* serve.c: the FETCH endpoint peers catch up from. */
void choreo_serve_fetch(void *host, nng_msg *request);
/* control.c: the CLI's requests. */
void choreo_control_serve(void *host, nng_msg *request);

#endif
