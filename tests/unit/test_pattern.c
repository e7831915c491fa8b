/* pattern: channel names, channel lists, globs with {user}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"

static void test_channel_valid(void **state)
{
    (void)state;
    char max[PAT_CHANNEL_MAX + 1];
    memset(max, 'a', sizeof(max));
    static const struct { const char *s; int want; } t[] = {
        { "news", 1 },
        { "user/alice/inbox", 1 },
        { "A-Z_a.z:0@9/", 1 },
        { "", 0 },
        { "a b", 0 },
        { "a,b", 0 },
        { "a*", 0 },
        { "a?", 0 },
        { "a[b]", 0 },
        { "{user}", 0 },
        { "a%2F", 0 },
        { "caf\xC3\xA9", 0 },
        { "a\\b", 0 },
        { "a\tb", 0 },
        { "a+b", 0 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (pat_channel_valid(t[i].s, strlen(t[i].s)) != t[i].want)
            fail_msg("case %zu (%s)", i, t[i].s);
    assert_int_equal(pat_channel_valid(max, PAT_CHANNEL_MAX), 1);
    assert_int_equal(pat_channel_valid(max, PAT_CHANNEL_MAX + 1), 0);
    assert_int_equal(pat_channel_valid("a\0b", 3), 0);
    /* len bounds the check. */
    assert_int_equal(pat_channel_valid("ab*", 2), 1);
}

static void test_split(void **state)
{
    (void)state;
    static const struct { const char *s; int max; int want; const char *names[4]; } t[] = {
        { "news", 4, 1, { "news" } },
        { "a,b,c", 4, 3, { "a", "b", "c" } },
        { "user/alice/inbox,news", 4, 2, { "user/alice/inbox", "news" } },
        { "a,b,c,d", 4, 4, { "a", "b", "c", "d" } },
        { "", 4, PAT_E_EMPTY, { NULL } },
        { ",", 4, PAT_E_EMPTY, { NULL } },
        { "a,", 4, PAT_E_EMPTY, { NULL } },
        { ",a", 4, PAT_E_EMPTY, { NULL } },
        { "a,,b", 4, PAT_E_EMPTY, { NULL } },
        { "a b", 4, PAT_E_NAME, { NULL } },
        { "a,b*", 4, PAT_E_NAME, { NULL } },
        { "a,b,c,d,e", 4, PAT_E_TOO_MANY, { NULL } },
        { "a,b", 1, PAT_E_TOO_MANY, { NULL } },
        { "a,b,a", 4, PAT_E_DUP, { NULL } },
        { "ab,a,ab", 4, PAT_E_DUP, { NULL } },
        { "a,ab,abc", 4, 3, { "a", "ab", "abc" } },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct str out[4];
        size_t len = strlen(t[i].s);
        /* Exact-size heap copy: an over-read trips ASan. */
        char *p = malloc(len ? len : 1);
        assert_non_null(p);
        memcpy(p, t[i].s, len);
        int r = pat_split_channels(p, len, out, t[i].max);
        if (r != t[i].want)
            fail_msg("case %zu (%s): got %d want %d", i, t[i].s, r, t[i].want);
        for (int j = 0; j < r; j++) {
            assert_int_equal(out[j].len, strlen(t[i].names[j]));
            assert_memory_equal(out[j].p, t[i].names[j], out[j].len);
            assert_true(out[j].p >= p && out[j].p + out[j].len <= p + len);
        }
        free(p);
    }
}

/* 32 names fit the default maximum, 33 do not; a 201-byte name is bad. */
static void test_split_limits(void **state)
{
    (void)state;
    char s[2048];
    struct str out[WSPUSH_MAX_CHANNELS];
    size_t n = 0;
    for (int i = 0; i < WSPUSH_MAX_CHANNELS; i++)
        n += (size_t)snprintf(s + n, sizeof(s) - n, "%sc%d", i ? "," : "", i);
    assert_int_equal(pat_split_channels(s, n, out, WSPUSH_MAX_CHANNELS), WSPUSH_MAX_CHANNELS);
    n += (size_t)snprintf(s + n, sizeof(s) - n, ",c%d", WSPUSH_MAX_CHANNELS);
    assert_int_equal(pat_split_channels(s, n, out, WSPUSH_MAX_CHANNELS), PAT_E_TOO_MANY);

    memset(s, 'x', PAT_CHANNEL_MAX + 1);
    assert_int_equal(pat_split_channels(s, PAT_CHANNEL_MAX, out, 1), 1);
    assert_int_equal(pat_split_channels(s, PAT_CHANNEL_MAX + 1, out, 1), PAT_E_NAME);
}

