/* The other hosts (see peers.h). Everything here runs on the loop's thread except
 * peers_on_pipe, which NNG calls on its own. */
#include "peers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>

#include "bus_close.h"
#include "codec.h"
#include "log.h"

#define FETCH_EVERY_MS 1000
#define FETCH_PATIENCE_MS 5000 /* re-ask a peer that has not answered by then */
#define REDIAL_AFTER_MS 3000   /* a new dialer for an endpoint of a peer unconnected this long */

static const char *peers_self(choreo_peers *ps) { return choreo_engine_name(ps->engine); }

/* A frame, FETCH or history answer refused as malformed. One from a newer choreo, whose frame
 * version this host does not read, says so: the fix is an upgrade, not a look at the peer. */
static void peers_log_malformed(choreo_peers *ps, nng_msg *msg, const char *what,
                                const char *from) {
  int64_t version = choreo_frame_version(nng_msg_body(msg), nng_msg_len(msg));
  if (version > CHOREO_FRAME_VERSION)
    choreo_log(CHOREO_LOG_WARN, peers_self(ps),
               "dropped a %s%s%s: its frame version %lld is newer than this host reads (%d); "
               "upgrade this host",
               what, from ? " from " : "", from ? from : "", (long long)version,
               CHOREO_FRAME_VERSION);
  else
    choreo_log(CHOREO_LOG_WARN, peers_self(ps), "dropped a malformed %s%s%s", what,
               from ? " from " : "", from ? from : "");
}

static choreo_peer *peers_find_name(choreo_peers *ps, const char *name) {
  for (int i = 0; i < ps->n; i++)
    if (strcmp(ps->list[i]->name, name) == 0) return ps->list[i];
  return NULL;
}

static choreo_peer *peers_find_url(choreo_peers *ps, const char *pub_url) {
  for (int i = 0; i < ps->n; i++)
    if (strcmp(ps->list[i]->pub_url, pub_url) == 0) return ps->list[i];
  return NULL;
}

/* Sends ps->request on p's REQ socket; true when it went out. The copy NNG makes is NNG's from
 * here on, and NNG 1.5 can lose it when the socket closes while the copy is on its way to a
 * pipe (a host stopping right after it asked: the sanitized suite's LeakSanitizer saw it once,
 * 188 bytes); it is told not to count it, as for a frame in flight on PUB (bus.h). */
static bool peers_send_request(choreo_peers *ps, choreo_peer *p) {
  choreo_bus_lsan_pause();
  int rv = nng_send(p->req, ps->request.data, ps->request.size, NNG_FLAG_NONBLOCK);
  choreo_bus_lsan_resume();
  return rv == 0;
}

/* Asks p for its log after `after`; true when the request went out. */
static bool peers_fetch(choreo_peers *ps, choreo_peer *p, int64_t after) {
  ps->request.size = 0;
  int rc = choreo_fetch_encode(&ps->request, after, peers_self(ps));
  if (rc) { /* the periodic FETCH tries again */
    choreo_log(CHOREO_LOG_ERROR, peers_self(ps), "cannot ask %s for its log: %s", p->pub_url,
               choreo_strerror(rc));
    return false;
  }
  /* A new request on a REQ socket abandons the old one, so a lost answer cannot wedge us. */
  if (!peers_send_request(ps, p)) return false;
  p->in_flight = true;
  p->asking_history = false;
  p->catch_up_owed = false;
  p->asked_at = uv_now(ps->loop);
  p->asked_after = after;
  return true;
}

static void peers_ask(choreo_peers *ps, choreo_peer *p) {
  int64_t after = -1; /* a --peer endpoint not yet named: ask only for its name and head */
  int rc = p->name[0] ? choreo_engine_checkpoint(ps->engine, p->name, &after) : 0;
  if (rc) {
    choreo_log(CHOREO_LOG_ERROR, peers_self(ps), "cannot ask %s for its log: %s", p->pub_url,
               choreo_strerror(rc));
    return;
  }
  peers_fetch(ps, p, after);
}

/* A page of the peer's history after `after` for a build (a history request: its retention
 * does not take it for how far we have applied). */
static void peers_ask_history(choreo_peers *ps, choreo_peer *p, int64_t after) {
  ps->request.size = 0;
  int rc = p->history_by_fetch ? choreo_fetch_encode(&ps->request, after, NULL)
                               : choreo_history_encode(&ps->request, after);
  if (rc) return; /* asked again at the next tick */
  if (peers_send_request(ps, p)) {
    p->in_flight = true;
    p->asking_history = true;
    p->history_after = after;
    p->asked_at = uv_now(ps->loop);
  }
}

