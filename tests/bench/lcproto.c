/* lcproto — see lcproto.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lcproto.h"

#include <string.h>
#include <strings.h>

ssize_t lcp_frame_header(const unsigned char *buf, size_t len, struct lcp_frame *f)
{
    if (len < 2)
        return LCP_NEED_MORE;
    if (buf[0] & 0x30)
        return LCP_E_BAD;
    size_t need = 2;
    uint64_t plen = buf[1] & 0x7f;
    if (plen == 126)
        need += 2;
    else if (plen == 127)
        need += 8;
    int masked = (buf[1] & 0x80) != 0;
    if (masked)
        need += 4;
    if (len < need)
        return LCP_NEED_MORE;
    size_t at = 2;
    if (plen == 126) {
        plen = (uint64_t)buf[2] << 8 | buf[3];
        at = 4;
    } else if (plen == 127) {
        if (buf[2] & 0x80)
            return LCP_E_BAD;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | buf[2 + i];
        at = 10;
    }
    f->fin = (buf[0] & 0x80) != 0;
    f->opcode = buf[0] & 0x0f;
    f->masked = masked;
    f->rsv1 = (buf[0] & 0x40) != 0;
    if (masked)
        memcpy(f->mask, buf + at, 4);
    f->payload_len = plen;
    f->header_len = need;
    return (ssize_t)need;
}

ssize_t lcp_frame_encode(unsigned char *out, size_t outcap, int opcode,
                         const void *payload, size_t len, uint32_t mask)
{
    size_t hl = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
    if (outcap < hl + 4 + len)
        return LCP_E_BAD;
    out[0] = (unsigned char)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        out[1] = 0x80 | 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
    } else {
        out[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    unsigned char m[4] = { (unsigned char)(mask >> 24), (unsigned char)(mask >> 16),
                           (unsigned char)(mask >> 8), (unsigned char)mask };
    memcpy(out + hl, m, 4);
    const unsigned char *src = payload;
    for (size_t i = 0; i < len; i++)
        out[hl + 4 + i] = src[i] ^ m[i & 3];
    return (ssize_t)(hl + 4 + len);
}

/* Parses a decimal or hex number ending at a non-digit; -1 on overflow or
 * no digit. */
static int64_t lcp_number(const char *p, const char *end, int base, const char **stop)
{
    int64_t v = 0;
    const char *s = p;
    for (; p < end; p++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (base == 16 && (*p | 0x20) >= 'a' && (*p | 0x20) <= 'f')
            d = (*p | 0x20) - 'a' + 10;
        else
            break;
        if (v > (INT64_MAX - d) / base)
            return -1;
        v = v * base + d;
    }
    *stop = p;
    return p == s ? -1 : v;
}

ssize_t lcp_http_head(const char *buf, size_t len, struct lcp_http *h)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) {
        if (len >= 5 && memcmp(buf, "HTTP/", 5) != 0)
            return LCP_E_BAD;
        return LCP_NEED_MORE;
    }
    end += 4;
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return LCP_E_BAD;
    const char *stop;
    int64_t st = lcp_number(buf + 9, buf + 12, 10, &stop);
    if (st < 100 || stop != buf + 12)
        return LCP_E_BAD;
    h->status = (int)st;
    h->content_length = -1;
    h->chunked = 0;
    const char *line = (const char *)memchr(buf, '\n', (size_t)(end - buf)) + 1;
    while (line < end - 2) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        size_t n = (size_t)(eol - line);
        static const char cl[] = "content-length:", te[] = "transfer-encoding:";
        if (n > sizeof(cl) - 1 && strncasecmp(line, cl, sizeof(cl) - 1) == 0) {
            const char *v = line + sizeof(cl) - 1;
            while (v < eol && *v == ' ')
                v++;
            h->content_length = lcp_number(v, eol, 10, &stop);
            if (h->content_length < 0)
                return LCP_E_BAD;
        } else if (n > sizeof(te) - 1 && strncasecmp(line, te, sizeof(te) - 1) == 0) {
            h->chunked = memmem(line, n, "chunked", 7) != NULL;
        }
        line = eol + 1;
    }
    return end - buf;
}

