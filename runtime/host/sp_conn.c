/* One SP connection that the loop reads and writes itself (see sp_conn.h). */
#include "sp_conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "choreo.h"
#include "codec.h"
#include "log.h"

/* What one read takes when it goes to our buffer; the rest of a message at least this long is
 * read straight into the message. */
#define CONN_READ_SIZE (64u << 10)

typedef struct conn_write {
  uv_write_t req;
  char bytes[];
} conn_write;

static void conn_take(choreo_sp_conn *c);

static void conn_on_handle_closed(uv_handle_t *handle) {
  choreo_sp_conn *c = handle->data;
  if (--c->handles > 0) return;
  free(c->buf);
  c->buf = NULL;
  c->closed_cb(c); /* may free c */
}

void choreo_sp_conn_close(choreo_sp_conn *c) {
  if (c->closing) return;
  c->closing = true;
  c->up = false;
  if (c->msg) nng_msg_free(c->msg);
  if (c->spare) nng_msg_free(c->spare);
  c->msg = c->spare = NULL;
  uv_close((uv_handle_t *)&c->pipe, conn_on_handle_closed);
  uv_close((uv_handle_t *)&c->resume, conn_on_handle_closed);
}

/* Logged once in a row of bad connections (the owner's flag): a wrong endpoint dialled again
 * and again would otherwise fill the log 10 times a second. */
__attribute__((format(printf, 2, 3))) static void conn_refuse(choreo_sp_conn *c, const char *fmt,
                                                              ...) {
  if (!*c->warned) {
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    choreo_log(CHOREO_LOG_WARN, c->who, "%s: %s: hung up", c->url, why);
  }
  *c->warned = true;
  choreo_sp_conn_close(c);
}

static void conn_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  choreo_sp_conn *c = handle->data;
  if (c->msg && c->msg_len - c->msg_got >= CONN_READ_SIZE)
    *buf = uv_buf_init((char *)nng_msg_body(c->msg) + c->msg_got,
                       (unsigned)(c->msg_len - c->msg_got));
  else
    *buf = uv_buf_init(c->buf, CONN_READ_SIZE);
}

static void conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  choreo_sp_conn *c = stream->data;
  if (nread < 0) { /* the other side went, or the connection broke */
    choreo_sp_conn_close(c);
    return;
  }
  if (buf->base == c->buf) {
    c->held = (size_t)nread;
    c->held_at = 0;
  } else {
    c->msg_got += (size_t)nread;
  }
  conn_take(c);
}

static void conn_start_reading(choreo_sp_conn *c) {
  c->reading = uv_read_start((uv_stream_t *)&c->pipe, conn_on_alloc, conn_on_read) == 0;
  if (!c->reading) choreo_sp_conn_close(c);
}

/* The loop's next turn takes the messages a turn's bound left. */
static void conn_on_resume(uv_idle_t *idle) {
  uv_idle_stop(idle);
  conn_take(idle->data);
}

static void conn_on_greeted(uv_write_t *req, int status) {
  choreo_sp_conn *c = req->handle->data;
  if (status < 0) choreo_sp_conn_close(c);
}

void choreo_sp_conn_begin(choreo_sp_conn *c) {
  if (c->closing) return;
  int send_buffer = CHOREO_SP_SEND_BUFFER;
  (void)uv_send_buffer_size((uv_handle_t *)&c->pipe, &send_buffer); /* as much as allowed */
  uv_buf_t greeting = uv_buf_init((char *)c->greeting_out, sizeof c->greeting_out);
  if (uv_write(&c->greet, (uv_stream_t *)&c->pipe, &greeting, 1, conn_on_greeted) != 0)
    choreo_sp_conn_close(c);
  else
    conn_start_reading(c);
}

/* Copies into dst (of size want, got of it filled) what src has of it; returns bytes taken. */
static size_t conn_fill(uint8_t *dst, size_t *got, size_t want, const char *src, size_t n) {
  size_t take = want - *got < n ? want - *got : n;
  memcpy(dst + *got, src, take);
  *got += take;
  return take;
}