/* Whether some --peer endpoint has not said its name yet: it may be the host looked for. */
static bool peers_any_unnamed(choreo_peers *ps) {
  for (int i = 0; i < ps->n; i++)
    if (!ps->list[i]->name[0]) return true;
  return false;
}

static void peers_give_up_history(choreo_peers *ps, const char *source, const char *why) {
  int rc = choreo_engine_history_give_up(ps->engine, source, why);
  if (rc)
    choreo_log(CHOREO_LOG_ERROR, peers_self(ps), "cannot go on without %s's history: %s", source,
               choreo_strerror(rc));
  ps->history_source[0] = '\0';
  ps->committed(ps->ud); /* the build goes on */
}

void choreo_peers_history(choreo_peers *ps) {
  char source[CHOREO_NAME_MAX + 1];
  int64_t after;
  /* (This host's own history the engine reads itself, in its build steps.) */
  if (!choreo_engine_history_wanted(ps->engine, source, sizeof source, &after) ||
      strcmp(source, peers_self(ps)) == 0) {
    ps->history_source[0] = '\0';
    return;
  }
  uint64_t now = uv_now(ps->loop);
  /* Patience counts from the last progress: a new source, or a new place in it (a new build
   * of the same source starts again from 0). */
  if (strcmp(source, ps->history_source) != 0 || after != ps->history_after) {
    snprintf(ps->history_source, sizeof ps->history_source, "%s", source);
    ps->history_after = after;
    ps->history_waiting_since = now;
  }
  choreo_peer *p = peers_find_name(ps, source);
  /* Hosts that started with us have had the patience to show up: a source none of them is
   * named after is given up at once, not one patience after another. */
  if (!p && !peers_any_unnamed(ps) && now - ps->started_at >= CHOREO_HISTORY_PATIENCE_MS) {
    peers_give_up_history(ps, source, "no host of that name is known");
    return;
  }
  if (now - ps->history_waiting_since >= CHOREO_HISTORY_PATIENCE_MS) {
    char why[160];
    snprintf(why, sizeof why, p ? "it did not answer for %d s" : "no host of that name was found "
             "for %d s", CHOREO_HISTORY_PATIENCE_MS / 1000);
    peers_give_up_history(ps, source, why);
    return;
  }
  if (p && !p->in_flight) peers_ask_history(ps, p, after);
}

/* Whether a build wants history from p. */
static bool peers_history_from(choreo_peers *ps, choreo_peer *p) {
  return p->name[0] && strcmp(ps->history_source, p->name) == 0;
}

/* A page of history came: stored for the build, which goes on once it has it all. Then
 * whichever is due: catching up (owed by a catch-up that had more, or a second after the last
 * one), or the next page. */
static void peers_history_answered(choreo_peers *ps, choreo_peer *p, nng_msg *msg) {
  p->history_unanswered = 0;
  int rc = choreo_engine_history_take(ps->engine, nng_msg_body(msg), nng_msg_len(msg),
                                      p->history_after);
  if (rc == CHOREO_EINVAL)
    peers_log_malformed(ps, msg, "history answer", p->pub_url);
  else if (rc)
    choreo_log(CHOREO_LOG_ERROR, peers_self(ps), "cannot store %s's history: %s", p->name,
               choreo_strerror(rc));
  ps->committed(ps->ud);
  if (p->catch_up_owed || uv_now(ps->loop) - p->answered_at >= FETCH_EVERY_MS) peers_ask(ps, p);
  else choreo_peers_history(ps);
}

/* The first answer of a --peer endpoint names it. */
static void peers_named(choreo_peers *ps, choreo_peer *p, const choreo_apply_result *r) {
  if (!choreo_name_valid(r->source) || strcmp(r->source, peers_self(ps)) == 0 ||
      peers_find_name(ps, r->source)) {
    choreo_log(CHOREO_LOG_WARN, peers_self(ps), "peer %s calls itself '%s': ignored", p->pub_url,
               r->source);
    return;
  }
  snprintf(p->name, sizeof p->name, "%.*s", CHOREO_NAME_MAX, r->source);
  choreo_log(CHOREO_LOG_INFO, peers_self(ps), "peer %s is %s", p->pub_url, p->name);
  p->head = r->head;
  peers_ask(ps, p); /* now that we know whose log it is, catch up at once */
}

