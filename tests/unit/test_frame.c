/* frame: every parser rule from a table, every truncated prefix, inputs
 * against a guard page, unmasking in pieces, server headers, close codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "guard.h"

#include "frame.h"

/* Inputs are copied to end right before a PROT_NONE page. */
#define GUARD_DATA (128 * 1024)


static const unsigned char MASK[4] = { 0x37, 0xfa, 0x21, 0x3d };

enum lenform { L7, L16, L64 };

/* Builds a client frame: b0 (FIN/RSV/opcode), masked payload of plen
 * bytes ('a' + i), length in the given form. Returns its size. */
static size_t build(unsigned char *out, unsigned char b0, size_t plen, enum lenform form,
                    int masked)
{
    size_t h = 0;
    out[h++] = b0;
    unsigned char m = masked ? 0x80 : 0;
    if (form == L7) {
        out[h++] = m | (unsigned char)plen;
    } else if (form == L16) {
        out[h++] = m | 126;
        out[h++] = (unsigned char)(plen >> 8);
        out[h++] = (unsigned char)plen;
    } else {
        out[h++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (unsigned char)((uint64_t)plen >> (8 * i));
    }
    if (masked) {
        memcpy(out + h, MASK, 4);
        h += 4;
    }
    for (size_t i = 0; i < plen; i++)
        out[h + i] = (unsigned char)('a' + i % 26) ^ (masked ? MASK[i & 3] : 0);
    return h + plen;
}

struct parse_case {
    const char *name;
    unsigned char b0;
    size_t plen;
    enum lenform form;
    int masked;
    int in_fragment;
    uint64_t max;
    ssize_t want;   /* > 0: whole frame consumed */
};

#define WHOLE 1   /* placeholder: "consumed the whole frame" */

static const struct parse_case cases[] = {
    { "text",                0x81, 5,   L7,  1, 0, 125, WHOLE },
    { "empty text",          0x81, 0,   L7,  1, 0, 125, WHOLE },
    { "binary",              0x82, 10,  L7,  1, 0, 125, WHOLE },
    { "text no FIN",         0x01, 3,   L7,  1, 0, 125, WHOLE },
    { "unmasked",            0x81, 5,   L7,  0, 0, 125, FRAME_E_PROTOCOL },
    { "RSV1",                0xC1, 5,   L7,  1, 0, 125, FRAME_E_PROTOCOL },
    { "RSV2",                0xA1, 5,   L7,  1, 0, 125, FRAME_E_PROTOCOL },
    { "RSV3",                0x91, 5,   L7,  1, 0, 125, FRAME_E_PROTOCOL },
    { "opcode 3",            0x83, 1,   L7,  1, 0, 125, FRAME_E_PROTOCOL },
    { "opcode 7",            0x87, 1,   L7,  1, 0, 125, FRAME_E_PROTOCOL },
    { "opcode B",            0x8B, 1,   L7,  1, 0, 125, FRAME_E_PROTOCOL },
    { "opcode F",            0x8F, 1,   L7,  1, 0, 125, FRAME_E_PROTOCOL },
    { "ping",                0x89, 4,   L7,  1, 0, 125, WHOLE },
    { "pong",                0x8A, 125, L7,  1, 0, 125, WHOLE },
    { "close empty",         0x88, 0,   L7,  1, 0, 125, WHOLE },
    { "close 125",           0x88, 125, L7,  1, 0, 125, WHOLE },
    { "ping no FIN",         0x09, 4,   L7,  1, 0, 125, FRAME_E_PROTOCOL },
    { "close no FIN",        0x08, 2,   L7,  1, 0, 125, FRAME_E_PROTOCOL },
    { "ping 16-bit length",  0x89, 126, L16, 1, 0, 1000, FRAME_E_PROTOCOL },
    { "ping 16-bit small",   0x89, 4,   L16, 1, 0, 125, FRAME_E_PROTOCOL },
    { "pong 64-bit length",  0x8A, 4,   L64, 1, 0, 125, FRAME_E_PROTOCOL },
    { "cont outside message", 0x80, 3,  L7,  1, 0, 125, FRAME_E_PROTOCOL },
    { "cont in message",     0x80, 3,   L7,  1, 1, 125, WHOLE },
    { "cont no FIN",         0x00, 3,   L7,  1, 1, 125, WHOLE },
    { "text inside message", 0x81, 3,   L7,  1, 1, 125, FRAME_E_PROTOCOL },
    { "binary inside message", 0x02, 3, L7,  1, 1, 125, FRAME_E_PROTOCOL },
    { "ping inside message", 0x89, 3,   L7,  1, 1, 125, WHOLE },
    { "close inside message", 0x88, 2,  L7,  1, 1, 125, WHOLE },
    { "16-bit 126",          0x82, 126, L16, 1, 0, 126, WHOLE },
    { "16-bit non-minimal",  0x82, 5,   L16, 1, 0, 125, WHOLE },
    { "16-bit 65535",        0x82, 65535, L16, 1, 0, 65535, WHOLE },
    { "64-bit 65536",        0x82, 65536, L64, 1, 0, 65536, WHOLE },
    { "64-bit non-minimal",  0x81, 5,   L64, 1, 0, 125, WHOLE },
    { "7-bit over max",      0x81, 100, L7,  1, 0, 99, FRAME_E_TOO_BIG },
    { "16-bit over max",     0x82, 126, L16, 1, 0, 125, FRAME_E_TOO_BIG },
    { "64-bit over max",     0x82, 65536, L64, 1, 0, 65535, FRAME_E_TOO_BIG },
    { "control over max",    0x89, 10,  L7,  1, 0, 9, FRAME_E_TOO_BIG },
};

static void test_table(void **state)
{
    (void)state;
    unsigned char *frame = malloc(70000);
    assert_non_null(frame);
    struct guard g = guard_new(GUARD_DATA);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct parse_case *c = &cases[i];
        size_t n = build(frame, c->b0, c->plen, c->form, c->masked);
        size_t hlen = n - c->plen;
        struct frame f;
        memset(&f, 0xAA, sizeof(f));
        ssize_t r = frame_parse(guard_put(&g, frame, n), n, c->max, c->in_fragment, &f);
        ssize_t want = c->want == WHOLE ? (ssize_t)n : c->want;
        if (r != want)
            fail_msg("%s: got %zd want %zd", c->name, r, want);
        if (want > 0) {
            assert_int_equal(f.fin, c->b0 >> 7);
            assert_int_equal(f.opcode, c->b0 & 0x0F);
            assert_int_equal(f.payload_len, c->plen);
            assert_memory_equal(f.mask, MASK, 4);
            assert_ptr_equal(f.payload, g.base + GUARD_DATA - c->plen);
            /* Every strict prefix needs more (one byte at a time). Long
             * prefixes are read in place: the header is what the guard
             * page is for, and copying 64 KiB per byte would be slow. */
            for (size_t k = 0; k < n; k++) {
                const unsigned char *in = k <= 300 ? guard_put(&g, frame, k) : frame;
                r = frame_parse(in, k, c->max, c->in_fragment, &f);
                if (r != FRAME_NEED_MORE)
                    fail_msg("%s: prefix %zu got %zd", c->name, k, r);
            }
        } else if (want == FRAME_E_TOO_BIG) {
            /* Decided from the length field, before the mask and payload. */
            size_t lenbytes = hlen - 4;
            for (size_t k = 0; k < lenbytes; k++)
                assert_int_equal(frame_parse(guard_put(&g, frame, k), k, c->max, 0, &f),
                                 FRAME_NEED_MORE);
            assert_int_equal(frame_parse(guard_put(&g, frame, lenbytes), lenbytes, c->max, 0, &f),
                             FRAME_E_TOO_BIG);
        } else {
            /* Every rule in the table is decided on the first two bytes. */
            for (size_t k = 0; k < 2; k++)
                assert_int_equal(frame_parse(guard_put(&g, frame, k), k, c->max,
                                             c->in_fragment, &f), FRAME_NEED_MORE);
            assert_int_equal(frame_parse(guard_put(&g, frame, 2), 2, c->max,
                                         c->in_fragment, &f), want);
        }
    }
    guard_free(&g);
    free(frame);
}

