/* pmdeflate: what a permessage-deflate client inflates (raw DEFLATE with
 * the 00 00 ff ff tail put back) is exactly the message, at every level;
 * the tail is cut at the right place; messages share no context; "not
 * smaller" is decided at exactly cap; a level change keeps working. The
 * input and the output buffer end right before a PROT_NONE page, so a
 * read or write past them crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "guard.h"

#include "pmdeflate.h"

#define TP_BUF 65536

static const unsigned char tp_tail[PMD_TAIL] = { 0x00, 0x00, 0xff, 0xff };

/* A 2 KiB JSON envelope like the ones ws-server sends. */
static size_t tp_json(char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "{\"type\":\"message\",\"channel\":\"news\",\"id\":\"6b06a6b8-17\","
                                          "\"data\":{\"items\":[");
    for (int i = 0; n < 2000; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s{\"id\":%d,\"name\":\"item %d\",\"price\":%d.%02d}",
                              i ? "," : "", i, i, i * 7, i % 100);
    n += (size_t)snprintf(out + n, cap - n, "]}}");
    return n;
}

/* What a client does (RFC 7692 7.2.2): append the tail, raw inflate. */
static size_t tp_inflate(const unsigned char *in, size_t n, unsigned char *out, size_t cap)
{
    unsigned char *buf = malloc(n + PMD_TAIL);
    assert_non_null(buf);
    memcpy(buf, in, n);
    memcpy(buf + n, tp_tail, PMD_TAIL);
    z_stream s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(inflateInit2(&s, -PMD_WINDOW_BITS), Z_OK);
    s.next_in = buf;
    s.avail_in = (uInt)(n + PMD_TAIL);
    s.next_out = out;
    s.avail_out = (uInt)cap;
    int rc = inflate(&s, Z_SYNC_FLUSH);
    assert_true(rc == Z_OK || rc == Z_STREAM_END);
    assert_int_equal(s.avail_in, 0);
    size_t got = cap - s.avail_out;
    inflateEnd(&s);
    free(buf);
    return got;
}

/* Output room of cap + PMD_TAIL bytes, ending at the guard page. */
static unsigned char *tp_out(struct guard *g, size_t cap)
{
    return g->base + g->page - (cap + PMD_TAIL);
}

static void test_round_trip_every_level(void **state)
{
    (void)state;
    static char msg[4096];
    static unsigned char back[TP_BUF];
    size_t len = tp_json(msg, sizeof(msg));
    struct guard gin = guard_new(TP_BUF), gout = guard_new(TP_BUF);
    const void *in = guard_put(&gin, msg, len);
    pmd_t *z = pmd_new(6);
    assert_non_null(z);
    for (int level = PMD_LEVEL_MIN; level <= PMD_LEVEL_MAX; level++) {
        unsigned char *out = tp_out(&gout, len);
        ssize_t n = pmd_compress(z, level, in, len, out, len);
        assert_true(n > 0 && (size_t)n < len / 3);
        /* zlib wrote the tail right after what we keep: the cut is exact. */
        assert_memory_equal(out + n, tp_tail, PMD_TAIL);
        assert_int_equal(tp_inflate(out, (size_t)n, back, sizeof(back)), len);
        assert_memory_equal(back, msg, len);
    }
    pmd_free(z);
    pmd_free(NULL);
    guard_free(&gin);
    guard_free(&gout);
}

/* server_no_context_takeover: the same message twice compresses to the
 * same bytes (a kept window would make the second a back-reference), and
 * each inflates on a fresh inflater. */
static void test_no_context_between_messages(void **state)
{
    (void)state;
    static char msg[4096];
    static unsigned char a[TP_BUF], b[TP_BUF], back[TP_BUF];
    size_t len = tp_json(msg, sizeof(msg));
    pmd_t *z = pmd_new(6);
    assert_non_null(z);
    ssize_t na = pmd_compress(z, 6, msg, len, a, len);
    ssize_t nb = pmd_compress(z, 6, msg, len, b, len);
    assert_true(na > 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na);
    assert_int_equal(tp_inflate(b, (size_t)nb, back, sizeof(back)), len);
    assert_memory_equal(back, msg, len);
    pmd_free(z);
}

