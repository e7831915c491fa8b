/* channel: lookup through rehashing, O(1) swap-remove keeping every
 * member's index right, channels freed when empty unless pinned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "channel.h"

static void tc_check(struct channel *ch, struct chan_member *m, int n, const int *alive)
{
    uint32_t count = 0;
    for (int i = 0; i < n; i++) {
        if (!alive[i]) {
            assert_null(m[i].ch);
            continue;
        }
        count++;
        assert_ptr_equal(m[i].ch, ch);
        assert_ptr_equal(chan_owner(ch, m[i].idx), &m[i]);
    }
    assert_int_equal(chan_count(ch), count);
}

static void test_subscribe_unsubscribe_any_order(void **state)
{
    (void)state;
    chan_registry_t *reg = chan_registry_new();
    enum { N = 200 };
    struct chan_member m[N];
    int alive[N];
    struct channel *ch = chan_lookup(reg, "news", 4, 1);
    for (int i = 0; i < N; i++) {
        m[i] = (struct chan_member){ .owner = &m[i] };
        assert_int_equal(chan_subscribe(ch, &m[i]), 0);
        alive[i] = 1;
    }
    tc_check(ch, m, N, alive);
    /* Remove in a scattered order, checking the invariant each time. */
    for (int k = 0; k < N - 1; k++) {
        int i = (k * 37) % N;
        while (!alive[i])
            i = (i + 1) % N;
        chan_unsubscribe(reg, &m[i]);
        alive[i] = 0;
        tc_check(ch, m, N, alive);
    }
    assert_ptr_equal(chan_lookup(reg, "news", 4, 0), ch);
    for (int i = 0; i < N; i++)
        if (alive[i])
            chan_unsubscribe(reg, &m[i]);
    /* The last one out frees the channel. */
    assert_null(chan_lookup(reg, "news", 4, 0));
    assert_int_equal(chan_registry_size(reg), 0);
    chan_registry_free(reg);
}

static void test_lookup_through_rehash_and_pinning(void **state)
{
    (void)state;
    chan_registry_t *reg = chan_registry_new();
    char name[32];
    enum { N = 5000 };
    for (int i = 0; i < N; i++) {
        int n = snprintf(name, sizeof(name), "c/%d", i);
        struct channel *ch = chan_lookup(reg, name, (size_t)n, 1);
        assert_non_null(ch);
        assert_int_equal(chan_name_len(ch), (size_t)n);
        assert_string_equal(chan_name(ch), name);
        chan_pin(ch, 1);
    }
    assert_int_equal(chan_registry_size(reg), N);
    for (int i = 0; i < N; i++) {
        int n = snprintf(name, sizeof(name), "c/%d", i);
        struct channel *ch = chan_lookup(reg, name, (size_t)n, 0);
        assert_non_null(ch);
        assert_string_equal(chan_name(ch), name);
        /* Pinned: release keeps it; unpinned: release frees it. */
        chan_release(reg, ch);
        assert_ptr_equal(chan_lookup(reg, name, (size_t)n, 0), ch);
        chan_pin(ch, 0);
        chan_release(reg, ch);
        assert_null(chan_lookup(reg, name, (size_t)n, 0));
    }
    assert_int_equal(chan_registry_size(reg), 0);
    /* A prefix is another channel. */
    assert_null(chan_lookup(reg, "c/1", 2, 0));
    chan_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribe_unsubscribe_any_order),
        cmocka_unit_test(test_lookup_through_rehash_and_pinning),
    };
    return cmocka_run_group_tests_name("channel", tests, NULL, NULL);
}
