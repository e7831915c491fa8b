/* revoke: the rules of revoke.h (iat against the user's record and the
 * not-before time, undated tokens, the lifetime bound), expiry in age
 * order, a full table dropping its oldest record and failing closed, and
 * the file across two planned restarts in a row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "revoke.h"

#define S(x) ((struct str){ x, sizeof(x) - 1 })

static const struct revoke_limits tr_lim = { 1000, 10 };

static void test_rules(void **state)
{
    (void)state;
    revoke_t *r = revoke_new(&tr_lim, 99);      /* started at 100 */
    assert_non_null(r);
    /* Before any disconnect: dated after the start, within the lifetime. */
    assert_int_equal(revoke_check(r, S("alice"), 100, 200, 150), REVOKE_OK);
    assert_int_equal(revoke_check(r, S("alice"), 99, 200, 150), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("alice"), 100, 1101, 150), REVOKE_E_LIFETIME);
    assert_int_equal(revoke_check(r, S("alice"), 0, 1150, 150), REVOKE_OK);
    assert_int_equal(revoke_check(r, S("alice"), 0, 1151, 150), REVOKE_E_LIFETIME);
    /* Dated ahead of this clock: a little is skew, more is refused. */
    assert_int_equal(revoke_check(r, S("alice"), 150 + REVOKE_SKEW_S, 400, 150), REVOKE_OK);
    assert_int_equal(revoke_check(r, S("alice"), 151 + REVOKE_SKEW_S, 400, 150), REVOKE_E_FUTURE);
    /* disconnect alice at 200: hers up to 200 and undated ones refused. */
    assert_int_equal(revoke_user(r, S("alice"), 200), 0);
    assert_int_equal(revoke_check(r, S("alice"), 200, 300, 210), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("alice"), 0, 300, 210), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("alice"), 201, 300, 210), REVOKE_OK);
    assert_int_equal(revoke_check(r, S("bob"), 150, 300, 210), REVOKE_OK);
    assert_int_equal(revoke_check(r, S("bob"), 0, 300, 210), REVOKE_OK);
    /* The record lives lifetime_s after S, then undated tokens pass. */
    assert_int_equal(revoke_check(r, S("alice"), 0, 1300, 1200), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("alice"), 0, 1300, 1201), REVOKE_OK);
    assert_int_equal(revoke_count(r), 0);
    revoke_free(r);
}

static void test_expiry_in_age_order(void **state)
{
    (void)state;
    revoke_t *r = revoke_new(&tr_lim, 0);
    revoke_user(r, S("alice"), 100);
    revoke_user(r, S("carol"), 600);
    /* alice's record is past its lifetime although carol's is not. */
    assert_int_equal(revoke_check(r, S("alice"), 0, 1300, 1200), REVOKE_OK);
    assert_int_equal(revoke_check(r, S("carol"), 0, 1300, 1200), REVOKE_E_REVOKED);
    assert_int_equal(revoke_count(r), 1);
    /* A second disconnect of the same user moves it to the newest. */
    revoke_user(r, S("dave"), 1300);
    revoke_user(r, S("carol"), 1400);
    assert_int_equal(revoke_check(r, S("dave"), 0, 2300, 2299), REVOKE_E_REVOKED);
    /* dave (1300) has expired, carol (1400, the newest) has not. */
    assert_int_equal(revoke_check(r, S("carol"), 0, 2350, 2350), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("dave"), 0, 2350, 2350), REVOKE_OK);
    assert_int_equal(revoke_count(r), 1);
    revoke_free(r);
}

