/* fcgi-publisher's FastCGI side (front.c over fcgi.c) against libfcgi,
 * the reference implementation, through the differential harness
 * (tests/diff/fcgi_diff.h): the same byte streams to both, the same params
 * and body or both refusing. Hand-written streams (many params, 4-byte
 * lengths, split records, padding, bodies across records, bad versions,
 * every truncation, unknown and management records, a second request
 * id), then generated ones (valid requests cut into records at random,
 * and those with one byte changed). Each intended difference is made to
 * happen by a stream of its own, and counted: a skip that happened where
 * it should not, or not where it should, fails the test.
 * FDIFF_DUMP=<file> keeps the last stream that differed, to replay with
 * build/fuzz/fuzz_fcgi_libfcgi <file>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../diff/fcgi_diff.h"
#include "buf.h"
#include "front.h"

/* max_params's default (conf/wspush.ini). */
#define PARAMS_LIMIT (256 * 1024)

enum { BEGIN = 1, ABORT = 2, PARAMS = 4, STDIN = 5, DATA = 8, GET_VALUES = 9 };
enum { RESPONDER = 1, AUTHORIZER = 2 };

static fdiff_t *harness;
static unsigned long verdicts[FDIFF_VERDICTS];

/* ---- building streams (by hand, not with the codec under test) -------- */

static void rec(struct buf *b, int type, unsigned id, const void *content, size_t len, int pad)
{
    unsigned char h[8] = { 1, (unsigned char)type, (unsigned char)(id >> 8), (unsigned char)id,
                           (unsigned char)(len >> 8), (unsigned char)len, (unsigned char)pad, 0 };
    static const unsigned char zeros[255];
    assert_true(len <= 65535 && pad <= 255);
    assert_int_equal(buf_append(b, h, 8), 0);
    assert_int_equal(buf_append(b, content, len), 0);
    assert_int_equal(buf_append(b, zeros, (size_t)pad), 0);
}

static void begin(struct buf *b, unsigned id, unsigned role, int keep)
{
    unsigned char body[8] = { (unsigned char)(role >> 8), (unsigned char)role, keep ? 1 : 0 };
    rec(b, BEGIN, id, body, sizeof body, 0);
}

static void length(struct buf *b, size_t n, int long_form)
{
    unsigned char l[4];
    if (n < 128 && !long_form) {
        l[0] = (unsigned char)n;
        assert_int_equal(buf_append(b, l, 1), 0);
        return;
    }
    buf_put_u32(l, (uint32_t)n | 0x80000000u);
    assert_int_equal(buf_append(b, l, 4), 0);
}

static void pair_n(struct buf *b, const char *name, size_t nl, const char *value, size_t vl,
                   int long_form)
{
    length(b, nl, long_form);
    length(b, vl, long_form);
    assert_int_equal(buf_append(b, name, nl), 0);
    assert_int_equal(buf_append(b, value, vl), 0);
}

static void pair(struct buf *b, const char *name, const char *value)
{
    pair_n(b, name, strlen(name), value, strlen(value), 0);
}

/* The params of an ordinary publish. */
static void publish_params(struct buf *p)
{
    pair(p, "REQUEST_METHOD", "POST");
    pair(p, "REQUEST_URI", "/push/publish");
    pair(p, "CONTENT_TYPE", "application/json");
    pair(p, "CONTENT_LENGTH", "33");
    pair(p, "REMOTE_USER", "alice");
    pair(p, "HTTP_ORIGIN", "http://127.0.0.1");
}

static const char publish_body[] = "{\"channel\":\"news\",\"data\":\"hi\"}\n\n";

/* A stream's records: content cut into records of at most chunk bytes
 * (chunk 0: one record), each padded with pad bytes, then the empty one. */
static void stream(struct buf *b, int type, unsigned id, const void *data, size_t len, size_t chunk,
                   int pad)
{
    const char *p = data;
    if (chunk == 0 || chunk > 65535)
        chunk = 65535;
    while (len > 0) {
        size_t n = len < chunk ? len : chunk;
        rec(b, type, id, p, n, pad);
        p += n;
        len -= n;
    }
    rec(b, type, id, NULL, 0, 0);
}

