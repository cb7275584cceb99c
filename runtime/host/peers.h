/* The other hosts: finding them (the bus directory's NAME.pub endpoints, and --peer ones),
 * hearing their live frames (on one SUB socket, or read by the loop from each PUB endpoint on
 * this machine: sp_sub.h), and catching up through FETCH whenever a frame
 * shows a gap, after a (re)connect, and at least once a second as a safety net, since PUB/SUB
 * drops frames under load. Live frames heard past a gap are held (ahead.h) and applied once
 * FETCH has filled it, so a host that fell behind goes back to the live stream. One REQ socket
 * per peer, one request in flight. */
#ifndef CHOREO_PEERS_H
#define CHOREO_PEERS_H

#include <limits.h>
#include <nng/nng.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ahead.h"
#include "bus.h"
#include "choreo.h"
#include "engine.h"
#include "queue_bound.h"
#include "sp_sub.h"

#define CHOREO_URL_MAX (PATH_MAX + 32)
#define CHOREO_MAX_PEERS 256
#define CHOREO_HISTORY_PATIENCE_MS 30000

struct choreo_peers;

typedef struct choreo_peer {
  struct choreo_peers *peers;
  char name[CHOREO_NAME_MAX + 1]; /* "" until its first answer, for --peer endpoints */
  char pub_url[CHOREO_URL_MAX], rep_url[CHOREO_URL_MAX];
  nng_socket req;
  nng_dialer req_dialer;
  /* Its live frames: an endpoint on this machine (ipc://) through a connection the loop reads
   * itself (sp_sub.h); one elsewhere through a dialer of the peers' SUB socket. */
  bool live_by_loop;
  choreo_sp_sub live;
  nng_dialer sub_dialer;
  atomic_int sub_dialer_id;  /* read by NNG's thread */
  atomic_int sub_pipes;      /* connections of sub_dialer, counted by NNG's thread */
  choreo_bus_watch watch;
  bool in_flight;
  bool asking_history; /* the request in flight is for a build's history, not catching up */
  int64_t history_after; /* what that request asked for */
  int history_unanswered; /* history requests in a row it let time out */
  bool history_by_fetch;  /* it does not answer them (an earlier release): asked with FETCH */
  /* Its last catch-up had more to come and a history page went first, or the receive queue
   * shrank and went quiet while a request was in flight (peers_on_quiet). */
  bool catch_up_owed;
  atomic_bool connected; /* set by NNG's thread when a connection comes up, taken by the loop */
  atomic_int pipes;      /* connections open to its FETCH endpoint, counted by NNG's thread */
  uint64_t heard_at;     /* loop time (ms) of its last answer or live frame; 0: never */
  uint64_t asked_at;     /* loop time (ms) of the request in flight */
  int64_t asked_after;   /* and the seq its FETCH asked to hear after */
  uint64_t answered_at;
  /* Loop time (ms) since which no connection to its FETCH (PUB) endpoint is open; 0: one is. */
  uint64_t unconnected_since, sub_unconnected_since;
  int64_t head; /* the peer's last seq, as it last told us */
  int64_t gone; /* its messages its retention deleted before we fetched them */
  int64_t gone_first, gone_last; /* the last such range */
  int64_t fetched; /* messages applied from its FETCH answers rather than its live frames */
  int64_t fetches; /* its FETCH answers (pages of its log), whatever they brought */
  choreo_ahead ahead; /* its live frames heard past a gap */
  int closing; /* its watch and live connection, until the loop has let go of both */
} choreo_peer;

/* Embedded in its owner, as libuv's handles are: start, stop, then wait for on_loop == 0. */
typedef struct choreo_peers {
  uv_loop_t *loop;
  choreo_engine *engine;
  char bus[PATH_MAX];
  void (*committed)(void *ud); /* something was applied: the owner publishes what it emitted */
  void *ud;
  nng_socket sub;
  bool sub_open;
  choreo_bus_watch sub_watch;
  choreo_queue_bound sub_queue; /* its receive queue's size, from the frames' */
  bool queue_shrunk; /* since the queue was last quiet: frames may have been freed with it */
  uv_async_t connected; /* wakes the loop to FETCH from a peer that just connected */
  bool connected_started;
  uv_fs_event_t bus_watch; /* the bus directory: a host appearing on it is found at once */
  bool bus_watch_started;
  choreo_peer *list[CHOREO_MAX_PEERS];
  int n;
  atomic_int listed; /* n, for NNG's thread: the peers its SUB notifications may look at */
  int on_loop; /* handles of ours the loop still holds */
  msgpack_sbuffer request;
  /* The source a build wants history from, and since when (loop ms) no page of it came. */
  char history_source[CHOREO_NAME_MAX + 1];
  int64_t history_after;
  uint64_t history_waiting_since;
  uint64_t started_at; /* loop ms */
} choreo_peers;

/* Subscribes to the hosts found in the bus directory and to the PUB endpoints in urls, and
 * catches up from them into engine. On failure err holds one line; stop the peers all the
 * same. */
int choreo_peers_start(choreo_peers *p, uv_loop_t *loop, choreo_engine *engine, const char *bus,
                       const char *const *urls, size_t nurls, void (*committed)(void *ud),
                       void *ud, char *err, size_t errlen);
/* Discovery (also done as the bus directory changes) and the periodic FETCH. */
void choreo_peers_tick(choreo_peers *p);
void choreo_peers_drain(choreo_peers *p); /* the safety drain of every peer socket */
/* Asks for the history a projection's build wants, if any (engine.h, choreo_engine_history_*):
 * a page at a time from the peer of that name, taking turns with its catch-ups. A source whose
 * host does not answer for CHOREO_HISTORY_PATIENCE_MS is given up; so is, at once, one no
 * known host is named after once we have run that long (and every --peer endpoint has said
 * its name). */
void choreo_peers_history(choreo_peers *p);
/* Closes every socket and handle; each peer is freed once the loop lets go of it. Safe on a
 * zeroed struct and twice. */
void choreo_peers_stop(choreo_peers *p);
/* Peer i in the order they were found; CHOREO_ENOENT past the end. */
int choreo_peers_status(choreo_peers *p, size_t i, choreo_peer_status *out);

#endif