static void test_full_table_drops_the_oldest_and_fails_closed(void **state)
{
    (void)state;
    struct revoke_limits lim = { 1000, 2 };
    revoke_t *r = revoke_new(&lim, 0);
    revoke_user(r, S("a"), 10);
    revoke_user(r, S("b"), 20);
    revoke_user(r, S("c"), 30);
    assert_int_equal(revoke_count(r), 2);
    /* a's record (the oldest) went: everything dated up to 10 is refused. */
    assert_int_equal(revoke_not_before(r), 10);
    assert_int_equal(revoke_check(r, S("a"), 10, 100, 40), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("x"), 10, 100, 40), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("a"), 15, 100, 40), REVOKE_OK);
    assert_int_equal(revoke_check(r, S("b"), 15, 100, 40), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("c"), 25, 100, 40), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("c"), 31, 100, 40), REVOKE_OK);
    /* A smaller limit on reload does the same. */
    lim.max_users = 1;
    revoke_set_limits(r, &lim, 40);
    assert_int_equal(revoke_not_before(r), 20);
    assert_int_equal(revoke_count(r), 1);
    /* A longer lifetime: what was forgotten under the shorter one could
     * concern tokens it now lets live, so everything dated before now. */
    lim.lifetime_s = 5000;
    revoke_set_limits(r, &lim, 50);
    assert_int_equal(revoke_not_before(r), 50);
    revoke_free(r);
}

/* A floor from elsewhere (records dropped from a full set in Redis) only
 * ever rises, and refuses every token dated up to it. */
static void test_refuse_before(void **state)
{
    (void)state;
    revoke_t *r = revoke_new(&tr_lim, 99);
    revoke_refuse_before(r, 150);
    assert_int_equal(revoke_not_before(r), 150);
    revoke_refuse_before(r, 120);
    assert_int_equal(revoke_not_before(r), 150);
    assert_int_equal(revoke_check(r, (struct str){ "u", 1 }, 150, 400, 200), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, (struct str){ "u", 1 }, 151, 400, 200), REVOKE_OK);
    revoke_free(r);
}

/* Records restored from Redis keep their own second (a disconnect by
 * this process is always the newest), stay in age order for expiry and
 * the full-table rule, and never lower a newer record. */
static void test_restored_records_keep_their_second(void **state)
{
    (void)state;
    struct revoke_limits lim = { 1000, 3 };
    revoke_t *r = revoke_new(&lim, 499);       /* started at 500 */
    revoke_user(r, S("new"), 520);             /* heard live before the load */
    assert_int_equal(revoke_restore_user(r, S("old"), 300, 530), 0);
    assert_int_equal(revoke_restore_user(r, S("mid"), 400, 530), 0);
    assert_int_equal(revoke_restore_user(r, S("new"), 450, 530), 0);   /* older: ignored */
    assert_int_equal(revoke_restore_user(r, S("gone"), 20, 1030), 0);  /* expired: ignored */
    assert_int_equal(revoke_count(r), 3);
    assert_int_equal(revoke_check(r, S("old"), 301, 900, 530), REVOKE_E_REVOKED); /* start bound */
    assert_int_equal(revoke_is_revoked(r, S("old"), 300), 1);
    assert_int_equal(revoke_is_revoked(r, S("old"), 301), 0);
    assert_int_equal(revoke_is_revoked(r, S("new"), 520), 1);
    assert_int_equal(revoke_is_revoked(r, S("bob"), 0), 0);
    assert_int_equal(revoke_is_revoked(r, S("mid"), 0), 1);
    /* Redis holds every revocation since 100: the start no longer bounds
     * tokens, the records do. */
    assert_int_equal(revoke_restored(r, 0, 100), 1);
    assert_int_equal(revoke_not_before(r), 100);
    assert_int_equal(revoke_check(r, S("old"), 301, 900, 530), REVOKE_OK);
    assert_int_equal(revoke_check(r, S("old"), 300, 900, 530), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("mid"), 400, 900, 530), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("new"), 500, 900, 530), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("bob"), 101, 900, 530), REVOKE_OK);
    assert_int_equal(revoke_check(r, S("bob"), 100, 900, 530), REVOKE_E_REVOKED);
    /* A later load from a server that holds them only since 510 (it lost
     * some) does not raise the bound: this process heard everything since;
     * its floor (records dropped from a full set) does raise it. */
    assert_int_equal(revoke_restored(r, 200, 510), 0);
    assert_int_equal(revoke_not_before(r), 200);
    /* The oldest restored record is dropped first when the table is full. */
    revoke_user(r, S("x"), 540);
    assert_int_equal(revoke_not_before(r), 300);
    assert_int_equal(revoke_is_revoked(r, S("old"), 1), 0);
    assert_int_equal(revoke_is_revoked(r, S("mid"), 400), 1);
    /* mid (400) expires before new (520). */
    assert_int_equal(revoke_check(r, S("mid"), 0, 1450, 1450), REVOKE_OK);
    assert_int_equal(revoke_check(r, S("new"), 0, 1450, 1450), REVOKE_E_REVOKED);
    revoke_free(r);
}

