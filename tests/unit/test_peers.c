/* peers: which addresses count together (IPv4 whole, IPv6 per /64,
 * IPv4-mapped as IPv4), the trusted list (addresses and prefixes of both
 * families), counts through hold and release, and a table that grows to
 * thousands of addresses and empties again. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#include "peers.h"

struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

static struct addr tp_addr(const char *s)
{
    struct addr a;
    memset(&a, 0, sizeof(a));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&a.ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a.ss;
    if (inet_pton(AF_INET, s, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(40000);
        a.len = sizeof(*v4);
    } else {
        assert_int_equal(inet_pton(AF_INET6, s, &v6->sin6_addr), 1);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(40001);
        a.len = sizeof(*v6);
    }
    return a;
}

static struct peer *tp_hold(peers_t *ps, const char *s, uint32_t *n)
{
    struct addr a = tp_addr(s);
    return peers_hold(ps, (struct sockaddr *)&a.ss, a.len, n);
}

static void tp_list(struct cfg_list *l, const char *const *items, int n)
{
    memset(l, 0, sizeof(*l));
    for (int i = 0; i < n; i++)
        l->items[i] = (char *)items[i];
    l->n = n;
}

/* Each row: two addresses, and whether they count as one. */
static void test_keys(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b;
        int same;
    } rows[] = {
        { "192.0.2.1", "192.0.2.1", 1 },
        { "192.0.2.1", "192.0.2.2", 0 },
        { "10.0.0.1", "10.0.1.1", 0 },
        { "2001:db8:1:2::1", "2001:db8:1:2::2", 1 },
        { "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", 1 },
        { "2001:db8:1:2::1", "2001:db8:1:3::1", 0 },
        { "2001:db8::1", "2001:db9::1", 0 },
        { "::ffff:192.0.2.7", "192.0.2.7", 1 },
        { "::ffff:192.0.2.7", "::ffff:192.0.2.8", 0 },
        { "::1", "::2", 1 },            /* the same /64 (::/64) */
        { "192.0.2.9", "::c000:209", 0 },   /* IPv4-compatible is not IPv4 */
    };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        peers_t *ps = peers_new();
        assert_non_null(ps);
        uint32_t n1, n2;
        struct peer *p1 = tp_hold(ps, rows[r].a, &n1);
        struct peer *p2 = tp_hold(ps, rows[r].b, &n2);
        assert_non_null(p1);
        assert_non_null(p2);
        assert_int_equal(n1, 1);
        if (rows[r].same) {
            if (p1 != p2 || n2 != 2)
                fail_msg("%s and %s should count as one", rows[r].a, rows[r].b);
            assert_int_equal(peers_size(ps), 1);
        } else {
            if (p1 == p2 || n2 != 1)
                fail_msg("%s and %s should count apart", rows[r].a, rows[r].b);
            assert_int_equal(peers_size(ps), 2);
        }
        peers_release(ps, p1);
        peers_release(ps, p2);
        assert_int_equal(peers_size(ps), 0);
        peers_free(ps);
    }
}

static void test_trusted(void **state)
{
    (void)state;
    static const char *const list[] = { "127.0.0.1", "10.1.0.0/16", "2001:db8:aa::/48", "::1",
                                        "192.0.2.128/25", "0.0.0.0/0x" };
    static const struct {
        const char *addr;
        int trusted;
    } rows[] = {
        { "127.0.0.1", 1 }, { "127.0.0.2", 0 },
        { "10.1.0.0", 1 }, { "10.1.255.255", 1 }, { "10.2.0.0", 0 }, { "10.0.255.255", 0 },
        { "::ffff:10.1.2.3", 1 },                 /* mapped: matched as IPv4 */
        { "2001:db8:aa:ffff::1", 1 }, { "2001:db8:ab::1", 0 },
        { "::1", 1 }, { "::2", 0 },
        { "192.0.2.128", 1 }, { "192.0.2.255", 1 }, { "192.0.2.127", 0 },
    };
    peers_t *ps = peers_new();
    assert_non_null(ps);
    struct cfg_list l;
    tp_list(&l, list, 6);
    assert_int_equal(peers_set_trusted(ps, &l), -EINVAL);   /* the last one is left out */
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        uint32_t n = 99;
        struct peer *p = tp_hold(ps, rows[r].addr, &n);
        if (rows[r].trusted != (p == NULL))
            fail_msg("%s: trusted %d expected", rows[r].addr, rows[r].trusted);
        if (p) {
            assert_int_equal(n, 1);
            peers_release(ps, p);
        } else {
            assert_int_equal(n, 0);
        }
    }
    /* A reload may drop the list: the same address now counts. */
    tp_list(&l, list, 0);
    assert_int_equal(peers_set_trusted(ps, &l), 0);
    uint32_t n;
    struct peer *p = tp_hold(ps, "127.0.0.1", &n);
    assert_non_null(p);
    peers_release(ps, p);
    /* Everything trusted: 0.0.0.0/0 and ::/0. */
    static const char *const all[] = { "0.0.0.0/0", "::/0" };
    tp_list(&l, all, 2);
    assert_int_equal(peers_set_trusted(ps, &l), 0);
    assert_null(tp_hold(ps, "203.0.113.5", &n));
    assert_null(tp_hold(ps, "2001:db8::5", &n));
    peers_free(ps);
}

/* Not IPv4 or IPv6 (a Unix socket): never counted. */
static void test_other_family(void **state)
{
    (void)state;
    peers_t *ps = peers_new();
    assert_non_null(ps);
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    uint32_t n = 7;
    assert_null(peers_hold(ps, (struct sockaddr *)&un, sizeof(un), &n));
    assert_int_equal(n, 0);
    struct addr a = tp_addr("192.0.2.1");
    assert_null(peers_hold(ps, (struct sockaddr *)&a.ss, 4, &n));   /* truncated */
    assert_int_equal(peers_size(ps), 0);
    peers_free(ps);
}

/* 5000 addresses, 3 connections each: counts exact through the table's
 * growth, and every entry gone after the last release. */
static void test_many(void **state)
{
    (void)state;
    enum { N = 5000, K = 3 };
    static struct peer *held[N][K];
    peers_t *ps = peers_new();
    assert_non_null(ps);
    char s[64];
    for (int k = 0; k < K; k++)
        for (int i = 0; i < N; i++) {
            if (i % 2)
                snprintf(s, sizeof(s), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
            else
                snprintf(s, sizeof(s), "2001:db8:%x:%x::%x", i, k, k + 1);
            uint32_t n;
            held[i][k] = tp_hold(ps, s, &n);
            assert_non_null(held[i][k]);
            /* An IPv6 /64 differs per k here: counted apart. */
            assert_int_equal(n, i % 2 ? (uint32_t)k + 1 : 1);
        }
    assert_int_equal(peers_size(ps), N / 2 + (N / 2) * K);
    for (int k = K - 1; k >= 0; k--)
        for (int i = 0; i < N; i++)
            peers_release(ps, held[i][k]);
    assert_int_equal(peers_size(ps), 0);
    peers_free(ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_trusted),
        cmocka_unit_test(test_other_family),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests_name("peers", tests, NULL, NULL);
}
