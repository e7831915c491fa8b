#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    /* Reclaim the consumed prefix before growing. */
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= extra)
            return 0;
    }
    if (extra > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    int rc = buf_reserve(b, n);
    if (rc < 0)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc < 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

void buf_reset(struct buf *b) { b->off = b->len = 0; }

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

struct rbuf {
    unsigned refs;
    size_t len;
    unsigned char data[];
};

rbuf_t *rbuf_new(size_t len)
{
    rbuf_t *r = malloc(sizeof(*r) + len);
    if (!r)
        return NULL;
    r->refs = 1;
    r->len = len;
    return r;
}

rbuf_t *rbuf_from(const void *p, size_t len)
{
    rbuf_t *r = rbuf_new(len);
    if (r && len)
        memcpy(r->data, p, len);
    return r;
}

unsigned char *rbuf_wdata(rbuf_t *r) { return r->data; }
const unsigned char *rbuf_data(const rbuf_t *r) { return r->data; }
size_t rbuf_len(const rbuf_t *r) { return r->len; }

rbuf_t *rbuf_shrink(rbuf_t *r, size_t len)
{
    r->len = len;
    rbuf_t *moved = realloc(r, sizeof(*r) + len);
    return moved ? moved : r;
}

rbuf_t *rbuf_ref(rbuf_t *r)
{
    r->refs++;
    return r;
}

void rbuf_unref(rbuf_t *r)
{
    if (r && --r->refs == 0)
        free(r);
}

uint32_t buf_fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 16777619u;
    }
    return h;
}
