/* fcgi codec: records (padding, every truncated prefix, version), the
 * BEGIN_REQUEST body, name-value pairs (both length forms, split at every
 * byte, zero-length names, limits, 31-bit lengths) and the encoders, each
 * decoded back. Inputs are decoded from right before a PROT_NONE page so
 * any read past (buf, len) crashes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "guard.h"

#include "buf.h"
#include "fcgi.h"

/* Readable bytes before the PROT_NONE page: a record of 65535 bytes of
 * content and 255 of padding fits. */
#define GUARD_DATA (128 * 1024)

/* The decoded pointers point into the guarded copy, so it lives until the
 * next call (or guarded_release()). */
static struct guard last_guard;

static void guarded_release(void)
{
    if (last_guard.base)
        guard_free(&last_guard);
    last_guard.base = NULL;
}

static const void *guarded(const void *p, size_t n)
{
    guarded_release();
    last_guard = guard_new(GUARD_DATA);
    return guard_put(&last_guard, p, n);
}

static ssize_t record_guarded(const void *p, size_t n, struct fcgi_record *r)
{
    return fcgi_record_parse(guarded(p, n), n, r);
}

static ssize_t pair_guarded(const void *p, size_t n, size_t max, struct fcgi_pair *pr)
{
    return fcgi_pair_parse(guarded(p, n), n, max, pr);
}

/* Every strict prefix of a valid record must ask for more. */
static void check_record_prefixes(const void *p, size_t n)
{
    struct guard g = guard_new(GUARD_DATA);
    struct fcgi_record r;
    for (size_t k = 0; k < n; k++)
        assert_int_equal(fcgi_record_parse(guard_put(&g, p, k), k, &r), FCGI_NEED_MORE);
    guard_free(&g);
}

/* Every strict prefix of a valid pair must ask for more. */
static void check_pair_prefixes(const void *p, size_t n, size_t max)
{
    struct guard g = guard_new(GUARD_DATA);
    struct fcgi_pair pr;
    for (size_t k = 0; k < n; k++)
        assert_int_equal(fcgi_pair_parse(guard_put(&g, p, k), k, max, &pr), FCGI_NEED_MORE);
    guard_free(&g);
}

static void assert_pair(const struct fcgi_pair *pr, const char *name, size_t nlen,
                        const char *value, size_t vlen)
{
    assert_int_equal(pr->name_len, nlen);
    assert_memory_equal(pr->name, name, nlen);
    assert_int_equal(pr->value_len, vlen);
    if (vlen)
        assert_memory_equal(pr->value, value, vlen);
}

/* ---- records ---------------------------------------------------------- */

static void test_record_with_padding(void **state)
{
    (void)state;
    /* STDIN, request 0x1234, 5 bytes of content, 3 of padding. */
    const unsigned char rec[] = { 1, FCGI_STDIN, 0x12, 0x34, 0x00, 0x05, 3, 0,
                                  'h', 'e', 'l', 'l', 'o', 0xAA, 0xBB, 0xCC };
    struct fcgi_record r;
    assert_int_equal(record_guarded(rec, sizeof rec, &r), 16);
    assert_int_equal(r.type, FCGI_STDIN);
    assert_int_equal(r.req_id, 0x1234);
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.content, "hello", 5);
    assert_ptr_equal(r.content, (const unsigned char *)last_guard.base + GUARD_DATA - 16 + 8);
    check_record_prefixes(rec, sizeof rec);

    /* Bytes after the record are the next record's, not this one's. */
    unsigned char two[sizeof rec + 3];
    memcpy(two, rec, sizeof rec);
    memcpy(two + sizeof rec, "\x01\x05\x00", 3);
    assert_int_equal(record_guarded(two, sizeof two, &r), 16);
    assert_int_equal(r.len, 5);
}

