/* buf — the one byte-buffer module used by WebSocket, IPC and FastCGI code.
 *
 * Two kinds of buffer:
 *  - struct buf: a growable, privately owned byte array with a read offset.
 *    Plain value struct: the caller embeds it and calls buf_free().
 *    Data lives in [data + off, data + len). A zeroed struct is a valid empty
 *    buffer that holds no memory (idle connections stay small).
 *  - rbuf: an immutable, reference-counted blob. A broadcast frame is built
 *    once into one rbuf and every subscriber's send queue holds a reference;
 *    the last rbuf_unref() frees it. Single-threaded: counts are not atomic.
 */
#ifndef WSPUSH_BUF_H
#define WSPUSH_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    char  *data;
    size_t off;   /* first unread byte */
    size_t len;   /* one past the last written byte */
    size_t cap;
};

/* Readable bytes. */
static inline size_t buf_used(const struct buf *b) { return b->len - b->off; }
static inline const char *buf_head(const struct buf *b) { return b->data + b->off; }

/* Makes room for at least `extra` more bytes after len; may move data to the
 * front. Returns 0, or -ENOMEM (buffer unchanged). */
int  buf_reserve(struct buf *b, size_t extra);
/* Appends n bytes. Returns 0 or -ENOMEM (buffer unchanged). */
int  buf_append(struct buf *b, const void *p, size_t n);
/* printf-style append. Returns 0 or -ENOMEM. */
int  buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Drops n readable bytes from the front (n <= buf_used). When the buffer
 * becomes empty, off and len return to 0. */
void buf_consume(struct buf *b, size_t n);
/* Empties the buffer but keeps its memory. */
void buf_reset(struct buf *b);
/* Releases the memory; the struct is an empty buffer again. */
void buf_free(struct buf *b);

/* Big-endian helpers for codecs (no alignment requirement). */
static inline uint16_t buf_get_u16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t buf_get_u32(const unsigned char *p)
{ return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void buf_put_u16(unsigned char *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }
static inline void buf_put_u32(unsigned char *p, uint32_t v)
{ p[0] = v >> 24; p[1] = (v >> 16) & 0xff; p[2] = (v >> 8) & 0xff; p[3] = v & 0xff; }

static inline uint64_t buf_get_u64(const unsigned char *p)
{ return (uint64_t)buf_get_u32(p) << 32 | buf_get_u32(p + 4); }
static inline void buf_put_u64(unsigned char *p, uint64_t v)
{ buf_put_u32(p, (uint32_t)(v >> 32)); buf_put_u32(p + 4, (uint32_t)v); }

/* 32-bit FNV-1a: the checksum of the files ws-server saves across a
 * restart (it detects truncation and corruption, not tampering). */
uint32_t buf_fnv1a(const void *p, size_t n);

typedef struct rbuf rbuf_t;

/* A new blob of `len` bytes with one reference; fill it through
 * rbuf_wdata() before sharing it. NULL on allocation failure. */
rbuf_t *rbuf_new(size_t len);
/* A new blob holding a copy of [p, p+len). */
rbuf_t *rbuf_from(const void *p, size_t len);
unsigned char *rbuf_wdata(rbuf_t *r);
const unsigned char *rbuf_data(const rbuf_t *r);
size_t  rbuf_len(const rbuf_t *r);
rbuf_t *rbuf_ref(rbuf_t *r);
/* Cuts a blob not yet shared (one reference) to its first len bytes
 * (len <= rbuf_len) and gives the rest of its memory back. Returns the
 * blob, which may have moved; never fails (when the allocator cannot
 * shrink it, the block stays as it was with the shorter length). */
rbuf_t *rbuf_shrink(rbuf_t *r, size_t len);
/* Drops one reference; frees on the last. NULL is ignored. */
void    rbuf_unref(rbuf_t *r);

#endif
