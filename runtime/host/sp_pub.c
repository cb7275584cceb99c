/* A PUB endpoint whose subscribers the loop writes to itself (see sp_pub.h). */
#include "sp_pub.h"

#include <string.h>

/* A subscriber sends nothing; what one sends anyway is dropped, as NNG's PUB drops it. */
static void pub_on_message(choreo_sp_accepted *a, nng_msg *msg) {
  (void)a;
  nng_msg_free(msg);
}

static void pub_on_drained(choreo_sp_accepted *a) {
  choreo_sp_pub *p = a->listener->data;
  if (!a->lost_frames || !p->notice_len) return;
  a->lost_frames = false;
  choreo_sp_conn_send(&a->conn, NULL, 0, p->notice, p->notice_len);
}

int choreo_sp_pub_start(choreo_sp_pub *p, uv_loop_t *loop, const char *url, const char *who,
                        char *err, size_t errlen) {
  *p = (choreo_sp_pub){.dropped = 0};
  int rc = choreo_sp_listen(&p->listener, loop, url, who, CHOREO_SP_PUB, CHOREO_SP_SUB,
                            pub_on_message, p, err, errlen);
  p->listener.drained_cb = pub_on_drained;
  return rc;
}

int choreo_sp_pub_subscribers(const choreo_sp_pub *p) {
  int n = 0;
  for (const choreo_sp_accepted *a = p->listener.conns; a; a = a->next) n += a->conn.up;
  return n;
}

int choreo_sp_pub_send(choreo_sp_pub *p, const void *frame, size_t len) {
  int sent = 0;
  for (choreo_sp_accepted *a = p->listener.conns; a; a = a->next) {
    if (!a->conn.up) continue;
    if (choreo_sp_conn_unsent(&a->conn) + len > CHOREO_SP_PUB_BEHIND_MAX) {
      p->dropped++;
      a->lost_frames = true;
      continue;
    }
    p->listener.warned = false; /* a good subscriber ends a row of bad connections */
    a->lost_frames = false; /* the gap before this frame says what it lost */
    choreo_sp_conn_send(&a->conn, NULL, 0, frame, len);
    sent++;
  }
  return sent;
}

void choreo_sp_pub_set_notice(choreo_sp_pub *p, const void *notice, size_t len) {
  p->notice_len = len <= sizeof p->notice ? len : 0;
  if (p->notice_len) memcpy(p->notice, notice, len);
}

void choreo_sp_pub_stop(choreo_sp_pub *p) { choreo_sp_unlisten(&p->listener); }