/* A whole request: BEGIN, the params given, the body. */
static void request(struct buf *b, unsigned id, const struct buf *params, const char *body,
                    size_t body_len, size_t chunk, int pad)
{
    begin(b, id, RESPONDER, 1);
    stream(b, PARAMS, id, buf_head(params), buf_used(params), chunk, pad);
    stream(b, STDIN, id, body, body_len, chunk, pad);
}

static void publish_request(struct buf *b, unsigned id)
{
    struct buf p = { 0 };
    publish_params(&p);
    request(b, id, &p, publish_body, strlen(publish_body), 0, 0);
    buf_free(&p);
}

/* A GET_VALUES naming 4 of the 3 variables libfcgi answers (its answer
 * overruns its 64-byte array), then a publish. */
static void get_values_4_then_publish(struct buf *b)
{
    struct buf e = { 0 };
    pair(&e, "FCGI_MAX_CONNS", "");
    pair(&e, "FCGI_MAX_REQS", "");
    pair(&e, "FCGI_MPXS_CONNS", "");
    pair(&e, "FCGI_MAX_CONNS", "");
    rec(b, GET_VALUES, 0, buf_head(&e), buf_used(&e), 0);
    publish_request(b, 1);
    buf_free(&e);
}

/* ---- running ----------------------------------------------------------- */

static enum fdiff_verdict run_limit(const struct buf *b, size_t params_limit)
{
    struct fdiff_report r;
    enum fdiff_verdict v = fdiff_run(harness, buf_head(b), buf_used(b), params_limit, &r);
    verdicts[v]++;
    if (v == FDIFF_DIFFERENT || v == FDIFF_ERROR) {
        print_error("%zu-byte stream: %s: %s\n", buf_used(b), fdiff_verdict_name(v), r.why);
        const char *dump = getenv("FDIFF_DUMP");
        FILE *f = dump ? fopen(dump, "wb") : NULL;
        if (f) {
            fwrite(buf_head(b), 1, buf_used(b), f);
            fclose(f);
        }
    }
    return v;
}

static enum fdiff_verdict run(const struct buf *b) { return run_limit(b, PARAMS_LIMIT); }

static void expect(const struct buf *b, enum fdiff_verdict want)
{
    enum fdiff_verdict got = run(b);
    if (got != want)
        fail_msg("verdict %s, expected %s", fdiff_verdict_name(got), fdiff_verdict_name(want));
}

/* The skips so far; what a test that means none to happen compares. */
static unsigned long skips(void)
{
    unsigned long n = 0;
    for (int v = FDIFF_SKIP_ROLE; v <= FDIFF_SKIP_PADDING_CUT; v++)
        n += verdicts[v];
    return n;
}

/* ---- agreement --------------------------------------------------------- */

static void test_a_publish(void **state)
{
    (void)state;
    struct buf b = { 0 };
    publish_request(&b, 1);
    expect(&b, FDIFF_SAME_SERVED);
    buf_free(&b);

    /* No body at all, and no params at all. */
    struct buf p = { 0 }, e = { 0 };
    pair(&p, "REQUEST_METHOD", "GET");
    request(&b, 9, &p, "", 0, 0, 0);
    expect(&b, FDIFF_SAME_SERVED);
    buf_free(&b);
    request(&b, 0xffff, &e, "x", 1, 0, 0);
    expect(&b, FDIFF_SAME_SERVED);
    buf_free(&b);
    buf_free(&p);
}

