/* frame_parse in both in_fragment modes, over a stream as the server
 * reads it, plus frame_unmask and frame_close_code on what it returns.
 *
 * The first input byte picks the max_payload limit; the rest is the byte
 * stream from a client. Oracles: consumed bytes and payload stay inside
 * the input, one byte less is "need more", every rule of frame.h holds for
 * an accepted frame, unmasking in pieces equals unmasking at once, and a
 * server header from frame_header() parses back to the same length. */
#include <string.h>

#include "frame.h"
#include "fuzz.h"

static const uint64_t ffr_limits[] = {
    0, 1, 125, 126, 65535, 65536, 1u << 20, UINT64_MAX,
};

static void ffr_check_frame(const uint8_t *buf, size_t len, ssize_t n, uint64_t max,
                            int in_fragment, const struct frame *f)
{
    FUZZ_CHECK((size_t)n <= len);
    FUZZ_CHECK(f->payload_len <= max);
    FUZZ_CHECK(f->payload_len <= (uint64_t)n);
    FUZZ_CHECK(f->payload == buf + (size_t)n - f->payload_len);
    FUZZ_CHECK((size_t)(f->payload - buf) >= 6);   /* 2 header + 4 mask bytes at least */
    FUZZ_CHECK(memcmp(f->mask, f->payload - 4, 4) == 0);
    FUZZ_CHECK((buf[0] & 0x70) == 0 && (buf[1] & 0x80) != 0);
    FUZZ_CHECK(f->fin == (buf[0] >> 7) && f->opcode == (buf[0] & 0x0F));
    switch (f->opcode) {
    case FRAME_CLOSE: case FRAME_PING: case FRAME_PONG:
        FUZZ_CHECK(f->fin && f->payload_len <= 125);
        break;
    case FRAME_CONT:
        FUZZ_CHECK(in_fragment);
        break;
    case FRAME_TEXT: case FRAME_BINARY:
        FUZZ_CHECK(!in_fragment);
        break;
    default:
        FUZZ_CHECK(!"unknown opcode accepted");
    }

    /* Incomplete by one byte: need more (or the same early refusal, which
     * cannot happen for a frame that parsed). */
    struct frame g;
    FUZZ_CHECK(frame_parse(buf, (size_t)n - 1, max, in_fragment, &g) == FRAME_NEED_MORE);

    size_t plen = (size_t)f->payload_len;
    unsigned char *whole = malloc(plen + 1), *parts = malloc(plen + 1);
    FUZZ_CHECK(whole && parts);
    frame_unmask(whole, f->payload, plen, f->mask, 0);
    size_t step = 1 + (buf[0] & 7);
    for (size_t off = 0; off < plen; off += step) {
        size_t k = plen - off < step ? plen - off : step;
        frame_unmask(parts + off, f->payload + off, k, f->mask, off);
    }
    FUZZ_CHECK(memcmp(whole, parts, plen) == 0);
    /* In place, as conn.c may do. */
    memcpy(parts, f->payload, plen);
    frame_unmask(parts, parts, plen, f->mask, 0);
    FUZZ_CHECK(memcmp(whole, parts, plen) == 0);

    if (f->opcode == FRAME_CLOSE) {
        int code = frame_close_code(whole, plen);
        if (plen == 0)
            FUZZ_CHECK(code == 1005);
        else if (plen == 1)
            FUZZ_CHECK(code == -1);
        else
            FUZZ_CHECK(code == -1 || code == (whole[0] << 8 | whole[1]));
        FUZZ_CHECK(code == -1 || code == 1005 || (code >= 1000 && code <= 4999 &&
                   code != 1004 && code != 1005 && code != 1006 && code != 1015));
    }
    free(whole);
    free(parts);
}