/* Catching up, the next page is asked for before this one is applied, so that the peer reads
 * and sends it while we apply: one round trip a page was most of a catch-up's time while the
 * peer was busy. Only when this page goes on from what we have applied (-1: unknown), past it,
 * and the peer has more (and no build waits for its history, which takes turns with catching
 * up). A page wholly applied already was overtaken by live frames (a consumer behind its
 * producer, with hundreds of frames queued): asking after it fetched page after page of rows
 * the queue held too, each read from the peer's log and passed over here. */
static bool peers_fetch_next(choreo_peers *ps, choreo_peer *p, nng_msg *msg, int64_t applied) {
  choreo_frame_reader fr;
  if (!p->name[0] || peers_history_from(ps, p) ||
      choreo_frame_open(&fr, nng_msg_body(msg), nng_msg_len(msg)))
    return false;
  bool theirs = fr.source.n == strlen(p->name) && memcmp(fr.source.p, p->name, fr.source.n) == 0;
  int64_t first = fr.first, last = fr.first - 1 + (int64_t)fr.count, head = fr.head;
  choreo_frame_close(&fr);
  if (!theirs || last < first || last >= head || first - 1 > applied || last <= applied)
    return false;
  return peers_fetch(ps, p, last);
}

/* Held live frames that go on from what we have applied now that FETCH filled the gap before
 * them. */
static void peers_apply_ahead(choreo_peers *ps, choreo_peer *p) {
  for (;;) {
    int64_t applied;
    if (choreo_engine_checkpoint(ps->engine, p->name, &applied)) return;
    nng_msg *msg = choreo_ahead_next(&p->ahead, applied);
    if (!msg) return;
    choreo_apply_result r;
    int rc = choreo_engine_apply_frame(ps->engine, nng_msg_body(msg), nng_msg_len(msg), &r);
    nng_msg_free(msg);
    choreo_engine_report(ps->engine, p->name, rc, &r);
    if (r.applied || r.failed) ps->committed(ps->ud);
    if (rc) return; /* what it had is fetched instead */
  }
}

static void peers_answered(choreo_peers *ps, choreo_peer *p, nng_msg *msg) {
  p->in_flight = false;
  if (p->asking_history) {
    p->asking_history = false;
    p->heard_at = uv_now(ps->loop);
    peers_history_answered(ps, p, msg);
    nng_msg_free(msg);
    return;
  }
  p->answered_at = p->heard_at = uv_now(ps->loop);
  p->fetches++;
  int64_t asked_after = p->asked_after, applied_before = -1;
  bool owed_meanwhile = p->catch_up_owed; /* a shrink's quiet asked while this was in flight */
  if (p->name[0] && choreo_engine_checkpoint(ps->engine, p->name, &applied_before))
    applied_before = -1;
  bool asked_next = peers_fetch_next(ps, p, msg, applied_before);
  choreo_apply_result r;
  int rc = choreo_engine_apply_frame(ps->engine, nng_msg_body(msg), nng_msg_len(msg), &r);
  if (rc == CHOREO_EINVAL) {
    peers_log_malformed(ps, msg, "FETCH answer", p->pub_url);
  } else if (!p->name[0] && !rc) {
    peers_named(ps, p, &r);
  } else if (strcmp(r.source, p->name) == 0) {
    p->head = r.head;
    /* An answer starts with the first row the peer has after what we asked for: a gap past that
     * is a range its retention deleted before we got it. Said and counted, then passed. A gap
     * only past what we have applied (the page before, asked for ahead, failed to apply) is
     * asked for again. */
    int64_t lost = 0;
    bool gone = r.gap && r.first - 1 > asked_after;
    if (!rc && gone && !choreo_engine_skip_gone(ps->engine, p->name, r.first - 1, &lost) &&
        lost) {
      p->gone += lost;
      p->gone_first = r.first - lost;
      p->gone_last = r.first - 1;
      rc = choreo_engine_apply_frame(ps->engine, nng_msg_body(msg), nng_msg_len(msg), &r);
    }
    choreo_engine_report(ps->engine, p->name, rc, &r);
    p->fetched += r.applied + r.failed;
    if (r.applied || r.failed) ps->committed(ps->ud);
    peers_apply_ahead(ps, p);
    /* More to catch up, and not asked for ahead: ask again at once rather than at the next
     * tick, taking turns with a build's history from this peer, if it wants some (neither
     * starves the other). The held live frames may have taken us past the head the answer
     * knew; and a page they overtook (peers_fetch_next) leaves the rest to them, looked at
     * again by the periodic FETCH, unless live frames wait past a gap (their own ask found
     * this one in flight). */
    int64_t applied = 0;
    bool known = choreo_engine_checkpoint(ps->engine, p->name, &applied) == 0;
    bool more = r.first - 1 + (int64_t)r.count < r.head || (r.gap && !gone);
    bool overtaken = r.count && r.first - 1 + (int64_t)r.count <= applied_before &&
                     p->ahead.count == 0;
    /* Live frames let go for the held frames' bounds are owed whatever head this answer knew,
     * and even after a page the live frames overtook: no live frame will bring them, and once
     * the peer stops publishing none will show the gap before the periodic FETCH (a consumer
     * behind a burst of megabyte frames sat a second short of its end). Asked again at once
     * only after an answer that moved us on or was asked before we had moved on: one asked
     * from where we are that brings nothing new (a peer whose log started over) is not. */
    bool let_go = known && applied < p->ahead.let_go_last &&
                  (r.applied || r.failed || asked_after < applied_before);
    p->catch_up_owed = !rc && !asked_next &&
                       (let_go || owed_meanwhile ||
                        (r.count && more && !overtaken && !(known && applied >= r.head)));
    if (p->catch_up_owed && !peers_history_from(ps, p)) peers_ask(ps, p);
  }
  nng_msg_free(msg);
  if (!p->in_flight) choreo_peers_history(ps); /* a build's next page, if it wants one */
  if (!p->in_flight && p->catch_up_owed) peers_ask(ps, p);
}

