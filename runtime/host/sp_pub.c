/* A PUB endpoint whose subscribers the loop writes to itself (see sp_pub.h). */
#include "sp_pub.h"

#include <stdlib.h>

#include "log.h"

static void pub_on_conn_closed(choreo_sp_conn *c) {
  choreo_sp_pub_conn *pc = c->data;
  if (pc->pub) {
    choreo_sp_pub_conn **at = &pc->pub->conns;
    while (*at != pc) at = &(*at)->next;
    *at = pc->next;
  }
  free(pc);
}

/* A subscriber sends nothing; what one sends anyway is dropped, as NNG's PUB drops it. */
static void pub_on_message(choreo_sp_conn *c, nng_msg *msg) {
  (void)c;
  nng_msg_free(msg);
}

static void pub_on_connection(uv_stream_t *listener, int status) {
  choreo_sp_pub *p = listener->data;
  if (status < 0) {
    choreo_log(CHOREO_LOG_WARN, p->who, "%s: cannot take a connection: %s", p->listener.url,
               uv_strerror(status));
    return;
  }
  choreo_sp_pub_conn *pc = malloc(sizeof *pc);
  if (!pc || choreo_sp_conn_init(&pc->conn, p->loop, CHOREO_SP_PUB, CHOREO_SP_SUB, p->who,
                                 p->listener.url, &p->warned, pub_on_message,
                                 pub_on_conn_closed, pc) != 0) {
    choreo_log(CHOREO_LOG_ERROR, p->who, "%s: no memory for a connection", p->listener.url);
    free(pc);
    return;
  }
  pc->pub = p;
  pc->next = p->conns;
  p->conns = pc;
  if (uv_accept(listener, (uv_stream_t *)&pc->conn.pipe) != 0) choreo_sp_conn_close(&pc->conn);
  else choreo_sp_conn_begin(&pc->conn);
}

int choreo_sp_pub_start(choreo_sp_pub *p, uv_loop_t *loop, const char *url, const char *who,
                        char *err, size_t errlen) {
  *p = (choreo_sp_pub){.loop = loop, .who = who};
  return choreo_sp_listen(&p->listener, loop, url, pub_on_connection, p, err, errlen);
}

int choreo_sp_pub_subscribers(const choreo_sp_pub *p) {
  int n = 0;
  for (const choreo_sp_pub_conn *pc = p->conns; pc; pc = pc->next) n += pc->conn.up;
  return n;
}

void choreo_sp_pub_send(choreo_sp_pub *p, const void *frame, size_t len) {
  for (choreo_sp_pub_conn *pc = p->conns; pc; pc = pc->next) {
    if (!pc->conn.up) continue;
    if (choreo_sp_conn_unsent(&pc->conn) + len > CHOREO_SP_PUB_BEHIND_MAX) {
      p->dropped++;
      continue;
    }
    p->warned = false;
    choreo_sp_conn_send(&pc->conn, NULL, 0, frame, len);
  }
}

void choreo_sp_pub_stop(choreo_sp_pub *p) {
  choreo_sp_unlisten(&p->listener);
  for (choreo_sp_pub_conn *pc = p->conns; pc; pc = pc->next) {
    pc->pub = NULL;
    choreo_sp_conn_close(&pc->conn);
  }
  p->conns = NULL;
}