static void test_match(void **state)
{
    (void)state;
    static const struct { const char *pat, *user, *name; int want; } t[] = {
        { "news", NULL, "news", 1 },
        { "news", NULL, "news2", 0 },
        { "public/*", NULL, "public/x", 1 },
        { "public/*", NULL, "public/x/y", 0 },
        { "public/*", NULL, "public/", 1 },
        { "public/*/*", NULL, "public/x/y", 1 },
        { "*", NULL, "a/b", 0 },
        { "*", NULL, "ab", 1 },
        { "room-?", NULL, "room-1", 1 },
        { "room-?", NULL, "room-12", 0 },
        { "team/[ab]", NULL, "team/a", 1 },
        { "team/[ab]", NULL, "team/c", 0 },
        { "team/[!ab]", NULL, "team/c", 1 },
        { "user/{user}/*", "alice", "user/alice/inbox", 1 },
        { "user/{user}/*", "alice", "user/bob/inbox", 0 },
        { "user/{user}/*", "alice", "user/alice/a/b", 0 },
        { "user/{user}/*", NULL, "user/alice/inbox", 0 },
        { "user/{user}", "alice", "user/alice", 1 },
        { "{user}/{user}", "bo", "bo/bo", 1 },
        { "{user}/{user}", "bo", "bo/b", 0 },
        { "{user}", "a@b.example", "a@b.example", 1 },
        /* A user name that would widen the glob never matches. */
        { "user/{user}/*", "*", "user/alice/inbox", 0 },
        { "user/{user}/*", "*", "user/*/inbox", 0 },
        { "user/{user}/*", "a?", "user/ab/x", 0 },
        { "user/{user}/*", "[a]", "user/a/x", 0 },
        { "user/{user}/*", "a/b", "user/a/b/x", 0 },
        { "user/{user}/*", "a\\", "user/a/x", 0 },
        { "user/{user}/*", "{user}", "user/x/x", 0 },
        { "user/{user}/*", "a}", "user/a}/x", 0 },
        { "user/{user}/*", "", "user//x", 0 },
        /* A user name that can never be in a channel simply does not match. */
        { "user/{user}", "a b", "user/a", 0 },
        /* A "{" that is not {user} is a literal (and names cannot hold it). */
        { "a/{usr}", "x", "a/x", 0 },
        /* The name must be a valid channel. */
        { "*", NULL, "a b", 0 },
        { "*", NULL, "", 0 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int r = pat_match(t[i].pat, t[i].user, t[i].name, strlen(t[i].name));
        if (r != t[i].want)
            fail_msg("case %zu (%s, %s, %s): got %d", i, t[i].pat,
                     t[i].user ? t[i].user : "NULL", t[i].name, r);
    }
    /* Only len bytes of the name count. */
    assert_int_equal(pat_match("news", NULL, "newsroom", 4), 1);
    assert_int_equal(pat_match("news", NULL, "news\0x", 6), 0);
    /* A name at the length limit, with a long user. */
    char name[400], user[300];
    memset(user, 'u', sizeof(user));
    user[190] = '\0';
    snprintf(name, sizeof(name), "user/%s/ab", user);
    assert_int_equal(pat_match("user/{user}/*", user, name, strlen(name)), 1);
    user[190] = 'u';
    user[299] = '\0';
    assert_int_equal(pat_match("user/{user}/*", user, name, strlen(name)), 0);
    /* An expansion too long for the buffer is a non-match, not a crash. */
    assert_int_equal(pat_match("{user}{user}", user, "uu", 2), 0);
}

static void test_match_any(void **state)
{
    (void)state;
    char a[] = "public/*", b[] = "user/{user}/*";
    struct cfg_list l = { 2, { a, b } };
    struct cfg_list empty = { 0, { NULL } };
    assert_int_equal(pat_match_any(&l, "alice", "public/x", 8), 1);
    assert_int_equal(pat_match_any(&l, "alice", "user/alice/x", 12), 1);
    assert_int_equal(pat_match_any(&l, NULL, "user/alice/x", 12), 0);
    assert_int_equal(pat_match_any(&l, "bob", "user/alice/x", 12), 0);
    assert_int_equal(pat_match_any(&empty, "alice", "public/x", 8), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_valid),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_split_limits),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_match_any),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