/* NNG's thread: a connection to the peer's FETCH endpoint came up or went down. A request sent
 * before one is up fails at once (we never block the loop on a send), so the first FETCH after
 * a start or a reconnect waits for this instead of for the next periodic one, a second later.
 * The count of connections is what `choreo status` calls up or down. */
static void peers_on_pipe(nng_pipe pipe, nng_pipe_ev ev, void *arg) {
  (void)pipe;
  choreo_peer *p = arg;
  if (ev == NNG_PIPE_EV_REM_POST) {
    atomic_fetch_sub(&p->pipes, 1);
    return;
  }
  atomic_fetch_add(&p->pipes, 1);
  atomic_store(&p->connected, true);
  uv_async_send(&p->peers->connected);
}

/* NNG's thread: a connection of the SUB socket came up or went down; counted for the peer whose
 * PUB endpoint it goes to. */
static void peers_on_sub_pipe(nng_pipe pipe, nng_pipe_ev ev, void *arg) {
  choreo_peers *ps = arg;
  int id = nng_dialer_id(nng_pipe_dialer(pipe)), n = atomic_load(&ps->listed);
  for (int i = 0; id > 0 && i < n; i++) {
    choreo_peer *p = ps->list[i];
    if (atomic_load(&p->sub_dialer_id) == id) {
      atomic_fetch_add(&p->sub_pipes, ev == NNG_PIPE_EV_ADD_POST ? 1 : -1);
      return;
    }
  }
}

static void peers_on_connected(uv_async_t *async) {
  choreo_peers *ps = async->data;
  for (int i = 0; i < ps->n; i++) {
    choreo_peer *p = ps->list[i];
    if (atomic_exchange(&p->connected, false) && !p->in_flight) peers_ask(ps, p);
  }
}

static void peers_on_req(void *ud, nng_msg *msg) {
  choreo_peer *p = ud;
  peers_answered(p->peers, p, msg);
}

static void peers_on_peer_closed(void *ud) {
  choreo_peer *p = ud;
  if (--p->closing > 0) return;
  p->peers->on_loop--;
  free(p);
}

/* Stops the peer's watch and live connection, and frees it at once or once the loop has let go
 * of them; call it before closing its REQ socket, which owns the watch's descriptor. */
static void peers_let_go(choreo_peer *p) {
  choreo_ahead_clear(&p->ahead);
  p->closing = choreo_bus_watch_stop(&p->watch, peers_on_peer_closed) +
               choreo_sp_sub_stop(&p->live, peers_on_peer_closed);
  if (!p->closing) free(p);
}

static void peers_on_live_by_loop(void *ud, nng_msg *msg);

