/* history: eviction by count, bytes (cached encodings included) and ttl; a
 * message on several channels kept once and evicted from every list; the
 * gap rule per channel and its global fallback; replay merge order and
 * max_bytes slices that continue with no duplicate and no gap; the
 * save/load round trip; and load refusing truncated, corrupt, format-1 and
 * invalid files (each entry validated) with the history left empty.
 *
 * Messages are written as "<channels>@<seq>" (channels comma-separated):
 * message seq S has id "e-S" and payload S, and a replay is recorded as
 * "<channel>:<seq>" per visit, space-separated. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "channel.h"
#include "history.h"
#include "msg.h"
#include "wspush.h"

#define TH_BIG (1L << 20)

/* Splits "a,b,c" into names pointing into s. */
static int th_split(const char *s, struct str *out)
{
    int n = 0;
    while (*s) {
        const char *c = strchr(s, ',');
        size_t len = c ? (size_t)(c - s) : strlen(s);
        assert_true(n < WSPUSH_MAX_CHANNELS);
        out[n++] = (struct str){ s, len };
        s += len + (c ? 1 : 0);
    }
    return n;
}

static struct msg *th_msg(const char *chans, uint64_t seq)
{
    char id[MSG_ID_MAX], data[32];
    snprintf(id, sizeof(id), "e-%llu", (unsigned long long)seq);
    snprintf(data, sizeof(data), "%llu", (unsigned long long)seq);
    struct str names[WSPUSH_MAX_CHANNELS];
    int n = th_split(chans, names);
    struct msg *m = msg_new((struct str){ id, strlen(id) }, names, n,
                            (struct str){ data, strlen(data) });
    assert_non_null(m);
    return m;
}

static void th_add(history_t *h, const char *chans, uint64_t seq, uint64_t now)
{
    struct msg *m = th_msg(chans, seq);
    assert_int_equal(history_append(h, m, seq, now), 0);
    msg_unref(m);
}

/* Appends "a@1 b@2 a,b@3 ..." at time now. */
static void th_fill(history_t *h, const char *script, uint64_t now)
{
    char copy[512];
    snprintf(copy, sizeof(copy), "%s", script);
    char *save = NULL;
    for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *at = strchr(tok, '@');
        assert_non_null(at);
        *at = '\0';
        th_add(h, tok, strtoull(at + 1, NULL, 10), now);
    }
}

struct th_seen {
    char        text[1024];
    size_t      bytes;       /* msg_bytes of every visit */
    int         visits;
    struct msg *first;       /* the first message visited */
    int         others;      /* visits of any other message */
};

static void th_visit(void *arg, struct msg *m, int chan)
{
    struct th_seen *s = arg;
    struct str name = msg_channel(m, chan), data = msg_data(m);
    size_t used = strlen(s->text);
    snprintf(s->text + used, sizeof(s->text) - used, "%s%.*s:%.*s", used ? " " : "",
             (int)name.len, name.p, (int)data.len, data.p);
    s->bytes += msg_bytes(m);
    s->visits++;
    if (!s->first)
        s->first = m;
    else if (s->first != m)
        s->others++;
}

/* The whole replay of chans after since, as text; asserts it is one slice. */
static const char *th_replay(const history_t *h, const char *chans, uint64_t since)
{
    static struct th_seen s;
    memset(&s, 0, sizeof(s));
    struct str names[WSPUSH_MAX_CHANNELS];
    int n = th_split(chans, names);
    uint64_t next = 12345;
    assert_int_equal(history_replay(h, names, n, since, 0, th_visit, &s, &next), 0);
    return s.text;
}

static int th_can(const history_t *h, const char *name, uint64_t since)
{
    return history_can_resume(h, (struct str){ name, strlen(name) }, since);
}

static void th_make_id(uint32_t epoch, uint64_t seq, char out[MSG_ID_MAX])
{
    snprintf(out, MSG_ID_MAX, "%x-%llu", (unsigned)epoch, (unsigned long long)seq);
}

struct th_env {
    chan_registry_t *reg;
    history_t       *h;
};

static struct th_env th_new(long max_entries, long max_bytes, uint64_t ttl_ms)
{
    struct history_limits lim = { max_entries, max_bytes, ttl_ms };
    struct th_env env;
    env.reg = chan_registry_new();
    assert_non_null(env.reg);
    env.h = history_new(env.reg, &lim);
    assert_non_null(env.h);
    return env;
}

static void th_free(struct th_env *env)
{
    history_free(env->h);
    /* Everything history pinned is released with it. */
    assert_int_equal(chan_registry_size(env->reg), 0);
    chan_registry_free(env->reg);
}

/* ---- replay order ---- */

static void test_replay_merges_in_seq_order(void **state)
{
    (void)state;
    static const struct {
        const char *chans;
        uint64_t    since;
        const char *want;
    } cases[] = {
        { "b,a",   1, "b:2 a:4 b:5 b:6 a:6 b:8" },
        { "a,b",   1, "b:2 a:4 b:5 a:6 b:6 b:8" },
        { "a",     0, "a:1 a:4 a:6" },
        { "c",     0, "c:3 c:7 c:8" },
        { "a,b,c", 0, "a:1 b:2 c:3 a:4 b:5 a:6 b:6 c:7 b:8 c:8" },
        { "c,a",   5, "a:6 c:7 c:8" },
        { "b,c",   7, "b:8 c:8" },
        { "a,b,c", 8, "" },
        { "zz",    0, "" },
        { "zz,a",  3, "a:4 a:6" },
    };
    struct th_env env = th_new(100, TH_BIG, 0);
    th_fill(env.h, "a@1 b@2 c@3 a@4 b@5 a,b@6 c@7 b,c@8", 0);
    assert_int_equal(history_entries(env.h), 8);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = th_replay(env.h, cases[i].chans, cases[i].since);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("replay %s after %llu: got \"%s\", want \"%s\"", cases[i].chans,
                     (unsigned long long)cases[i].since, got, cases[i].want);
    }
    assert_true(th_can(env.h, "a", 0));
    th_free(&env);
}