/* A load from a server that holds the records only since after this start
 * keeps the start bound. */
static void test_restored_since_after_the_start(void **state)
{
    (void)state;
    revoke_t *r = revoke_new(&tr_lim, 499);
    assert_int_equal(revoke_restored(r, 0, 600), 0);
    assert_int_equal(revoke_not_before(r), 499);
    assert_int_equal(revoke_check(r, S("u"), 499, 900, 700), REVOKE_E_REVOKED);
    assert_int_equal(revoke_check(r, S("u"), 500, 900, 700), REVOKE_OK);
    revoke_free(r);
}

static void test_file_across_two_restarts(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_revoke.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64], err[256];
    snprintf(path, sizeof(path), "%s/r", dir);
    revoke_t *r = revoke_new(&tr_lim, 50);
    revoke_user(r, S("alice"), 100);
    revoke_user(r, S("bob"), 200);
    revoke_user(r, S("alice"), 300);       /* alice again: now the newest */
    for (int round = 0; round < 2; round++) {
        assert_int_equal(revoke_save(r, path, err, sizeof(err)), 0);
        revoke_free(r);
        r = revoke_new(&tr_lim, 900);
        assert_int_equal(revoke_load(r, path, 400, err, sizeof(err)), 0);
        assert_int_equal(revoke_count(r), 2);
        assert_int_equal(revoke_not_before(r), 50);
        assert_int_equal(revoke_check(r, S("alice"), 300, 1000, 400), REVOKE_E_REVOKED);
        assert_int_equal(revoke_check(r, S("alice"), 301, 1000, 400), REVOKE_OK);
        assert_int_equal(revoke_check(r, S("bob"), 200, 1000, 400), REVOKE_E_REVOKED);
        assert_int_equal(revoke_check(r, S("carol"), 60, 1000, 400), REVOKE_OK);
    }
    /* Expired records are dropped on load; bob's goes first. */
    assert_int_equal(revoke_save(r, path, err, sizeof(err)), 0);
    revoke_t *later = revoke_new(&tr_lim, 0);
    assert_int_equal(revoke_load(later, path, 1250, err, sizeof(err)), 0);
    assert_int_equal(revoke_count(later), 1);
    revoke_free(later);
    /* A corrupt file changes nothing. */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 30, SEEK_SET);
    fputc('X', f);
    fclose(f);
    later = revoke_new(&tr_lim, 77);
    assert_int_equal(revoke_load(later, path, 400, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "checksum"));
    assert_int_equal(revoke_not_before(later), 77);
    assert_int_equal(revoke_count(later), 0);
    revoke_free(later);
    revoke_free(r);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_expiry_in_age_order),
        cmocka_unit_test(test_full_table_drops_the_oldest_and_fails_closed),
        cmocka_unit_test(test_file_across_two_restarts),
        cmocka_unit_test(test_refuse_before),
        cmocka_unit_test(test_restored_records_keep_their_second),
        cmocka_unit_test(test_restored_since_after_the_start),
    };
    return cmocka_run_group_tests_name("revoke", tests, NULL, NULL);
}
