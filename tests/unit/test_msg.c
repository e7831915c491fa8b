/* msg: what msg_new copies and refuses, the JSON envelope byte for byte,
 * the per-(slot, channel) encoding cache (encoded once, shared), and
 * msg_bytes / msg_account following every encoding. Inputs sit right
 * before a PROT_NONE page so a read past them crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"

#include "buf.h"
#include "msg.h"
#include "wspush.h"

#define TM_PAGE 4096

static void tm_assert_str(struct str s, const char *want)
{
    if (s.len != strlen(want) || memcmp(s.p, want, s.len) != 0)
        fail_msg("got \"%.*s\", want \"%s\"", (int)s.len, s.p, want);
}

static void test_new_copies_everything(void **state)
{
    (void)state;
    struct guard gid = guard_new(TM_PAGE), gc0 = guard_new(TM_PAGE), gc1 = guard_new(TM_PAGE),
                 gd = guard_new(TM_PAGE);
    const char *data = "{\"a\":[1,\"\xc3\xa9\"]}";
    struct str chans[2] = {
        { guard_put(&gc0, "news", 4), 4 },
        { guard_put(&gc1, "user/alice@x", 12), 12 },
    };
    struct msg *m = msg_new((struct str){ guard_put(&gid, "65f1a2b3-17", 11), 11 }, chans, 2,
                            (struct str){ guard_put(&gd, data, strlen(data)), strlen(data) });
    assert_non_null(m);
    /* The inputs may go away. */
    guard_free(&gid);
    guard_free(&gc0);
    guard_free(&gc1);
    guard_free(&gd);
    tm_assert_str(msg_id(m), "65f1a2b3-17");
    assert_int_equal(msg_nchannels(m), 2);
    tm_assert_str(msg_channel(m, 0), "news");
    tm_assert_str(msg_channel(m, 1), "user/alice@x");
    tm_assert_str(msg_data(m), data);
    assert_true(msg_bytes(m) >= 11 + 4 + 12 + strlen(data));
    /* References: the last unref frees (ASan checks). */
    assert_ptr_equal(msg_ref(m), m);
    msg_unref(m);
    tm_assert_str(msg_id(m), "65f1a2b3-17");
    msg_unref(m);
    msg_unref(NULL);
}

