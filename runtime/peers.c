/* The other hosts: finding them (the bus directory's *.pub sockets, and --peer endpoints),
 * hearing their live frames on one SUB socket, and catching up through FETCH whenever a frame
 * shows a gap, after a (re)connect, and at least once a second as a safety net, since PUB/SUB
 * drops frames under load (DESIGN.md §2). One REQ socket per peer, one request in flight. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>

#include "host.h"
#include "log.h"

#define FETCH_EVERY_MS 1000
#define FETCH_PATIENCE_MS 5000 /* re-ask a peer that has not answered by then */
#define REDIAL_AFTER_MS 15000

static choreo_peer *peers_find_name(choreo_host *h, const char *name) {
  for (int i = 0; i < h->npeers; i++)
    if (strcmp(h->peers[i]->name, name) == 0) return h->peers[i];
  return NULL;
}

static choreo_peer *peers_find_url(choreo_host *h, const char *pub_url) {
  for (int i = 0; i < h->npeers; i++)
    if (strcmp(h->peers[i]->pub_url, pub_url) == 0) return h->peers[i];
  return NULL;
}

static void peers_ask(choreo_host *h, choreo_peer *p) {
  char buf[32];
  msgpack_sbuffer sb = {.size = 0, .data = buf, .alloc = sizeof buf};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_str(&pk, 5);
  msgpack_pack_str_body(&pk, "fetch", 5);
  msgpack_pack_int64(&pk, p->name[0] ? choreo_store_checkpoint(choreo_engine_store(h->engine), p->name) : -1);
  /* A new request on a REQ socket abandons the old one, so a lost answer cannot wedge us. */
  if (nng_send(p->req, sb.data, sb.size, NNG_FLAG_NONBLOCK) == 0) {
    p->in_flight = true;
    p->asked_at = uv_now(&h->loop);
  }
}

static void peers_answered(choreo_host *h, choreo_peer *p, nng_msg *msg) {
  p->in_flight = false;
  p->answered_at = uv_now(&h->loop);
  choreo_apply_result r;
  int rc = choreo_engine_apply_frame(h->engine, nng_msg_body(msg), nng_msg_len(msg), &r);
  nng_msg_free(msg);
  if (rc == CHOREO_EINVAL) {
    choreo_log(CHOREO_LOG_WARN, h->opts->name, "dropped a malformed FETCH answer from %s",
               p->pub_url);
    return;
  }
  if (!p->name[0] && !rc) {
    if (!choreo_bus_valid_name(r.source) || strcmp(r.source, h->opts->name) == 0 ||
        peers_find_name(h, r.source)) {
      choreo_log(CHOREO_LOG_WARN, h->opts->name, "peer %s calls itself '%s': ignored",
                 p->pub_url, r.source);
      return;
    }
    snprintf(p->name, sizeof p->name, "%.*s", CHOREO_NAME_MAX, r.source);
    choreo_log(CHOREO_LOG_INFO, h->opts->name, "peer %s is %s", p->pub_url, p->name);
    p->head = r.head;
    peers_ask(h, p); /* now that we know whose log it is, catch up at once */
    return;
  }
  if (strcmp(r.source, p->name) != 0) return;
  p->head = r.head;
  choreo_host_report(h, p->name, rc, &r);
  if (r.applied || r.failed) choreo_host_committed(h);
  /* More to catch up: ask again at once rather than at the next tick. */
  if (!rc && r.count && r.first + r.count - 1 < r.head) peers_ask(h, p);
}

/* NNG's thread: a connection to the peer's FETCH endpoint is up. A request sent before that
 * fails at once (we never block the loop on a send), so the first FETCH after a start or a
 * reconnect waits for this instead of for the next periodic one, a second later. */
static void peers_on_pipe_up(nng_pipe pipe, nng_pipe_ev ev, void *arg) {
  (void)pipe;
  (void)ev;
  choreo_peer *p = arg;
  atomic_store(&p->connected, true);
  uv_async_send(&p->host->peer_connected);
}

static void peers_on_connected(uv_async_t *async) {
  choreo_host *h = async->data;
  for (int i = 0; i < h->npeers; i++) {
    choreo_peer *p = h->peers[i];
    if (atomic_exchange(&p->connected, false) && !p->in_flight) peers_ask(h, p);
  }
}