static void test_many_params_and_long_ones(void **state)
{
    (void)state;
    struct buf p = { 0 }, b = { 0 };
    char name[32], value[64];
    for (int i = 0; i < FRONT_PARAMS_COUNT_MAX; i++) {
        snprintf(name, sizeof name, "HTTP_X_%d", i);
        snprintf(value, sizeof value, "value %d", i * 7);
        pair(&p, name, value);
    }
    request(&b, 1, &p, publish_body, strlen(publish_body), 0, 0);
    expect(&b, FDIFF_SAME_SERVED);
    buf_free(&b);
    buf_reset(&p);

    /* 4-byte lengths: long names and values, and short ones in the long form. */
    static char big[20000];
    memset(big, 'v', sizeof big);
    pair_n(&p, "HTTP_COOKIE", 11, big, sizeof big, 0);
    pair_n(&p, big, 300, "n", 1, 0);
    pair_n(&p, "SHORT", 5, "in the long form", 16, 1);
    pair_n(&p, "EMPTY_VALUE", 11, "", 0, 0);
    request(&b, 2, &p, "", 0, 0, 0);
    expect(&b, FDIFF_SAME_SERVED);
    buf_free(&b);
    buf_free(&p);

    /* A NUL byte in a value and '=' in a name: both keep C strings, cut alike. */
    pair_n(&p, "HTTP_X_NUL", 10, "ab\0cd", 5, 0);
    pair(&p, "A=B", "c=d");
    pair(&p, "REMOTE_USER", "alice");
    pair(&p, "REMOTE_USER", "bob");   /* twice: both keep both, in order */
    request(&b, 3, &p, "", 0, 0, 0);
    expect(&b, FDIFF_SAME_SERVED);
    buf_free(&b);
    buf_free(&p);
}

static void test_split_records_and_padding(void **state)
{
    (void)state;
    struct buf p = { 0 }, b = { 0 };
    unsigned long before = skips();
    publish_params(&p);
    /* The params and the body cut into records of every size from 1 byte,
     * padded with 0..8 bytes (and the 255 most). */
    for (size_t chunk = 1; chunk <= buf_used(&p); chunk++) {
        int pad = (int)(chunk % 9);
        request(&b, 5, &p, publish_body, strlen(publish_body), chunk, chunk == 77 ? 255 : pad);
        expect(&b, FDIFF_SAME_SERVED);
        buf_reset(&b);
    }
    /* A pair cut between two PARAMS records at every byte. */
    for (size_t cut = 1; cut < buf_used(&p); cut++) {
        begin(&b, 1, RESPONDER, 0);
        rec(&b, PARAMS, 1, buf_head(&p), cut, 0);
        rec(&b, PARAMS, 1, buf_head(&p) + cut, buf_used(&p) - cut, 3);
        rec(&b, PARAMS, 1, NULL, 0, 0);
        stream(&b, STDIN, 1, publish_body, strlen(publish_body), 10, 0);
        expect(&b, FDIFF_SAME_SERVED);
        buf_reset(&b);
    }
    assert_int_equal(skips(), before);
    buf_free(&b);
    buf_free(&p);
}

static void test_other_records_around_the_request(void **state)
{
    (void)state;
    struct buf b = { 0 }, p = { 0 }, gv = { 0 };
    unsigned long before = skips();
    publish_params(&p);
    pair(&gv, "FCGI_MAX_CONNS", "");
    pair(&gv, "FCGI_MPXS_CONNS", "");
    pair(&gv, "X_UNKNOWN", "");

    /* Management records (request id 0) before and between the request's:
     * GET_VALUES, an unknown type, its answers drained. */
    rec(&b, GET_VALUES, 0, buf_head(&gv), buf_used(&gv), 0);
    begin(&b, 1, RESPONDER, 1);
    rec(&b, GET_VALUES, 0, buf_head(&gv), buf_used(&gv), 5);
    rec(&b, 200, 0, NULL, 0, 3);
    stream(&b, PARAMS, 1, buf_head(&p), buf_used(&p), 0, 0);
    rec(&b, GET_VALUES, 0, NULL, 0, 0);
    stream(&b, STDIN, 1, publish_body, strlen(publish_body), 0, 0);
    expect(&b, FDIFF_SAME_SERVED);
    buf_reset(&b);

    /* A second request id on the busy connection (refused by both with
     * FCGI_CANT_MPX_CONN), its records in the middle of the first's. */
    begin(&b, 1, RESPONDER, 1);
    begin(&b, 2, RESPONDER, 1);
    rec(&b, PARAMS, 2, "\x01\x01XY", 4, 0);
    stream(&b, PARAMS, 1, buf_head(&p), buf_used(&p), 20, 0);
    rec(&b, STDIN, 2, "other", 5, 0);
    rec(&b, 77, 2, "?", 1, 0);
    stream(&b, STDIN, 1, publish_body, strlen(publish_body), 7, 1);
    expect(&b, FDIFF_SAME_SERVED);
    buf_reset(&b);

    /* Records of some request before any BEGIN_REQUEST: both skip them. */
    rec(&b, PARAMS, 3, "\x01\x01XY", 4, 0);
    rec(&b, STDIN, 3, "x", 1, 0);
    publish_request(&b, 4);
    expect(&b, FDIFF_SAME_SERVED);
    buf_reset(&b);

    /* Two requests back to back (FCGI_KEEP_CONN): the first is compared. */
    publish_request(&b, 1);
    publish_request(&b, 2);
    expect(&b, FDIFF_SAME_SERVED);
    buf_reset(&b);

    /* Bytes after the end of the request, even garbage, are not read for it. */
    publish_request(&b, 1);
    assert_int_equal(buf_append(&b, "\x07garbage", 8), 0);
    expect(&b, FDIFF_SAME_SERVED);

    assert_int_equal(skips(), before);
    buf_free(&b);
    buf_free(&p);
    buf_free(&gv);
}

