/* A subscriber whose connection the loop reads itself (see sp_sub.h). */
#include "sp_sub.h"

#include <stdio.h>
#include <string.h>

#include "choreo.h"

static void sub_dial(choreo_sp_sub *s);

static void sub_let_go(choreo_sp_sub *s) {
  if (s->conn_open || s->redial_open) return;
  if (s->closed_cb) s->closed_cb(s->ud); /* may free s */
}

static void sub_on_redial_closed(uv_handle_t *handle) {
  choreo_sp_sub *s = handle->data;
  s->redial_open = false;
  sub_let_go(s);
}

static void sub_on_redial(uv_timer_t *timer) { sub_dial(timer->data); }

static void sub_on_conn_closed(choreo_sp_conn *c) {
  choreo_sp_sub *s = c->data;
  s->conn_open = false;
  if (s->stopping) sub_let_go(s);
  else uv_timer_start(&s->redial, sub_on_redial, CHOREO_SP_REDIAL_MS, 0);
}

static void sub_on_frame(choreo_sp_conn *c, nng_msg *frame) {
  choreo_sp_sub *s = c->data;
  s->frame_cb(s->ud, frame);
}

static void sub_on_connect(uv_connect_t *req, int status) {
  choreo_sp_conn *c = req->handle->data;
  if (status < 0) choreo_sp_conn_close(c); /* nothing listens there (yet), or we stopped */
  else choreo_sp_conn_begin(c);
}

static void sub_dial(choreo_sp_sub *s) {
  if (choreo_sp_conn_init(&s->conn, s->loop, CHOREO_SP_SUB, CHOREO_SP_PUB, s->who, s->url,
                          &s->warned, sub_on_frame, sub_on_conn_closed, s) != 0) {
    uv_timer_start(&s->redial, sub_on_redial, CHOREO_SP_REDIAL_MS, 0);
    return;
  }
  s->conn_open = true;
  uv_pipe_connect(&s->connect, &s->conn.pipe, s->path, sub_on_connect);
}

int choreo_sp_sub_start(choreo_sp_sub *s, uv_loop_t *loop, const char *url, const char *who,
                        choreo_sp_sub_frame_cb frame_cb, void *ud) {
  memset(s, 0, sizeof *s);
  if (!choreo_sp_ipc_path(url)) return CHOREO_EINVAL;
  snprintf(s->url, sizeof s->url, "%s", url);
  s->path = s->url + 6;
  s->loop = loop;
  s->who = who;
  s->frame_cb = frame_cb;
  s->ud = ud;
  uv_timer_init(loop, &s->redial); /* cannot fail */
  s->redial.data = s;
  s->redial_open = true;
  sub_dial(s);
  return 0;
}

bool choreo_sp_sub_up(const choreo_sp_sub *s) { return s->conn_open && s->conn.up; }

void choreo_sp_sub_dial_now(choreo_sp_sub *s) {
  /* Waiting to redial: no connection open or closing, the timer running. */
  if (!s->loop || s->stopping || s->conn_open || !uv_is_active((uv_handle_t *)&s->redial))
    return;
  uv_timer_stop(&s->redial);
  sub_dial(s);
}

void choreo_sp_sub_recycle(choreo_sp_sub *s, nng_msg *frame) {
  if (s->conn_open)
    choreo_sp_conn_recycle(&s->conn, frame);
  else
    nng_msg_free(frame);
}

bool choreo_sp_sub_stop(choreo_sp_sub *s, choreo_sp_sub_closed_cb closed) {
  if (!s->loop || s->stopping) return false;
  s->stopping = true;
  s->closed_cb = closed;
  uv_close((uv_handle_t *)&s->redial, sub_on_redial_closed);
  if (s->conn_open) choreo_sp_conn_close(&s->conn);
  return true;
}