/* Whether the connection goes on after the greeting just read. */
static bool conn_greeted(choreo_sp_conn *c) {
  int protocol = choreo_sp_greeting_protocol(c->greeting_in);
  if (protocol < 0) {
    conn_refuse(c, "the other side does not greet in SP");
    return false;
  }
  if (protocol != c->peer) {
    conn_refuse(c, "the other side greets as %s (protocol %d), not as %s",
                choreo_sp_protocol_name(protocol), protocol, choreo_sp_protocol_name(c->peer));
    return false;
  }
  c->up = true;
  return true;
}

void choreo_sp_conn_recycle(choreo_sp_conn *c, nng_msg *msg) {
  if (c->spare || c->closing || nng_msg_capacity(msg) > CHOREO_SP_SPARE_MAX) {
    nng_msg_free(msg);
    return;
  }
  c->spare = msg;
}

/* c->msg of len bytes: the spare when there is one (grown only if it must be). */
static int conn_message_for(choreo_sp_conn *c, size_t len) {
  nng_msg *m = c->spare;
  c->spare = NULL;
  if (m) {
    nng_msg_clear(m);
    nng_msg_header_clear(m);
    if (nng_msg_realloc(m, len) == 0) {
      c->msg = m;
      return 0;
    }
    nng_msg_free(m);
  }
  return nng_msg_alloc(&c->msg, len);
}

/* Whether the connection goes on after the header just read. */
static bool conn_message_begins(choreo_sp_conn *c) {
  uint64_t len;
  if (!choreo_sp_header_length(c->header, &len)) {
    conn_refuse(c, "the other side sent something that is not an SP message");
    return false;
  }
  if (len > CHOREO_MAX_FRAME) {
    conn_refuse(c, "the other side sent a message of %llu bytes, more than %u", 
                (unsigned long long)len, CHOREO_MAX_FRAME);
    return false;
  }
  if (conn_message_for(c, (size_t)len) != 0) {
    c->msg = NULL;
    conn_refuse(c, "no memory for a message of %llu bytes", (unsigned long long)len);
    return false;
  }
  c->msg_len = (size_t)len;
  c->msg_got = 0;
  return true;
}

/* Hands the message read over; whether the connection is still to be read. */
static bool conn_deliver(choreo_sp_conn *c) {
  nng_msg *msg = c->msg;
  c->msg = NULL;
  c->header_got = 0;
  *c->warned = false;
  c->message_cb(c, msg);
  return !c->closing;
}

/* Takes what the last read brought: the greeting, headers and messages; stops reading for this
 * turn of the loop at its bound, keeping the rest for the next. */
static void conn_take(choreo_sp_conn *c) {
  int messages = 0;
  uint64_t until = uv_hrtime() + CHOREO_DRAIN_MAX_MS * (uint64_t)1000000;
  for (;;) {
    if (c->msg && c->msg_got == c->msg_len) {
      if (!conn_deliver(c)) return;
      if (++messages >= CHOREO_DRAIN_PER_WAKE || uv_hrtime() >= until) break;
      continue;
    }
    if (!c->held) break;
    const char *p = c->buf + c->held_at;
    size_t n;
    if (c->greeting_got < CHOREO_SP_GREETING_SIZE) {
      n = conn_fill(c->greeting_in, &c->greeting_got, CHOREO_SP_GREETING_SIZE, p, c->held);
      if (c->greeting_got == CHOREO_SP_GREETING_SIZE && !conn_greeted(c)) return;
    } else if (c->header_got < CHOREO_SP_HEADER_SIZE) {
      n = conn_fill(c->header, &c->header_got, CHOREO_SP_HEADER_SIZE, p, c->held);
      if (c->header_got == CHOREO_SP_HEADER_SIZE && !conn_message_begins(c)) return;
    } else {
      n = c->msg_len - c->msg_got < c->held ? c->msg_len - c->msg_got : c->held;
      memcpy((char *)nng_msg_body(c->msg) + c->msg_got, p, n);
      c->msg_got += n;
    }
    c->held -= n;
    c->held_at += n;
  }
  if (c->held) {
    uv_read_stop((uv_stream_t *)&c->pipe);
    c->reading = false;
    uv_idle_start(&c->resume, conn_on_resume);
  } else if (!c->reading) {
    conn_start_reading(c);
  }
}