ssize_t lcp_chunked_len(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    for (;;) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            return LCP_NEED_MORE;
        const char *stop;
        int64_t n = lcp_number(p, eol, 16, &stop);
        if (n < 0)
            return LCP_E_BAD;
        p = eol + 2;
        if (n == 0) {
            if (end - p < 2)
                return LCP_NEED_MORE;
            return p[0] == '\r' && p[1] == '\n' ? p + 2 - buf : LCP_E_BAD;
        }
        if (end - p < n + 2)
            return LCP_NEED_MORE;
        p += n + 2;
    }
}

int lcp_find_ts(const char *p, size_t len, uint64_t *t)
{
    const char *k = memmem(p, len, "\"t\":", 4);
    if (!k)
        return 0;
    const char *stop;
    int64_t v = lcp_number(k + 4, p + len, 10, &stop);
    if (v < 0)
        return 0;
    *t = (uint64_t)v;
    return 1;
}

enum { LCP_DC_SIZE, LCP_DC_EXT, LCP_DC_SIZE_LF, LCP_DC_DATA, LCP_DC_DATA_CR, LCP_DC_DATA_LF };

static int lcp_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The size line ended: a zero size is the last chunk. */
static void lcp_dechunk_size_done(struct lcp_dechunk *d)
{
    d->state = d->left ? LCP_DC_DATA : LCP_DC_DONE;
    d->digits = 0;
}

ssize_t lcp_dechunk(struct lcp_dechunk *d, unsigned char *buf, size_t len)
{
    size_t r = 0, w = 0;
    while (r < len && d->state != LCP_DC_DONE) {
        unsigned char ch = buf[r];
        switch (d->state) {
        case LCP_DC_SIZE: {
            int v = lcp_hex(ch);
            if (v >= 0) {
                if (d->digits == 8)
                    return LCP_E_BAD;
                d->left = d->left << 4 | (uint32_t)v;
                d->digits++;
            } else if (d->digits == 0) {
                return LCP_E_BAD;
            } else if (ch == '\r') {
                d->state = LCP_DC_SIZE_LF;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                d->state = LCP_DC_EXT;
            } else {
                return LCP_E_BAD;
            }
            r++;
            break;
        }
        case LCP_DC_EXT:
            if (ch == '\r')
                d->state = LCP_DC_SIZE_LF;
            r++;
            break;
        case LCP_DC_SIZE_LF:
        case LCP_DC_DATA_LF:
            if (ch != '\n')
                return LCP_E_BAD;
            r++;
            if (d->state == LCP_DC_SIZE_LF)
                lcp_dechunk_size_done(d);
            else
                d->state = LCP_DC_SIZE;
            break;
        case LCP_DC_DATA: {
            size_t n = len - r < d->left ? len - r : d->left;
            memmove(buf + w, buf + r, n);
            w += n;
            r += n;
            d->left -= (uint32_t)n;
            if (!d->left)
                d->state = LCP_DC_DATA_CR;
            break;
        }
        case LCP_DC_DATA_CR:
            if (ch != '\r')
                return LCP_E_BAD;
            d->state = LCP_DC_DATA_LF;
            r++;
            break;
        default:
            return LCP_E_BAD;
        }
    }
    return (ssize_t)w;
}

/* Value of a field line "name:value" (one optional space after the colon),
 * when the line starts with name. */
static int lcp_sse_field(const char *line, size_t n, const char *name, size_t *voff)
{
    size_t nl = strlen(name);
    if (n < nl + 1 || memcmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    *voff = nl + 1 + (n > nl + 1 && line[nl + 1] == ' ');
    return 1;
}

ssize_t lcp_sse_event(const char *buf, size_t len, struct lcp_sse *ev)
{
    *ev = (struct lcp_sse){ 0 };
    size_t pos = 0;
    for (;;) {
        const char *eol = memchr(buf + pos, '\n', len - pos);
        if (!eol)
            return memchr(buf, '\0', len) ? LCP_E_BAD : LCP_NEED_MORE;
        size_t end = (size_t)(eol - buf), n = end - pos;
        const char *line = buf + pos;
        if (n && line[n - 1] == '\r')
            n--;
        if (memchr(line, '\0', n))
            return LCP_E_BAD;
        if (n == 0)
            return (ssize_t)(end + 1);
        size_t v;
        if (lcp_sse_field(line, n, "data", &v)) {
            if (!ev->has_data)
                ev->data_off = pos + v;
            ev->has_data = 1;
            ev->data_len = pos + n - ev->data_off;
        } else if (lcp_sse_field(line, n, "event", &v)) {
            ev->event_off = pos + v;
            ev->event_len = n - v;
        }
        pos = end + 1;
    }
}
