#include "ipc.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

/* A cursor over a frame body. Every read checks the bytes left, so a body
 * whose fields run past its length (or stop short of it) is caught without
 * reading outside [p, end). */
struct ipc_rd {
    const unsigned char *p;
    const unsigned char *end;
};

static int ipc_rd_u8(struct ipc_rd *r, uint8_t *v)
{
    if (r->end - r->p < 1)
        return -1;
    *v = *r->p++;
    return 0;
}

static int ipc_rd_u16(struct ipc_rd *r, uint16_t *v)
{
    if (r->end - r->p < 2)
        return -1;
    *v = buf_get_u16(r->p);
    r->p += 2;
    return 0;
}

static int ipc_rd_u32(struct ipc_rd *r, uint32_t *v)
{
    if (r->end - r->p < 4)
        return -1;
    *v = buf_get_u32(r->p);
    r->p += 4;
    return 0;
}

static int ipc_rd_str(struct ipc_rd *r, size_t n, struct str *s)
{
    if ((size_t)(r->end - r->p) < n)
        return -1;
    s->p = (const char *)r->p;
    s->len = n;
    r->p += n;
    return 0;
}

static int ipc_decode_publish(struct ipc_rd *r, struct ipc_msg *msg)
{
    uint8_t n;
    if (ipc_rd_u8(r, &n) < 0 || n < 1 || n > WSPUSH_MAX_CHANNELS)
        return -1;
    for (int i = 0; i < n; i++) {
        uint8_t clen;
        if (ipc_rd_u8(r, &clen) < 0 || clen < 1 || ipc_rd_str(r, clen, &msg->channels[i]) < 0)
            return -1;
    }
    msg->nchannels = n;
    uint32_t dlen;
    if (ipc_rd_u32(r, &dlen) < 0 || ipc_rd_str(r, dlen, &msg->data) < 0)
        return -1;
    return 0;
}

static int ipc_decode_body(struct ipc_rd *r, struct ipc_msg *msg)
{
    uint8_t n;
    switch (msg->type) {
    case IPC_PUBLISH:
        return ipc_decode_publish(r, msg);
    case IPC_DISCONNECT:
        if (ipc_rd_u8(r, &n) < 0 || n < 1)
            return -1;
        return ipc_rd_str(r, n, &msg->user);
    case IPC_ACK:
        if (ipc_rd_u32(r, &msg->count) < 0 || ipc_rd_u8(r, &n) < 0)
            return -1;
        return ipc_rd_str(r, n, &msg->id);
    case IPC_DISCONNECTED:
        return ipc_rd_u32(r, &msg->count);
    case IPC_ERROR:
        /* Code 0 is no error at all: a peer that sends it is confused. */
        if (ipc_rd_u16(r, &msg->code) < 0 || msg->code == 0 || ipc_rd_u8(r, &n) < 0)
            return -1;
        return ipc_rd_str(r, n, &msg->text);
    default:
        return -1;
    }
}

static int ipc_type_known(uint8_t t)
{
    return t == IPC_PUBLISH || t == IPC_DISCONNECT || t == IPC_ACK ||
           t == IPC_DISCONNECTED || t == IPC_ERROR;
}

ssize_t ipc_decode(const void *buf, size_t len, size_t max_frame, struct ipc_msg *msg)
{
    const unsigned char *b = buf;
    if (len < 4)
        return IPC_NEED_MORE;
    uint32_t flen = buf_get_u32(b);
    /* type + request id are part of every frame. */
    if (flen < IPC_HEADER_LEN - 4)
        return IPC_E_MALFORMED;
    if (len < IPC_HEADER_LEN)
        return IPC_NEED_MORE;

    memset(msg, 0, sizeof(*msg));
    msg->type = b[4];
    msg->req_id = buf_get_u32(b + 5);
    msg->frame_len = (size_t)flen + 4;
    /* An unknown type means the stream is out of step; skipping frame_len
     * bytes of it would only land on more garbage. */
    if (!ipc_type_known(msg->type))
        return IPC_E_MALFORMED;
    if (msg->frame_len > max_frame || msg->frame_len > (size_t)SSIZE_MAX)
        return IPC_E_TOO_BIG;
    if (len < msg->frame_len)
        return IPC_NEED_MORE;

    struct ipc_rd r = { b + IPC_HEADER_LEN, b + msg->frame_len };
    if (ipc_decode_body(&r, msg) < 0 || r.p != r.end)
        return IPC_E_MALFORMED;
    return (ssize_t)msg->frame_len;
}

/* Reserves the whole frame up front so a failed encode leaves out as it
 * was: a half-written frame would desynchronise the stream. Returns the
 * write position, just past the header, or NULL. */