static choreo_peer *peers_add(choreo_peers *ps, const char *name, const char *pub_url) {
  choreo_peer *p = peers_find_url(ps, pub_url);
  if (p) return p;
  if (ps->n == CHOREO_MAX_PEERS) return NULL;
  p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->peers = ps;
  snprintf(p->name, sizeof p->name, "%s", name ? name : "");
  snprintf(p->pub_url, sizeof p->pub_url, "%s", pub_url);
  if (choreo_bus_rep_url(pub_url, p->rep_url, sizeof p->rep_url) ||
      nng_req0_open(&p->req) != 0) {
    free(p);
    return NULL;
  }
  nng_socket_set_ms(p->req, NNG_OPT_REQ_RESENDTIME, FETCH_PATIENCE_MS);
  atomic_init(&p->connected, false);
  atomic_init(&p->pipes, 0);
  atomic_init(&p->sub_dialer_id, -1);
  atomic_init(&p->sub_pipes, 0);
  nng_pipe_notify(p->req, NNG_PIPE_EV_ADD_POST, peers_on_pipe, p);
  nng_pipe_notify(p->req, NNG_PIPE_EV_REM_POST, peers_on_pipe, p);
  p->answered_at = uv_now(ps->loop);
  if (choreo_bus_dial(p->req, p->rep_url, &p->req_dialer) ||
      /* One answer per wake-up: with the next page asked for ahead, the next answer is there by
       * the time one is applied, and a catch-up would hold the loop for 64 pages. */
      choreo_bus_watch_start(&p->watch, ps->loop, p->req, 1, peers_on_req, p)) {
    /* A watch that got onto the loop frees the peer when it comes off. */
    if (p->watch.on_loop) ps->on_loop++;
    peers_let_go(p);
    choreo_bus_close(p->req);
    return NULL;
  }
  ps->on_loop++;
  ps->list[ps->n++] = p;
  atomic_store(&ps->listed, ps->n);
  /* Once listed, so that its connections are counted from the first. A dial that fails here
   * is tried again by the tick. */
  p->live_by_loop = choreo_sp_ipc_path(pub_url) != NULL;
  if (p->live_by_loop
          ? choreo_sp_sub_start(&p->live, ps->loop, pub_url, peers_self(ps),
                                peers_on_live_by_loop, p) != 0
          : choreo_bus_dial_id(ps->sub, pub_url, &p->sub_dialer, &p->sub_dialer_id) != 0)
    choreo_log(CHOREO_LOG_ERROR, peers_self(ps), "cannot dial %s", pub_url);
  choreo_log(CHOREO_LOG_DEBUG, peers_self(ps), "peer %s at %s", name ? name : "?", pub_url);
  peers_ask(ps, p);
  return p;
}

/* Every NAME.pub in the bus directory but ours is a host on this machine. A known one whose
 * subscriber waits to redial is dialled now: seen as the directory changes, a host that
 * restarted listens there again (its listener renames the path into place once it listens),
 * and is heard from its first frames rather than up to CHOREO_SP_REDIAL_MS of them later. */
static void peers_found(void *ud, const char *name) {
  choreo_peers *ps = ud;
  if (strcmp(name, peers_self(ps)) == 0) return;
  char url[CHOREO_URL_MAX];
  choreo_bus_ipc_url(url, sizeof url, ps->bus, name, "pub");
  choreo_peer *p = peers_find_url(ps, url);
  if (!p) peers_add(ps, name, url);
  else if (p->live_by_loop) choreo_sp_sub_dial_now(&p->live);
}

static void peers_discover(choreo_peers *ps) {
  /* An unreadable bus directory (removed under us) is looked at again at the next tick. */
  if (choreo_bus_each_host(ps->bus, "pub", peers_found, ps))
    choreo_log(CHOREO_LOG_DEBUG, peers_self(ps), "cannot read the bus directory %s", ps->bus);
}

/* The receive queue holds about CHOREO_QUEUE_BYTES of frames like the ones coming now. NNG 1.5
 * shrinks a queue by keeping the frames that fit, the oldest, and freeing the newest: if those
 * were the last of a burst, no later frame shows them missing (peers_on_quiet). */
static void peers_size_queue(choreo_peers *ps, size_t frame) {
  int before = ps->sub_queue.frames;
  int frames = choreo_queue_bound_note(&ps->sub_queue, frame);
  if (!frames) return;
  if (nng_socket_set_int(ps->sub, NNG_OPT_RECVBUF, frames) == 0)
    ps->queue_shrunk |= frames < before;
  else
    choreo_log(CHOREO_LOG_DEBUG, peers_self(ps), "cannot resize the receive queue to %d frames",
               frames);
}