static void conn_on_written(uv_write_t *req, int status) {
  choreo_sp_conn *c = req->handle->data;
  free(req);
  if (status < 0) choreo_sp_conn_close(c);
  else if (c->drained_cb && !c->closing && choreo_sp_conn_unsent(c) == 0) c->drained_cb(c);
}

void choreo_sp_conn_send(choreo_sp_conn *c, const void *head, size_t head_len, const void *body,
                         size_t len) {
  if (!c->up) return; /* not greeted yet, or closing */
  uint8_t header[CHOREO_SP_HEADER_SIZE];
  choreo_sp_header(header, head_len + len);
  uv_buf_t parts[3] = {uv_buf_init((char *)header, sizeof header),
                       uv_buf_init((char *)head, (unsigned)head_len),
                       uv_buf_init((char *)body, (unsigned)len)};
  size_t total = sizeof header + head_len + len, sent = 0;
  uv_stream_t *stream = (uv_stream_t *)&c->pipe;
  if (uv_stream_get_write_queue_size(stream) == 0) { /* at once, nothing ahead of it */
    int n = uv_try_write(stream, parts, 3);
    if (n < 0 && n != UV_EAGAIN) {
      choreo_sp_conn_close(c);
      return;
    }
    sent = n > 0 ? (size_t)n : 0;
    if (sent == total) return;
  }
  if (uv_stream_get_write_queue_size(stream) + (total - sent) > CHOREO_SP_UNREAD_MAX) {
    conn_refuse(c, "the other side leaves more than %zu bytes of answers unread",
                CHOREO_SP_UNREAD_MAX);
    return;
  }
  conn_write *w = malloc(sizeof *w + (total - sent));
  if (!w) {
    choreo_sp_conn_close(c); /* a message lost in the middle would garble the rest */
    return;
  }
  size_t at = 0, skip = sent;
  for (int i = 0; i < 3; i++) {
    size_t from = skip < parts[i].len ? skip : parts[i].len;
    skip -= from;
    if (from == parts[i].len) continue; /* sent already, or empty (and maybe NULL) */
    memcpy(w->bytes + at, parts[i].base + from, parts[i].len - from);
    at += parts[i].len - from;
  }
  uv_buf_t rest = uv_buf_init(w->bytes, (unsigned)at);
  if (uv_write(&w->req, stream, &rest, 1, conn_on_written) != 0) {
    free(w);
    choreo_sp_conn_close(c);
  }
}

size_t choreo_sp_conn_unsent(choreo_sp_conn *c) {
  return uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe);
}

int choreo_sp_conn_init(choreo_sp_conn *c, uv_loop_t *loop, uint16_t ours, uint16_t peer,
                        const char *who, const char *url, bool *warned,
                        choreo_sp_conn_message_cb message_cb, choreo_sp_conn_closed_cb closed_cb,
                        void *data) {
  *c = (choreo_sp_conn){.who = who, .url = url, .warned = warned, .peer = peer,
                        .message_cb = message_cb, .closed_cb = closed_cb, .data = data};
  if (!(c->buf = malloc(CONN_READ_SIZE))) return CHOREO_ENOMEM;
  choreo_sp_greeting(c->greeting_out, ours);
  uv_pipe_init(loop, &c->pipe, 0); /* neither can fail */
  uv_idle_init(loop, &c->resume);
  c->pipe.data = c->resume.data = c;
  c->handles = 2;
  return 0;
}