static void test_both_refuse(void **state)
{
    (void)state;
    struct buf b = { 0 }, g = { 0 };
    unsigned long before = skips();
    publish_request(&g, 1);

    /* Every strict prefix: a request never finished. */
    for (size_t n = 0; n < buf_used(&g); n++) {
        buf_reset(&b);
        assert_int_equal(buf_append(&b, buf_head(&g), n), 0);
        expect(&b, FDIFF_SAME_REFUSED);
    }

    /* A version other than 1: at the start, in the params, in the body. */
    size_t at[] = { 0, 16, buf_used(&g) - 8 };
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        buf_reset(&b);
        assert_int_equal(buf_append(&b, buf_head(&g), buf_used(&g)), 0);
        b.data[at[i]] = 2;
        expect(&b, FDIFF_SAME_REFUSED);
    }

    /* A BEGIN_REQUEST body that is not 8 bytes. */
    buf_reset(&b);
    rec(&b, BEGIN, 1, "\x00\x01\x01", 3, 0);
    expect(&b, FDIFF_SAME_REFUSED);

    /* Pairs that do not fit their stream: a length past its end, 4-byte
     * lengths past it, a stream ending inside a pair. */
    static const char *const bad[] = { "\x05\x01" "abc", "\x80\x00\x80\x00\x01" "ab",
                                       "\x01\x80\x00\x40\x00" "ab", "\x03" };
    static const size_t bad_len[] = { 5, 7, 7, 1 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf_reset(&b);
        begin(&b, 1, RESPONDER, 1);
        rec(&b, PARAMS, 1, bad[i], bad_len[i], 0);
        rec(&b, PARAMS, 1, NULL, 0, 0);
        rec(&b, STDIN, 1, NULL, 0, 0);
        expect(&b, FDIFF_SAME_REFUSED);
    }

    /* An unknown role without FCGI_KEEP_CONN: both end there. */
    buf_reset(&b);
    begin(&b, 1, 9, 0);
    expect(&b, FDIFF_SAME_REFUSED);

    assert_int_equal(skips(), before);
    buf_free(&b);
    buf_free(&g);
}

/* ---- the intended differences, each made to happen --------------------- */