static void test_record_empty_and_largest(void **state)
{
    (void)state;
    struct fcgi_record r;
    /* The empty record that ends a stream. */
    const unsigned char empty[] = { 1, FCGI_PARAMS, 0, 1, 0, 0, 0, 0 };
    assert_int_equal(record_guarded(empty, sizeof empty, &r), 8);
    assert_int_equal(r.type, FCGI_PARAMS);
    assert_int_equal(r.req_id, 1);
    assert_int_equal(r.len, 0);
    check_record_prefixes(empty, sizeof empty);

    /* Padding alone. */
    const unsigned char pad[] = { 1, FCGI_STDOUT, 0, 2, 0, 0, 4, 0, 9, 9, 9, 9 };
    assert_int_equal(record_guarded(pad, sizeof pad, &r), 12);
    assert_int_equal(r.len, 0);
    check_record_prefixes(pad, sizeof pad);

    /* The largest record: 65535 bytes of content, 255 of padding. */
    size_t n = FCGI_HEADER_LEN + 65535 + 255;
    unsigned char *big = calloc(1, n);
    assert_non_null(big);
    const unsigned char hdr[] = { 1, FCGI_STDIN, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0 };
    memcpy(big, hdr, sizeof hdr);
    big[8] = 'x';
    big[8 + 65534] = 'y';
    assert_int_equal(record_guarded(big, n, &r), (ssize_t)n);
    assert_int_equal(r.req_id, 0xFFFF);
    assert_int_equal(r.len, 65535);
    assert_int_equal(r.content[0], 'x');
    assert_int_equal(r.content[65534], 'y');
    assert_int_equal(record_guarded(big, n - 1, &r), FCGI_NEED_MORE);
    assert_int_equal(record_guarded(big, FCGI_HEADER_LEN, &r), FCGI_NEED_MORE);
    free(big);
}

static void test_record_wrong_version(void **state)
{
    (void)state;
    struct fcgi_record r;
    const unsigned char versions[] = { 0, 2, 0x81, 0xFF };
    for (size_t i = 0; i < sizeof versions; i++) {
        unsigned char rec[] = { versions[i], FCGI_STDIN, 0, 1, 0, 2, 0, 0, 'a', 'b' };
        assert_int_equal(record_guarded(rec, sizeof rec, &r), FCGI_E_MALFORMED);
        /* Known corrupt from the header alone: no need to wait for the body. */
        assert_int_equal(record_guarded(rec, FCGI_HEADER_LEN, &r), FCGI_E_MALFORMED);
    }
}

/* ---- BEGIN_REQUEST ---------------------------------------------------- */

static void test_begin_parse(void **state)
{
    (void)state;
    struct fcgi_record r;
    uint16_t role = 0;
    uint8_t flags = 0;

    /* Responder, keep the connection. */
    const unsigned char keep[] = { 1, FCGI_BEGIN_REQUEST, 0, 1, 0, 8, 0, 0,
                                   0, FCGI_RESPONDER, FCGI_KEEP_CONN, 0, 0, 0, 0, 0 };
    assert_int_equal(record_guarded(keep, sizeof keep, &r), 16);
    assert_int_equal(fcgi_begin_parse(&r, &role, &flags), 0);
    assert_int_equal(role, FCGI_RESPONDER);
    assert_int_equal(flags, FCGI_KEEP_CONN);

    /* Another role (authorizer, 2), no flags, with padding: passed on for
     * the caller to refuse with UNKNOWN_ROLE. */
    const unsigned char auth[] = { 1, FCGI_BEGIN_REQUEST, 0x01, 0x02, 0, 8, 2, 0,
                                   0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0 };
    assert_int_equal(record_guarded(auth, sizeof auth, &r), 18);
    assert_int_equal(r.req_id, 0x0102);
    assert_int_equal(fcgi_begin_parse(&r, &role, &flags), 0);
    assert_int_equal(role, 2);
    assert_int_equal(flags, 0);

    /* A body of any other length is corrupt. */
    const unsigned char short7[] = { 1, FCGI_BEGIN_REQUEST, 0, 1, 0, 7, 0, 0,
                                     0, 1, 1, 0, 0, 0, 0 };
    assert_int_equal(record_guarded(short7, sizeof short7, &r), 15);
    assert_int_equal(fcgi_begin_parse(&r, &role, &flags), FCGI_E_MALFORMED);
    const unsigned char long9[] = { 1, FCGI_BEGIN_REQUEST, 0, 1, 0, 9, 0, 0,
                                    0, 1, 1, 0, 0, 0, 0, 0, 0 };
    assert_int_equal(record_guarded(long9, sizeof long9, &r), 17);
    assert_int_equal(fcgi_begin_parse(&r, &role, &flags), FCGI_E_MALFORMED);
    const unsigned char empty[] = { 1, FCGI_BEGIN_REQUEST, 0, 1, 0, 0, 0, 0 };
    assert_int_equal(record_guarded(empty, sizeof empty, &r), 8);
    assert_int_equal(fcgi_begin_parse(&r, &role, &flags), FCGI_E_MALFORMED);

    /* Eight bytes, but not a BEGIN_REQUEST. */
    unsigned char other[sizeof keep];
    memcpy(other, keep, sizeof keep);
    other[1] = FCGI_PARAMS;
    assert_int_equal(record_guarded(other, sizeof other, &r), 16);
    assert_int_equal(fcgi_begin_parse(&r, &role, &flags), FCGI_E_MALFORMED);
}