static void test_new_bounds(void **state)
{
    (void)state;
    static char id39[40], id40[41], ch255[256], ch256[257];
    memset(id39, '1', 39);
    memset(id40, '1', 40);
    memset(ch255, 'c', 255);
    memset(ch256, 'c', 256);
    static struct str many[WSPUSH_MAX_CHANNELS + 1];
    static char names[WSPUSH_MAX_CHANNELS + 1][4];
    for (int i = 0; i <= WSPUSH_MAX_CHANNELS; i++) {
        snprintf(names[i], sizeof(names[i]), "c%d", i);
        many[i] = (struct str){ names[i], strlen(names[i]) };
    }
    struct str one[] = { { "a", 1 } }, empty[] = { { "", 0 } };
    struct str long_ok[] = { { ch255, 255 } }, long_bad[] = { { ch256, 256 } };
    const struct {
        const char       *what;
        struct str        id;
        const struct str *chans;
        int               n;
        struct str        data;
        int               ok;
    } cases[] = {
        { "plain",          { "a-1", 3 },  one,      1, { "1", 1 }, 1 },
        { "39-byte id",     { id39, 39 },  one,      1, { "1", 1 }, 1 },
        { "40-byte id",     { id40, 40 },  one,      1, { "1", 1 }, 0 },
        { "empty id",       { "", 0 },     one,      1, { "1", 1 }, 0 },
        { "no channel",     { "a-1", 3 },  one,      0, { "1", 1 }, 0 },
        { "-1 channels",    { "a-1", 3 },  one,     -1, { "1", 1 }, 0 },
        { "max channels",   { "a-1", 3 },  many,     WSPUSH_MAX_CHANNELS, { "1", 1 }, 1 },
        { "one too many",   { "a-1", 3 },  many,     WSPUSH_MAX_CHANNELS + 1, { "1", 1 }, 0 },
        { "empty channel",  { "a-1", 3 },  empty,    1, { "1", 1 }, 0 },
        { "255-byte name",  { "a-1", 3 },  long_ok,  1, { "1", 1 }, 1 },
        { "256-byte name",  { "a-1", 3 },  long_bad, 1, { "1", 1 }, 0 },
        { "empty data",     { "a-1", 3 },  one,      1, { "", 0 },  0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct msg *m = msg_new(cases[i].id, cases[i].chans, cases[i].n, cases[i].data);
        if ((m != NULL) != cases[i].ok)
            fail_msg("%s: %s", cases[i].what, m ? "accepted" : "refused");
        if (m) {
            assert_int_equal(msg_nchannels(m), cases[i].n);
            for (int c = 0; c < cases[i].n; c++) {
                struct str got = msg_channel(m, c);
                assert_int_equal(got.len, cases[i].chans[c].len);
                assert_memory_equal(got.p, cases[i].chans[c].p, got.len);
            }
            assert_int_equal(msg_id(m).len, cases[i].id.len);
        }
        msg_unref(m);
    }
}

static void test_envelope(void **state)
{
    (void)state;
    struct str chans[] = { { "news", 4 }, { "a/b", 3 } };
    const char *data = "{\"x\":\"\xe2\x82\xac\"}";
    struct msg *m = msg_new((struct str){ "abc-9", 5 }, chans, 2, (struct str){ data, strlen(data) });
    assert_non_null(m);
    static const char *const want[] = {
        "{\"type\":\"message\",\"channel\":\"news\",\"id\":\"abc-9\",\"data\":{\"x\":\"\xe2\x82\xac\"}}",
        "{\"type\":\"message\",\"channel\":\"a/b\",\"id\":\"abc-9\",\"data\":{\"x\":\"\xe2\x82\xac\"}}",
    };
    for (int c = 0; c < 2; c++) {
        size_t len = msg_envelope_len(m, c);
        assert_int_equal(len, strlen(want[c]));
        /* Written exactly to its length: a guard page right after. */
        struct guard g = guard_new(TM_PAGE);
        unsigned char *out = g.base + g.page - len;
        msg_envelope(m, c, out);
        assert_memory_equal(out, want[c], len);
        guard_free(&g);
    }
    msg_unref(m);
}

struct tm_enc {
    int calls[MSG_SLOTS][WSPUSH_MAX_CHANNELS];
    int fail;
};
static struct tm_enc tm_enc;

static rbuf_t *tm_encode(const struct msg *m, int chan)
{
    tm_enc.calls[0][chan]++;
    if (tm_enc.fail)
        return NULL;
    rbuf_t *r = rbuf_new(msg_envelope_len(m, chan));
    if (r)
        msg_envelope(m, chan, rbuf_wdata(r));
    return r;
}

static rbuf_t *tm_encode_short(const struct msg *m, int chan)
{
    (void)m;
    tm_enc.calls[1][chan]++;
    return rbuf_from("xy", 2);
}

static void test_encoding_cached_and_counted(void **state)
{
    (void)state;
    memset(&tm_enc, 0, sizeof(tm_enc));
    struct str chans[] = { { "a", 1 }, { "b", 1 }, { "c", 1 } };
    struct msg *m = msg_new((struct str){ "e-1", 3 }, chans, 3, (struct str){ "1", 1 });
    assert_non_null(m);
    size_t counter = 1000;
    msg_account(m, &counter);
    size_t b0 = msg_bytes(m);

    /* The first encoding also allocates the cache: counted too. */
    rbuf_t *r1 = msg_encoding(m, MSG_SLOT_WS, 1, tm_encode);
    assert_non_null(r1);
    assert_int_equal(tm_enc.calls[0][1], 1);
    assert_memory_equal(rbuf_data(r1), "{\"type\":\"message\",\"channel\":\"b\"", 31);
    size_t b1 = msg_bytes(m);
    assert_true(b1 > b0 + rbuf_len(r1));
    assert_int_equal(counter, 1000 + (b1 - b0));
    /* Cached: same buffer, no second call, no growth. */
    assert_ptr_equal(msg_encoding(m, MSG_SLOT_WS, 1, tm_encode), r1);
    assert_int_equal(tm_enc.calls[0][1], 1);
    assert_int_equal(msg_bytes(m), b1);
    /* Another channel: its own buffer, counted by its length alone. */
    rbuf_t *r0 = msg_encoding(m, MSG_SLOT_WS, 0, tm_encode);
    assert_non_null(r0);
    assert_ptr_not_equal(r0, r1);
    assert_int_equal(msg_bytes(m), b1 + rbuf_len(r0));
    /* Another slot, same channel: separate. */
    rbuf_t *s1 = msg_encoding(m, MSG_SLOT_SSE, 1, tm_encode_short);
    assert_non_null(s1);
    assert_int_equal(rbuf_len(s1), 2);
    assert_int_equal(tm_enc.calls[1][1], 1);
    assert_ptr_equal(msg_encoding(m, MSG_SLOT_WS, 1, tm_encode), r1);
    size_t b2 = msg_bytes(m);
    assert_int_equal(b2, b1 + rbuf_len(r0) + 2);
    assert_int_equal(counter, 1000 + (b2 - b0));

    /* A failed encoding is not cached, not counted, and tried again. */
    tm_enc.fail = 1;
    assert_null(msg_encoding(m, MSG_SLOT_WS, 2, tm_encode));
    assert_null(msg_encoding(m, MSG_SLOT_WS, 2, tm_encode));
    assert_int_equal(tm_enc.calls[0][2], 2);
    assert_int_equal(msg_bytes(m), b2);
    tm_enc.fail = 0;
    assert_non_null(msg_encoding(m, MSG_SLOT_WS, 2, tm_encode));
    assert_int_equal(tm_enc.calls[0][2], 3);

    /* Detached: the message still grows, the counter no more. */
    msg_account(m, NULL);
    size_t before = counter, bytes = msg_bytes(m);
    assert_non_null(msg_encoding(m, MSG_SLOT_WS_DEFLATE, 0, tm_encode_short));
    assert_int_equal(counter, before);
    assert_int_equal(msg_bytes(m), bytes + 2);

    /* A send queue's reference outlives the message. */
    rbuf_t *kept = rbuf_ref(r1);
    msg_unref(m);
    assert_memory_equal(rbuf_data(kept), "{\"type\":\"message\",\"channel\":\"b\"", 31);
    rbuf_unref(kept);
}

/* An encoder with a context; "plain" hands back another slot's rbuf (a
 * compressed frame that would not be smaller), "own" a new one. */
struct tm_with {
    rbuf_t *plain;
    int     calls;
    int     own;
};

static rbuf_t *tm_encode_with(void *ctx, const struct msg *m, int chan)
{
    (void)m;
    (void)chan;
    struct tm_with *w = ctx;
    w->calls++;
    return w->own ? rbuf_from("zz", 2) : rbuf_ref(w->plain);
}

static void test_encoding_with_context_and_shared(void **state)
{
    (void)state;
    memset(&tm_enc, 0, sizeof(tm_enc));
    struct str chans[] = { { "a", 1 }, { "b", 1 } };
    struct msg *m = msg_new((struct str){ "e-2", 3 }, chans, 2, (struct str){ "[1,2,3]", 7 });
    assert_non_null(m);
    size_t counter = 0;
    msg_account(m, &counter);
    rbuf_t *plain = msg_encoding(m, MSG_SLOT_WS, 0, tm_encode);
    assert_non_null(plain);
    size_t b0 = msg_bytes(m), c0 = counter;

    /* The same rbuf in a second slot is counted once, made once. */
    struct tm_with w = { plain, 0, 0 };
    assert_ptr_equal(msg_encoding_with(m, MSG_SLOT_WS_DEFLATE, 0, tm_encode_with, &w), plain);
    assert_ptr_equal(msg_encoding_with(m, MSG_SLOT_WS_DEFLATE, 0, tm_encode_with, &w), plain);
    assert_int_equal(w.calls, 1);
    assert_int_equal(msg_bytes(m), b0);
    assert_int_equal(counter, c0);

    /* A buffer of its own is counted, once. */
    w.own = 1;
    rbuf_t *z = msg_encoding_with(m, MSG_SLOT_WS_DEFLATE, 1, tm_encode_with, &w);
    assert_non_null(z);
    assert_ptr_equal(msg_encoding_with(m, MSG_SLOT_WS_DEFLATE, 1, tm_encode_with, &w), z);
    assert_int_equal(w.calls, 2);
    assert_int_equal(msg_bytes(m), b0 + 2);
    assert_int_equal(counter, c0 + 2);
    /* Freeing drops both references of the shared one (ASan checks). */
    msg_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_copies_everything),
        cmocka_unit_test(test_new_bounds),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_encoding_cached_and_counted),
        cmocka_unit_test(test_encoding_with_context_and_shared),
    };
    return cmocka_run_group_tests_name("msg", tests, NULL, NULL);
}
