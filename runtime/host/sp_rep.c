/* A REP endpoint whose connections the loop serves itself (see sp_rep.h). */
#include "sp_rep.h"

#include <string.h>

/* The request's backtrace goes from its body to its header, after the connection's id, as
 * NNG's REP moves it; a request without a backtrace's end within its hops is dropped. */
static void rep_on_request(choreo_sp_accepted *a, nng_msg *request) {
  choreo_sp_rep *r = a->listener->data;
  bool whole = nng_msg_header_append(request, &a->id, sizeof a->id) == 0;
  for (int hops = 0; whole; hops++) {
    uint32_t word;
    if (hops == CHOREO_SP_BACKTRACE_MAX || nng_msg_trim_u32(request, &word) != 0 ||
        nng_msg_header_append_u32(request, word) != 0) {
      whole = false;
    } else if (word & CHOREO_SP_BACKTRACE_END) {
      break;
    }
  }
  if (whole) r->cb(r->ud, request);
  else nng_msg_free(request);
}

int choreo_sp_rep_start(choreo_sp_rep *r, uv_loop_t *loop, const char *url, const char *who,
                        choreo_sp_rep_request_cb cb, void *ud, char *err, size_t errlen) {
  *r = (choreo_sp_rep){.cb = cb, .ud = ud};
  return choreo_sp_listen(&r->listener, loop, url, who, CHOREO_SP_REP, CHOREO_SP_REQ,
                          rep_on_request, r, err, errlen);
}

bool choreo_sp_rep_owns(nng_msg *request) { return nng_msg_header_len(request) > 0; }

void choreo_sp_rep_reply(choreo_sp_rep *r, nng_msg *request, const void *body, size_t len) {
  uint32_t id;
  memcpy(&id, nng_msg_header(request), sizeof id);
  choreo_sp_accepted *a = choreo_sp_listener_find(&r->listener, id);
  if (a) /* (its connection gone: the answer with it, as NNG's REP does) */
    choreo_sp_conn_send(&a->conn, (const char *)nng_msg_header(request) + sizeof id,
                        nng_msg_header_len(request) - sizeof id, body, len);
  nng_msg_free(request);
}

void choreo_sp_rep_stop(choreo_sp_rep *r) { choreo_sp_unlisten(&r->listener); }