/* ---- name-value pairs ------------------------------------------------- */

static void test_pair_short_lengths(void **state)
{
    (void)state;
    struct fcgi_pair pr;
    const char p1[] = "\x04\x05NAMEvalue";
    assert_int_equal(pair_guarded(p1, 11, 65536, &pr), 11);
    assert_pair(&pr, "NAME", 4, "value", 5);
    check_pair_prefixes(p1, 11, 65536);

    /* An empty value is fine. */
    const char p2[] = "\x01\x00X";
    assert_int_equal(pair_guarded(p2, 3, 65536, &pr), 3);
    assert_pair(&pr, "X", 1, "", 0);
    check_pair_prefixes(p2, 3, 65536);

    /* 127, the longest one-byte length; the next pair is not consumed. */
    char p3[2 + 127 + 1 + 3];
    p3[0] = 127;
    p3[1] = 1;
    memset(p3 + 2, 'n', 127);
    p3[2 + 127] = 'v';
    memcpy(p3 + 2 + 127 + 1, "\x01\x00Z", 3);
    assert_int_equal(pair_guarded(p3, sizeof p3, 65536, &pr), 2 + 127 + 1);
    assert_int_equal(pr.name_len, 127);
    assert_int_equal(pr.name[126], 'n');
    assert_pair(&pr, pr.name, 127, "v", 1);
    check_pair_prefixes(p3, 2 + 127 + 1, 65536);
}

static void test_pair_long_lengths(void **state)
{
    (void)state;
    struct fcgi_pair pr;
    /* Name 3 bytes in the four-byte form, value 300 bytes. */
    unsigned char p[4 + 4 + 3 + 300];
    const unsigned char lens[] = { 0x80, 0, 0, 3, 0x80, 0, 0x01, 0x2C };
    memcpy(p, lens, sizeof lens);
    memcpy(p + 8, "abc", 3);
    for (int i = 0; i < 300; i++)
        p[11 + i] = (unsigned char)i;
    assert_int_equal(pair_guarded(p, sizeof p, 65536, &pr), (ssize_t)sizeof p);
    assert_pair(&pr, "abc", 3, (const char *)p + 11, 300);
    check_pair_prefixes(p, sizeof p, 65536);

    /* One length of each form: 1-byte name, 4-byte value of 128. */
    unsigned char q[1 + 4 + 1 + 128];
    const unsigned char qlens[] = { 1, 0x80, 0, 0, 128 };
    memcpy(q, qlens, sizeof qlens);
    q[5] = 'K';
    memset(q + 6, 'v', 128);
    assert_int_equal(pair_guarded(q, sizeof q, 65536, &pr), (ssize_t)sizeof q);
    assert_pair(&pr, "K", 1, (const char *)q + 6, 128);
    check_pair_prefixes(q, sizeof q, 65536);
}

static void test_pair_zero_name(void **state)
{
    (void)state;
    struct fcgi_pair pr;
    assert_int_equal(pair_guarded("\x00\x03" "abc", 5, 65536, &pr), FCGI_E_MALFORMED);
    assert_int_equal(pair_guarded("\x00\x00", 2, 65536, &pr), FCGI_E_MALFORMED);
    /* Refused as soon as the name length is read. */
    assert_int_equal(pair_guarded("\x00", 1, 65536, &pr), FCGI_E_MALFORMED);
    /* Zero in the four-byte form too. */
    const unsigned char z4[] = { 0x80, 0, 0, 0, 1, 'v' };
    assert_int_equal(pair_guarded(z4, sizeof z4, 65536, &pr), FCGI_E_MALFORMED);
    /* Nothing at all is not a pair yet. */
    assert_int_equal(pair_guarded("", 0, 65536, &pr), FCGI_NEED_MORE);
}