static void test_intended_differences(void **state)
{
    (void)state;
    struct buf b = { 0 }, p = { 0 };
    publish_params(&p);

    /* Roles: libfcgi serves AUTHORIZER and FILTER; front refuses all but
     * RESPONDER, and on a kept connection goes on to the next request. */
    begin(&b, 1, AUTHORIZER, 1);
    stream(&b, PARAMS, 1, buf_head(&p), buf_used(&p), 0, 0);
    stream(&b, STDIN, 1, NULL, 0, 0, 0);
    expect(&b, FDIFF_SKIP_ROLE);
    buf_reset(&b);
    begin(&b, 1, 9, 1);
    publish_request(&b, 2);
    expect(&b, FDIFF_SKIP_ROLE);
    buf_reset(&b);

    /* A BEGIN_REQUEST with request id 0: a management record of an unknown
     * type to front, which goes on; the end of the connection to libfcgi. */
    begin(&b, 0, RESPONDER, 1);
    publish_request(&b, 1);
    expect(&b, FDIFF_SKIP_BEGIN_ID0);
    buf_reset(&b);

    /* The request's own BEGIN_REQUEST again: front closes the connection,
     * libfcgi answers FCGI_CANT_MPX_CONN and goes on. */
    begin(&b, 1, RESPONDER, 1);
    begin(&b, 1, RESPONDER, 1);
    stream(&b, PARAMS, 1, buf_head(&p), buf_used(&p), 0, 0);
    stream(&b, STDIN, 1, publish_body, strlen(publish_body), 0, 0);
    expect(&b, FDIFF_SKIP_BEGIN_AGAIN);
    buf_reset(&b);

    /* Records of the request out of their order: front drops them (and
     * serves), libfcgi ends the connection. */
    begin(&b, 1, RESPONDER, 1);
    stream(&b, PARAMS, 1, buf_head(&p), buf_used(&p), 0, 0);
    rec(&b, DATA, 1, "filter data", 11, 0);
    stream(&b, STDIN, 1, publish_body, strlen(publish_body), 0, 0);
    expect(&b, FDIFF_SKIP_OUT_OF_ORDER);
    buf_reset(&b);
    begin(&b, 1, RESPONDER, 1);
    rec(&b, STDIN, 1, "early", 5, 0);
    stream(&b, PARAMS, 1, buf_head(&p), buf_used(&p), 0, 0);
    stream(&b, STDIN, 1, publish_body, strlen(publish_body), 0, 0);
    expect(&b, FDIFF_SKIP_OUT_OF_ORDER);
    buf_reset(&b);
    /* ABORT_REQUEST, then another request on the kept connection. */
    begin(&b, 1, RESPONDER, 1);
    rec(&b, ABORT, 1, NULL, 0, 0);
    publish_request(&b, 2);
    expect(&b, FDIFF_SKIP_OUT_OF_ORDER);
    buf_reset(&b);

    /* An empty name: front refuses the request, libfcgi keeps "=value". */
    struct buf e = { 0 };
    pair(&e, "REQUEST_METHOD", "GET");
    pair(&e, "", "nameless");
    request(&b, 1, &e, "", 0, 0, 0);
    expect(&b, FDIFF_SKIP_EMPTY_NAME);
    buf_reset(&b);
    buf_free(&e);

    /* Params over max_params (in bytes) and over FRONT_PARAMS_COUNT_MAX:
     * front hands the request out marked, the responder answers 431. */
    request(&b, 1, &p, "", 0, 0, 0);
    assert_int_equal(run_limit(&b, buf_used(&p) - 1), FDIFF_SKIP_MAX_PARAMS);
    assert_int_equal(run_limit(&b, buf_used(&p)), FDIFF_SAME_SERVED);
    buf_reset(&b);
    for (int i = 0; i <= FRONT_PARAMS_COUNT_MAX; i++)
        pair(&e, "X", "");
    request(&b, 1, &e, "", 0, 0, 0);
    expect(&b, FDIFF_SKIP_MAX_PARAMS);
    buf_reset(&b);
    buf_free(&e);

    /* A GET_VALUES that is not a whole list of pairs: front answers what it
     * could read and goes on, libfcgi ends the connection. */
    rec(&b, GET_VALUES, 0, "\x0e\x00" "FCGI_MAX", 10, 0);
    publish_request(&b, 1);
    expect(&b, FDIFF_SKIP_GET_VALUES);
    buf_reset(&b);

    /* A GET_VALUES naming 4 known variables overruns libfcgi's answer
     * buffer: libfcgi is not run. */
    get_values_4_then_publish(&b);
    expect(&b, FDIFF_SKIP_GET_VALUES_4);
    buf_reset(&b);

    /* Pairs whose lengths say more than any stream here holds: libfcgi
     * would allocate it all first (and its int sum of two lengths near
     * 2^31 overflows: it aborts); front refuses, which settles it: libfcgi
     * is not given them. */
    static const char *const huge[] = { "\xff\xff\xff\xff\x01" "ab",
                                        "\x7f\xff\xff\xfe\x7f\xff\xff\xfe" "ab",
                                        "\x80\x01\x00\x01\x00" };
    static const size_t huge_len[] = { 7, 10, 5 };
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        rec(&b, GET_VALUES, 0, huge[i], huge_len[i], 0);
        expect(&b, FDIFF_SKIP_LIB_HUGE);
        buf_reset(&b);
        begin(&b, 1, RESPONDER, 1);
        rec(&b, PARAMS, 1, huge[i], huge_len[i], 0);
        expect(&b, FDIFF_SKIP_LIB_HUGE);
        buf_reset(&b);
    }
    /* Predicted, but front serves: libfcgi runs after all, and never
     * reads a GET_VALUES after the request. */
    publish_request(&b, 1);
    rec(&b, GET_VALUES, 0, huge[0], huge_len[0], 0);
    expect(&b, FDIFF_SAME_SERVED);
    buf_reset(&b);

    /* libfcgi's faults: padding after the BEGIN_REQUEST or after the
     * empty PARAMS record read as a header; a management record's content
     * read as the request's data, before the request, in its params and
     * in its body; the end inside the final record's padding. */
    begin(&b, 1, RESPONDER, 1);
    b.data[b.off + 6] = 8;
    assert_int_equal(buf_append(&b, "\0\0\0\0\0\0\0\0", 8), 0);
    stream(&b, PARAMS, 1, buf_head(&p), buf_used(&p), 0, 0);
    stream(&b, STDIN, 1, publish_body, strlen(publish_body), 0, 0);
    expect(&b, FDIFF_SKIP_LIB_PADDING);
    buf_reset(&b);
    begin(&b, 1, RESPONDER, 1);
    rec(&b, PARAMS, 1, buf_head(&p), buf_used(&p), 0);
    rec(&b, PARAMS, 1, NULL, 0, 3);
    stream(&b, STDIN, 1, publish_body, strlen(publish_body), 0, 0);
    expect(&b, FDIFF_SKIP_LIB_PADDING);
    buf_reset(&b);
    for (int where = 0; where < 3; where++) {
        if (where == 0)
            rec(&b, 99, 0, "12345678", 8, 0);
        begin(&b, 1, RESPONDER, 1);
        if (where == 1)
            rec(&b, 99, 0, "12345678", 8, 0);
        stream(&b, PARAMS, 1, buf_head(&p), buf_used(&p), 0, 0);
        rec(&b, STDIN, 1, publish_body, strlen(publish_body), 0);
        if (where == 2)
            rec(&b, 99, 0, "xy", 2, 0);
        rec(&b, STDIN, 1, NULL, 0, 0);
        expect(&b, FDIFF_SKIP_LIB_MGMT_DATA);
        buf_reset(&b);
    }
    /* An empty record of another request leaves libfcgi's skip flag set:
     * it drops the content of the next record, here its first
     * BEGIN_REQUEST's (it closes), a PARAMS record, a STDIN record. Where
     * the next record with content is of another request anyway, or the
     * stream ends first (the flag is cleared when the params end), both
     * agree. */
    for (int where = 0; where < 5; where++) {
        if (where == 0)
            rec(&b, PARAMS, 2, NULL, 0, 0);
        begin(&b, 1, RESPONDER, 1);
        if (where == 1 || where == 3)
            rec(&b, STDIN, 2, NULL, 0, 0);
        if (where == 3)
            rec(&b, STDIN, 2, "12", 2, 0);
        rec(&b, PARAMS, 1, buf_head(&p), buf_used(&p), 0);
        if (where == 4)
            rec(&b, PARAMS, 7, NULL, 0, 0);
        rec(&b, PARAMS, 1, NULL, 0, 0);
        if (where == 2)
            rec(&b, ABORT, 3, NULL, 0, 0);
        stream(&b, STDIN, 1, publish_body, strlen(publish_body), 0, 0);
        expect(&b, where < 3 ? FDIFF_SKIP_LIB_SKIP_NEXT : FDIFF_SAME_SERVED);
        buf_reset(&b);
    }
    publish_request(&b, 1);
    b.data[b.len - 2] = 4;          /* the empty STDIN's padding length */
    assert_int_equal(buf_append(&b, "\0\0", 2), 0);
    expect(&b, FDIFF_SKIP_PADDING_CUT);
    assert_int_equal(buf_append(&b, "\0\0", 2), 0);
    expect(&b, FDIFF_SAME_SERVED);

    buf_free(&b);
    buf_free(&p);
}