/* ---- eviction and the gap rule ---- */

static void test_eviction_by_count_and_gap_rule(void **state)
{
    (void)state;
    struct th_env env = th_new(3, TH_BIG, 0);
    th_fill(env.h, "a@1 b@2 b@3", 0);
    assert_non_null(chan_lookup(env.reg, "a", 1, 0));   /* pinned by its history */
    th_add(env.h, "b", 4, 0);                           /* evicts a@1 */
    assert_int_equal(history_entries(env.h), 3);
    /* a's record went with its last message: the channel is released, and
     * the global rule (highest evicted = 1) decides for it. */
    assert_null(chan_lookup(env.reg, "a", 1, 0));
    assert_false(th_can(env.h, "a", 0));
    assert_true(th_can(env.h, "a", 1));
    assert_true(th_can(env.h, "b", 0));                 /* b lost nothing yet */
    assert_string_equal(th_replay(env.h, "b", 0), "b:2 b:3 b:4");
    th_add(env.h, "b", 5, 0);                           /* evicts b@2 */
    assert_false(th_can(env.h, "b", 1));
    assert_true(th_can(env.h, "b", 2));
    assert_false(th_can(env.h, "never", 1));            /* global fallback: 2 */
    assert_true(th_can(env.h, "never", 2));
    th_free(&env);
}

static void test_gap_rule_per_channel(void **state)
{
    (void)state;
    /* a keeps history while losing its oldest: its own record (1) decides,
     * not the global one. */
    struct th_env env = th_new(3, TH_BIG, 0);
    th_fill(env.h, "a@1 a@2 b@3 b@4", 0);               /* evicts a@1 */
    assert_false(th_can(env.h, "a", 0));
    assert_true(th_can(env.h, "a", 1));
    assert_string_equal(th_replay(env.h, "a", 1), "a:2");
    th_add(env.h, "c", 5, 0);                           /* evicts a@2: a gone */
    assert_false(th_can(env.h, "a", 1));
    assert_true(th_can(env.h, "a", 2));
    assert_true(th_can(env.h, "b", 0));
    th_add(env.h, "b", 6, 0);                           /* evicts b@3 */
    assert_false(th_can(env.h, "b", 2));
    assert_true(th_can(env.h, "b", 3));
    /* c lost nothing; it came after evictions, so the rule may be
     * conservative for it before 3, never after. */
    assert_true(th_can(env.h, "c", 4));
    th_free(&env);
}

/* A channel whose history was entirely evicted loses its record; when it
 * gets a new message, the new record must start from what any channel
 * lost (h->evicted_max), or a page resuming from before the eviction is
 * told nothing is missing and silently misses a@1. */
static void test_gap_rule_channel_recreated_after_eviction(void **state)
{
    (void)state;
    struct th_env env = th_new(2, TH_BIG, 0);
    th_fill(env.h, "a@1 b@2 b@3", 0);                   /* evicts a@1 */
    assert_false(th_can(env.h, "a", 0));
    th_add(env.h, "a", 4, 0);                           /* evicts b@2 */
    assert_string_equal(th_replay(env.h, "a", 0), "a:4");
    /* Checked after the frees, so the failure leaks nothing. */
    int can0 = th_can(env.h, "a", 0), can1 = th_can(env.h, "a", 1);
    th_free(&env);
    assert_false(can0);                                 /* a@1 is lost */
    assert_true(can1);
}

static void test_eviction_by_bytes_and_ttl(void **state)
{
    (void)state;
    struct msg *probe = th_msg("a", 1);
    long one = (long)history_kept_bytes(probe);
    msg_unref(probe);
    /* Same-size messages ("a"/"b", one-digit seq): a limit of 2.5 times one
     * keeps two. */
    struct th_env env = th_new(100, one * 5 / 2, 0);
    th_fill(env.h, "a@1 b@2", 0);
    assert_int_equal(history_entries(env.h), 2);
    assert_int_equal(history_bytes(env.h), (size_t)(2 * one));
    th_add(env.h, "b", 3, 0);                           /* evicts a@1 */
    assert_int_equal(history_entries(env.h), 2);
    assert_int_equal(history_bytes(env.h), (size_t)(2 * one));
    assert_false(th_can(env.h, "a", 0));
    assert_string_equal(th_replay(env.h, "a,b", 0), "b:2 b:3");
    /* A message larger than max_bytes alone is not kept and counts as
     * evicted; what was held stays. */
    struct history_limits tight = { 100, one, 0 };
    history_set_limits(env.h, &tight, 0);               /* keeps b@3 */
    assert_int_equal(history_entries(env.h), 1);
    struct msg *big = th_msg("b", 1000);                /* 6 bytes longer */
    assert_int_equal(history_append(env.h, big, 4, 0), 0);
    msg_unref(big);
    assert_int_equal(history_entries(env.h), 1);
    assert_false(th_can(env.h, "b", 3));
    assert_true(th_can(env.h, "b", 4));
    assert_string_equal(th_replay(env.h, "b", 0), "b:3");

    /* TTL: kept at t=0, 999 ms later still there, gone at 1000 with 1 s. */
    struct history_limits ttl = { 100, TH_BIG, 1000 };
    history_set_limits(env.h, &ttl, 0);
    th_add(env.h, "c", 5, 500);
    history_set_limits(env.h, &ttl, 999);
    assert_int_equal(history_entries(env.h), 2);
    history_expire(env.h, 1000);                        /* b@3 (t=0) goes */
    assert_int_equal(history_entries(env.h), 1);
    assert_string_equal(th_replay(env.h, "b,c", 0), "c:5");
    history_expire(env.h, 1499);
    assert_int_equal(history_entries(env.h), 1);
    /* Expiry also happens on append. */
    th_add(env.h, "d", 6, 1500);
    assert_int_equal(history_entries(env.h), 1);
    assert_false(th_can(env.h, "c", 4));
    assert_true(th_can(env.h, "c", 5));
    history_expire(env.h, 5000);
    assert_int_equal(history_entries(env.h), 0);
    assert_int_equal(history_bytes(env.h), 0);
    assert_false(th_can(env.h, "d", 5));
    assert_true(th_can(env.h, "d", 6));
    th_free(&env);
}