static void test_pair_over_max(void **state)
{
    (void)state;
    struct fcgi_pair pr;
    char p[2 + 17 + 17];
    memset(p, 'x', sizeof p);

    /* Exactly max is fine. */
    p[0] = 16;
    p[1] = 16;
    assert_int_equal(pair_guarded(p, 2 + 32, 16, &pr), 2 + 32);
    assert_int_equal(pr.name_len, 16);
    assert_int_equal(pr.value_len, 16);

    /* A name over max, even with every byte present, and before they are. */
    p[0] = 17;
    p[1] = 1;
    assert_int_equal(pair_guarded(p, 2 + 17 + 1, 16, &pr), FCGI_E_MALFORMED);
    assert_int_equal(pair_guarded(p, 2, 16, &pr), FCGI_E_MALFORMED);
    assert_int_equal(pair_guarded(p, 1, 16, &pr), FCGI_E_MALFORMED);

    /* A value over max. */
    p[0] = 1;
    p[1] = 17;
    assert_int_equal(pair_guarded(p, 2 + 1 + 17, 16, &pr), FCGI_E_MALFORMED);
    assert_int_equal(pair_guarded(p, 2, 16, &pr), FCGI_E_MALFORMED);

    /* max 0 refuses every pair (no name is empty). */
    assert_int_equal(pair_guarded("\x01\x00" "a", 3, 0, &pr), FCGI_E_MALFORMED);
}

static void test_pair_huge_lengths(void **state)
{
    (void)state;
    struct fcgi_pair pr;
    /* 0x7fffffff, the largest length there is, against a small max:
     * corrupt, not an overflowed sum that happens to fit. */
    const unsigned char hname[] = { 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 'a', 'b' };
    assert_int_equal(pair_guarded(hname, sizeof hname, 65536, &pr), FCGI_E_MALFORMED);
    assert_int_equal(pair_guarded(hname, 4, 65536, &pr), FCGI_E_MALFORMED);
    const unsigned char hval[] = { 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 'a', 'b' };
    assert_int_equal(pair_guarded(hval, sizeof hval, 65536, &pr), FCGI_E_MALFORMED);
    const unsigned char both[] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 'a' };
    assert_int_equal(pair_guarded(both, sizeof both, 65536, &pr), FCGI_E_MALFORMED);
    /* The top bit is the form, not part of the length: 0x80000005 is 5. */
    const unsigned char five[] = { 0x80, 0, 0, 5, 0, 'a', 'b', 'c', 'd', 'e' };
    assert_int_equal(pair_guarded(five, sizeof five, 5, &pr), (ssize_t)sizeof five);
    assert_pair(&pr, "abcde", 5, "", 0);

    /* With no limit, huge lengths are just incomplete, and nothing is read
     * past the buffer while finding that out. */
    assert_int_equal(pair_guarded(hname, sizeof hname, SIZE_MAX, &pr), FCGI_NEED_MORE);
    assert_int_equal(pair_guarded(hval, sizeof hval, SIZE_MAX, &pr), FCGI_NEED_MORE);
    assert_int_equal(pair_guarded(both, sizeof both, SIZE_MAX, &pr), FCGI_NEED_MORE);
}

/* ---- encoders --------------------------------------------------------- */

static void test_encode_stream_empty(void **state)
{
    (void)state;
    struct buf b = {0};
    /* NULL data with length 0 is how a stream is ended. */
    assert_int_equal(fcgi_encode_stream(&b, FCGI_STDOUT, 7, NULL, 0), 0);
    const unsigned char want[] = { 1, FCGI_STDOUT, 0, 7, 0, 0, 0, 0 };
    assert_int_equal(buf_used(&b), sizeof want);
    assert_memory_equal(buf_head(&b), want, sizeof want);
    struct fcgi_record r;
    assert_int_equal(record_guarded(buf_head(&b), buf_used(&b), &r), 8);
    assert_int_equal(r.type, FCGI_STDOUT);
    assert_int_equal(r.req_id, 7);
    assert_int_equal(r.len, 0);
    buf_free(&b);
}