/* ---- generated streams ------------------------------------------------- */

static uint32_t rng_state = 12345;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 8) % n;
}

/* A valid request of random params and body, cut into records at random,
 * padded at random, with management records and another request's records
 * mixed in. */
static void random_request(struct buf *b)
{
    struct buf p = { 0 }, body = { 0 };
    unsigned id = 1 + rnd(65535);
    int n = (int)rnd(40);
    for (int i = 0; i < n; i++) {
        char name[300], value[400];
        size_t nl = 1 + rnd(rnd(8) ? 20 : 299), vl = rnd(rnd(8) ? 30 : 399);
        for (size_t k = 0; k < nl; k++)
            name[k] = (char)('A' + rnd(26));
        for (size_t k = 0; k < vl; k++)
            value[k] = (char)(' ' + rnd(95));
        pair_n(&p, name, nl, value, vl, rnd(4) == 0);
    }
    size_t blen = rnd(4) ? rnd(200) : rnd(3000);
    for (size_t k = 0; k < blen; k++) {
        char c = (char)rnd(256);
        assert_int_equal(buf_append(&body, &c, 1), 0);
    }
    begin(b, id, RESPONDER, (int)rnd(2));
    for (int s = 0; s < 2; s++) {
        const struct buf *src = s == 0 ? &p : &body;
        size_t off = 0, len = buf_used(src);
        while (off < len) {
            size_t k = 1 + rnd((uint32_t)(len - off < 500 ? len - off : 500));
            rec(b, s == 0 ? PARAMS : STDIN, id, buf_head(src) + off, k, (int)rnd(rnd(5) ? 8 : 256));
            off += k;
            if (rnd(10) == 0)
                rec(b, 100 + (int)rnd(100), 0, NULL, 0, (int)rnd(8));
            if (rnd(10) == 0)
                rec(b, GET_VALUES, 0, "\x0f\x00" "FCGI_MPXS_CONNS", 17, (int)rnd(8));
            if (rnd(10) == 0)
                rec(b, s == 0 ? PARAMS : STDIN, id ^ 0x8000, "other", 5, 0);
        }
        /* Padding after the empty PARAMS record is a libfcgi fault. */
        rec(b, s == 0 ? PARAMS : STDIN, id, NULL, 0, s == 0 ? 0 : (int)rnd(8));
    }
    buf_free(&p);
    buf_free(&body);
}

