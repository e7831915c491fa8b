#include "sendq.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/uio.h>

#define SENDQ_IOV 64

static inline rbuf_t **sendq_slots(struct sendq *q) { return q->ring ? q->ring : q->inl; }
static inline uint32_t sendq_cap(const struct sendq *q) { return q->ring ? q->cap : SENDQ_INLINE; }

static int sendq_grow(struct sendq *q)
{
    uint32_t oldcap = sendq_cap(q);
    uint32_t cap = oldcap < 8 ? 8 : oldcap * 2;
    rbuf_t **ring = malloc(cap * sizeof(*ring));
    if (!ring)
        return -ENOMEM;
    rbuf_t **old = sendq_slots(q);
    for (uint32_t i = 0; i < q->count; i++)
        ring[i] = old[(q->head + i) % oldcap];
    free(q->ring);
    q->ring = ring;
    q->cap = cap;
    q->head = 0;
    return 0;
}

int sendq_push(struct sendq *q, rbuf_t *r)
{
    if (q->count == sendq_cap(q) && sendq_grow(q) < 0)
        return -ENOMEM;
    uint32_t cap = sendq_cap(q);
    sendq_slots(q)[(q->head + q->count) % cap] = rbuf_ref(r);
    q->count++;
    q->bytes += rbuf_len(r);
    return 0;
}

/* Once drained, a spilled ring goes back to the heap: idle connections
 * must hold nothing. */
static void sendq_shrink_if_empty(struct sendq *q)
{
    if (q->count == 0) {
        free(q->ring);
        q->ring = NULL;
        q->cap = 0;
        q->head = 0;
        q->head_off = 0;
    }
}

static void sendq_pop(struct sendq *q)
{
    rbuf_t **slots = sendq_slots(q);
    rbuf_unref(slots[q->head]);
    q->head = (q->head + 1) % sendq_cap(q);
    q->count--;
    q->head_off = 0;
}

ssize_t sendq_flush(struct sendq *q, struct io *io)
{
    ssize_t total = 0;
    while (q->count > 0) {
        struct iovec iov[SENDQ_IOV];
        rbuf_t **slots = sendq_slots(q);
        uint32_t cap = sendq_cap(q);
        int n = 0;
        for (uint32_t i = 0; i < q->count && n < SENDQ_IOV; i++, n++) {
            rbuf_t *r = slots[(q->head + i) % cap];
            size_t skip = i == 0 ? q->head_off : 0;
            iov[n].iov_base = (void *)(rbuf_data(r) + skip);
            iov[n].iov_len = rbuf_len(r) - skip;
        }
        ssize_t w = io_writev(io, iov, n);
        if (w == IO_AGAIN)
            break;
        if (w < 0)
            return w;
        total += w;
        q->bytes -= (size_t)w;
        size_t left = (size_t)w;
        while (left > 0) {
            size_t headlen = rbuf_len(slots[q->head]) - q->head_off;
            if (left < headlen) {
                q->head_off += (uint32_t)left;
                break;
            }
            left -= headlen;
            sendq_pop(q);
        }
        /* Empty frames (never queued in practice) would stall the loop. */
        while (q->count > 0 && rbuf_len(slots[q->head]) == q->head_off)
            sendq_pop(q);
        if (n < SENDQ_IOV && q->count > 0)
            break;          /* short write: the socket is full */
    }
    sendq_shrink_if_empty(q);
    return total;
}

void sendq_drop_unsent(struct sendq *q, size_t held)
{
    rbuf_t **slots = sendq_slots(q);
    uint32_t cap = sendq_cap(q);
    uint32_t keep = q->count > 0 && q->head_off > 0 ? 1 : 0;
    size_t covered = keep ? rbuf_len(slots[q->head]) - q->head_off : 0;
    while (keep < q->count && covered < held)
        covered += rbuf_len(slots[(q->head + keep++) % cap]);
    for (uint32_t i = keep; i < q->count; i++) {
        rbuf_t *r = slots[(q->head + i) % cap];
        q->bytes -= rbuf_len(r);
        rbuf_unref(r);
    }
    q->count = keep;
    sendq_shrink_if_empty(q);
}

void sendq_clear(struct sendq *q)
{
    while (q->count > 0)
        sendq_pop(q);
    q->bytes = 0;
    sendq_shrink_if_empty(q);
}
