#include "fcgi.h"

#include <errno.h>
#include <string.h>

#define FCGI_VERSION_1 1

ssize_t fcgi_record_parse(const void *buf, size_t len, struct fcgi_record *r)
{
    const uint8_t *p = buf;
    if (len < FCGI_HEADER_LEN)
        return FCGI_NEED_MORE;
    if (p[0] != FCGI_VERSION_1)
        return FCGI_E_MALFORMED;
    size_t clen = buf_get_u16(p + 4), total = FCGI_HEADER_LEN + clen + p[6];
    if (len < total)
        return FCGI_NEED_MORE;
    r->type = p[1];
    r->req_id = buf_get_u16(p + 2);
    r->content = p + FCGI_HEADER_LEN;
    r->len = (uint16_t)clen;
    return (ssize_t)total;
}

int fcgi_begin_parse(const struct fcgi_record *r, uint16_t *role, uint8_t *flags)
{
    if (r->type != FCGI_BEGIN_REQUEST || r->len != 8)
        return FCGI_E_MALFORMED;
    *role = buf_get_u16(r->content);
    *flags = r->content[2];
    return 0;
}

/* One length of a pair: 1 byte below 128, else 4 bytes with the top bit
 * set. Returns the bytes it took, or FCGI_NEED_MORE. */
static int fcgi_length_parse(const uint8_t *p, size_t len, size_t *out)
{
    if (len < 1)
        return FCGI_NEED_MORE;
    if (!(p[0] & 0x80)) {
        *out = p[0];
        return 1;
    }
    if (len < 4)
        return FCGI_NEED_MORE;
    *out = buf_get_u32(p) & 0x7fffffffu;
    return 4;
}

ssize_t fcgi_pair_parse(const void *buf, size_t len, size_t max, struct fcgi_pair *p)
{
    const uint8_t *b = buf;
    size_t nlen, vlen, off = 0;
    int n = fcgi_length_parse(b, len, &nlen);
    if (n < 0)
        return n;
    /* A bad name length is refused as soon as it is read, not only once the
     * value length has arrived too. */
    if (nlen == 0 || nlen > max)
        return FCGI_E_MALFORMED;
    off += (size_t)n;
    n = fcgi_length_parse(b + off, len - off, &vlen);
    if (n < 0)
        return n;
    off += (size_t)n;
    /* Checked before any addition, so nothing below can overflow. */
    if (vlen > max)
        return FCGI_E_MALFORMED;
    if (len - off < nlen || len - off - nlen < vlen)
        return FCGI_NEED_MORE;
    p->name = (const char *)b + off;
    p->name_len = nlen;
    p->value = (const char *)b + off + nlen;
    p->value_len = vlen;
    return (ssize_t)(off + nlen + vlen);
}

/* On failure an encoder puts out back as it found it: buf_reserve() may
 * have moved the readable bytes to the front, so the length to return to
 * is counted from off. */
static void fcgi_rollback(struct buf *out, size_t used) { out->len = out->off + used; }

int fcgi_encode_record(struct buf *out, uint8_t type, uint16_t req_id, const void *content,
                       size_t len)
{
    if (len > FCGI_MAX_CONTENT)
        return -EINVAL;
    if (buf_reserve(out, FCGI_HEADER_LEN + len) < 0)
        return -ENOMEM;
    uint8_t *h = (uint8_t *)out->data + out->len;
    h[0] = FCGI_VERSION_1;
    h[1] = type;
    buf_put_u16(h + 2, req_id);
    buf_put_u16(h + 4, (uint16_t)len);
    h[6] = 0;
    h[7] = 0;
    if (len)
        memcpy(h + FCGI_HEADER_LEN, content, len);
    out->len += FCGI_HEADER_LEN + len;
    return 0;
}

int fcgi_encode_stream(struct buf *out, uint8_t type, uint16_t req_id, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t used = buf_used(out);
    do {
        size_t n = len > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : len;
        if (fcgi_encode_record(out, type, req_id, p, n) < 0) {
            fcgi_rollback(out, used);
            return -ENOMEM;
        }
        if (n == 0)         /* the end of stream; data may be NULL */
            break;
        p += n;
        len -= n;
    } while (len > 0);
    return 0;
}

int fcgi_encode_end(struct buf *out, uint16_t req_id, uint32_t app_status, uint8_t protocol_status)
{
    uint8_t body[8] = { 0 };
    buf_put_u32(body, app_status);
    body[4] = protocol_status;
    return fcgi_encode_record(out, FCGI_END_REQUEST, req_id, body, sizeof body);
}

int fcgi_encode_begin(struct buf *out, uint16_t req_id, uint16_t role, uint8_t flags)
{
    uint8_t body[8] = { 0 };
    buf_put_u16(body, role);
    body[2] = flags;
    return fcgi_encode_record(out, FCGI_BEGIN_REQUEST, req_id, body, sizeof body);
}

static int fcgi_encode_length(struct buf *out, size_t len)
{
    uint8_t b[4];
    if (len < 128) {
        b[0] = (uint8_t)len;
        return buf_append(out, b, 1);
    }
    if (len > 0x7fffffffu)
        return -EINVAL;
    buf_put_u32(b, (uint32_t)len | 0x80000000u);
    return buf_append(out, b, 4);
}

int fcgi_encode_pair(struct buf *out, const char *name, size_t name_len, const char *value,
                     size_t value_len)
{
    if (name_len > 0x7fffffffu || value_len > 0x7fffffffu)
        return -EINVAL;
    size_t used = buf_used(out);
    if (fcgi_encode_length(out, name_len) < 0 || fcgi_encode_length(out, value_len) < 0 ||
        buf_append(out, name, name_len) < 0 || buf_append(out, value, value_len) < 0) {
        fcgi_rollback(out, used);
        return -ENOMEM;
    }
    return 0;
}