static void test_disabled_history_loses_everything(void **state)
{
    (void)state;
    struct th_env env = th_new(0, TH_BIG, 0);
    th_add(env.h, "a", 1, 0);
    assert_int_equal(history_entries(env.h), 0);
    assert_int_equal(history_bytes(env.h), 0);
    assert_int_equal(chan_registry_size(env.reg), 0);   /* nothing pinned */
    assert_false(th_can(env.h, "a", 0));
    assert_true(th_can(env.h, "a", 1));
    assert_string_equal(th_replay(env.h, "a", 0), "");
    th_free(&env);
}

static void test_reset_forgets_everything(void **state)
{
    (void)state;
    struct th_env env = th_new(2, TH_BIG, 0);
    th_fill(env.h, "a@1 b@2 c@3", 0);
    assert_false(th_can(env.h, "x", 0));
    history_reset(env.h);
    assert_int_equal(history_entries(env.h), 0);
    assert_int_equal(history_bytes(env.h), 0);
    assert_int_equal(chan_registry_size(env.reg), 0);
    assert_true(th_can(env.h, "x", 0));
    assert_true(th_can(env.h, "a", 0));
    th_add(env.h, "a", 1, 0);                           /* seqs start over */
    assert_string_equal(th_replay(env.h, "a", 0), "a:1");
    th_free(&env);
}

/* ---- a message on several channels ---- */

static void test_multi_channel_message_kept_once(void **state)
{
    (void)state;
    struct th_env env = th_new(2, TH_BIG, 0);
    struct msg *m = th_msg("a,b,c", 1);
    assert_int_equal(history_append(env.h, m, 1, 0), 0);
    assert_int_equal(history_entries(env.h), 1);
    assert_int_equal(history_bytes(env.h), history_kept_bytes(m));
    assert_int_equal(chan_registry_size(env.reg), 3);
    assert_string_equal(th_replay(env.h, "c", 0), "c:1");
    assert_string_equal(th_replay(env.h, "b", 0), "b:1");
    assert_string_equal(th_replay(env.h, "c,a", 0), "c:1 a:1");
    th_add(env.h, "b", 2, 0);
    assert_int_equal(history_entries(env.h), 2);
    th_add(env.h, "d", 3, 0);                           /* evicts a,b,c@1 */
    assert_int_equal(history_entries(env.h), 2);
    /* Gone from every list: a and c held nothing else and are released. */
    assert_string_equal(th_replay(env.h, "a,b,c", 0), "b:2");
    assert_null(chan_lookup(env.reg, "a", 1, 0));
    assert_null(chan_lookup(env.reg, "c", 1, 0));
    assert_non_null(chan_lookup(env.reg, "b", 1, 0));
    assert_false(th_can(env.h, "a", 0));
    assert_false(th_can(env.h, "b", 0));
    assert_true(th_can(env.h, "b", 1));
    assert_false(th_can(env.h, "c", 0));
    /* history held its own reference: ours is still good. */
    assert_int_equal(msg_nchannels(m), 3);
    msg_unref(m);
    th_free(&env);
}

/* ---- bytes: cached encodings count ---- */

static int th_encodes;

static rbuf_t *th_encode(const struct msg *m, int chan)
{
    th_encodes++;
    rbuf_t *r = rbuf_new(msg_envelope_len(m, chan));
    if (r)
        msg_envelope(m, chan, rbuf_wdata(r));
    return r;
}

static void test_bytes_count_encodings_made_after_append(void **state)
{
    (void)state;
    struct th_env env = th_new(10, TH_BIG, 0);
    struct msg *m = th_msg("a,b", 1);
    assert_int_equal(history_append(env.h, m, 1, 0), 0);
    size_t b0 = history_bytes(env.h);
    assert_int_equal(b0, history_kept_bytes(m));
    th_encodes = 0;
    rbuf_t *r = msg_encoding(m, MSG_SLOT_WS, 1, th_encode);
    assert_non_null(r);
    size_t b1 = history_bytes(env.h);
    assert_true(b1 >= b0 + rbuf_len(r));
    assert_int_equal(b1, history_kept_bytes(m));
    assert_ptr_equal(msg_encoding(m, MSG_SLOT_WS, 1, th_encode), r);   /* cached */
    assert_int_equal(history_bytes(env.h), b1);
    assert_non_null(msg_encoding(m, MSG_SLOT_WS, 0, th_encode));
    assert_int_equal(th_encodes, 2);
    assert_true(history_bytes(env.h) > b1);
    assert_int_equal(history_bytes(env.h), history_kept_bytes(m));
    /* A second message adds its own. */
    th_add(env.h, "c", 2, 0);
    struct msg *probe = th_msg("c", 2);
    assert_int_equal(history_bytes(env.h), history_kept_bytes(m) + history_kept_bytes(probe));
    msg_unref(probe);
    /* Eviction takes back everything, encodings included. */
    struct history_limits none = { 0, TH_BIG, 0 };
    history_set_limits(env.h, &none, 0);
    assert_int_equal(history_entries(env.h), 0);
    assert_int_equal(history_bytes(env.h), 0);
    /* Encodings made once the message left history are not counted. */
    assert_non_null(msg_encoding(m, MSG_SLOT_SSE, 0, th_encode));
    assert_int_equal(history_bytes(env.h), 0);
    msg_unref(m);
    th_free(&env);
}

