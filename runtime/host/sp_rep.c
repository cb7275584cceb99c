/* A REP endpoint whose connections the loop serves itself (see sp_rep.h). */
#include "sp_rep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "choreo.h"
#include "log.h"

static void rep_on_conn_closed(choreo_sp_conn *c) {
  choreo_sp_rep_conn *rc = c->data;
  if (rc->rep) {
    choreo_sp_rep_conn **at = &rc->rep->conns;
    while (*at != rc) at = &(*at)->next;
    *at = rc->next;
  }
  free(rc);
}

/* The request's backtrace goes from its body to its header, after the connection's id, as
 * NNG's REP moves it; a request without a backtrace's end within its hops is dropped. */
static void rep_on_request(choreo_sp_conn *c, nng_msg *request) {
  choreo_sp_rep_conn *rc = c->data;
  bool whole = nng_msg_header_append(request, &rc->id, sizeof rc->id) == 0;
  for (int hops = 0; whole; hops++) {
    uint32_t word;
    if (hops == CHOREO_SP_BACKTRACE_MAX || nng_msg_trim_u32(request, &word) != 0 ||
        nng_msg_header_append_u32(request, word) != 0) {
      whole = false;
    } else if (word & CHOREO_SP_BACKTRACE_END) {
      break;
    }
  }
  if (whole && rc->rep) rc->rep->cb(rc->rep->ud, request);
  else nng_msg_free(request);
}

static void rep_on_connection(uv_stream_t *listener, int status) {
  choreo_sp_rep *r = listener->data;
  if (status < 0) {
    choreo_log(CHOREO_LOG_WARN, r->who, "%s: cannot take a connection: %s", r->listener.url,
               uv_strerror(status));
    return;
  }
  choreo_sp_rep_conn *rc = malloc(sizeof *rc);
  if (!rc || choreo_sp_conn_init(&rc->conn, r->loop, CHOREO_SP_REP, CHOREO_SP_REQ, r->who,
                                 r->listener.url, &r->warned, rep_on_request, rep_on_conn_closed,
                                 rc) != 0) {
    /* It waits in the backlog, and libuv hears no more until it is accepted. */
    choreo_log(CHOREO_LOG_ERROR, r->who, "%s: no memory for a connection", r->listener.url);
    free(rc);
    return;
  }
  rc->rep = r;
  rc->id = r->next_id++;
  rc->next = r->conns;
  r->conns = rc;
  if (uv_accept(listener, (uv_stream_t *)&rc->conn.pipe) != 0) choreo_sp_conn_close(&rc->conn);
  else choreo_sp_conn_begin(&rc->conn);
}

int choreo_sp_rep_start(choreo_sp_rep *r, uv_loop_t *loop, const char *url, const char *who,
                        choreo_sp_rep_request_cb cb, void *ud, char *err, size_t errlen) {
  *r = (choreo_sp_rep){.loop = loop, .who = who, .cb = cb, .ud = ud};
  return choreo_sp_listen(&r->listener, loop, url, rep_on_connection, r, err, errlen);
}

bool choreo_sp_rep_owns(nng_msg *request) { return nng_msg_header_len(request) > 0; }

void choreo_sp_rep_reply(choreo_sp_rep *r, nng_msg *request, const void *body, size_t len) {
  uint32_t id;
  memcpy(&id, nng_msg_header(request), sizeof id);
  for (choreo_sp_rep_conn *rc = r->conns; rc; rc = rc->next) {
    if (rc->id != id) continue;
    choreo_sp_conn_send(&rc->conn, (const char *)nng_msg_header(request) + sizeof id,
                        nng_msg_header_len(request) - sizeof id, body, len);
    break;
  }
  nng_msg_free(request); /* (its connection gone: the answer with it, as NNG's REP does) */
}

void choreo_sp_rep_stop(choreo_sp_rep *r) {
  choreo_sp_unlisten(&r->listener);
  for (choreo_sp_rep_conn *rc = r->conns; rc; rc = rc->next) {
    rc->rep = NULL;
    choreo_sp_conn_close(&rc->conn);
  }
  r->conns = NULL;
}
