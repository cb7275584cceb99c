/* A subscriber whose connection the loop reads itself (see sp_sub.h). */
#include "sp_sub.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "choreo.h"
#include "codec.h"
#include "log.h"

/* What one read takes when it goes to our buffer; the rest of a frame at least this long is
 * read straight into the frame. */
#define SUB_READ_SIZE (64u << 10)

static void sub_dial(choreo_sp_sub *s);
static void sub_take(choreo_sp_sub *s);

static bool sub_closing(const choreo_sp_sub *s) {
  return s->stopping || !s->pipe_open || uv_is_closing((const uv_handle_t *)&s->pipe);
}

static void sub_let_go(choreo_sp_sub *s) {
  if (--s->handles > 0) return;
  free(s->buf);
  s->buf = NULL;
  if (s->closed_cb) s->closed_cb(s->ud); /* may free s */
}

static void sub_on_handle_closed(uv_handle_t *handle) { sub_let_go(handle->data); }

static void sub_on_redial(uv_timer_t *timer) { sub_dial(timer->data); }

/* The loop's next turn takes the frames a drain's bound left. */
static void sub_on_resume(uv_idle_t *idle) {
  uv_idle_stop(idle);
  sub_take(idle->data);
}

static void sub_on_pipe_closed(uv_handle_t *handle) {
  choreo_sp_sub *s = handle->data;
  s->pipe_open = false;
  if (!s->stopping) uv_timer_start(&s->redial, sub_on_redial, CHOREO_SP_REDIAL_MS, 0);
  sub_let_go(s);
}

/* Ends the connection; a new one is dialled once it is closed. */
static void sub_hang_up(choreo_sp_sub *s) {
  s->up = false;
  if (s->frame) nng_msg_free(s->frame);
  s->frame = NULL;
  s->greeting_got = s->header_got = s->held = 0;
  s->reading = false;
  uv_idle_stop(&s->resume);
  if (s->pipe_open && !uv_is_closing((uv_handle_t *)&s->pipe))
    uv_close((uv_handle_t *)&s->pipe, sub_on_pipe_closed);
}

/* Once per bad connection in a row: a wrong endpoint would otherwise fill the log 10 times a
 * second. */
__attribute__((format(printf, 2, 3))) static void sub_refuse(choreo_sp_sub *s, const char *fmt,
                                                             ...) {
  if (!s->warned) {
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    choreo_log(CHOREO_LOG_WARN, s->who, "%s %s: hung up", s->url, why);
  }
  s->warned = true;
  sub_hang_up(s);
}

static void sub_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  choreo_sp_sub *s = handle->data;
  if (s->frame && s->frame_len - s->frame_got >= SUB_READ_SIZE)
    *buf = uv_buf_init((char *)nng_msg_body(s->frame) + s->frame_got,
                       (unsigned)(s->frame_len - s->frame_got));
  else
    *buf = uv_buf_init(s->buf, SUB_READ_SIZE);
}

static void sub_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  choreo_sp_sub *s = stream->data;
  if (nread < 0) { /* the publisher went, or the connection broke */
    sub_hang_up(s);
    return;
  }
  if (buf->base == s->buf) {
    s->held = (size_t)nread;
    s->held_at = 0;
  } else {
    s->frame_got += (size_t)nread;
  }
  sub_take(s);
}

static void sub_start_reading(choreo_sp_sub *s) {
  s->reading = uv_read_start((uv_stream_t *)&s->pipe, sub_on_alloc, sub_on_read) == 0;
  if (!s->reading) sub_hang_up(s);
}

static void sub_on_greeted(uv_write_t *req, int status) {
  choreo_sp_sub *s = req->handle->data;
  if (status < 0 && !sub_closing(s)) sub_hang_up(s);
}

static void sub_on_connect(uv_connect_t *req, int status) {
  choreo_sp_sub *s = req->handle->data;
  if (sub_closing(s)) return;
  if (status < 0) { /* nothing listens there (yet) */
    sub_hang_up(s);
    return;
  }
  uv_buf_t greeting = uv_buf_init((char *)s->greeting_out, sizeof s->greeting_out);
  if (uv_write(&s->greet, (uv_stream_t *)&s->pipe, &greeting, 1, sub_on_greeted) != 0)
    sub_hang_up(s);
  else
    sub_start_reading(s);
}

static void sub_dial(choreo_sp_sub *s) {
  if (uv_pipe_init(s->loop, &s->pipe, 0) != 0) {
    uv_timer_start(&s->redial, sub_on_redial, CHOREO_SP_REDIAL_MS, 0);
    return;
  }
  s->pipe.data = s;
  s->pipe_open = true;
  s->handles++;
  uv_pipe_connect(&s->connect, &s->pipe, s->path, sub_on_connect);
}

/* Copies into dst (of size want, got of it filled) what src has of it; returns bytes taken. */
static size_t sub_fill(uint8_t *dst, size_t *got, size_t want, const char *src, size_t n) {
  size_t take = want - *got < n ? want - *got : n;
  memcpy(dst + *got, src, take);
  *got += take;
  return take;
}