static void test_encodings_over_budget_trimmed_at_next_expiry(void **state)
{
    (void)state;
    struct msg *probe = th_msg("a", 1);
    long one = (long)history_kept_bytes(probe);
    msg_unref(probe);
    struct th_env env = th_new(10, 2 * one, 0);
    struct msg *m = th_msg("a", 1);
    assert_int_equal(history_append(env.h, m, 1, 0), 0);
    th_add(env.h, "b", 2, 0);
    assert_int_equal(history_entries(env.h), 2);
    assert_non_null(msg_encoding(m, MSG_SLOT_WS, 0, th_encode));
    assert_true((long)history_bytes(env.h) > 2 * one);
    history_expire(env.h, 0);                           /* oldest (a@1) goes */
    assert_int_equal(history_entries(env.h), 1);
    assert_int_equal(history_bytes(env.h), (size_t)one);
    assert_string_equal(th_replay(env.h, "a,b", 0), "b:2");
    msg_unref(m);
    th_free(&env);
}

/* ---- max_bytes slices ---- */

/* Replays chans after since in slices of max_bytes, checking each slice
 * (at least one visit; next_since = the seq of the last visit, past since)
 * and returning all of them joined, with "|" between slices. *overruns
 * counts slices whose visits went past max_bytes although they visited
 * more than their first message. */
static const char *th_sliced(const history_t *h, const char *chans, uint64_t since,
                             size_t max_bytes, int *overruns)
{
    static char all[2048];
    all[0] = '\0';
    struct str names[WSPUSH_MAX_CHANNELS];
    int n = th_split(chans, names);
    int slices = 0;
    *overruns = 0;
    for (;;) {
        struct th_seen s;
        memset(&s, 0, sizeof(s));
        uint64_t next = 0;
        int more = history_replay(h, names, n, since, max_bytes, th_visit, &s, &next);
        assert_true(more == 0 || more == 1);
        assert_true(++slices < 100);
        if (more) {
            assert_true(s.visits >= 1);
            assert_true(next > since);
            const char *last = strrchr(s.text, ':');
            assert_non_null(last);
            assert_int_equal(strtoull(last + 1, NULL, 10), next);
        }
        if (max_bytes && s.bytes > max_bytes && s.others)
            (*overruns)++;
        size_t used = strlen(all);
        snprintf(all + used, sizeof(all) - used, "%s%s", slices > 1 ? "|" : "", s.text);
        if (!more)
            return all;
        since = next;
    }
}

static void th_strip_bars(const char *in, char *out, size_t outlen)
{
    size_t k = 0;
    for (; *in && k + 1 < outlen; in++)
        out[k++] = *in == '|' ? ' ' : *in;
    out[k] = '\0';
}

/* a@1 b@2 a,b@3 a@4 b@5: msg_bytes U, U, U+D, U, U (a second channel:
 * its name and its place in the message). */
static size_t th_D;

static size_t th_slice_fill(history_t *h)
{
    th_fill(h, "a@1 b@2 a,b@3 a@4 b@5", 0);
    struct msg *probe = th_msg("a", 1);
    size_t one = msg_bytes(probe);
    msg_unref(probe);
    probe = th_msg("a,b", 3);
    assert_true(msg_bytes(probe) > one);
    th_D = msg_bytes(probe) - one;
    msg_unref(probe);
    return one;
}

static void test_replay_slices_continue_without_gap(void **state)
{
    (void)state;
    struct th_env env = th_new(100, TH_BIG, 0);
    size_t U = th_slice_fill(env.h);
    const struct {
        size_t      max_bytes;
        const char *want;
    } cases[] = {
        { 0,         "a:1 b:2 a:3 b:3 a:4 b:5" },       /* 0 = no bound */
        { 1,         "a:1|b:2|a:3 b:3|a:4|b:5" },       /* one message at least */
        { U,         "a:1|b:2|a:3 b:3|a:4|b:5" },       /* 3 visited on both */
        { 2 * U,     "a:1 b:2|a:3 b:3|a:4 b:5" },
        { 2 * U + 2 * th_D, "a:1 b:2|a:3 b:3|a:4 b:5" },
        { 6 * U + 2 * th_D, "a:1 b:2 a:3 b:3 a:4 b:5" },  /* exactly everything */
        { 1 << 20,   "a:1 b:2 a:3 b:3 a:4 b:5" },
    };
    int overruns;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = th_sliced(env.h, "a,b", 0, cases[i].max_bytes, &overruns);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("max_bytes %zu: got \"%s\", want \"%s\"", cases[i].max_bytes, got,
                     cases[i].want);
    }
    /* Every budget, from every starting point, either channel order: the
     * slices join into the whole replay, no duplicate and no gap. */
    static const char *const orders[] = { "a,b", "b,a" };
    for (int o = 0; o < 2; o++) {
        for (uint64_t since = 0; since <= 5; since++) {
            char whole[512];
            snprintf(whole, sizeof(whole), "%s", th_replay(env.h, orders[o], since));
            for (size_t budget = 1; budget <= 6 * U + 2 * th_D + 1; budget++) {
                char flat[512];
                th_strip_bars(th_sliced(env.h, orders[o], since, budget, &overruns), flat,
                              sizeof(flat));
                if (strcmp(flat, whole) != 0)
                    fail_msg("%s after %llu by %zu: got \"%s\", want \"%s\"", orders[o],
                             (unsigned long long)since, budget, flat, whole);
            }
        }
    }
    /* The last message exactly: no "more". */
    struct str names[] = { { "b", 1 } };
    struct th_seen s;
    memset(&s, 0, sizeof(s));
    uint64_t next = 0;
    assert_int_equal(history_replay(env.h, names, 1, 3, U, th_visit, &s, &next), 0);
    assert_string_equal(s.text, "b:5");
    th_free(&env);
}