/* Asks p for its log now, or, with a request in flight, once more after its answer. */
static void peers_ask_soon(choreo_peers *ps, choreo_peer *p) {
  if (p->in_flight) p->catch_up_owed = true;
  else peers_ask(ps, p);
}

/* No frame came since the last drain, after a shrink: every peer is asked for its log, at once
 * or as soon as the request in flight is answered, for what the shrink may have freed. Not at
 * the shrink itself, nor while frames flow: a consumer would fetch what its queue still held,
 * or what is on its way, and chase its producer page after page. Quiet, it has applied all it
 * held and nothing is on the way: the answer brings only what it lacks. */
static void peers_on_quiet(void *ud) {
  choreo_peers *ps = ud;
  if (!ps->queue_shrunk) return;
  ps->queue_shrunk = false;
  for (int i = 0; i < ps->n; i++) peers_ask_soon(ps, ps->list[i]);
}

/* A live frame without messages: its publisher dropped frames for us for being behind, and we
 * have taken all it sent after them (sp_pub.h): what we lack up to its head is asked. */
static void peers_told_head(choreo_peers *ps, choreo_peer *p, int64_t head) {
  int64_t applied;
  if (!choreo_engine_checkpoint(ps->engine, p->name, &applied) && applied < head)
    peers_ask_soon(ps, p);
}

/* Applies a live frame; returns it when done with it, NULL when it is held (ahead of a gap). */
static nng_msg *peers_apply_live(choreo_peers *ps, nng_msg *msg) {
  choreo_apply_result r;
  int rc = choreo_engine_apply_frame(ps->engine, nng_msg_body(msg), nng_msg_len(msg), &r);
  if (rc == CHOREO_EINVAL) {
    peers_log_malformed(ps, msg, "frame", NULL);
    return msg;
  }
  choreo_peer *p = peers_find_name(ps, r.source);
  if (p && r.head > p->head) p->head = r.head;
  if (p) p->heard_at = uv_now(ps->loop);
  if (p && !rc && r.count == 0) peers_told_head(ps, p, r.head);
  nng_msg *done = msg;
  if (r.gap && p) {
    choreo_ahead_hold(&p->ahead, msg, r.first, r.first - 1 + (int64_t)r.count);
    done = NULL;
    if (!p->in_flight) peers_ask(ps, p);
  }
  choreo_engine_report(ps->engine, r.source, rc, &r);
  if (r.applied || r.failed) ps->committed(ps->ud);
  return done;
}

/* A frame from the SUB socket, whose queue is sized by the frames it holds. */
static void peers_on_live(void *ud, nng_msg *msg) {
  choreo_peers *ps = ud;
  peers_size_queue(ps, nng_msg_len(msg));
  nng_msg *done = peers_apply_live(ps, msg);
  if (done) nng_msg_free(done);
}

/* A frame from a peer's PUB endpoint on this machine: its queue is the kernel's; the frame's
 * buffer goes back to the connection for the next one. */
static void peers_on_live_by_loop(void *ud, nng_msg *msg) {
  choreo_peer *p = ud;
  nng_msg *done = peers_apply_live(p->peers, msg);
  if (done) choreo_sp_sub_recycle(&p->live, done);
}

/* A host starting on this machine is subscribed to before it publishes much: found on the tick
 * alone, a consumer started with its producer missed up to a quarter second of its live frames
 * and caught up through FETCH while the producer kept publishing. */
static void peers_on_bus_changed(uv_fs_event_t *watch, const char *filename, int events,
                                 int status) {
  (void)events;
  size_t n = filename ? strlen(filename) : 0;
  if (status < 0 || !filename || (n > 4 && strcmp(filename + n - 4, ".pub") == 0))
    peers_discover(watch->data);
}

static void peers_on_handle_closed(uv_handle_t *handle) {
  ((choreo_peers *)handle->data)->on_loop--;
}

static void peers_on_sub_closed(void *ud) { ((choreo_peers *)ud)->on_loop--; }

