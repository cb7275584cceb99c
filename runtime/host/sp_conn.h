/* One SP connection over a Unix socket that the loop reads and writes itself, with no thread
 * between the socket and the callback (see sp_sub.h for why): the greetings (sp_wire.h), then
 * each message read into an nng_msg, at most CHOREO_DRAIN_PER_WAKE of them and none after
 * CHOREO_DRAIN_MAX_MS per turn of the loop (bus.h), the rest on the next turns; and messages
 * written from the loop. A greeting from the wrong protocol, bytes that are not SP, or a
 * message larger than CHOREO_MAX_FRAME end the connection, as NNG's receive size limit does.
 * Its owner connects or accepts on the pipe and then begins it. */
#ifndef CHOREO_SP_CONN_H
#define CHOREO_SP_CONN_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sp_wire.h"

/* A peer that leaves more than this of our messages unread is hung up on. */
#define CHOREO_SP_UNREAD_MAX ((size_t)64 << 20)
/* The kernel send buffer asked for on each connection. The loop refills a socket only between
 * its own pieces of work, where NNG's threads wrote whenever the reader had read: with Linux's
 * default (208 KiB) a frame of a megabyte took five turns of the publisher's loop, each as long
 * as a transaction of its handlers, and its subscribers fell behind and fetched. Linux doubles
 * what is asked for and caps it at twice net.core.wmem_max (README, "A send buffer for frames of
 * a megabyte"); a buffer is memory only while it holds bytes. */
#define CHOREO_SP_SEND_BUFFER (4 << 20)

typedef struct choreo_sp_conn choreo_sp_conn;
typedef void (*choreo_sp_conn_message_cb)(choreo_sp_conn *c, nng_msg *msg); /* owns msg */
/* The loop has let go of the connection: it may be freed, or initialised again. */
typedef void (*choreo_sp_conn_closed_cb)(choreo_sp_conn *c);
/* Messages had waited to be sent, and the kernel has taken the last of them. */
typedef void (*choreo_sp_conn_drained_cb)(choreo_sp_conn *c);

struct choreo_sp_conn {
  uv_pipe_t pipe;
  uv_idle_t resume; /* runs while a turn's bound has left messages for the next turn */
  uv_write_t greet;
  int handles;      /* of ours the loop holds */
  const char *who;  /* names the host in the log */
  const char *url;  /* names the endpoint in the log */
  bool *warned;     /* the owner's: a refusal is logged while it is false (then set) */
  uint16_t peer;    /* the protocol the other side must greet with */
  choreo_sp_conn_message_cb message_cb;
  choreo_sp_conn_closed_cb closed_cb;
  choreo_sp_conn_drained_cb drained_cb; /* optional, set by the owner after the init */
  void *data; /* the owner's */
  bool up;      /* the other side greeted as peer, and not closing */
  bool reading; /* not paused by a turn's bound */
  bool closing;
  uint8_t greeting_out[CHOREO_SP_GREETING_SIZE], greeting_in[CHOREO_SP_GREETING_SIZE];
  size_t greeting_got;
  uint8_t header[CHOREO_SP_HEADER_SIZE];
  size_t header_got;
  nng_msg *msg; /* being read */
  size_t msg_got, msg_len;
  nng_msg *spare; /* a message given back (choreo_sp_conn_recycle), to read the next into */
  char *buf;      /* what one read takes */
  size_t held;    /* bytes of buf read but not yet taken, left by a turn's bound */
  size_t held_at;
};

/* Initialises the pipe (for uv_pipe_connect or uv_accept) and what reads it; the callbacks get
 * c, whose data is the owner's. 0, or CHOREO_ENOMEM (nothing to close then). */
int choreo_sp_conn_init(choreo_sp_conn *c, uv_loop_t *loop, uint16_t ours, uint16_t peer,
                        const char *who, const char *url, bool *warned,
                        choreo_sp_conn_message_cb message_cb, choreo_sp_conn_closed_cb closed_cb,
                        void *data);
/* Once connected: sends our greeting and reads the other side's, then its messages. */
void choreo_sp_conn_begin(choreo_sp_conn *c);
/* Sends one message: head then body (either may be empty). Dropped on a connection whose
 * other side has not greeted yet, or that is closing; a peer with more than
 * CHOREO_SP_UNREAD_MAX unread is hung up on instead. */
void choreo_sp_conn_send(choreo_sp_conn *c, const void *head, size_t head_len, const void *body,
                         size_t len);
/* Bytes sent and not yet taken by the kernel. */
size_t choreo_sp_conn_unsent(choreo_sp_conn *c);
/* Takes back a message message_cb is done with, to read the next one into: nng_msg_alloc
 * zeroes what it allocates, and a large block fresh from the system faults its pages in once
 * more, while the frames of a stream come alike in size. One is kept, up to
 * CHOREO_SP_SPARE_MAX bytes; others are freed. */
#define CHOREO_SP_SPARE_MAX ((size_t)4 << 20)
void choreo_sp_conn_recycle(choreo_sp_conn *c, nng_msg *msg);
/* Hangs up; closed_cb runs once the loop has let go. Safe twice. */
void choreo_sp_conn_close(choreo_sp_conn *c);

#endif
