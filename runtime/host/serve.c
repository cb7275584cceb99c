/* Answering FETCH (see serve.h). */
#include "serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "log.h"

/* The answer to a request for our log after `after`, into s->frame. */
static int serve_answer(choreo_fetch_server *s, int64_t after) {
  s->frame.size = 0;
  if (after >= 0) {
    int rows;
    return choreo_engine_read_log(s->engine, after, CHOREO_FETCH_ROWS, CHOREO_FETCH_BYTES,
                                  &s->frame, &rows);
  }
  int64_t head;
  int rc = choreo_engine_head(s->engine, &head);
  return rc ? rc : choreo_frame_header(&s->frame, choreo_engine_name(s->engine), head + 1, 0, head);
}

/* Who asks for our log after what tells retention what that host still needs. */
static void serve_note_subscriber(choreo_fetch_server *s, choreo_str name, int64_t after) {
  char host[CHOREO_NAME_MAX + 1];
  if (after < 0 || name.n == 0 || name.n > CHOREO_NAME_MAX) return;
  memcpy(host, name.p, name.n);
  host[name.n] = '\0';
  if (!choreo_name_valid(host) || strcmp(host, choreo_engine_name(s->engine)) == 0) return;
  int rc = choreo_engine_subscriber_seen(s->engine, host, after);
  if (rc)
    choreo_log(CHOREO_LOG_ERROR, choreo_engine_name(s->engine), "cannot note %s's progress: %s",
               host, choreo_strerror(rc));
}

/* A page of our history for another host's projection build: not noted as its progress. */
static void serve_history(choreo_fetch_server *s, nng_msg *request, int64_t after) {
  int rows;
  s->frame.size = 0;
  int rc = choreo_engine_read_history(s->engine, after < 0 ? 0 : after, CHOREO_FETCH_ROWS,
                                      CHOREO_FETCH_BYTES, &s->frame, &rows);
  if (rc) { /* unanswered, the build asks again */
    choreo_log(CHOREO_LOG_ERROR, choreo_engine_name(s->engine), "cannot answer a history "
               "request: %s", choreo_strerror(rc));
    nng_msg_free(request);
    return;
  }
  choreo_bus_server_reply(&s->server, request, s->frame.data, s->frame.size);
}

static void serve_on_request(void *ud, nng_msg *request) {
  choreo_fetch_server *s = ud;
  int64_t after;
  choreo_str name;
  choreo_str json;
  int bad = choreo_fetch_decode(nng_msg_body(request), nng_msg_len(request), &after, &name);
  if (bad && choreo_history_decode(nng_msg_body(request), nng_msg_len(request), &after) == 0) {
    serve_history(s, request, after);
    return;
  }
  if (bad && choreo_ask_decode(nng_msg_body(request), nng_msg_len(request), &json) == 0) {
    char *text = choreo_control_answer_remote(s->host, json.p, json.n);
    if (text) choreo_bus_server_reply(&s->server, request, text, strlen(text));
    else nng_msg_free(request);
    free(text);
    return;
  }
  if (bad) {
    nng_msg_free(request);
    choreo_log(CHOREO_LOG_WARN, choreo_engine_name(s->engine), "dropped a malformed FETCH request");
    return;
  }
  serve_note_subscriber(s, name, after);
  int rc = serve_answer(s, after);
  if (rc) {
    /* Unanswered, the peer asks again after its patience runs out. */
    choreo_log(CHOREO_LOG_ERROR, choreo_engine_name(s->engine), "cannot answer FETCH: %s",
               choreo_strerror(rc));
    nng_msg_free(request);
    return;
  }
  choreo_bus_server_reply(&s->server, request, s->frame.data, s->frame.size);
}

int choreo_serve_start(choreo_fetch_server *s, uv_loop_t *loop, choreo_host *host,
                       choreo_engine *engine, const char *const *urls, size_t nurls, char *err,
                       size_t errlen) {
  *s = (choreo_fetch_server){.engine = engine, .host = host};
  msgpack_sbuffer_init(&s->frame);
  return choreo_bus_server_start(&s->server, loop, choreo_engine_name(engine), urls, nurls,
                                 serve_on_request, s, "FETCH", err, errlen);
}

/* Also watches the listeners: one gone deaf would leave every peer that reconnects unable to
 * catch up from us, for good (bus.h, choreo_bus_listeners). */
void choreo_serve_drain(choreo_fetch_server *s) { choreo_bus_server_drain(&s->server); }

void choreo_serve_stop(choreo_fetch_server *s) {
  choreo_bus_server_stop(&s->server);
  msgpack_sbuffer_destroy(&s->frame);
  msgpack_sbuffer_init(&s->frame);
}