int choreo_peers_start(choreo_peers *ps, uv_loop_t *loop, choreo_engine *engine, const char *bus,
                       const char *const *urls, size_t nurls, void (*committed)(void *ud),
                       void *ud, char *err, size_t errlen) {
  *ps = (choreo_peers){.loop = loop, .engine = engine, .committed = committed, .ud = ud,
                       .started_at = uv_now(loop)};
  atomic_init(&ps->listed, 0);
  snprintf(ps->bus, sizeof ps->bus, "%s", bus);
  msgpack_sbuffer_init(&ps->request);
  if (uv_async_init(loop, &ps->connected, peers_on_connected) != 0) {
    snprintf(err, errlen, "cannot watch peer connections");
    return CHOREO_EBUS;
  }
  ps->connected.data = ps;
  ps->connected_started = true;
  ps->on_loop++;
  if (uv_fs_event_init(loop, &ps->bus_watch) == 0) {
    ps->bus_watch.data = ps;
    ps->bus_watch_started = true;
    ps->on_loop++;
    if (uv_fs_event_start(&ps->bus_watch, peers_on_bus_changed, ps->bus, 0) != 0)
      choreo_log(CHOREO_LOG_DEBUG, peers_self(ps), "cannot watch the bus directory %s: hosts "
                 "are found on the periodic look only", ps->bus);
  }
  choreo_queue_bound_init(&ps->sub_queue);
  ps->sub_open = nng_sub0_open(&ps->sub) == 0;
  if (!ps->sub_open || nng_socket_set(ps->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0) != 0 ||
      nng_socket_set_size(ps->sub, NNG_OPT_RECVMAXSZ, CHOREO_MAX_FRAME) != 0 ||
      nng_socket_set_int(ps->sub, NNG_OPT_RECVBUF, CHOREO_QUEUE_FRAMES_MAX) != 0 ||
      nng_pipe_notify(ps->sub, NNG_PIPE_EV_ADD_POST, peers_on_sub_pipe, ps) != 0 ||
      nng_pipe_notify(ps->sub, NNG_PIPE_EV_REM_POST, peers_on_sub_pipe, ps) != 0 ||
      choreo_bus_watch_start(&ps->sub_watch, loop, ps->sub, CHOREO_DRAIN_PER_WAKE, peers_on_live,
                             ps)) {
    ps->on_loop += ps->sub_watch.started;
    snprintf(err, errlen, "cannot open the subscriber socket");
    return CHOREO_EBUS;
  }
  choreo_bus_watch_on_quiet(&ps->sub_watch, peers_on_quiet);
  ps->on_loop++;
  for (size_t i = 0; i < nurls; i++) {
    char rep[CHOREO_URL_MAX];
    if (choreo_bus_rep_url(urls[i], rep, sizeof rep)) {
      snprintf(err, errlen, "--peer %s: expected ipc://DIR/NAME.pub or tcp://HOST:PORT", urls[i]);
      return CHOREO_EINVAL;
    }
    if (!peers_add(ps, NULL, urls[i])) {
      snprintf(err, errlen, "--peer %s: cannot connect", urls[i]);
      return CHOREO_EBUS;
    }
  }
  peers_discover(ps);
  return 0;
}

/* NNG 1.5's dialer gives up for good when the other side closes a connection it has just made
 * before it could send its greeting: the write fails with EPIPE, which NNG maps to "closed",
 * and the dialer takes that for its own close (fixed in NNG 1.6). A peer killed just as we
 * connect does that: we could never FETCH from it again, or never hear its live frames again.
 * So an endpoint we have had no connection to for a few seconds gets a new dialer: for a peer
 * that is merely down, that changes nothing. */
static bool peers_unconnected_for_long(uint64_t *since, int pipes, uint64_t now) {
  if (pipes > 0) {
    *since = 0;
    return false;
  }
  if (!*since) *since = now;
  if (now - *since < REDIAL_AFTER_MS) return false;
  *since = now;
  return true;
}

static void peers_check_dialers(choreo_peers *ps, choreo_peer *p, uint64_t now) {
  if (peers_unconnected_for_long(&p->unconnected_since, atomic_load(&p->pipes), now)) {
    choreo_log(CHOREO_LOG_DEBUG, peers_self(ps), "no connection to %s for %d s: dialling again",
               p->rep_url, REDIAL_AFTER_MS / 1000);
    nng_dialer_close(p->req_dialer);
    if (choreo_bus_dial(p->req, p->rep_url, &p->req_dialer))
      choreo_log(CHOREO_LOG_ERROR, peers_self(ps), "cannot dial %s", p->rep_url);
  }
  if (!p->live_by_loop &&
      peers_unconnected_for_long(&p->sub_unconnected_since, atomic_load(&p->sub_pipes), now)) {
    choreo_log(CHOREO_LOG_DEBUG, peers_self(ps), "no connection to %s for %d s: dialling again",
               p->pub_url, REDIAL_AFTER_MS / 1000);
    nng_dialer_close(p->sub_dialer); /* (a zero dialer, if the first dial failed: refused) */
    atomic_store(&p->sub_dialer_id, -1);
    atomic_store(&p->sub_pipes, 0); /* what the old dialer still had is going */
    if (choreo_bus_dial_id(ps->sub, p->pub_url, &p->sub_dialer, &p->sub_dialer_id))
      choreo_log(CHOREO_LOG_ERROR, peers_self(ps), "cannot dial %s", p->pub_url);
  }
}