static void peers_on_req(void *ud, nng_msg *msg) {
  choreo_peer *p = ud;
  peers_answered(p->host, p, msg);
}

static choreo_peer *peers_add(choreo_host *h, const char *name, const char *pub_url) {
  choreo_peer *p = peers_find_url(h, pub_url);
  if (p) return p;
  if (h->npeers == CHOREO_MAX_PEERS) return NULL;
  p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->host = h;
  snprintf(p->name, sizeof p->name, "%s", name ? name : "");
  snprintf(p->pub_url, sizeof p->pub_url, "%s", pub_url);
  if (choreo_bus_rep_url(pub_url, p->rep_url, sizeof p->rep_url) ||
      nng_req0_open(&p->req) != 0) {
    free(p);
    return NULL;
  }
  nng_socket_set_ms(p->req, NNG_OPT_REQ_RESENDTIME, FETCH_PATIENCE_MS);
  atomic_init(&p->connected, false);
  nng_pipe_notify(p->req, NNG_PIPE_EV_ADD_POST, peers_on_pipe_up, p);
  p->answered_at = uv_now(&h->loop);
  if (choreo_bus_dial(p->req, p->rep_url, &p->req_dialer) || choreo_bus_dial(h->sub, pub_url, NULL) ||
      choreo_bus_watch_start(&p->watch, &h->loop, p->req, peers_on_req, p)) {
    nng_close(p->req);
    free(p);
    return NULL;
  }
  h->peers[h->npeers++] = p;
  choreo_log(CHOREO_LOG_DEBUG, h->opts->name, "peer %s at %s", name ? name : "?", pub_url);
  peers_ask(h, p);
  return p;
}

/* Every NAME.pub in the bus directory but ours is a host on this machine. */
static void peers_discover(choreo_host *h) {
  DIR *d = opendir(h->bus);
  if (!d) return;
  struct dirent *ent;
  while ((ent = readdir(d))) {
    size_t n = strlen(ent->d_name);
    if (n < 5 || strcmp(ent->d_name + n - 4, ".pub") != 0) continue;
    char name[CHOREO_NAME_MAX + 1];
    if (n - 4 > CHOREO_NAME_MAX) continue;
    snprintf(name, sizeof name, "%.*s", (int)(n - 4), ent->d_name);
    if (!choreo_bus_valid_name(name) || strcmp(name, h->opts->name) == 0) continue;
    char url[CHOREO_URL_MAX];
    choreo_bus_ipc_url(url, sizeof url, h->bus, name, "pub");
    if (!peers_find_url(h, url)) peers_add(h, name, url);
  }
  closedir(d);
}

static void peers_on_live(void *ud, nng_msg *msg) {
  choreo_host *h = ud;
  choreo_apply_result r;
  int rc = choreo_engine_apply_frame(h->engine, nng_msg_body(msg), nng_msg_len(msg), &r);
  nng_msg_free(msg);
  if (rc == CHOREO_EINVAL) {
    choreo_log(CHOREO_LOG_WARN, h->opts->name, "dropped a malformed frame");
    return;
  }
  choreo_peer *p = peers_find_name(h, r.source);
  if (p && r.head > p->head) p->head = r.head;
  if (r.gap && p && !p->in_flight) peers_ask(h, p);
  choreo_host_report(h, r.source, rc, &r);
  if (r.applied || r.failed) choreo_host_committed(h);
}

int choreo_peers_start(choreo_host *h, char *err, size_t errlen) {
  if (uv_async_init(&h->loop, &h->peer_connected, peers_on_connected) != 0) {
    snprintf(err, errlen, "cannot watch peer connections");
    return CHOREO_EBUS;
  }
  h->peer_connected.data = h;
  h->peer_connected_open = true;
  if (nng_sub0_open(&h->sub) != 0 || nng_socket_set(h->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0) != 0 ||
      nng_socket_set_size(h->sub, NNG_OPT_RECVMAXSZ, CHOREO_MAX_FRAME) != 0 ||
      nng_socket_set_int(h->sub, NNG_OPT_RECVBUF, 1024) != 0 ||
      choreo_bus_watch_start(&h->sub_watch, &h->loop, h->sub, peers_on_live, h)) {
    snprintf(err, errlen, "cannot open the subscriber socket");
    return CHOREO_EBUS;
  }
  for (size_t i = 0; i < h->opts->npeers; i++) {
    char rep[CHOREO_URL_MAX];
    if (choreo_bus_rep_url(h->opts->peers[i], rep, sizeof rep)) {
      snprintf(err, errlen, "--peer %s: expected ipc://DIR/NAME.pub or tcp://HOST:PORT",
               h->opts->peers[i]);
      return CHOREO_EINVAL;
    }
    if (!peers_add(h, NULL, h->opts->peers[i])) {
      snprintf(err, errlen, "--peer %s: cannot connect", h->opts->peers[i]);
      return CHOREO_EBUS;
    }
  }
  peers_discover(h);
  return 0;
}

