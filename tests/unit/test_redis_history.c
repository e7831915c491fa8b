/* redis_history: reading the history script's answer (stream entries of
 * hiredis replies built here by hand) and the gap rule the Redis engine
 * resets channels by. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "redis_history.h"

/* A small arena of replies: no frees needed per test. */
static redisReply pool[256];
static redisReply *ptrs[256];
static int npool, nptrs;

static redisReply *rstr(const char *s)
{
    assert_true(npool < (int)(sizeof(pool) / sizeof(pool[0])));
    redisReply *r = &pool[npool++];
    memset(r, 0, sizeof(*r));
    r->type = REDIS_REPLY_STRING;
    r->str = (char *)s;
    r->len = strlen(s);
    return r;
}

static redisReply *rarr(int n, ...)
{
    assert_true(npool < (int)(sizeof(pool) / sizeof(pool[0])));
    redisReply *r = &pool[npool++];
    memset(r, 0, sizeof(*r));
    r->type = REDIS_REPLY_ARRAY;
    r->elements = (size_t)n;
    assert_true(nptrs + n <= (int)(sizeof(ptrs) / sizeof(ptrs[0])));
    r->element = &ptrs[nptrs];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        ptrs[nptrs++] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

static void reset_pool(void) { npool = nptrs = 0; }

static redisReply *entry(const char *sid, const char *prev, const char *data)
{
    return rarr(2, rstr(sid), rarr(4, rstr("p"), rstr(prev), rstr("d"), rstr(data)));
}

static void test_stream_id(void **state)
{
    (void)state;
    struct msgid m;
    assert_int_equal(redis_history_stream_id("1700000000-42", 13, &m), 0);
    assert_int_equal(m.epoch, 1700000000u);
    assert_true(m.seq == 42);
    static const char *const bad[] = { "", "-1", "1-", "a-1", "1-1x", "4294967296-1", "1_1" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (redis_history_stream_id(bad[i], strlen(bad[i]), &m) == 0)
            fail_msg("'%s' accepted", bad[i]);
}

static void test_entries(void **state)
{
    (void)state;
    reset_pool();
    struct redis_entry *e;
    size_t n;
    redisReply *ok = rarr(2, entry("26-5", "1a-3", "{\"a\":1}"), entry("26-6", "1a-5", "2"));
    assert_int_equal(redis_history_entries(ok, &e, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(e[0].id.epoch, 26);
    assert_true(e[0].has_prev && e[0].prev.seq == 3 && e[0].prev.epoch == 26);
    assert_int_equal(e[1].data.len, 1);
    free(e);
    /* The channel's first message: no prev. */
    redisReply *first = rarr(1, entry("26-1", "", "1"));
    assert_int_equal(redis_history_entries(first, &e, &n), 0);
    assert_false(e[0].has_prev);
    free(e);
    redisReply *none = rarr(0);
    assert_int_equal(redis_history_entries(none, &e, &n), 0);
    assert_int_equal(n, 0);
    assert_null(e);
    /* Refused: not an array, a bad id, a bad prev, no data, a prev not
     * before its entry, ids not increasing, a seq 0 (the last three found
     * by fuzz_redis_history). */
    redisReply *bad[] = { rstr("x"), rarr(1, entry("x-1", "", "1")), rarr(1, entry("26-1", "zz", "1")),
                          rarr(1, rarr(2, rstr("26-1"), rarr(2, rstr("p"), rstr("")))),
                          rarr(1, entry("26-5", "1a-6", "1")), rarr(1, entry("26-5", "1a-5", "1")),
                          rarr(2, entry("26-6", "", "1"), entry("26-5", "", "2")),
                          rarr(1, entry("26-0", "", "1")) };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (redis_history_entries(bad[i], &e, &n) == 0)
            fail_msg("bad answer %zu accepted", i);
}

static void test_head_and_last(void **state)
{
    (void)state;
    reset_pool();
    uint32_t epoch;
    uint64_t seq;
    int has;
    assert_int_equal(redis_history_head(rarr(3, rstr("26-7"), rstr(""), rarr(0)), 1, &epoch, &has,
                                        &seq), 0);
    assert_true(has && epoch == 26 && seq == 7);
    assert_int_equal(redis_history_head(rarr(3, rstr(""), rstr(""), rarr(0)), 1, &epoch, &has,
                                        &seq), 0);
    assert_false(has);
    assert_int_equal(redis_history_head(rarr(3, rstr("26-7"), rstr(""), rarr(0)), 2, &epoch, &has,
                                        &seq), -1);
    /* 19 digits fit; a zero alone is a number. */
    assert_int_equal(redis_history_head(rarr(3, rstr("4294967295-9999999999999999999"), rstr(""),
                                             rarr(0)), 1, &epoch, &has, &seq), 0);
    assert_true(has && epoch == UINT32_MAX && seq == 9999999999999999999ULL);
    assert_int_equal(redis_history_head(rarr(3, rstr("0-0"), rstr(""), rarr(0)), 1, &epoch, &has,
                                        &seq), 0);
    assert_true(has && epoch == 0 && seq == 0);
    /* Strict: both numbers, one dash, nothing else, an epoch of 32 bits,
     * at most 19 digits, no leading zero (never how the script writes). */
    static const char *const bad[] = { "26", "26-", "-7", "26-7x", "26--7", "4294967296-1",
                                       "26-12345678901234567890", "26-00000000000000000007",
                                       "026-7", "26-07", "26-00", " 26-7", "26-+7" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(redis_history_head(rarr(3, rstr(bad[i]), rstr(""), rarr(0)), 1, &epoch,
                                            &has, &seq), -1);
    struct msgid last;
    assert_int_equal(redis_history_last(rstr("1a-9"), &last), 1);
    assert_true(last.seq == 9);
    assert_int_equal(redis_history_last(rstr(""), &last), 0);
}

/* The gap rule: the entries after `after` must start right after it. */
static void test_continuous(void **state)
{
    (void)state;
    struct msgid a5 = { 26, 5 }, a7 = { 26, 7 }, zero = { 0, 0 }, old = { 25, 9 };
    struct redis_entry follows[] = { { { 26, 7 }, 1, { 26, 5 }, { "1", 1 } } };
    struct redis_entry skipped[] = { { { 26, 9 }, 1, { 26, 7 }, { "1", 1 } } };
    struct redis_entry first[] = { { { 26, 1 }, 0, { 0, 0 }, { "1", 1 } } };
    /* entries chain on: fine; one trimmed between: gap */
    assert_true(redis_history_continuous(26, 1, 1, a5, 1, a7, follows, 1));
    assert_false(redis_history_continuous(26, 1, 1, a5, 1, (struct msgid){ 26, 9 }, skipped, 1));
    /* a prev older than after (after is a node's mark, not on this channel) */
    assert_true(redis_history_continuous(26, 1, 1, (struct msgid){ 26, 6 }, 1, a7, follows, 1));
    /* nothing after: fine when the channel's last is not past it */
    assert_true(redis_history_continuous(26, 1, 1, a7, 1, a7, NULL, 0));
    assert_false(redis_history_continuous(26, 1, 1, a5, 1, a7, NULL, 0));  /* history off, or trimmed */
    assert_true(redis_history_continuous(26, 1, 1, a5, 0, zero, NULL, 0)); /* channel never used */
    /* another epoch, or the epoch gone: writes may be lost */
    assert_false(redis_history_continuous(26, 1, 1, old, 0, zero, NULL, 0));
    assert_false(redis_history_continuous(26, 0, 1, a5, 0, zero, NULL, 0));
    /* "nothing yet": the whole life, from the channel's first message */
    assert_true(redis_history_continuous(26, 1, 1, zero, 1, a7, first, 1));
    assert_false(redis_history_continuous(26, 1, 1, zero, 1, a7, follows, 1));
    assert_true(redis_history_continuous(26, 0, 1, (struct msgid){ 25, 0 }, 0, zero, NULL, 0));
    /* An epoch older than the last-id keys live: nothing on record may be
     * keys expired, not a channel never used. */
    struct redis_entry unchained[] = { { { 26, 6 }, 0, { 0, 0 }, { "1", 1 } } };
    assert_false(redis_history_continuous(26, 1, 0, a5, 0, zero, NULL, 0));
    assert_false(redis_history_continuous(26, 1, 0, a5, 1, a7, unchained, 1));
    assert_false(redis_history_continuous(26, 1, 0, zero, 0, zero, NULL, 0));
    assert_true(redis_history_continuous(26, 1, 0, a5, 1, a7, follows, 1));   /* the chain still holds */
    assert_true(redis_history_continuous(26, 1, 0, a7, 1, a7, NULL, 0));
}

/* From a node's own last copy: only the chain of previous ids counts, in
 * any epoch; nothing on record proves nothing. */
static void test_follows(void **state)
{
    (void)state;
    struct msgid a5 = { 26, 5 }, a7 = { 26, 7 }, zero = { 0, 0 };
    struct redis_entry next[] = { { { 26, 6 }, 1, { 26, 5 }, { "1", 1 } } };
    struct redis_entry gap[] = { { { 26, 8 }, 1, { 26, 7 }, { "1", 1 } } };
    struct redis_entry unchained[] = { { { 26, 6 }, 0, { 0, 0 }, { "1", 1 } } };
    struct redis_entry next_epoch[] = { { { 27, 1 }, 1, { 26, 5 }, { "1", 1 } } };
    assert_true(redis_history_follows(26, 1, a5, 1, (struct msgid){ 26, 6 }, next, 1));
    assert_false(redis_history_follows(26, 1, a5, 1, (struct msgid){ 26, 8 }, gap, 1));
    assert_false(redis_history_follows(26, 1, a5, 1, (struct msgid){ 26, 6 }, unchained, 1));
    assert_true(redis_history_follows(26, 1, a7, 1, a7, NULL, 0));
    assert_false(redis_history_follows(26, 1, a5, 1, a7, NULL, 0));   /* trimmed, or history off */
    assert_false(redis_history_follows(26, 1, a5, 0, zero, NULL, 0)); /* no last id: lost or expired */
    /* Another epoch: the new server may lack a copy this node missed,
     * whatever its chain says; the epoch gone: the same. */
    assert_false(redis_history_follows(27, 1, a5, 1, (struct msgid){ 27, 1 }, next_epoch, 1));
    assert_false(redis_history_follows(27, 1, a5, 1, a5, NULL, 0));
    assert_false(redis_history_follows(26, 0, a5, 1, a5, NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_id),
        cmocka_unit_test(test_entries),
        cmocka_unit_test(test_head_and_last),
        cmocka_unit_test(test_continuous),
        cmocka_unit_test(test_follows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