/* Decodes the records in b, checks their type and id, returns how many,
 * and copies their content, in order, to out. */
static size_t decode_records(const struct buf *b, uint8_t type, uint16_t req_id,
                             unsigned char *out, size_t *out_len, uint16_t *lens, size_t nlens)
{
    const unsigned char *p = (const unsigned char *)buf_head(b);
    size_t left = buf_used(b), count = 0;
    *out_len = 0;
    while (left > 0) {
        struct fcgi_record r;
        ssize_t n = record_guarded(p, left, &r);
        assert_true(n >= FCGI_HEADER_LEN);
        assert_int_equal(n, FCGI_HEADER_LEN + r.len);   /* no padding written */
        assert_int_equal(r.type, type);
        assert_int_equal(r.req_id, req_id);
        assert_true(count < nlens);
        lens[count++] = r.len;
        memcpy(out + *out_len, r.content, r.len);
        *out_len += r.len;
        p += n;
        left -= (size_t)n;
    }
    return count;
}

static void test_encode_stream_long(void **state)
{
    (void)state;
    const size_t n = 70000;
    unsigned char *data = malloc(n), *back = malloc(n);
    assert_non_null(data);
    assert_non_null(back);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 31 + (i >> 8));

    struct buf b = {0};
    assert_int_equal(fcgi_encode_stream(&b, FCGI_STDOUT, 0x0203, data, n), 0);
    assert_int_equal(buf_used(&b), 2 * FCGI_HEADER_LEN + n);
    uint16_t lens[4];
    size_t got = 0;
    assert_int_equal(decode_records(&b, FCGI_STDOUT, 0x0203, back, &got, lens, 4), 2);
    assert_int_equal(lens[0], 65535);
    assert_int_equal(lens[1], 4465);
    assert_int_equal(got, n);
    assert_memory_equal(back, data, n);

    /* Exactly one record's worth, and one byte more. */
    buf_reset(&b);
    assert_int_equal(fcgi_encode_stream(&b, FCGI_STDERR, 1, data, 65535), 0);
    assert_int_equal(decode_records(&b, FCGI_STDERR, 1, back, &got, lens, 4), 1);
    assert_int_equal(lens[0], 65535);
    assert_memory_equal(back, data, 65535);
    buf_reset(&b);
    assert_int_equal(fcgi_encode_stream(&b, FCGI_STDERR, 1, data, 65536), 0);
    assert_int_equal(decode_records(&b, FCGI_STDERR, 1, back, &got, lens, 4), 2);
    assert_int_equal(lens[0], 65535);
    assert_int_equal(lens[1], 1);
    assert_memory_equal(back, data, 65536);

    /* Appends after what is already there, readable prefix consumed or not. */
    buf_reset(&b);
    assert_int_equal(buf_append(&b, "0123456789", 10), 0);
    buf_consume(&b, 4);
    assert_int_equal(fcgi_encode_stream(&b, FCGI_STDOUT, 2, "hi", 2), 0);
    assert_int_equal(buf_used(&b), 6 + FCGI_HEADER_LEN + 2);
    assert_memory_equal(buf_head(&b), "456789", 6);
    assert_memory_equal(buf_head(&b) + 6 + FCGI_HEADER_LEN, "hi", 2);

    buf_free(&b);
    free(data);
    free(back);
}