static void test_generated_requests(void **state)
{
    (void)state;
    struct buf b = { 0 };
    unsigned long before = skips();
    for (int i = 0; i < 150; i++) {
        buf_reset(&b);
        random_request(&b);
        expect(&b, FDIFF_SAME_SERVED);
    }
    assert_int_equal(skips(), before);
    buf_free(&b);
}

/* The same with one byte changed, one byte dropped or the stream cut:
 * anything but a difference the table does not list. */
static void test_generated_damage(void **state)
{
    (void)state;
    struct buf b = { 0 };
    for (int i = 0; i < 300; i++) {
        buf_reset(&b);
        random_request(&b);
        size_t at = rnd((uint32_t)buf_used(&b));
        switch (rnd(3)) {
        case 0:
            b.data[b.off + at] = (char)rnd(256);
            break;
        case 1:
            memmove(b.data + b.off + at, b.data + b.off + at + 1, buf_used(&b) - at - 1);
            b.len--;
            break;
        default:
            b.len = b.off + at;
            break;
        }
        enum fdiff_verdict v = run(&b);
        assert_true(v != FDIFF_DIFFERENT && v != FDIFF_ERROR);
    }
    buf_free(&b);
}

/* libfcgi run on everything the harness would keep from it (fdiff_predict
 * 0): where its int sum of a pair's two lengths overflows, its Malloc
 * asserts (malloc gave NULL: glibc's, or the sanitizer's with
 * allocator_may_return_null=1) or the sanitizer refuses the size and
 * reports it; either way the child's death, told by its stderr, is
 * libfcgi having refused, and front is judged against that. A pair of 16
 * MiB it allocates, then finds cut: both refuse. Any other death stays an
 * error: the stack smashed by a GET_VALUES naming 4 known variables (the
 * child's stderr shows in the log). */