/* A slice stops before the message that would take the visited msg_bytes
 * past max_bytes, every visit counted: a message on two of the requested
 * channels is visited, and sent, for each. With max_bytes = 3U+2D the
 * second slice takes a,b@3 twice and a@4, and stops before b@5. */
static void test_replay_slice_budget_counts_every_visit(void **state)
{
    (void)state;
    struct th_env env = th_new(100, TH_BIG, 0);
    size_t U = th_slice_fill(env.h);
    int overruns;
    char got[512];
    snprintf(got, sizeof(got), "%s", th_sliced(env.h, "a,b", 0, 3 * U + 2 * th_D, &overruns));
    int total = 0;
    for (size_t budget = 1; budget <= 6 * U + 2 * th_D + 1; budget++) {
        th_sliced(env.h, "a,b", 0, budget, &overruns);
        total += overruns;
    }
    th_free(&env);
    assert_string_equal(got, "a:1 b:2|a:3 b:3 a:4|b:5");
    assert_int_equal(total, 0);
}

/* ---- save / load ---- */

struct th_dir {
    char dir[64];
    char path[128];
};

static void th_dir_new(struct th_dir *d)
{
    snprintf(d->dir, sizeof(d->dir), "/tmp/wspush-hist-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->path, sizeof(d->path), "%s/h.bin", d->dir);
}

static void th_dir_free(struct th_dir *d)
{
    unlink(d->path);
    rmdir(d->dir);
}

static void th_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static size_t th_read(const char *path, unsigned char *out, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(out, 1, cap, f);
    assert_true(n < cap);
    fclose(f);
    return n;
}

/* Loads path into a fresh history; returns its rc and leaves err set. On
 * failure the history must be empty with nothing pinned. */
static int th_load_fresh(const char *path, char *err, size_t errlen)
{
    struct th_env env = th_new(100, TH_BIG, 0);
    uint32_t epoch = 0;
    uint64_t seq = 0;
    err[0] = '\0';
    int rc = history_load(env.h, path, th_make_id, &epoch, &seq, 1000, err, errlen);
    if (rc != 0) {
        assert_int_equal(rc, -1);
        assert_int_equal(history_entries(env.h), 0);
        assert_int_equal(history_bytes(env.h), 0);
        assert_int_equal(chan_registry_size(env.reg), 0);
        assert_true(err[0] != '\0');
        /* And the gap rule forgot whatever the file said. */
        assert_true(th_can(env.h, "a", 0));
    }
    th_free(&env);
    return rc;
}

struct th_replay_ids {
    char text[512];
};

static void th_visit_id(void *arg, struct msg *m, int chan)
{
    struct th_replay_ids *s = arg;
    struct str id = msg_id(m), name = msg_channel(m, chan), data = msg_data(m);
    size_t used = strlen(s->text);
    snprintf(s->text + used, sizeof(s->text) - used, "%s%.*s/%.*s=%.*s", used ? " " : "",
             (int)id.len, id.p, (int)name.len, name.p, (int)data.len, data.p);
}

static void test_save_load_round_trip(void **state)
{
    (void)state;
    struct th_dir d;
    th_dir_new(&d);
    char err[256];
    /* x@7 (t=100) and x,y@9 (t=120) saved at t=150, z@3..5 evicted. */
    struct th_env env = th_new(3, TH_BIG, 0);
    th_fill(env.h, "z@3 z@4 z@5 x@7", 100);             /* evicts z@3 */
    static const char payload[] = "{\"k\":[1,\"\xc3\xa9\"]}";
    const struct str xy[] = { { "x", 1 }, { "y", 1 } };
    struct msg *m = msg_new((struct str){ "e-9", 3 }, xy, 2,
                            (struct str){ payload, sizeof(payload) - 1 });
    assert_non_null(m);
    assert_int_equal(history_append(env.h, m, 9, 120), 0);   /* evicts z@4 */
    msg_unref(m);
    assert_int_equal(history_entries(env.h), 3);
    struct history_limits two = { 2, TH_BIG, 0 };
    history_set_limits(env.h, &two, 120);               /* evicts z@5 */
    assert_int_equal(history_save(env.h, d.path, 0xabc, 9, 150, err, sizeof(err)), 0);
    assert_int_equal(access(d.path, F_OK), 0);
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", d.path);
    assert_int_equal(access(tmp, F_OK), -1);            /* renamed into place */
    th_free(&env);

    env = th_new(100, TH_BIG, 1000);
    uint32_t epoch = 0;
    uint64_t seq = 0;
    assert_int_equal(history_load(env.h, d.path, th_make_id, &epoch, &seq, 1000, err, sizeof(err)), 0);
    assert_int_equal(epoch, 0xabc);
    assert_int_equal(seq, 9);
    assert_int_equal(history_entries(env.h), 2);
    struct str names[] = { { "y", 1 }, { "x", 1 } };
    struct th_replay_ids ids = { "" };
    uint64_t next = 0;
    assert_int_equal(history_replay(env.h, names, 2, 0, 0, th_visit_id, &ids, &next), 0);
    /* Ids are rebuilt by make_id; payloads and channels come back as is. */
    assert_string_equal(ids.text, "abc-7/x=7 abc-9/y={\"k\":[1,\"\xc3\xa9\"]} abc-9/x={\"k\":[1,\"\xc3\xa9\"]}");
    /* The global gap memory survived: z lost 5. */
    assert_false(th_can(env.h, "z", 4));
    assert_true(th_can(env.h, "z", 5));
    assert_true(th_can(env.h, "x", 5));                 /* (before 5: may reset) */
    /* Ages survived: x@7 was 50 ms old at save, so at load (t=1000) it is
     * as if appended at 950 and a 1 s ttl drops it at 1950; x,y@9 at 1970. */
    history_expire(env.h, 1949);
    assert_int_equal(history_entries(env.h), 2);
    history_expire(env.h, 1950);
    assert_int_equal(history_entries(env.h), 1);
    history_expire(env.h, 1970);
    assert_int_equal(history_entries(env.h), 0);
    th_free(&env);

    /* An empty history round-trips too. */
    env = th_new(100, TH_BIG, 0);
    assert_int_equal(history_save(env.h, d.path, 0x1, 0, 0, err, sizeof(err)), 0);
    th_free(&env);
    env = th_new(100, TH_BIG, 0);
    assert_int_equal(history_load(env.h, d.path, th_make_id, &epoch, &seq, 0, err, sizeof(err)), 0);
    assert_int_equal(epoch, 1);
    assert_int_equal(seq, 0);
    assert_int_equal(history_entries(env.h), 0);
    th_free(&env);
    th_dir_free(&d);
}

/* Loading into smaller limits keeps the newest. */
static void test_load_applies_limits(void **state)
{
    (void)state;
    struct th_dir d;
    th_dir_new(&d);
    char err[256];
    struct th_env env = th_new(100, TH_BIG, 0);
    th_fill(env.h, "a@1 b@2 a@3 b@4", 0);
    assert_int_equal(history_save(env.h, d.path, 7, 4, 0, err, sizeof(err)), 0);
    th_free(&env);
    env = th_new(2, TH_BIG, 0);
    uint32_t epoch;
    uint64_t seq;
    assert_int_equal(history_load(env.h, d.path, th_make_id, &epoch, &seq, 0, err, sizeof(err)), 0);
    assert_int_equal(history_entries(env.h), 2);
    assert_string_equal(th_replay(env.h, "a,b", 0), "a:3 b:4");
    assert_false(th_can(env.h, "b", 1));
    assert_true(th_can(env.h, "b", 2));
    th_free(&env);
    th_dir_free(&d);
}

/* The file keeps only the global evicted_max: it must reach every
 * restored channel's record, or a channel that had lost a@1 before the
 * save claims after the load that it can resume after 0. */
static void test_load_keeps_per_channel_gap(void **state)
{
    (void)state;
    struct th_dir d;
    th_dir_new(&d);
    char err[256];
    struct th_env env = th_new(3, TH_BIG, 0);
    th_fill(env.h, "a@1 a@2 b@3 a@4", 0);               /* evicts a@1 */
    assert_false(th_can(env.h, "a", 0));
    assert_int_equal(history_save(env.h, d.path, 7, 4, 0, err, sizeof(err)), 0);
    th_free(&env);
    env = th_new(3, TH_BIG, 0);
    uint32_t epoch;
    uint64_t seq;
    assert_int_equal(history_load(env.h, d.path, th_make_id, &epoch, &seq, 0, err, sizeof(err)), 0);
    assert_string_equal(th_replay(env.h, "a", 0), "a:2 a:4");
    int can0 = th_can(env.h, "a", 0), can1 = th_can(env.h, "a", 1);
    th_free(&env);
    th_dir_free(&d);
    assert_false(can0);                                 /* a@1 is lost */
    assert_true(can1);
}

static void test_load_refuses_truncated_and_corrupt(void **state)
{
    (void)state;
    struct th_dir d;
    th_dir_new(&d);
    char err[256];
    struct th_env env = th_new(100, TH_BIG, 0);
    th_fill(env.h, "x@7 x,y@9", 100);
    assert_int_equal(history_save(env.h, d.path, 0xabc, 9, 150, err, sizeof(err)), 0);
    th_free(&env);
    unsigned char good[1024];
    size_t len = th_read(d.path, good, sizeof(good));
    assert_int_equal(th_load_fresh(d.path, err, sizeof(err)), 0);

    /* Every truncation, and a flipped bit in every byte. */
    for (size_t cut = 0; cut < len; cut++) {
        th_write(d.path, good, cut);
        assert_int_equal(th_load_fresh(d.path, err, sizeof(err)), -1);
        for (int bit = 0; bit < 8; bit += 3) {
            unsigned char bad[1024];
            memcpy(bad, good, len);
            bad[cut] ^= (unsigned char)(1u << bit);
            th_write(d.path, bad, len);
            assert_int_equal(th_load_fresh(d.path, err, sizeof(err)), -1);
        }
    }
    /* A byte too many. */
    unsigned char longer[1025];
    memcpy(longer, good, len);
    longer[len] = 0;
    th_write(d.path, longer, len + 1);
    assert_int_equal(th_load_fresh(d.path, err, sizeof(err)), -1);
    /* Missing file: the error names it. */
    unlink(d.path);
    assert_int_equal(th_load_fresh(d.path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, d.path));
    th_dir_free(&d);
}

/* ---- hand-built files: the validation, not the checksum, refuses ---- */

/* The format described in history.c (big-endian):
 *   "WSPUSHH2" u32 epoch, u64 seq, u64 evicted_max, u32 count,
 *   count x { u64 seq, u64 age_ms, u8 n, n x (u8 len, name), u32 len, data }
 *   u32 FNV-1a of everything before it */
struct thf_entry {
    uint64_t    seq;
    const char *chans;    /* comma-separated; "" = no channel */
    const char *data;     /* NULL = "1" */
    size_t      datalen;  /* 0 = strlen(data) */
};

static void thf_put64(struct buf *b, uint64_t v)
{
    unsigned char p[8];
    buf_put_u32(p, (uint32_t)(v >> 32));
    buf_put_u32(p + 4, (uint32_t)v);
    assert_int_equal(buf_append(b, p, 8), 0);
}

static void thf_put32(struct buf *b, uint32_t v)
{
    unsigned char p[4];
    buf_put_u32(p, v);
    assert_int_equal(buf_append(b, p, 4), 0);
}

static uint32_t thf_fnv1a(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

/* count < 0: the number of entries. trailing: bytes after the entries. */
static void thf_build(struct buf *b, const char *magic, uint64_t last, int count,
                      const struct thf_entry *e, int n, const char *trailing)
{
    assert_int_equal(buf_append(b, magic, 8), 0);
    thf_put32(b, 0xabc);
    thf_put64(b, last);
    thf_put64(b, 0);
    thf_put32(b, (uint32_t)(count < 0 ? n : count));
    for (int i = 0; i < n; i++) {
        thf_put64(b, e[i].seq);
        thf_put64(b, 0);
        struct str names[WSPUSH_MAX_CHANNELS + 8];
        int k = 0;
        for (const char *s = e[i].chans; *s;) {
            const char *c = strchr(s, ',');
            size_t len = c ? (size_t)(c - s) : strlen(s);
            names[k++] = (struct str){ s, len };
            s += len + (c ? 1 : 0);
        }
        unsigned char nb = (unsigned char)k;
        assert_int_equal(buf_append(b, &nb, 1), 0);
        for (int j = 0; j < k; j++) {
            unsigned char l = (unsigned char)names[j].len;
            assert_int_equal(buf_append(b, &l, 1), 0);
            assert_int_equal(buf_append(b, names[j].p, names[j].len), 0);
        }
        const char *data = e[i].data ? e[i].data : "1";
        size_t dl = e[i].datalen ? e[i].datalen : strlen(data);
        thf_put32(b, (uint32_t)dl);
        assert_int_equal(buf_append(b, data, dl), 0);
    }
    if (trailing)
        assert_int_equal(buf_append(b, trailing, strlen(trailing)), 0);
    thf_put32(b, thf_fnv1a((const unsigned char *)buf_head(b), buf_used(b)));
}

#define THF_MAX 4

static void test_load_validates_every_entry(void **state)
{
    (void)state;
    /* 33 channels: one more than a message may have. */
    static char many[200], longname[202];
    many[0] = '\0';
    for (int i = 0; i < 33; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sc%d", i ? "," : "", i);
    memset(longname, 'n', 201);                         /* names are 1..200 bytes */
    longname[201] = '\0';
    static const struct {
        const char      *name;
        uint64_t         last;
        int              count;        /* -1: number of entries */
        struct thf_entry e[THF_MAX];
        int              n;
        const char      *trailing;
        const char      *why;          /* NULL: loads */
    } cases[] = {
        { "valid", 9, -1, { { 1, "a", "1", 0 }, { 4, "a,b", "{\"x\":[true,null]}", 0 },
                            { 9, "b", " \"\xc3\xa9\" ", 0 } }, 3, NULL, NULL },
        { "valid: no entries", 0, -1, { { 0 } }, 0, NULL, NULL },
        { "space in a channel name", 9, -1, { { 1, "a", 0, 0 }, { 2, "a b", 0, 0 } }, 2, NULL,
          "invalid channel name" },
        { "'!' in a channel name", 9, -1, { { 1, "ok,bad!", 0, 0 } }, 1, NULL, "invalid channel name" },
        { "empty channel name", 9, -1, { { 1, ",a", 0, 0 } }, 1, NULL, "invalid channel name" },
        { "201-byte channel name", 9, -1, { { 1, longname, 0, 0 } }, 1, NULL, "invalid channel name" },
        { "channel listed twice", 9, -1, { { 1, "a,b,a", 0, 0 } }, 1, NULL, "channel listed twice" },
        { "no channel", 9, -1, { { 1, "", 0, 0 } }, 1, NULL, "bad channel count" },
        { "33 channels", 9, -1, { { 1, many, 0, 0 } }, 1, NULL, "bad channel count" },
        { "two JSON values", 9, -1, { { 1, "a", "1 2", 0 } }, 1, NULL, "payload is not one JSON value" },
        { "unfinished JSON", 9, -1, { { 1, "a", "{\"a\":", 0 } }, 1, NULL, "payload is not one JSON value" },
        { "not JSON", 9, -1, { { 1, "a", "hello", 0 } }, 1, NULL, "payload is not one JSON value" },
        { "only spaces", 9, -1, { { 1, "a", "   ", 0 } }, 1, NULL, "payload is not one JSON value" },
        { "invalid UTF-8 byte", 9, -1, { { 1, "a", "\"\xff\"", 0 } }, 1, NULL,
          "payload is not valid UTF-8" },
        { "UTF-8 surrogate", 9, -1, { { 1, "a", "\"\xed\xa0\x80\"", 0 } }, 1, NULL,
          "payload is not valid UTF-8" },
        { "overlong UTF-8", 9, -1, { { 1, "a", "\"\xc0\xaf\"", 0 } }, 1, NULL,
          "payload is not valid UTF-8" },
        { "empty payload", 9, -1, { { 1, "a", "", 0 } }, 1, NULL, "truncated payload" },
        { "seqs descending", 9, -1, { { 5, "a", 0, 0 }, { 3, "b", 0, 0 } }, 2, NULL,
          "sequence out of order" },
        { "seq repeated", 9, -1, { { 5, "a", 0, 0 }, { 5, "b", 0, 0 } }, 2, NULL,
          "sequence out of order" },
        { "seq 0", 9, -1, { { 0, "a", 0, 0 } }, 1, NULL, "sequence out of order" },
        { "seq past the last id", 9, -1, { { 3, "a", 0, 0 }, { 10, "a", 0, 0 } }, 2, NULL,
          "sequence out of order" },
        { "fewer entries than counted", 9, 3, { { 1, "a", 0, 0 }, { 2, "a", 0, 0 } }, 2, NULL,
          "truncated entry" },
        { "more entries than counted", 9, 1, { { 1, "a", 0, 0 }, { 2, "a", 0, 0 } }, 2, NULL,
          "trailing bytes" },
        { "trailing bytes", 9, -1, { { 1, "a", 0, 0 } }, 1, "x", "trailing bytes" },
        { "bad entry after good ones", 9, -1,
          { { 1, "a", 0, 0 }, { 2, "b", 0, 0 }, { 3, "a,c", "[1,]", 0 } }, 3, NULL,
          "payload is not one JSON value" },
    };
    struct th_dir d;
    th_dir_new(&d);
    char err[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b = { 0 };
        thf_build(&b, "WSPUSHH2", cases[i].last, cases[i].count, cases[i].e, cases[i].n,
                  cases[i].trailing);
        th_write(d.path, buf_head(&b), buf_used(&b));
        buf_free(&b);
        int rc = th_load_fresh(d.path, err, sizeof(err));
        if (!cases[i].why) {
            if (rc != 0)
                fail_msg("%s: refused: %s", cases[i].name, err);
            continue;
        }
        if (rc != -1 || !strstr(err, cases[i].why) || !strstr(err, d.path))
            fail_msg("%s: rc %d, err \"%s\", want -1 and \"%s\"", cases[i].name, rc, err,
                     cases[i].why);
    }
    th_dir_free(&d);
}

static void test_load_refuses_format_1(void **state)
{
    (void)state;
    struct th_dir d;
    th_dir_new(&d);
    char err[256];
    /* A format-1 file (WebSocket frames), well formed by its own rules. */
    struct buf b = { 0 };
    struct thf_entry e[] = { { 1, "a", "\x81\x01x", 3 } };
    thf_build(&b, "WSPUSHH1", 1, -1, e, 1, NULL);
    th_write(d.path, buf_head(&b), buf_used(&b));
    buf_free(&b);
    assert_int_equal(th_load_fresh(d.path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "older"));
    assert_non_null(strstr(err, "format 1"));
    /* Just the magic is enough to tell. */
    th_write(d.path, "WSPUSHH1", 8);
    assert_int_equal(th_load_fresh(d.path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "format 1"));
    /* Other magics are not history files at all. */
    static const char *const others[] = { "WSPUSHH3", "wspushh2", "XXXXXXXX" };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        b = (struct buf){ 0 };
        thf_build(&b, others[i], 1, -1, e, 0, NULL);
        th_write(d.path, buf_head(&b), buf_used(&b));
        buf_free(&b);
        assert_int_equal(th_load_fresh(d.path, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "not a wspush history file"));
    }
    th_dir_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_merges_in_seq_order),
        cmocka_unit_test(test_eviction_by_count_and_gap_rule),
        cmocka_unit_test(test_gap_rule_per_channel),
        cmocka_unit_test(test_gap_rule_channel_recreated_after_eviction),
        cmocka_unit_test(test_eviction_by_bytes_and_ttl),
        cmocka_unit_test(test_disabled_history_loses_everything),
        cmocka_unit_test(test_reset_forgets_everything),
        cmocka_unit_test(test_multi_channel_message_kept_once),
        cmocka_unit_test(test_bytes_count_encodings_made_after_append),
        cmocka_unit_test(test_encodings_over_budget_trimmed_at_next_expiry),
        cmocka_unit_test(test_replay_slices_continue_without_gap),
        cmocka_unit_test(test_replay_slice_budget_counts_every_visit),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_load_applies_limits),
        cmocka_unit_test(test_load_keeps_per_channel_gap),
        cmocka_unit_test(test_load_refuses_truncated_and_corrupt),
        cmocka_unit_test(test_load_validates_every_entry),
        cmocka_unit_test(test_load_refuses_format_1),
    };
    return cmocka_run_group_tests_name("history", tests, NULL, NULL);
}