static void test_encode_end_begin_record(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_int_equal(fcgi_encode_end(&b, 9, 0xDEADBEEFu, FCGI_OVERLOADED), 0);
    const unsigned char want_end[] = { 1, FCGI_END_REQUEST, 0, 9, 0, 8, 0, 0,
                                       0xDE, 0xAD, 0xBE, 0xEF, FCGI_OVERLOADED, 0, 0, 0 };
    assert_int_equal(buf_used(&b), sizeof want_end);
    assert_memory_equal(buf_head(&b), want_end, sizeof want_end);
    struct fcgi_record r;
    assert_int_equal(record_guarded(buf_head(&b), buf_used(&b), &r), 16);
    assert_int_equal(r.type, FCGI_END_REQUEST);
    assert_int_equal(r.req_id, 9);
    assert_int_equal(r.len, 8);
    assert_int_equal(buf_get_u32(r.content), 0xDEADBEEFu);
    assert_int_equal(r.content[4], FCGI_OVERLOADED);

    buf_reset(&b);
    assert_int_equal(fcgi_encode_end(&b, 0xFFFF, 0, FCGI_REQUEST_COMPLETE), 0);
    const unsigned char want_ok[] = { 1, FCGI_END_REQUEST, 0xFF, 0xFF, 0, 8, 0, 0,
                                      0, 0, 0, 0, 0, 0, 0, 0 };
    assert_memory_equal(buf_head(&b), want_ok, sizeof want_ok);

    /* BEGIN_REQUEST round trip. */
    buf_reset(&b);
    assert_int_equal(fcgi_encode_begin(&b, 0x0102, FCGI_RESPONDER, FCGI_KEEP_CONN), 0);
    const unsigned char want_begin[] = { 1, FCGI_BEGIN_REQUEST, 0x01, 0x02, 0, 8, 0, 0,
                                         0, 1, 1, 0, 0, 0, 0, 0 };
    assert_memory_equal(buf_head(&b), want_begin, sizeof want_begin);
    uint16_t role;
    uint8_t flags;
    assert_int_equal(record_guarded(buf_head(&b), buf_used(&b), &r), 16);
    assert_int_equal(fcgi_begin_parse(&r, &role, &flags), 0);
    assert_int_equal(role, FCGI_RESPONDER);
    assert_int_equal(flags, FCGI_KEEP_CONN);

    /* One record of any type; over the limit refused, buffer untouched. */
    buf_reset(&b);
    assert_int_equal(fcgi_encode_record(&b, FCGI_UNKNOWN_TYPE, 0, "\x2a\0\0\0\0\0\0\0", 8), 0);
    assert_int_equal(record_guarded(buf_head(&b), buf_used(&b), &r), 16);
    assert_int_equal(r.type, FCGI_UNKNOWN_TYPE);
    assert_int_equal(r.content[0], 42);
    static const char big[FCGI_MAX_CONTENT + 1];
    assert_int_equal(fcgi_encode_record(&b, FCGI_STDOUT, 1, big, sizeof big), -EINVAL);
    assert_int_equal(buf_used(&b), 16);
    buf_free(&b);
}

static void test_encode_pair(void **state)
{
    (void)state;
    struct buf b = {0};
    char value[200];
    for (int i = 0; i < 200; i++)
        value[i] = (char)('a' + i % 26);
    assert_int_equal(fcgi_encode_pair(&b, "SCRIPT_NAME", 11, value, 200), 0);
    /* 11 fits one byte; 200 needs the four-byte form, top bit set. */
    assert_int_equal(buf_used(&b), 1 + 4 + 11 + 200);
    const unsigned char lens[] = { 11, 0x80, 0, 0, 200 };
    assert_memory_equal(buf_head(&b), lens, sizeof lens);
    assert_memory_equal(buf_head(&b) + 5, "SCRIPT_NAME", 11);
    assert_memory_equal(buf_head(&b) + 16, value, 200);

    struct fcgi_pair pr;
    assert_int_equal(pair_guarded(buf_head(&b), buf_used(&b), 65536, &pr),
                     (ssize_t)buf_used(&b));
    assert_pair(&pr, "SCRIPT_NAME", 11, value, 200);
    check_pair_prefixes(buf_head(&b), buf_used(&b), 65536);

    /* The 127/128 boundary, an empty value. */
    char name[128];
    memset(name, 'N', sizeof name);
    buf_reset(&b);
    assert_int_equal(fcgi_encode_pair(&b, name, 127, NULL, 0), 0);
    assert_int_equal(buf_used(&b), 1 + 1 + 127);
    assert_int_equal((unsigned char)buf_head(&b)[0], 127);
    assert_int_equal(pair_guarded(buf_head(&b), buf_used(&b), 65536, &pr), 129);
    assert_pair(&pr, name, 127, "", 0);
    buf_reset(&b);
    assert_int_equal(fcgi_encode_pair(&b, name, 128, "v", 1), 0);
    assert_int_equal(buf_used(&b), 4 + 1 + 128 + 1);
    const unsigned char l128[] = { 0x80, 0, 0, 128, 1 };
    assert_memory_equal(buf_head(&b), l128, sizeof l128);
    assert_int_equal(pair_guarded(buf_head(&b), buf_used(&b), 65536, &pr), 134);
    assert_pair(&pr, name, 128, "v", 1);

    /* A length the four-byte form cannot say: refused before anything is
     * read or written. */
    buf_reset(&b);
    assert_int_equal(buf_append(&b, "keep", 4), 0);
    assert_int_equal(fcgi_encode_pair(&b, "n", (size_t)0x80000000u, "v", 1), -EINVAL);
    assert_int_equal(fcgi_encode_pair(&b, "n", 1, "v", (size_t)0x80000000u), -EINVAL);
    assert_int_equal(buf_used(&b), 4);
    assert_memory_equal(buf_head(&b), "keep", 4);
    buf_free(&b);
}