static void test_rfc_example(void **state)
{
    (void)state;
    /* RFC 6455 5.7: a single-frame masked text message "Hello". */
    const unsigned char hello[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    struct frame f;
    assert_int_equal(frame_parse(hello, sizeof(hello), 125, 0, &f), 11);
    unsigned char out[5];
    frame_unmask(out, f.payload, 5, f.mask, 0);
    assert_memory_equal(out, "Hello", 5);

    /* Two frames back to back: the first is consumed exactly. */
    unsigned char two[22];
    memcpy(two, hello, 11);
    memcpy(two + 11, hello, 11);
    assert_int_equal(frame_parse(two, sizeof(two), 125, 0, &f), 11);
    assert_int_equal(frame_parse(two + 11, 11, 125, 0, &f), 11);
}

static void test_64bit_lengths(void **state)
{
    (void)state;
    struct guard g = guard_new(GUARD_DATA);
    struct frame f;
    /* Top bit set: refused on the 10-byte header whatever the limit. */
    unsigned char top[10] = { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1 };
    assert_int_equal(frame_parse(guard_put(&g, top, 10), 10, UINT64_MAX, 0, &f),
                     FRAME_E_PROTOCOL);
    unsigned char topff[10] = { 0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
    assert_int_equal(frame_parse(guard_put(&g, topff, 10), 10, UINT64_MAX, 0, &f),
                     FRAME_E_PROTOCOL);
    /* Largest legal length: too big for any buffer, never a wrap-around. */
    unsigned char max63[10] = { 0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
    assert_int_equal(frame_parse(guard_put(&g, max63, 10), 10, UINT64_MAX, 0, &f),
                     FRAME_E_TOO_BIG);
    /* 2^32 + 1 under a large limit: needs the payload. */
    unsigned char big[14] = { 0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4 };
    assert_int_equal(frame_parse(guard_put(&g, big, 14), 14, UINT64_MAX, 0, &f),
                     FRAME_NEED_MORE);
    assert_int_equal(frame_parse(guard_put(&g, big, 10), 10, 1u << 20, 0, &f),
                     FRAME_E_TOO_BIG);
    guard_free(&g);
}

/* frame_peek_opcode answers on the first two bytes with the verdict of
 * frame_parse's early rules (or the opcode); frame_size measures a frame,
 * valid or not, as soon as its length field is in. Every row of the
 * parse table, every prefix, against the guard page. */
static void test_peek_and_size(void **state)
{
    (void)state;
    unsigned char *frame = malloc(70000);
    assert_non_null(frame);
    struct guard g = guard_new(GUARD_DATA);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct parse_case *c = &cases[i];
        size_t n = build(frame, c->b0, c->plen, c->form, c->masked);
        size_t lenbytes = n - c->plen - (c->masked ? 4 : 0);
        /* Every protocol error of the table is one of the first two bytes
         * (test_table checks that); anything else peeks as its opcode. */
        int early = c->want == FRAME_E_PROTOCOL ? FRAME_E_PROTOCOL : c->b0 & 0x0F;
        for (size_t k = 0; k < 2; k++)
            assert_int_equal(frame_peek_opcode(guard_put(&g, frame, k), k, c->in_fragment, 0),
                             FRAME_NEED_MORE);
        for (size_t k = 2; k <= 12 && k <= n; k++) {
            int got = frame_peek_opcode(guard_put(&g, frame, k), k, c->in_fragment, 0);
            if (got != early)
                fail_msg("%s: peek on %zu bytes got %d want %d", c->name, k, got, early);
        }
        uint64_t size = 0;
        for (size_t k = 0; k < lenbytes; k++)
            assert_int_equal(frame_size(guard_put(&g, frame, k), k, &size), FRAME_NEED_MORE);
        for (size_t k = lenbytes; k <= lenbytes + 4 && k <= n; k++) {
            size = 0;
            assert_int_equal(frame_size(guard_put(&g, frame, k), k, &size), 0);
            if (size != n)
                fail_msg("%s: size %llu want %zu", c->name, (unsigned long long)size, n);
        }
    }
    /* Lengths no frame can have, and the largest one it can. */
    uint64_t size;
    unsigned char top[10] = { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1 };
    assert_int_equal(frame_size(guard_put(&g, top, 10), 10, &size), FRAME_E_PROTOCOL);
    assert_int_equal(frame_peek_opcode(guard_put(&g, top, 10), 10, 0, 0), FRAME_BINARY);
    unsigned char max63[10] = { 0x81, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
    assert_int_equal(frame_size(guard_put(&g, max63, 10), 10, &size), 0);
    assert_true(size == 14 + 0x7FFFFFFFFFFFFFFFull);
    unsigned char unmasked[4] = { 0x82, 0x7E, 0x01, 0x00 };
    assert_int_equal(frame_size(guard_put(&g, unmasked, 4), 4, &size), 0);
    assert_true(size == 4 + 256);
    guard_free(&g);
    free(frame);
}

/* With permessage-deflate negotiated, RSV1 marks the first frame of a
 * compressed data message (the push-only server refuses it as data, 1008,
 * not as a protocol error); it stays an error elsewhere, and RSV2/RSV3
 * always are. frame_parse, which only control frames reach, is unchanged. */
static void test_peek_rsv1_with_deflate(void **state)
{
    (void)state;
    static const struct { unsigned char b0; int in_fragment; int plain, deflate; } rows[] = {
        { 0xC1, 0, FRAME_E_PROTOCOL, FRAME_TEXT },      /* text, RSV1 */
        { 0xC2, 0, FRAME_E_PROTOCOL, FRAME_BINARY },    /* binary, RSV1 */
        { 0x41, 0, FRAME_E_PROTOCOL, FRAME_TEXT },      /* first of a fragmented message */
        { 0xC0, 1, FRAME_E_PROTOCOL, FRAME_E_PROTOCOL },/* continuation, RSV1 */
        { 0xC9, 0, FRAME_E_PROTOCOL, FRAME_E_PROTOCOL },/* ping, RSV1 */
        { 0xC8, 0, FRAME_E_PROTOCOL, FRAME_E_PROTOCOL },/* close, RSV1 */
        { 0xA1, 0, FRAME_E_PROTOCOL, FRAME_E_PROTOCOL },/* text, RSV2 */
        { 0xE1, 0, FRAME_E_PROTOCOL, FRAME_E_PROTOCOL },/* text, RSV1+RSV2 */
        { 0x81, 0, FRAME_TEXT, FRAME_TEXT },            /* text, no RSV */
        { 0x89, 0, FRAME_PING, FRAME_PING },
    };
    struct guard g = guard_new(GUARD_DATA);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        unsigned char f[2] = { rows[i].b0, 0x80 };
        assert_int_equal(frame_peek_opcode(guard_put(&g, f, 2), 2, rows[i].in_fragment, 0),
                         rows[i].plain);
        assert_int_equal(frame_peek_opcode(guard_put(&g, f, 2), 2, rows[i].in_fragment,
                                           FRAME_EXT_DEFLATE), rows[i].deflate);
        assert_int_equal(frame_peek_opcode(guard_put(&g, f, 1), 1, rows[i].in_fragment,
                                           FRAME_EXT_DEFLATE), FRAME_NEED_MORE);
    }
    guard_free(&g);
}

static void test_unmask_pieces(void **state)
{
    (void)state;
    unsigned char frame[300];
    size_t n = build(frame, 0x82, 200, L16, 1);
    struct frame f;
    assert_int_equal(frame_parse(frame, n, 1000, 0, &f), (ssize_t)n);

    unsigned char want[200];
    for (size_t i = 0; i < 200; i++)
        want[i] = (unsigned char)('a' + i % 26);
    unsigned char whole[200];
    frame_unmask(whole, f.payload, 200, f.mask, 0);
    assert_memory_equal(whole, want, 200);

    /* Pieces of every size 1..7, also in place. */
    for (size_t step = 1; step <= 7; step++) {
        unsigned char copy[200];
        memcpy(copy, f.payload, 200);
        for (size_t off = 0; off < 200; off += step) {
            size_t k = 200 - off < step ? 200 - off : step;
            frame_unmask(copy + off, copy + off, k, f.mask, off);
        }
        assert_memory_equal(copy, want, 200);
    }
}

static void test_frame_header(void **state)
{
    (void)state;
    static const struct {
        uint64_t len;
        size_t hlen;
        unsigned char bytes[10];
    } t[] = {
        { 0,       2,  { 0x81, 0 } },
        { 125,     2,  { 0x81, 125 } },
        { 126,     4,  { 0x81, 126, 0x00, 0x7E } },
        { 65535,   4,  { 0x81, 126, 0xFF, 0xFF } },
        { 65536,   10, { 0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0 } },
        { 1ull << 32, 10, { 0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0 } },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        unsigned char h[10];
        assert_int_equal(frame_header(h, FRAME_TEXT, t[i].len), t[i].hlen);
        assert_memory_equal(h, t[i].bytes, t[i].hlen);
    }
    unsigned char h[10];
    assert_int_equal(frame_header(h, FRAME_CLOSE, 2), 2);
    assert_int_equal(h[0], 0x88);
    assert_int_equal(frame_header(h, FRAME_PING, 0), 2);
    assert_int_equal(h[0], 0x89);
    /* A compressed message: RSV1 with FIN, the length unchanged. */
    assert_int_equal(frame_header(h, FRAME_TEXT | FRAME_RSV1, 300), 4);
    assert_int_equal(h[0], 0xC1);
    assert_int_equal(h[1], 126);
    /* Nothing but RSV1 and the opcode gets through. */
    assert_int_equal(frame_header(h, 0x30 | FRAME_TEXT, 5), 2);
    assert_int_equal(h[0], 0x81);
}

static void test_close_codes(void **state)
{
    (void)state;
    static const int valid[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                 3000, 3999, 4000, 4999 };
    static const int invalid[] = { 0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015,
                                   1016, 1100, 2000, 2999, 5000, 65535 };
    unsigned char p[2];
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        p[0] = (unsigned char)(valid[i] >> 8);
        p[1] = (unsigned char)valid[i];
        assert_int_equal(frame_close_code(p, 2), valid[i]);
    }
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        p[0] = (unsigned char)(invalid[i] >> 8);
        p[1] = (unsigned char)invalid[i];
        if (frame_close_code(p, 2) != -1)
            fail_msg("close code %d accepted", invalid[i]);
    }
    assert_int_equal(frame_close_code(NULL, 0), 1005);
    assert_int_equal(frame_close_code((const unsigned char *)"\x03", 1), -1);
    assert_int_equal(frame_close_code((const unsigned char *)"\x03\xE8" "bye", 5), 1000);
    assert_int_equal(frame_close_code((const unsigned char *)"\x03\xE8" "\xC3\xA9t\xC3\xA9", 7),
                     1000);
    assert_int_equal(frame_close_code((const unsigned char *)"\x03\xE8" "\xC3\x28", 4), -1);
    assert_int_equal(frame_close_code((const unsigned char *)"\x03\xE8" "\xED\xA0\x80", 5), -1);
    assert_int_equal(frame_close_code((const unsigned char *)"\x03\xE8" "\xE2\x82", 4), -1);
    assert_int_equal(frame_close_code((const unsigned char *)"\x03\xE8" "\xC0\xAF", 4), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_rfc_example),
        cmocka_unit_test(test_64bit_lengths),
        cmocka_unit_test(test_peek_and_size),
        cmocka_unit_test(test_peek_rsv1_with_deflate),
        cmocka_unit_test(test_unmask_pieces),
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_close_codes),
    };
    return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