static void test_libfcgi_dying_of_its_allocation(void **state)
{
    (void)state;
    static const char overflow[] = "\xff\xff\xff\xfe\x80\x00\x00\x10", big[] = "\x81\x00\x00\x00\x01" "ab";
    struct buf b = { 0 };
    fdiff_predict(harness, 0);

    rec(&b, GET_VALUES, 0, overflow, 8, 0);
    expect(&b, FDIFF_SKIP_LIB_HUGE);
    publish_request(&b, 1);
    expect(&b, FDIFF_SKIP_GET_VALUES);    /* libfcgi closed; front served the request */
    buf_reset(&b);
    begin(&b, 1, RESPONDER, 1);
    rec(&b, PARAMS, 1, overflow, 8, 0);
    expect(&b, FDIFF_SKIP_LIB_HUGE);
    buf_reset(&b);
    begin(&b, 1, RESPONDER, 1);
    rec(&b, PARAMS, 1, big, 7, 0);
    expect(&b, FDIFF_SAME_REFUSED);
    buf_reset(&b);

    /* The pair libfcgi reads only because its skip flag dropped the
     * record before it (tests/fuzz/regressions/fcgi_libfcgi/
     * skip-next-huge-pair): front serves A=<8 bytes>. */
    begin(&b, 1, RESPONDER, 1);
    rec(&b, PARAMS, 2, NULL, 0, 0);
    rec(&b, PARAMS, 1, "\x01\x08" "A", 3, 0);
    rec(&b, PARAMS, 1, overflow, 8, 0);
    rec(&b, PARAMS, 1, NULL, 0, 0);
    rec(&b, STDIN, 1, NULL, 0, 0);
    expect(&b, FDIFF_SKIP_LIB_SKIP_NEXT);
    fdiff_predict(harness, FDIFF_PREDICT_ALL);
    expect(&b, FDIFF_SKIP_LIB_SKIP_NEXT); /* predicted, but front serves: run */
    fdiff_predict(harness, 0);
    buf_reset(&b);

    get_values_4_then_publish(&b);
    struct fdiff_report r;
    assert_int_equal(fdiff_run(harness, buf_head(&b), buf_used(&b), PARAMS_LIMIT, &r), FDIFF_ERROR);
    assert_non_null(strstr(r.why, "the libfcgi child died (signal 6)"));

    fdiff_predict(harness, FDIFF_PREDICT_ALL);
    buf_free(&b);
}

/* Every verdict seen, for the log; the table of skips above made each
 * happen at least once. */
static void test_every_skip_was_exercised(void **state)
{
    (void)state;
    for (int v = 0; v < FDIFF_VERDICTS; v++)
        print_message("fcgi_libfcgi: %-18s %lu\n", fdiff_verdict_name(v), verdicts[v]);
    for (int v = FDIFF_SKIP_ROLE; v <= FDIFF_SKIP_PADDING_CUT; v++)
        assert_true(verdicts[v] > 0);
    assert_int_equal(verdicts[FDIFF_DIFFERENT], 0);
    assert_int_equal(verdicts[FDIFF_ERROR], 0);
}

static int setup(void **state)
{
    (void)state;
    harness = fdiff_new();
    return harness ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fdiff_free(harness);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_publish),
        cmocka_unit_test(test_many_params_and_long_ones),
        cmocka_unit_test(test_split_records_and_padding),
        cmocka_unit_test(test_other_records_around_the_request),
        cmocka_unit_test(test_both_refuse),
        cmocka_unit_test(test_intended_differences),
        cmocka_unit_test(test_libfcgi_dying_of_its_allocation),
        cmocka_unit_test(test_generated_requests),
        cmocka_unit_test(test_generated_damage),
        cmocka_unit_test(test_every_skip_was_exercised),
    };
    return cmocka_run_group_tests_name("fcgi_libfcgi", tests, setup, teardown);
}
