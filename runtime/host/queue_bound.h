/* The size of the subscriber socket's receive queue, in frames, from the frames' size. NNG
 * bounds that queue in messages only (NNG_OPT_RECVBUF), and a frame may hold a megabyte of
 * messages or more: at 1,024 frames a host behind a producer of large messages held hundreds of
 * megabytes. So the queue is sized to hold about CHOREO_QUEUE_BYTES of frames as large as the
 * largest seen lately, between CHOREO_QUEUE_FRAMES_MIN and _MAX frames. Frames that do not fit
 * are dropped by NNG, the oldest first, and fetched from their producer's log instead, as any
 * frame lost on the way; a shrink drops the newest (peers.c asks for them at once). */
#ifndef CHOREO_QUEUE_BOUND_H
#define CHOREO_QUEUE_BOUND_H

#include <stddef.h>

#define CHOREO_QUEUE_BYTES (64u << 20)
#define CHOREO_QUEUE_FRAMES_MAX 1024
#define CHOREO_QUEUE_FRAMES_MIN 16

typedef struct choreo_queue_bound {
  size_t frame; /* the largest frame lately: rises to a larger one at once, falls 1/16 a frame */
  int frames;   /* the queue's size, as last asked for */
} choreo_queue_bound;

/* Starts at CHOREO_QUEUE_FRAMES_MAX, the size a subscriber socket is opened with. */
void choreo_queue_bound_init(choreo_queue_bound *q);
/* Notes a frame of `bytes` just received; returns the queue size to set now, or 0 to keep it.
 * It shrinks as soon as frames grow, and grows back once it may double. */
int choreo_queue_bound_note(choreo_queue_bound *q, size_t bytes);

#endif
