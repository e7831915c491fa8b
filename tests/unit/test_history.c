/* history: eviction by count/bytes/ttl, the gap rule, merge order of
 * replays, and the save/load round trip with corrupt files refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "channel.h"
#include "history.h"

struct seen { int n; char text[64][16]; };

static void test_visit(rbuf_t *frame, void *arg)
{
    struct seen *s = arg;
    snprintf(s->text[s->n++], 16, "%.*s", (int)rbuf_len(frame), (const char *)rbuf_data(frame));
}

static struct channel *test_chan(chan_registry_t *reg, const char *name)
{
    return chan_lookup(reg, name, strlen(name), 1);
}

static void test_add(history_t *h, struct channel *ch, uint64_t seq, const char *text, uint64_t now)
{
    rbuf_t *r = rbuf_from(text, strlen(text));
    assert_int_equal(history_append(h, ch, seq, r, now), 0);
    rbuf_unref(r);
}

static void test_replay_merges_in_seq_order(void **state)
{
    (void)state;
    chan_registry_t *reg = chan_registry_new();
    struct history_limits lim = { 100, 1 << 20, 0 };
    history_t *h = history_new(reg, &lim);
    struct channel *a = test_chan(reg, "a"), *b = test_chan(reg, "b"), *c = test_chan(reg, "c");
    test_add(h, a, 1, "a1", 0);
    test_add(h, b, 2, "b2", 0);
    test_add(h, c, 3, "c3", 0);
    test_add(h, a, 4, "a4", 0);
    test_add(h, b, 5, "b5", 0);
    struct channel *chs[] = { b, a };
    struct seen s = { 0 };
    assert_int_equal(history_replay(h, chs, 2, 1, test_visit, &s), 3);
    assert_string_equal(s.text[0], "b2");
    assert_string_equal(s.text[1], "a4");
    assert_string_equal(s.text[2], "b5");
    assert_true(history_can_resume(h, a, 0));
    history_free(h);
    chan_registry_free(reg);
}

static void test_eviction_and_gap_rule(void **state)
{
    (void)state;
    chan_registry_t *reg = chan_registry_new();
    struct history_limits lim = { 3, 1 << 20, 0 };
    history_t *h = history_new(reg, &lim);
    struct channel *a = test_chan(reg, "a"), *b = test_chan(reg, "b");
    test_add(h, a, 1, "a1", 0);
    test_add(h, b, 2, "b2", 0);
    test_add(h, b, 3, "b3", 0);
    test_add(h, b, 4, "b4", 0);      /* evicts a1: a's record goes away */
    assert_int_equal(history_entries(h), 3);
    /* a lost seq 1: resuming after 0 is a gap, after 1 is fine. Its record
     * is gone, so the global rule (highest evicted = 1) decides. */
    struct channel *a2 = chan_lookup(reg, "a", 1, 0);
    assert_false(history_can_resume(h, a2, 0));
    assert_true(history_can_resume(h, a2, 1));
    test_add(h, b, 5, "b5", 0);      /* evicts b2 */
    assert_false(history_can_resume(h, b, 1));
    assert_true(history_can_resume(h, b, 2));
    /* Bytes: a limit of 4 bytes keeps two 2-byte frames. */
    struct history_limits small = { 100, 4, 0 };
    history_set_limits(h, &small, 0);
    assert_int_equal(history_entries(h), 2);
    /* TTL: entries at t=0 are gone at t=1000 with a 1 s ttl. */
    struct history_limits ttl = { 100, 1 << 20, 1000 };
    history_set_limits(h, &ttl, 999);
    assert_int_equal(history_entries(h), 2);
    history_expire(h, 1000);
    assert_int_equal(history_entries(h), 0);
    assert_false(history_can_resume(h, NULL, 4));
    assert_true(history_can_resume(h, NULL, 5));
    history_free(h);
    chan_registry_free(reg);
}

static void test_disabled_history_loses_everything(void **state)
{
    (void)state;
    chan_registry_t *reg = chan_registry_new();
    struct history_limits lim = { 0, 1 << 20, 0 };
    history_t *h = history_new(reg, &lim);
    struct channel *a = test_chan(reg, "a");
    test_add(h, a, 1, "a1", 0);
    assert_int_equal(history_entries(h), 0);
    assert_false(history_can_resume(h, a, 0));
    assert_true(history_can_resume(h, a, 1));
    history_free(h);
    chan_release(reg, a);
    assert_int_equal(chan_registry_size(reg), 0);
    chan_registry_free(reg);
}

static void test_save_load_round_trip_and_corruption(void **state)
{
    (void)state;
    char dir[] = "/tmp/wspush-hist-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/h.bin", dir);
    chan_registry_t *reg = chan_registry_new();
    struct history_limits lim = { 100, 1 << 20, 0 };
    history_t *h = history_new(reg, &lim);
    test_add(h, test_chan(reg, "x"), 7, "x7", 100);
    test_add(h, test_chan(reg, "y"), 9, "y9", 100);
    char err[256];
    assert_int_equal(history_save(h, path, 0xabc, 9, 150, err, sizeof(err)), 0);
    history_free(h);
    chan_registry_free(reg);

    reg = chan_registry_new();
    h = history_new(reg, &lim);
    uint32_t epoch = 0;
    uint64_t seq = 0;
    assert_int_equal(history_load(h, path, &epoch, &seq, 1000, err, sizeof(err)), 0);
    assert_int_equal(epoch, 0xabc);
    assert_int_equal(seq, 9);
    assert_int_equal(history_entries(h), 2);
    struct channel *chs[] = { chan_lookup(reg, "x", 1, 0), chan_lookup(reg, "y", 1, 0) };
    struct seen s = { 0 };
    assert_int_equal(history_replay(h, chs, 2, 0, test_visit, &s), 2);
    assert_string_equal(s.text[0], "x7");
    assert_string_equal(s.text[1], "y9");
    history_free(h);
    chan_registry_free(reg);

    /* Every truncation and a flipped byte anywhere are refused cleanly. */
    FILE *f = fopen(path, "rb");
    unsigned char good[512];
    size_t len = fread(good, 1, sizeof(good), f);
    fclose(f);
    for (size_t cut = 0; cut <= len; cut++) {
        for (int flip = 0; flip < 2; flip++) {
            if (cut == len && !flip)
                continue;
            unsigned char bad[512];
            memcpy(bad, good, len);
            size_t n = flip ? len : cut;
            if (flip && cut < len)
                bad[cut] ^= 0x40;
            else if (flip)
                continue;
            f = fopen(path, "wb");
            fwrite(bad, 1, n, f);
            fclose(f);
            reg = chan_registry_new();
            h = history_new(reg, &lim);
            assert_int_equal(history_load(h, path, &epoch, &seq, 1000, err, sizeof(err)), -1);
            assert_int_equal(history_entries(h), 0);
            history_free(h);
            chan_registry_free(reg);
        }
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_merges_in_seq_order),
        cmocka_unit_test(test_eviction_and_gap_rule),
        cmocka_unit_test(test_disabled_history_loses_everything),
        cmocka_unit_test(test_save_load_round_trip_and_corruption),
    };
    return cmocka_run_group_tests_name("history", tests, NULL, NULL);
}