/* Walks the stream the way a server reads it, tracking fragmentation. */
static void ffr_stream(const uint8_t *buf, size_t len, uint64_t max, int start_in_fragment)
{
    int in_fragment = start_in_fragment;
    size_t off = 0;
    while (off < len) {
        struct frame f;
        ssize_t n = frame_parse(buf + off, len - off, max, in_fragment, &f);
        FUZZ_CHECK(n == FRAME_NEED_MORE || n == FRAME_E_PROTOCOL || n == FRAME_E_TOO_BIG || n > 0);
        if (n <= 0)
            return;
        ffr_check_frame(buf + off, len - off, n, max, in_fragment, &f);
        if (f.opcode == FRAME_TEXT || f.opcode == FRAME_BINARY || f.opcode == FRAME_CONT)
            in_fragment = !f.fin;
        off += (size_t)n;
    }
}

static void ffr_header_roundtrip(uint64_t len, int opcode)
{
    unsigned char hdr[10], in[14];
    size_t hl = frame_header(hdr, opcode, len);
    FUZZ_CHECK(hl == 2 || hl == 4 || hl == 10);
    FUZZ_CHECK(hl == (len < 126 ? 2u : len <= 0xFFFF ? 4u : 10u));
    memcpy(in, hdr, hl);
    in[1] |= 0x80;                      /* as a client would send it */
    memset(in + hl, 0xA5, 4);
    struct frame f;
    ssize_t n = frame_parse(in, hl + 4, UINT64_MAX, 0, &f);
    if (len == 0) {
        FUZZ_CHECK(n == (ssize_t)(hl + 4) && f.payload_len == 0);
    } else if (len >> 63) {
        FUZZ_CHECK(n == FRAME_E_PROTOCOL);
    } else {
        FUZZ_CHECK(n == FRAME_NEED_MORE || n == FRAME_E_TOO_BIG);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint64_t max = ffr_limits[data[0] % (sizeof(ffr_limits) / sizeof(ffr_limits[0]))];
    const uint8_t *buf = data + 1;
    size_t len = size - 1;

    ffr_stream(buf, len, max, 0);
    ffr_stream(buf, len, max, 1);

    /* The header peeks agree with the full parser: a frame it accepts has
     * the opcode frame_peek_opcode saw and the size frame_size computes. */
    for (int frag = 0; frag < 2; frag++) {
        struct frame f;
        ssize_t n = frame_parse(buf, len, max, frag, &f);
        int op = frame_peek_opcode(buf, len, frag, 0);
        int opz = frame_peek_opcode(buf, len, frag, FRAME_EXT_DEFLATE);
        uint64_t whole = 0;
        int sz = frame_size(buf, len, &whole);
        FUZZ_CHECK(op == FRAME_NEED_MORE || op == FRAME_E_PROTOCOL || (op >= 0 && op <= 0xF));
        FUZZ_CHECK(sz == 0 || sz == FRAME_NEED_MORE || sz == FRAME_E_PROTOCOL);
        if (n > 0) {
            FUZZ_CHECK(op == f.opcode);
            FUZZ_CHECK(sz == 0 && whole == (uint64_t)n);
        }
        if (len < 2)
            FUZZ_CHECK(op == FRAME_NEED_MORE && sz == FRAME_NEED_MORE);
        /* permessage-deflate only lets RSV1 through on a text or binary
         * frame: it never refuses what the plain rules accept. */
        if (op >= 0)
            FUZZ_CHECK(opz == op);
        else if (opz != op)
            FUZZ_CHECK(op == FRAME_E_PROTOCOL && (buf[0] & 0x70) == 0x40 &&
                       (opz == FRAME_TEXT || opz == FRAME_BINARY));
    }

    /* The close-code validator on raw bytes as well. */
    int code = frame_close_code(buf, len);
    FUZZ_CHECK(code == -1 || code == 1005 || (code >= 1000 && code <= 4999));

    if (len >= 8) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | buf[i];
        ffr_header_roundtrip(v, FRAME_TEXT);
        ffr_header_roundtrip(v & 0xFFFF, FRAME_BINARY);
        ffr_header_roundtrip(v % 126, FRAME_PONG);
    }
    return 0;
}
