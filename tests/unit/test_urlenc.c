/* urlenc: percent-decoding and query lookup, table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "urlenc.h"

static void test_decode(void **state)
{
    (void)state;
    static const struct { const char *in; size_t len; int plus; ssize_t want; const char *out; } t[] = {
        { "", 0, 0, 0, "" },
        { "abc", 3, 0, 3, "abc" },
        { "a+b", 3, 0, 3, "a+b" },
        { "a+b", 3, 1, 3, "a b" },
        { "a%2Bb", 5, 1, 3, "a+b" },
        { "%41%62%7e%7E", 12, 0, 4, "Ab~~" },
        { "%2c%2C", 6, 0, 2, ",," },
        { "%C3%A9", 6, 0, 2, "\xC3\xA9" },
        { "%ff", 3, 0, 1, "\xff" },
        { "%25", 3, 0, 1, "%" },
        { "100%", 4, 0, -1, NULL },
        { "%4", 2, 0, -1, NULL },
        { "%", 1, 0, -1, NULL },
        { "%G1", 3, 0, -1, NULL },
        { "%1G", 3, 0, -1, NULL },
        { "% 1", 3, 0, -1, NULL },
        { "%00", 3, 0, -1, NULL },
        { "a\0b", 3, 0, -1, NULL },
        { "x%2", 3, 0, -1, NULL },
        /* len bounds the input: the escape past it is not read. */
        { "ab%41", 2, 0, 2, "ab" },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char out[64];
        memset(out, 0x55, sizeof(out));
        ssize_t r = url_decode(t[i].in, t[i].len, out, t[i].plus);
        if (r != t[i].want)
            fail_msg("case %zu (%s): got %zd want %zd", i, t[i].in, r, t[i].want);
        if (r >= 0)
            assert_memory_equal(out, t[i].out, (size_t)r);
        /* Never writes past len bytes. */
        assert_int_equal((unsigned char)out[t[i].len], 0x55);
    }
}

/* Every prefix of a valid input: a cut inside an escape is an error,
 * any other cut decodes to the matching prefix of the output. The input
 * is copied to an exact-size heap block so an over-read trips ASan. */
static void test_decode_prefixes(void **state)
{
    (void)state;
    const char *in = "user%2Falice+x%41,news";
    const char *full = "user/alice x" "A,news";
    size_t len = strlen(in);
    for (size_t n = 0; n <= len; n++) {
        char *p = malloc(n ? n : 1);
        char out[64];
        assert_non_null(p);
        memcpy(p, in, n);
        ssize_t r = url_decode(p, n, out, 1);
        int cut = 0;
        for (const char *q = in; (q = memchr(q, '%', (size_t)(in + n - q))) != NULL; q++)
            if ((size_t)(q - in) + 3 > n)
                cut = 1;
        if (cut) {
            assert_int_equal(r, -1);
        } else {
            assert_true(r >= 0);
            assert_memory_equal(out, full, (size_t)r);
        }
        free(p);
    }
}

static void test_query(void **state)
{
    (void)state;
    static const struct { const char *q; const char *key; int want; const char *val; } t[] = {
        { "", "a", 0, NULL },
        { "a=1", "a", 1, "1" },
        { "a=1&b=2", "b", 1, "2" },
        { "a=1&b=2", "c", 0, NULL },
        { "ab=1&a=2", "a", 1, "2" },
        { "a=1&ab=2", "ab", 1, "2" },
        { "a=", "a", 1, "" },
        { "a", "a", 1, "" },
        { "a&b=2", "a", 1, "" },
        { "b=2&a", "a", 1, "" },
        { "&&a=1&&", "a", 1, "1" },
        { "a=x%3Dy=z", "a", 1, "x%3Dy=z" },
        { "channels=a%2Cb&token=t.u.v", "token", 1, "t.u.v" },
        { "channels=a%2Cb&token=t.u.v", "channels", 1, "a%2Cb" },
        { "a=1&a=2", "a", -1, NULL },
        { "a=1&b=2&a", "a", -1, NULL },
        { "a=1&%61=2", "a", -1, NULL },
        { "%61=5", "a", 1, "5" },
        { "%6=5", "a", 0, NULL },
        { "a+b=1", "a b", 1, "1" },
        { "A=1", "a", 0, NULL },
        { "=1", "a", 0, NULL },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        const char *v = NULL;
        size_t vlen = 99;
        int r = url_query_get(t[i].q, strlen(t[i].q), t[i].key, &v, &vlen);
        if (r != t[i].want)
            fail_msg("case %zu (%s / %s): got %d want %d", i, t[i].q, t[i].key, r, t[i].want);
        if (r == 1) {
            assert_int_equal(vlen, strlen(t[i].val));
            assert_memory_equal(v, t[i].val, vlen);
            assert_true(v >= t[i].q && v + vlen <= t[i].q + strlen(t[i].q));
        }
    }
}

/* qlen bounds the scan: bytes past it are never looked at. */
static void test_query_bounded(void **state)
{
    (void)state;
    const char *q = "a=1&b=2";
    const char *v;
    size_t vlen;
    char *p = malloc(3);
    assert_non_null(p);
    memcpy(p, q, 3);
    assert_int_equal(url_query_get(p, 3, "a", &v, &vlen), 1);
    assert_int_equal(vlen, 1);
    assert_int_equal(url_query_get(p, 3, "b", &v, &vlen), 0);
    assert_int_equal(url_query_get(p, 0, "a", &v, &vlen), 0);
    assert_int_equal(url_query_get(q, 5, "b", &v, &vlen), 1);
    assert_int_equal(vlen, 0);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_decode_prefixes),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_query_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