/* Whether the connection goes on after the header just read. */
static bool sub_frame_begins(choreo_sp_sub *s) {
  uint64_t len;
  if (!choreo_sp_header_length(s->header, &len)) {
    sub_refuse(s, "sent something that is not an SP message");
    return false;
  }
  if (len > CHOREO_MAX_FRAME) {
    sub_refuse(s, "sent a message of %llu bytes, more than a frame may be (its frames are "
               "fetched instead)", (unsigned long long)len);
    return false;
  }
  if (nng_msg_alloc(&s->frame, (size_t)len) != 0) {
    s->frame = NULL;
    sub_refuse(s, "sent a frame of %llu bytes, and there is no memory for it",
               (unsigned long long)len);
    return false;
  }
  s->frame_len = (size_t)len;
  s->frame_got = 0;
  return true;
}

/* Hands the frame read over; whether the connection is still ours to read. */
static bool sub_deliver(choreo_sp_sub *s) {
  nng_msg *frame = s->frame;
  s->frame = NULL;
  s->header_got = 0;
  s->warned = false;
  s->frame_cb(s->ud, frame);
  return !sub_closing(s);
}

/* Takes what the last read brought: the greeting, headers and frames; stops reading for this
 * turn of the loop at a drain's bound (bus.h), keeping the rest for the next. */
static void sub_take(choreo_sp_sub *s) {
  int frames = 0;
  uint64_t until = uv_hrtime() + CHOREO_DRAIN_MAX_MS * (uint64_t)1000000;
  for (;;) {
    if (s->frame && s->frame_got == s->frame_len) {
      if (!sub_deliver(s)) return;
      if (++frames >= CHOREO_DRAIN_PER_WAKE || uv_hrtime() >= until) break;
      continue;
    }
    if (!s->held) break;
    const char *p = s->buf + s->held_at;
    size_t n;
    if (s->greeting_got < CHOREO_SP_GREETING_SIZE) {
      n = sub_fill(s->greeting_in, &s->greeting_got, CHOREO_SP_GREETING_SIZE, p, s->held);
      if (s->greeting_got == CHOREO_SP_GREETING_SIZE) {
        int protocol = choreo_sp_greeting_protocol(s->greeting_in);
        if (protocol < 0) {
          sub_refuse(s, "does not greet as an SP endpoint");
          return;
        }
        if (protocol != CHOREO_SP_PUB) {
          sub_refuse(s, "is not a PUB endpoint (its greeting names protocol %d)", protocol);
          return;
        }
        s->up = true;
      }
    } else if (s->header_got < CHOREO_SP_HEADER_SIZE) {
      n = sub_fill(s->header, &s->header_got, CHOREO_SP_HEADER_SIZE, p, s->held);
      if (s->header_got == CHOREO_SP_HEADER_SIZE && !sub_frame_begins(s)) return;
    } else {
      n = s->frame_len - s->frame_got < s->held ? s->frame_len - s->frame_got : s->held;
      memcpy((char *)nng_msg_body(s->frame) + s->frame_got, p, n);
      s->frame_got += n;
    }
    s->held -= n;
    s->held_at += n;
  }
  uv_stream_t *stream = (uv_stream_t *)&s->pipe;
  if (s->held) {
    uv_read_stop(stream);
    s->reading = false;
    uv_idle_start(&s->resume, sub_on_resume);
  } else if (!s->reading) {
    sub_start_reading(s);
  }
}

int choreo_sp_sub_start(choreo_sp_sub *s, uv_loop_t *loop, const char *url, const char *who,
                        choreo_sp_sub_frame_cb frame_cb, void *ud) {
  memset(s, 0, sizeof *s);
  if (strncmp(url, "ipc://", 6) != 0 || !url[6] ||
      strlen(url + 6) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return CHOREO_EINVAL;
  if (!(s->buf = malloc(SUB_READ_SIZE))) return CHOREO_ENOMEM;
  snprintf(s->url, sizeof s->url, "%s", url);
  s->path = s->url + 6;
  s->loop = loop;
  s->who = who;
  s->frame_cb = frame_cb;
  s->ud = ud;
  choreo_sp_greeting(s->greeting_out, CHOREO_SP_SUB);
  uv_timer_init(loop, &s->redial); /* neither can fail */
  uv_idle_init(loop, &s->resume);
  s->redial.data = s->resume.data = s;
  s->handles = 2;
  sub_dial(s);
  return 0;
}

bool choreo_sp_sub_up(const choreo_sp_sub *s) { return s->up; }

bool choreo_sp_sub_stop(choreo_sp_sub *s, choreo_sp_sub_closed_cb closed) {
  if (!s->loop || s->stopping) return false;
  s->stopping = true;
  s->up = false;
  s->closed_cb = closed;
  if (s->frame) nng_msg_free(s->frame);
  s->frame = NULL;
  uv_close((uv_handle_t *)&s->redial, sub_on_handle_closed);
  uv_close((uv_handle_t *)&s->resume, sub_on_handle_closed);
  if (s->pipe_open && !uv_is_closing((uv_handle_t *)&s->pipe))
    uv_close((uv_handle_t *)&s->pipe, sub_on_pipe_closed);
  return true;
}