void choreo_peers_drain(choreo_peers *ps) {
  choreo_bus_watch_drain(&ps->sub_watch);
  for (int i = 0; i < ps->n; i++) choreo_bus_watch_drain(&ps->list[i]->watch);
}

/* A host of an earlier release drops history requests it does not know: after two in a row,
 * its history is asked with FETCH (without the stream events its retention deleted). */
static void peers_history_unanswered(choreo_peers *ps, choreo_peer *p) {
  if (p->history_by_fetch || ++p->history_unanswered < 2) return;
  p->history_by_fetch = true;
  choreo_log(CHOREO_LOG_INFO, peers_self(ps), "%s does not answer history requests (an earlier "
             "release?): its history is asked with FETCH", p->name);
}

void choreo_peers_tick(choreo_peers *ps) {
  peers_discover(ps); /* a readdir of a small directory: cheap at this pace */
  uint64_t now = uv_now(ps->loop);
  for (int i = 0; i < ps->n; i++) {
    choreo_peer *p = ps->list[i];
    peers_check_dialers(ps, p, now);
    /* A FETCH whose send failed (no connection yet) is not in flight: asked again here. A
     * peer that never answers although we are connected has a deaf listener (NNG 1.5 again,
     * see choreo_bus_listeners in bus.h), which it repairs itself. */
    if (p->in_flight && p->asking_history && now - p->asked_at >= FETCH_PATIENCE_MS)
      peers_history_unanswered(ps, p);
    if (p->in_flight ? now - p->asked_at >= FETCH_PATIENCE_MS
                     : now - p->answered_at >= FETCH_EVERY_MS)
      peers_ask(ps, p);
  }
  choreo_peers_history(ps);
}

void choreo_peers_stop(choreo_peers *ps) {
  choreo_bus_watch_stop(&ps->sub_watch, peers_on_sub_closed); /* before its socket */
  /* Before the peers go: closing it ends the notifications that look at them. */
  if (ps->sub_open) choreo_bus_close(ps->sub);
  ps->sub_open = false;
  for (int i = 0; i < ps->n; i++) {
    nng_socket req = ps->list[i]->req;
    peers_let_go(ps->list[i]);
    choreo_bus_close(req);
  }
  ps->n = 0;
  atomic_store(&ps->listed, 0);
  /* Last: closing the sockets above ends the callbacks that signal it. */
  if (ps->connected_started) uv_close((uv_handle_t *)&ps->connected, peers_on_handle_closed);
  ps->connected_started = false;
  if (ps->bus_watch_started) uv_close((uv_handle_t *)&ps->bus_watch, peers_on_handle_closed);
  ps->bus_watch_started = false;
  msgpack_sbuffer_destroy(&ps->request);
  msgpack_sbuffer_init(&ps->request);
}

int choreo_peers_status(choreo_peers *ps, size_t i, choreo_peer_status *out) {
  if (i >= (size_t)ps->n) return CHOREO_ENOENT;
  choreo_peer *p = ps->list[i];
  int64_t applied = 0;
  int rc = p->name[0] ? choreo_engine_checkpoint(ps->engine, p->name, &applied) : 0;
  *out = (choreo_peer_status){.name = p->name, .url = p->pub_url, .applied = applied,
                              .head = p->head,
                              .lag = p->head > applied ? p->head - applied : 0,
                              .up = atomic_load(&p->pipes) > 0, .gone = p->gone,
                              .gone_first = p->gone_first, .gone_last = p->gone_last,
                              .fetched = p->fetched, .fetches = p->fetches,
                              .heard_ms_ago = p->heard_at ? (int64_t)(uv_now(ps->loop) -
                                                                      p->heard_at) : -1};
  return rc;
}
