/* Answering FETCH: a peer asks for our log after the seq it last applied, and gets one frame
 * of at most CHOREO_FETCH_ROWS rows; a negative `after` asks only for our name and head.
 * Requests are msgpack ["fetch", after]; anything else is logged and dropped unanswered. */
#include <string.h>

#include "codec.h"
#include "host.h"
#include "log.h"

static int serve_parse(const char *buf, size_t len, int64_t *after) {
  if (choreo_msgpack_check(buf, len, 1, 2)) return -1;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  int ok = msgpack_unpack_next(&u, buf, len, NULL) == MSGPACK_UNPACK_SUCCESS;
  const msgpack_object *o = &u.data;
  ok = ok && o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 2 &&
       o->via.array.ptr[0].type == MSGPACK_OBJECT_STR &&
       o->via.array.ptr[0].via.str.size == 5 &&
       memcmp(o->via.array.ptr[0].via.str.ptr, "fetch", 5) == 0 &&
       (o->via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o->via.array.ptr[1].type == MSGPACK_OBJECT_NEGATIVE_INTEGER);
  if (ok) *after = o->via.array.ptr[1].via.i64;
  msgpack_unpacked_destroy(&u);
  return ok ? 0 : -1;
}

void choreo_serve_fetch(void *host, nng_msg *request) {
  choreo_host *h = host;
  int64_t after;
  if (serve_parse(nng_msg_body(request), nng_msg_len(request), &after)) {
    nng_msg_free(request);
    choreo_log(CHOREO_LOG_WARN, h->opts->name, "dropped a malformed FETCH request");
    return;
  }
  choreo_store *store = choreo_engine_store(h->engine);
  h->frame.size = 0;
  if (after < 0) {
    int64_t head = choreo_store_head(store);
    choreo_frame_header(&h->frame, h->opts->name, head + 1, 0, head);
  } else if (choreo_store_read_frame(store, h->opts->name, after, CHOREO_FETCH_ROWS,
                                     CHOREO_FETCH_BYTES, &h->frame) < 0) {
    nng_msg_free(request);
    return;
  }
  nng_msg_clear(request);
  if (nng_msg_append(request, h->frame.data, h->frame.size) != 0 ||
      nng_sendmsg(h->rep, request, 0) != 0)
    nng_msg_free(request);
}
