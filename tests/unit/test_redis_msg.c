/* redis_msg: the PUB/SUB copies and revocations nodes exchange, and the
 * id order (msgid.c) gap detection stands on. Every truncated prefix of a
 * good input is refused or decodes to a shorter data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "msgid.h"
#include "redis_msg.h"

#define S(x) ((struct str){ x, sizeof(x) - 1 })

static void test_msgid(void **state)
{
    (void)state;
    static const struct { const char *id; int ok; uint32_t e; uint64_t q; } t[] = {
        { "65f0a1b2-7", 1, 0x65f0a1b2, 7 }, { "0-0", 1, 0, 0 }, { "ffffffff-18446744073709551615", 0, 0, 0 },
        { "ffffffff-1844674407370955161", 1, 0xffffffff, 1844674407370955161ULL },
        { "1ffffffff-1", 0, 0, 0 }, { "0a-1", 0, 0, 0 }, { "a-01", 0, 0, 0 }, { "A-1", 0, 0, 0 },
        { "-1", 0, 0, 0 }, { "a-", 0, 0, 0 }, { "a", 0, 0, 0 }, { "a-1x", 0, 0, 0 }, { "", 0, 0, 0 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct msgid m;
        int rc = msgid_parse((struct str){ t[i].id, strlen(t[i].id) }, &m);
        if ((rc == 0) != t[i].ok)
            fail_msg("case %zu '%s': %d", i, t[i].id, rc);
        if (rc == 0) {
            assert_int_equal(m.epoch, t[i].e);
            assert_true(m.seq == t[i].q);
            char out[MSG_ID_MAX];
            msgid_format(m, out);
            assert_string_equal(out, t[i].id);
        }
    }
    struct msgid a = { 5, 9 }, b = { 5, 10 }, c = { 6, 1 };
    assert_int_equal(msgid_cmp(a, b), -1);
    assert_int_equal(msgid_cmp(b, a), 1);
    assert_int_equal(msgid_cmp(b, c), -1);   /* a later epoch wins over any seq */
    assert_int_equal(msgid_cmp(c, c), 0);
}

static void test_copy(void **state)
{
    (void)state;
    struct redis_msg m;
    const char good[] = "a-7\na-3\n{\"x\":\"1\\n2\"}";
    assert_int_equal(redis_msg_decode(good, sizeof(good) - 1, &m), 0);
    assert_int_equal(m.mid.epoch, 10);
    assert_true(m.mid.seq == 7 && m.mprev.seq == 3);
    assert_int_equal(m.data.len, strlen("{\"x\":\"1\\n2\"}"));
    /* data may hold LF itself (JSON whitespace): it is the rest. */
    const char lf[] = "a-7\n\n[1,\n2]";
    assert_int_equal(redis_msg_decode(lf, sizeof(lf) - 1, &m), 0);
    assert_int_equal(m.prev.len, 0);
    assert_int_equal(m.data.len, 6);
    static const char *const bad[] = {
        "a-7\na-7\n1",      /* prev not before id */
        "a-7\nb-1\n1",      /* prev after id (later epoch) */
        "a-0\n\n1",         /* seq 0 is "nothing yet" */
        "a-07\n\n1", "A-7\n\n1", "\n\n1", "a-7\n", "a-7\na-1\n", "a-7", "a-7\nx\n1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (redis_msg_decode(bad[i], strlen(bad[i]), &m) == 0)
            fail_msg("bad case %zu accepted", i);
    for (size_t n = 0; n < sizeof(good) - 1; n++) {
        int rc = redis_msg_decode(good, n, &m);
        assert_true(rc < 0 || m.data.len == n - (size_t)(m.data.p - good));
    }
}

static void test_revoke(void **state)
{
    (void)state;
    struct buf b = { 0 };
    char user[255];
    for (size_t i = 0; i < sizeof(user); i++)
        user[i] = (char)(i * 13);   /* LF and NUL included */
    assert_int_equal(redis_msg_encode_revoke(&b, 1767225600, (struct str){ user, sizeof(user) }), 0);
    long sec;
    struct str u;
    assert_int_equal(redis_msg_decode_revoke((const char *)buf_head(&b), buf_used(&b), &sec, &u), 0);
    assert_int_equal(sec, 1767225600);
    assert_int_equal(u.len, 255);
    assert_memory_equal(u.p, user, 255);
    buf_free(&b);
    static const struct str bad[] = { S("r\n0\nu"), S("r\n01\nu"), S("r\n1\n"), S("x\n1\nu"),
                                      S("r\n-1\nu"), S("r\n1099511627776\nu"), S("r1\nu"), S("r\n") };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (redis_msg_decode_revoke(bad[i].p, bad[i].len, &sec, &u) == 0)
            fail_msg("bad revoke %zu accepted", i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msgid),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_revoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