/* A PARAMS stream as a web server sends it: pairs encoded back to back, cut
 * into records at arbitrary points (here every 7 bytes, so pairs straddle
 * records), ended by an empty record; reassembled and decoded again. */
static void test_params_stream_round_trip(void **state)
{
    (void)state;
    static const char *const pairs[][2] = {
        { "SCRIPT_NAME", "/push" },
        { "REQUEST_METHOD", "POST" },
        { "CONTENT_TYPE", "application/json" },
        { "QUERY_STRING", "" },
        { "HTTP_COOKIE", "session=0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
                         "abcdef0123456789abcdef0123456789abcdef0123456789abcdef" },
    };
    const size_t npairs = sizeof pairs / sizeof pairs[0];
    struct buf body = {0}, wire = {0}, params = {0};
    for (size_t i = 0; i < npairs; i++)
        assert_int_equal(fcgi_encode_pair(&body, pairs[i][0], strlen(pairs[i][0]), pairs[i][1],
                                          strlen(pairs[i][1])), 0);
    for (size_t off = 0; off < buf_used(&body); off += 7) {
        size_t n = buf_used(&body) - off < 7 ? buf_used(&body) - off : 7;
        assert_int_equal(fcgi_encode_record(&wire, FCGI_PARAMS, 1, buf_head(&body) + off, n), 0);
    }
    assert_int_equal(fcgi_encode_stream(&wire, FCGI_PARAMS, 1, NULL, 0), 0);

    size_t got = 0;
    int ended = 0;
    const unsigned char *p = (const unsigned char *)buf_head(&wire);
    size_t left = buf_used(&wire);
    while (left > 0) {
        struct fcgi_record r;
        ssize_t n = fcgi_record_parse(p, left, &r);
        assert_true(n > 0);
        assert_int_equal(r.type, FCGI_PARAMS);
        p += n;
        left -= (size_t)n;
        if (r.len == 0) {
            ended = 1;
            break;
        }
        assert_int_equal(buf_append(&params, r.content, r.len), 0);
        for (;;) {
            struct fcgi_pair pr;
            ssize_t k = fcgi_pair_parse(buf_head(&params), buf_used(&params), 65536, &pr);
            if (k == FCGI_NEED_MORE)
                break;
            assert_true(k > 0);
            assert_true(got < npairs);
            assert_pair(&pr, pairs[got][0], strlen(pairs[got][0]), pairs[got][1],
                        strlen(pairs[got][1]));
            got++;
            buf_consume(&params, (size_t)k);
        }
    }
    assert_true(ended);
    assert_int_equal(left, 0);
    assert_int_equal(got, npairs);
    assert_int_equal(buf_used(&params), 0);
    buf_free(&body);
    buf_free(&wire);
    buf_free(&params);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_with_padding),
        cmocka_unit_test(test_record_empty_and_largest),
        cmocka_unit_test(test_record_wrong_version),
        cmocka_unit_test(test_begin_parse),
        cmocka_unit_test(test_pair_short_lengths),
        cmocka_unit_test(test_pair_long_lengths),
        cmocka_unit_test(test_pair_zero_name),
        cmocka_unit_test(test_pair_over_max),
        cmocka_unit_test(test_pair_huge_lengths),
        cmocka_unit_test(test_encode_stream_empty),
        cmocka_unit_test(test_encode_stream_long),
        cmocka_unit_test(test_encode_end_begin_record),
        cmocka_unit_test(test_encode_pair),
        cmocka_unit_test(test_params_stream_round_trip),
    };
    int failed = cmocka_run_group_tests_name("fcgi", tests, NULL, NULL);
    guarded_release();
    return failed;
}