/* A peer that has not answered for a long while gets a fresh connection: NNG's own reconnect
 * should make this unnecessary, but a CI run once saw a consumer wait a full minute for a
 * producer that had been killed and restarted twice, and a new dialer costs nothing. */
static void peers_redial(choreo_host *h, choreo_peer *p) {
  choreo_log(CHOREO_LOG_DEBUG, h->opts->name, "no answer from %s for %llu s: reconnecting",
             p->name[0] ? p->name : p->pub_url,
             (unsigned long long)(uv_now(&h->loop) - p->answered_at) / 1000);
  nng_dialer_close(p->req_dialer);
  choreo_bus_dial(p->req, p->rep_url, &p->req_dialer);
  p->answered_at = uv_now(&h->loop); /* wait a full period before the next redial */
}

void choreo_peers_drain(choreo_host *h) {
  choreo_bus_watch_drain(&h->sub_watch);
  for (int i = 0; i < h->npeers; i++) choreo_bus_watch_drain(&h->peers[i]->watch);
}

void choreo_peers_tick(choreo_host *h) {
  peers_discover(h); /* a readdir of a small directory: cheap at this pace */
  uint64_t now = uv_now(&h->loop);
  for (int i = 0; i < h->npeers; i++) {
    choreo_peer *p = h->peers[i];
    if (p->in_flight && now - p->asked_at >= FETCH_PATIENCE_MS &&
        now - p->answered_at >= REDIAL_AFTER_MS)
      peers_redial(h, p);
    if (p->in_flight ? now - p->asked_at >= FETCH_PATIENCE_MS
                     : now - p->answered_at >= FETCH_EVERY_MS)
      peers_ask(h, p);
  }
}

static void peers_free_watch(uv_handle_t *handle) {
  free(((choreo_bus_watch *)handle->data)->ud);
}

void choreo_peers_stop(choreo_host *h) {
  choreo_bus_watch_stop(&h->sub_watch, NULL);
  for (int i = 0; i < h->npeers; i++) {
    choreo_peer *p = h->peers[i];
    if (p->watch.started) {
      /* The peer holds the poll handle: it is freed once libuv lets go of it. */
      choreo_bus_watch_stop(&p->watch, peers_free_watch);
      nng_close(p->req);
    } else {
      nng_close(p->req);
      free(p);
    }
  }
  h->npeers = 0;
  nng_close(h->sub);
  /* Last: closing the sockets above ends the callbacks that signal it. */
  if (h->peer_connected_open) uv_close((uv_handle_t *)&h->peer_connected, NULL);
  h->peer_connected_open = false;
}

void choreo_peers_status(choreo_host *h, cJSON *array) {
  choreo_store *store = choreo_engine_store(h->engine);
  for (int i = 0; i < h->npeers; i++) {
    choreo_peer *p = h->peers[i];
    cJSON *o = cJSON_CreateObject();
    int64_t checkpoint = p->name[0] ? choreo_store_checkpoint(store, p->name) : 0;
    cJSON_AddStringToObject(o, "name", p->name);
    cJSON_AddStringToObject(o, "url", p->pub_url);
    cJSON_AddNumberToObject(o, "checkpoint", (double)checkpoint);
    cJSON_AddNumberToObject(o, "head", (double)p->head);
    cJSON_AddNumberToObject(o, "lag", (double)(p->head > checkpoint ? p->head - checkpoint : 0));
    cJSON_AddItemToArray(array, o);
  }
}
