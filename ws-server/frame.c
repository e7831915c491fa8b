#include "frame.h"

#include <limits.h>

#include "utf8.h"

static int frame_opcode_known(int op)
{
    return op == FRAME_CONT || op == FRAME_TEXT || op == FRAME_BINARY ||
           op == FRAME_CLOSE || op == FRAME_PING || op == FRAME_PONG;
}

/* Rules decidable from the first two bytes are checked there, so a bad
 * frame is refused before its (possibly huge, possibly never sent) length
 * and payload arrive. */
static int frame_check_start(unsigned char b0, unsigned char b1, int in_fragment, unsigned ext)
{
    int opcode = b0 & 0x0F;
    unsigned rsv = b0 & 0x70;
    /* RFC 7692 6: RSV1 marks a compressed message, so it may be set on
     * the first frame of a data message only. */
    if ((ext & FRAME_EXT_DEFLATE) && (opcode == FRAME_TEXT || opcode == FRAME_BINARY))
        rsv &= (unsigned)~FRAME_RSV1;
    if (rsv)
        return FRAME_E_PROTOCOL;       /* no extension negotiated for it */
    if (!frame_opcode_known(opcode))
        return FRAME_E_PROTOCOL;
    if (!(b1 & 0x80))
        return FRAME_E_PROTOCOL;       /* clients must mask (RFC 6455 5.1) */
    if (opcode & 0x08) {
        /* Control frames may not be fragmented and carry <= 125 bytes,
         * so the 16/64-bit length forms are already wrong. */
        if (!(b0 & 0x80) || (b1 & 0x7F) > 125)
            return FRAME_E_PROTOCOL;
    } else if (opcode == FRAME_CONT) {
        if (!in_fragment)
            return FRAME_E_PROTOCOL;
    } else if (in_fragment) {
        return FRAME_E_PROTOCOL;       /* new message inside a fragmented one */
    }
    return 0;
}

/* The header length (without the mask key) and the payload length of the
 * frame starting at buf (len >= 2): 0, FRAME_NEED_MORE until the length
 * field is complete, or FRAME_E_PROTOCOL for a 64-bit length with its top
 * bit set (RFC 6455 5.2: the MSB must be 0). */
static int frame_lengths(const unsigned char *buf, size_t len, size_t *hlen, uint64_t *plen)
{
    *hlen = 2;
    *plen = buf[1] & 0x7F;
    if (*plen == 126) {
        if (len < 4)
            return FRAME_NEED_MORE;
        *plen = (uint64_t)buf[2] << 8 | buf[3];
        *hlen = 4;
    } else if (*plen == 127) {
        if (len < 10)
            return FRAME_NEED_MORE;
        if (buf[2] & 0x80)
            return FRAME_E_PROTOCOL;
        *plen = 0;
        for (int i = 2; i < 10; i++)
            *plen = *plen << 8 | buf[i];
        *hlen = 10;
    }
    return 0;
}

ssize_t frame_parse(const unsigned char *buf, size_t len, uint64_t max_payload,
                    int in_fragment, struct frame *f)
{
    if (len < 2)
        return FRAME_NEED_MORE;
    int rc = frame_check_start(buf[0], buf[1], in_fragment, 0);
    if (rc < 0)
        return rc;
    size_t hlen;
    uint64_t plen;
    rc = frame_lengths(buf, len, &hlen, &plen);
    if (rc < 0)
        return rc;
    /* Decided from the length alone: a client announcing a huge frame is
     * refused without buffering any of it. The SSIZE_MAX bound keeps the
     * return value representable. */
    if (plen > max_payload || plen > (uint64_t)SSIZE_MAX - (hlen + 4))
        return FRAME_E_TOO_BIG;
    if (len < hlen + 4)
        return FRAME_NEED_MORE;
    if (len - (hlen + 4) < plen)
        return FRAME_NEED_MORE;

    f->fin = buf[0] >> 7;
    f->opcode = buf[0] & 0x0F;
    f->payload_len = plen;
    for (int i = 0; i < 4; i++)
        f->mask[i] = buf[hlen + i];
    f->payload = buf + hlen + 4;
    return (ssize_t)(hlen + 4 + plen);
}

int frame_peek_opcode(const unsigned char *buf, size_t len, int in_fragment, unsigned ext)
{
    if (len < 2)
        return FRAME_NEED_MORE;
    int rc = frame_check_start(buf[0], buf[1], in_fragment, ext);
    return rc < 0 ? rc : buf[0] & 0x0F;
}

int frame_size(const unsigned char *buf, size_t len, uint64_t *size)
{
    if (len < 2)
        return FRAME_NEED_MORE;
    size_t hlen;
    uint64_t plen;
    int rc = frame_lengths(buf, len, &hlen, &plen);
    if (rc < 0)
        return rc;
    *size = hlen + (buf[1] & 0x80 ? 4 : 0) + plen;
    return 0;
}

void frame_unmask(unsigned char *dst, const unsigned char *src, size_t n,
                  const unsigned char mask[4], size_t offset)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i] ^ mask[(offset + i) & 3];
}

size_t frame_header(unsigned char hdr[10], int opcode, uint64_t len)
{
    hdr[0] = (unsigned char)(0x80 | (opcode & (FRAME_RSV1 | 0x0F)));
    if (len < 126) {
        hdr[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        hdr[1] = 126;
        hdr[2] = (unsigned char)(len >> 8);
        hdr[3] = (unsigned char)len;
        return 4;
    }
    hdr[1] = 127;
    for (int i = 0; i < 8; i++)
        hdr[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    return 10;
}

/* 1004-1006 and 1015 are reserved for reporting and may never appear on the
 * wire; 1012-1014 and 1016+ are not defined by RFC 6455; 0-999 and
 * 2000-2999 are unassigned or reserved for future extensions. */
static int frame_close_code_valid(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

int frame_close_code(const unsigned char *payload, size_t len)
{
    if (len == 0)
        return 1005;
    if (len < 2)
        return -1;
    int code = payload[0] << 8 | payload[1];
    if (!frame_close_code_valid(code))
        return -1;
    if (!utf8_valid(payload + 2, len - 2))
        return -1;
    return code;
}
