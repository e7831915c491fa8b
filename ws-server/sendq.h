/* sendq — a connection's queue of frames waiting to be written.
 *
 * It holds references to shared rbufs (a broadcast frame is queued to every
 * subscriber without a copy) and writes them with one writev per flush (a
 * TLS layer turns that writev into as few records as the bytes need).
 * Two slots live inside the struct, so a connection that is idle or has a
 * frame or two in flight allocates nothing; a deeper queue spills to a heap
 * ring that is freed again once drained. Plain value struct: zeroed = empty.
 */
#ifndef WSPUSH_SENDQ_H
#define WSPUSH_SENDQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "io.h"

#define SENDQ_INLINE 2

struct sendq {
    rbuf_t  **ring;                 /* NULL while the inline slots suffice */
    rbuf_t   *inl[SENDQ_INLINE];
    uint32_t  head, count, cap;     /* cap 0 means SENDQ_INLINE (inline) */
    uint32_t  head_off;             /* bytes of the head frame already sent */
    size_t    bytes;                /* unsent bytes in the queue */
};

/* Queues r, taking a new reference. Returns 0 or -ENOMEM (r untouched). */
int     sendq_push(struct sendq *q, rbuf_t *r);
/* Writes as much as the connection takes through io. Returns bytes written
 * (0 when it is full), or -errno on a write error (EPIPE, ECONNRESET...). */
ssize_t sendq_flush(struct sendq *q, struct io *io);
/* Drops every frame not yet started; a partly written head frame stays so
 * the stream remains well-formed, and so do the frames of the first `held`
 * unsent bytes (io.h: taken into a TLS record already; 0 for plain). */
void    sendq_drop_unsent(struct sendq *q, size_t held);
/* Drops everything and releases memory. */
void    sendq_clear(struct sendq *q);
static inline int sendq_empty(const struct sendq *q) { return q->count == 0; }

#endif