/* cap decides: the compressed length must be below it. */
static void test_not_smaller_at_exactly_cap(void **state)
{
    (void)state;
    static char msg[4096];
    static unsigned char big[TP_BUF], back[TP_BUF];
    size_t len = tp_json(msg, sizeof(msg));
    struct guard gout = guard_new(TP_BUF);
    pmd_t *z = pmd_new(6);
    assert_non_null(z);
    ssize_t n = pmd_compress(z, 6, msg, len, big, len);
    assert_true(n > 0);
    size_t k = (size_t)n;
    assert_int_equal(pmd_compress(z, 6, msg, len, tp_out(&gout, k + 1), k + 1), n);
    assert_memory_equal(tp_out(&gout, k + 1), big, k);
    assert_int_equal(pmd_compress(z, 6, msg, len, tp_out(&gout, k), k), PMD_E_NOT_SMALLER);
    assert_int_equal(pmd_compress(z, 6, msg, len, tp_out(&gout, 0), 0), PMD_E_NOT_SMALLER);
    /* The stream is fine after a refusal. */
    assert_int_equal(pmd_compress(z, 6, msg, len, big, len), n);
    assert_int_equal(tp_inflate(big, k, back, sizeof(back)), len);
    pmd_free(z);
    guard_free(&gout);
}

/* Random bytes and tiny messages do not shrink: sent plain. */
static void test_incompressible(void **state)
{
    (void)state;
    static unsigned char noise[1500];
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof(noise); i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        noise[i] = (unsigned char)x;
    }
    struct guard gin = guard_new(TP_BUF), gout = guard_new(TP_BUF);
    pmd_t *z = pmd_new(9);
    assert_non_null(z);
    const void *in = guard_put(&gin, noise, sizeof(noise));
    assert_int_equal(pmd_compress(z, 9, in, sizeof(noise), tp_out(&gout, sizeof(noise)),
                                  sizeof(noise)), PMD_E_NOT_SMALLER);
    const char *tiny[] = { "1", "{}", "{\"a\":1}", "\"hello\"" };
    for (size_t i = 0; i < sizeof(tiny) / sizeof(tiny[0]); i++) {
        size_t n = strlen(tiny[i]);
        assert_int_equal(pmd_compress(z, 9, guard_put(&gin, tiny[i], n), n, tp_out(&gout, n), n),
                         PMD_E_NOT_SMALLER);
    }
    assert_int_equal(pmd_compress(z, 9, guard_put(&gin, "", 0), 0, tp_out(&gout, 0), 0),
                     PMD_E_NOT_SMALLER);
    pmd_free(z);
    guard_free(&gin);
    guard_free(&gout);
}

/* A reload changes the level between messages; out-of-range levels are
 * clamped. After a change the output is byte for byte a new compressor's
 * at that level. */
static void test_level_changes(void **state)
{
    (void)state;
    static char msg[4096];
    static unsigned char out[TP_BUF], back[TP_BUF], fresh_out[TP_BUF];
    size_t len = tp_json(msg, sizeof(msg));
    pmd_t *z = pmd_new(0);
    assert_non_null(z);
    const int levels[] = { 1, 9, 1, 6, -5, 42 };
    ssize_t sizes[6];
    for (int i = 0; i < 6; i++) {
        sizes[i] = pmd_compress(z, levels[i], msg, len, out, len);
        assert_true(sizes[i] > 0);
        assert_int_equal(tp_inflate(out, (size_t)sizes[i], back, sizeof(back)), len);
        assert_memory_equal(back, msg, len);
        pmd_t *fresh = pmd_new(levels[i]);
        assert_non_null(fresh);
        assert_int_equal(pmd_compress(fresh, levels[i], msg, len, fresh_out, len), sizes[i]);
        assert_memory_equal(out, fresh_out, (size_t)sizes[i]);
        pmd_free(fresh);
    }
    assert_int_equal(sizes[0], sizes[2]);
    assert_int_equal(sizes[0], sizes[4]);    /* -5 -> 1 */
    assert_int_equal(sizes[1], sizes[5]);    /* 42 -> 9 */
    pmd_free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_level),
        cmocka_unit_test(test_no_context_between_messages),
        cmocka_unit_test(test_not_smaller_at_exactly_cap),
        cmocka_unit_test(test_incompressible),
        cmocka_unit_test(test_level_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