static unsigned char *ipc_begin(struct buf *out, uint8_t type, uint32_t req_id, size_t body_len)
{
    if (buf_reserve(out, IPC_HEADER_LEN + body_len) < 0)
        return NULL;
    unsigned char *p = (unsigned char *)out->data + out->len;
    buf_put_u32(p, (uint32_t)(body_len + IPC_HEADER_LEN - 4));
    p[4] = type;
    buf_put_u32(p + 5, req_id);
    return p + IPC_HEADER_LEN;
}

static void ipc_commit(struct buf *out, size_t body_len)
{
    out->len += IPC_HEADER_LEN + body_len;
}

/* The u32 length field counts the header's last five bytes too. */
#define IPC_BODY_MAX ((size_t)UINT32_MAX - (IPC_HEADER_LEN - 4))

int ipc_encode_publish(struct buf *out, uint32_t req_id, const struct str *channels,
                       int nchannels, const void *data, size_t data_len)
{
    if (nchannels < 1 || nchannels > WSPUSH_MAX_CHANNELS || (data_len && !data))
        return -EINVAL;
    size_t body = 1 + 4;
    for (int i = 0; i < nchannels; i++) {
        if (channels[i].len < 1 || channels[i].len > 255 || !channels[i].p)
            return -EINVAL;
        body += 1 + channels[i].len;
    }
    if (data_len > IPC_BODY_MAX - body)
        return -EINVAL;
    body += data_len;

    unsigned char *p = ipc_begin(out, IPC_PUBLISH, req_id, body);
    if (!p)
        return -ENOMEM;
    *p++ = (uint8_t)nchannels;
    for (int i = 0; i < nchannels; i++) {
        *p++ = (uint8_t)channels[i].len;
        memcpy(p, channels[i].p, channels[i].len);
        p += channels[i].len;
    }
    buf_put_u32(p, (uint32_t)data_len);
    if (data_len)
        memcpy(p + 4, data, data_len);
    ipc_commit(out, body);
    return 0;
}

int ipc_encode_disconnect(struct buf *out, uint32_t req_id, const char *user, size_t user_len)
{
    if (!user || user_len < 1 || user_len > 255)
        return -EINVAL;
    size_t body = 1 + user_len;
    unsigned char *p = ipc_begin(out, IPC_DISCONNECT, req_id, body);
    if (!p)
        return -ENOMEM;
    p[0] = (uint8_t)user_len;
    memcpy(p + 1, user, user_len);
    ipc_commit(out, body);
    return 0;
}

int ipc_encode_ack(struct buf *out, uint32_t req_id, uint32_t subscribers,
                   const char *id, size_t id_len)
{
    if (id_len > 255 || (id_len && !id))
        return -EINVAL;
    size_t body = 4 + 1 + id_len;
    unsigned char *p = ipc_begin(out, IPC_ACK, req_id, body);
    if (!p)
        return -ENOMEM;
    buf_put_u32(p, subscribers);
    p[4] = (uint8_t)id_len;
    if (id_len)
        memcpy(p + 5, id, id_len);
    ipc_commit(out, body);
    return 0;
}

int ipc_encode_disconnected(struct buf *out, uint32_t req_id, uint32_t connections)
{
    unsigned char *p = ipc_begin(out, IPC_DISCONNECTED, req_id, 4);
    if (!p)
        return -ENOMEM;
    buf_put_u32(p, connections);
    ipc_commit(out, 4);
    return 0;
}

/* The text is a courtesy for humans: one longer than the u8 length field
 * allows is cut rather than refused, so an error can always be answered. */
int ipc_encode_error(struct buf *out, uint32_t req_id, uint16_t code, const char *text)
{
    if (code == 0)
        return -EINVAL;
    size_t tlen = text ? strlen(text) : 0;
    if (tlen > 255)
        tlen = 255;
    size_t body = 2 + 1 + tlen;
    unsigned char *p = ipc_begin(out, IPC_ERROR, req_id, body);
    if (!p)
        return -ENOMEM;
    buf_put_u16(p, code);
    p[2] = (uint8_t)tlen;
    if (tlen)
        memcpy(p + 3, text, tlen);
    ipc_commit(out, body);
    return 0;
}

const char *ipc_error_name(uint16_t code)
{
    switch (code) {
    case IPC_ERR_MALFORMED:   return "malformed request";
    case IPC_ERR_BAD_CHANNEL: return "invalid channel name";
    case IPC_ERR_TOO_BIG:     return "message too big";
    case IPC_ERR_NOT_ALLOWED: return "not allowed";
    case IPC_ERR_BAD_DATA:    return "data is not one JSON value";
    case IPC_ERR_INTERNAL:    return "internal error";
    case IPC_ERR_UNAVAILABLE: return "unavailable";
    case IPC_ERR_TIMEOUT:     return "timeout";
    default:                  return "unknown error";
    }
}
