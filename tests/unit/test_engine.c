/* engine_memory through engine.h: ids "<hex epoch>-<seq>" assigned in
 * order or taken from the publisher when newer (a newer epoch drops the
 * old run's history), refused with -EINVAL when older or malformed; every
 * message delivered once, deliveries reported; history answers (reset for
 * foreign ids and for channels that lost messages, items in id order,
 * max_bytes slices that continue after `next`, one callback per query);
 * save/restore across a restart; memory accounting of cached encodings. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "engine_memory.h"
#include "msg.h"
#include "wspush.h"

#define TE_BIG (1L << 20)

/* ---- fixture ---- */

struct te_delivery {
    char id[MSG_ID_MAX];
    char chans[128];      /* comma-separated */
    char data[64];
};

struct te {
    ev_loop_t         *loop;
    engine_t          *e;
    uint32_t           epoch;     /* the fresh epoch, read from last_id */
    uint32_t           ret;       /* what deliver returns */
    int                ndeliv;
    struct te_delivery deliv[64];
    struct msg        *keep;      /* a reference to the last message delivered */
    int                encode_in_deliver;
};

static rbuf_t *te_encode(const struct msg *m, int chan)
{
    rbuf_t *r = rbuf_new(msg_envelope_len(m, chan));
    if (r)
        msg_envelope(m, chan, rbuf_wdata(r));
    return r;
}

static uint32_t te_deliver(void *ctx, struct msg *m)
{
    struct te *t = ctx;
    assert_true(t->ndeliv < 64);
    struct te_delivery *d = &t->deliv[t->ndeliv++];
    struct str id = msg_id(m), data = msg_data(m);
    snprintf(d->id, sizeof(d->id), "%.*s", (int)id.len, id.p);
    d->chans[0] = '\0';
    for (int i = 0; i < msg_nchannels(m); i++) {
        struct str c = msg_channel(m, i);
        size_t used = strlen(d->chans);
        snprintf(d->chans + used, sizeof(d->chans) - used, "%s%.*s", i ? "," : "", (int)c.len, c.p);
    }
    snprintf(d->data, sizeof(d->data), "%.*s", (int)data.len, data.p);
    msg_unref(t->keep);
    t->keep = msg_ref(m);
    /* As a transport does during fan-out. */
    if (t->encode_in_deliver)
        for (int i = 0; i < msg_nchannels(m); i++)
            assert_non_null(msg_encoding(m, MSG_SLOT_WS, i, te_encode));
    return t->ret;
}

static uint32_t te_epoch_of(struct str id)
{
    char buf[MSG_ID_MAX];
    snprintf(buf, sizeof(buf), "%.*s", (int)id.len, id.p);
    char *dash = strchr(buf, '-');
    assert_non_null(dash);
    return (uint32_t)strtoul(buf, NULL, 16);
}

static void te_open(struct te *t, long max_entries, long max_bytes)
{
    memset(t, 0, sizeof(*t));
    char err[128];
    t->loop = ev_loop_new(err, sizeof(err));
    assert_non_null(t->loop);
    struct history_limits lim = { max_entries, max_bytes, 0 };
    uint32_t t0 = (uint32_t)time(NULL);
    t->e = engine_memory_new(t->loop, &lim, te_deliver, t);
    uint32_t t1 = (uint32_t)time(NULL);
    assert_non_null(t->e);
    t->epoch = te_epoch_of(engine_last_id(t->e));
    /* The epoch is the start time in seconds. */
    assert_true(t->epoch >= t0 && t->epoch <= t1);
}

static void te_close(struct te *t)
{
    msg_unref(t->keep);
    t->keep = NULL;
    engine_free(t->e);
    ev_loop_free(t->loop);
}

static int te_setup(void **state)
{
    struct te *t = malloc(sizeof(*t));
    if (!t)
        return -1;
    te_open(t, 100, TE_BIG);
    *state = t;
    return 0;
}

static int te_teardown(void **state)
{
    te_close(*state);
    free(*state);
    return 0;
}

/* The id "<epoch + delta, hex>-<seq>" (the fixture's epoch); four kept. */
static const char *te_id(const struct te *t, int64_t delta, uint64_t seq)
{
    static char buf[4][MSG_ID_MAX];
    static int k;
    char *out = buf[k++ % 4];
    snprintf(out, MSG_ID_MAX, "%x-%llu", (unsigned)((int64_t)t->epoch + delta), (unsigned long long)seq);
    return out;
}

static int te_split(const char *s, struct str *out)
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

struct te_outcome {
    int calls;
    int status;
    struct engine_result r;
};

static void te_published(void *arg, int status, const struct engine_result *r)
{
    struct te_outcome *o = arg;
    o->calls++;
    o->status = status;
    if (status == 0)
        o->r = *r;
    else
        assert_null(r);
}

/* Publishes data on chans (comma-separated) with id (NULL: assigned).
 * The memory engine answers before engine_publish() returns, once. */
static int te_pub_id(struct te *t, const char *chans, const char *data, const char *id,
                     struct engine_result *r)
{
    struct str names[WSPUSH_MAX_CHANNELS];
    struct engine_publish p = {
        .channels = names,
        .nchannels = te_split(chans, names),
        .data = { data, strlen(data) },
        .id = { id ? id : "", id ? strlen(id) : 0 },
    };
    memset(r, 0x5a, sizeof(*r));
    struct te_outcome o = { 0, 1, { { 0 }, 0 } };
    engine_publish(t->e, &p, te_published, &o);
    assert_int_equal(o.calls, 1);
    if (o.status == 0)
        *r = o.r;
    return o.status;
}

/* Publishes with an assigned id and checks it is the next of the run. */
static void te_pub(struct te *t, const char *chans, const char *data)
{
    struct engine_result r;
    assert_int_equal(te_pub_id(t, chans, data, NULL, &r), 0);
    assert_string_equal(r.id, t->deliv[t->ndeliv - 1].id);
}

static void te_assert_last_id(const struct te *t, const char *want)
{
    struct str last = engine_last_id(t->e);
    if (last.len != strlen(want) || memcmp(last.p, want, last.len) != 0)
        fail_msg("last_id \"%.*s\", want \"%s\"", (int)last.len, last.p, want);
}

/* ---- history answers, recorded ---- */

struct te_answer {
    int    calls;
    int    reset[WSPUSH_MAX_CHANNELS];
    char   items[1024];   /* "<id>/<channel> ...", channel = msg_channel(m, chan) */
    size_t nitems;
    size_t bytes;         /* msg_bytes of every item */
    int    more;
    char   next[MSG_ID_MAX];
    int    failed;
};

static void te_answer_cb(void *arg, const struct engine_answer *a)
{
    struct te_answer *r = arg;
    r->calls++;
    memcpy(r->reset, a->reset, sizeof(r->reset));
    r->items[0] = '\0';
    r->bytes = 0;
    for (size_t i = 0; i < a->nitems; i++) {
        struct msg *m = a->items[i].m;
        assert_true(a->items[i].chan >= 0 && a->items[i].chan < msg_nchannels(m));
        struct str id = msg_id(m), c = msg_channel(m, a->items[i].chan);
        size_t used = strlen(r->items);
        snprintf(r->items + used, sizeof(r->items) - used, "%s%.*s/%.*s", i ? " " : "",
                 (int)id.len, id.p, (int)c.len, c.p);
        r->bytes += msg_bytes(m);
    }
    r->nitems = a->nitems;
    r->more = a->more;
    memcpy(r->next, a->next, sizeof(r->next));
    r->failed = a->failed;
}

static void te_ask(struct te *t, const char *chans, const char *after, size_t max_bytes,
                   struct te_answer *r)
{
    struct str names[WSPUSH_MAX_CHANNELS];
    struct engine_query q = {
        .channels = names,
        .nchannels = te_split(chans, names),
        .after = { after, strlen(after) },
        .max_bytes = max_bytes,
    };
    memset(r, 0, sizeof(*r));
    engine_history(t->e, &q, te_answer_cb, r);
    assert_int_equal(r->calls, 1);              /* exactly once, at once */
    assert_int_equal(r->failed, 0);
}

/* Item text with "E" standing for the fixture's epoch + delta. */
static const char *te_expand(const struct te *t, int64_t delta, const char *in)
{
    static char out[1024];
    char ep[16];
    snprintf(ep, sizeof(ep), "%x", (unsigned)((int64_t)t->epoch + delta));
    size_t k = 0;
    for (; *in && k + 16 < sizeof(out); in++) {
        if (*in == 'E') {
            memcpy(out + k, ep, strlen(ep));
            k += strlen(ep);
        } else {
            out[k++] = *in;
        }
    }
    out[k] = '\0';
    return out;
}

/* ---- publish ---- */

static void test_publish_assigns_ids_and_delivers_once(void **state)
{
    struct te *t = *state;
    te_assert_last_id(t, te_id(t, 0, 0));
    static const struct {
        const char *chans, *data;
        uint32_t    ret;
    } cases[] = {
        { "news",          "{\"a\":1}", 7 },
        { "a,b,user/x@y",  "[1,2]",     0 },
        { "news",          "\"s\"",     42 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        t->ret = cases[i].ret;
        struct engine_result r;
        assert_int_equal(te_pub_id(t, cases[i].chans, cases[i].data, NULL, &r), 0);
        assert_string_equal(r.id, te_id(t, 0, i + 1));
        assert_int_equal(r.deliveries, cases[i].ret);
        /* Delivered once, before publish returned, as published. */
        assert_int_equal(t->ndeliv, (int)i + 1);
        assert_string_equal(t->deliv[i].id, r.id);
        assert_string_equal(t->deliv[i].chans, cases[i].chans);
        assert_string_equal(t->deliv[i].data, cases[i].data);
        te_assert_last_id(t, r.id);
    }
    assert_int_equal(engine_memory_entries(t->e), 3);
}

static void test_publish_with_id(void **state)
{
    (void)state;
    /* Each row starts from a fresh engine at "E-2" (E its epoch). */
    static const struct {
        const char *what;
        int64_t     de;          /* epoch delta; ignored when raw is set */
        uint64_t    seq;
        const char *raw;         /* a literal id */
        int         rc;
        int64_t     next_de;     /* then the next assigned id is ... */
        uint64_t    next_seq;
        size_t      entries;     /* held after the publish */
    } cases[] = {
        { "next seq",                 0, 3,  NULL, 0,       0, 4,  3 },
        { "jump ahead",               0, 10, NULL, 0,       0, 11, 3 },
        { "newer epoch",              1, 5,  NULL, 0,       1, 6,  1 },
        { "much newer epoch, seq 1",  1000, 1, NULL, 0,     1000, 2, 1 },
        { "equal",                    0, 2,  NULL, -EINVAL, 0, 3,  2 },
        { "older seq",                0, 1,  NULL, -EINVAL, 0, 3,  2 },
        { "seq 0",                    0, 0,  NULL, -EINVAL, 0, 3,  2 },
        { "older epoch",              -1, 99, NULL, -EINVAL, 0, 3, 2 },
        /* Malformed, with the newest possible epoch: only the form refuses. */
        { "no seq",            0, 0, "ffffffff-",                     -EINVAL, 0, 3, 2 },
        { "no dash",           0, 0, "ffffffff",                      -EINVAL, 0, 3, 2 },
        { "no epoch",          0, 0, "-5",                            -EINVAL, 0, 3, 2 },
        { "epoch over 32 bits", 0, 0, "100000000-5",                  -EINVAL, 0, 3, 2 },
        { "upper-case hex",    0, 0, "FFFFFFFF-5",                    -EINVAL, 0, 3, 2 },
        { "letter in seq",     0, 0, "ffffffff-5a",                   -EINVAL, 0, 3, 2 },
        { "hex seq",           0, 0, "ffffffff-0x5",                  -EINVAL, 0, 3, 2 },
        { "sign in seq",       0, 0, "ffffffff-+5",                   -EINVAL, 0, 3, 2 },
        { "two dashes",        0, 0, "ffffffff--5",                   -EINVAL, 0, 3, 2 },
        { "three parts",       0, 0, "ffffffff-5-1",                  -EINVAL, 0, 3, 2 },
        { "underscore",        0, 0, "ffffffff_5",                    -EINVAL, 0, 3, 2 },
        { "space",             0, 0, " ffffffff-5",                   -EINVAL, 0, 3, 2 },
        { "trailing space",    0, 0, "ffffffff-5 ",                   -EINVAL, 0, 3, 2 },
        { "20-digit seq",      0, 0, "ffffffff-10000000000000000000", -EINVAL, 0, 3, 2 },
        { "letter epoch",      0, 0, "g-5",                           -EINVAL, 0, 3, 2 },
        /* Not the engine's own spelling: a relayed id must stay the same. */
        { "leading zero seq",  0, 0, "ffffffff-05",                   -EINVAL, 0, 3, 2 },
        { "leading zero epoch", 0, 0, "0ffffffff-5",                  -EINVAL, 0, 3, 2 },
        { "seq 0 newest epoch", 0, 0, "ffffffff-0",                   -EINVAL, 0, 3, 2 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct te t;
        te_open(&t, 100, TE_BIG);
        te_pub(&t, "a", "1");
        te_pub(&t, "b", "2");
        const char *id = cases[i].raw ? cases[i].raw : te_id(&t, cases[i].de, cases[i].seq);
        char given[MSG_ID_MAX];
        snprintf(given, sizeof(given), "%s", id);
        t.ret = 9;
        struct engine_result r;
        int rc = te_pub_id(&t, "a,c", "{}", given, &r);
        if (rc != cases[i].rc)
            fail_msg("%s (%s): rc %d, want %d", cases[i].what, given, rc, cases[i].rc);
        if (rc == 0) {
            assert_string_equal(r.id, given);
            assert_int_equal(r.deliveries, 9);
            assert_int_equal(t.ndeliv, 3);
            assert_string_equal(t.deliv[2].id, given);
            te_assert_last_id(&t, given);
        } else {
            assert_int_equal(t.ndeliv, 2);              /* nothing delivered */
            te_assert_last_id(&t, te_id(&t, 0, 2));
        }
        if (engine_memory_entries(t.e) != cases[i].entries)
            fail_msg("%s: %zu entries, want %zu", cases[i].what, engine_memory_entries(t.e),
                     cases[i].entries);
        /* The engine continues from the accepted id. */
        struct engine_result r2;
        assert_int_equal(te_pub_id(&t, "a", "3", NULL, &r2), 0);
        if (strcmp(r2.id, te_id(&t, cases[i].next_de, cases[i].next_seq)) != 0)
            fail_msg("%s: next id %s, want %s", cases[i].what, r2.id,
                     te_id(&t, cases[i].next_de, cases[i].next_seq));
        te_close(&t);
    }
}

static void test_newer_epoch_drops_old_history(void **state)
{
    struct te *t = *state;
    te_pub(t, "a", "1");
    te_pub(t, "a,b", "2");
    struct engine_result r;
    assert_int_equal(te_pub_id(t, "b", "3", te_id(t, 1, 7), &r), 0);
    assert_int_equal(engine_memory_entries(t->e), 1);
    te_pub(t, "a", "4");
    assert_string_equal(t->deliv[3].id, te_id(t, 1, 8));
    struct te_answer a;
    /* Pages of the old run reset; the new run's history is whole. */
    te_ask(t, "a,b", te_id(t, 0, 1), 0, &a);
    assert_int_equal(a.reset[0], 1);
    assert_int_equal(a.reset[1], 1);
    assert_int_equal(a.nitems, 0);
    te_ask(t, "a,b", te_id(t, 1, 6), 0, &a);
    assert_int_equal(a.reset[0], 0);
    assert_int_equal(a.reset[1], 0);
    assert_string_equal(a.items, te_expand(t, 1, "E-7/b E-8/a"));
    te_ask(t, "a,b", te_id(t, 1, 7), 0, &a);
    assert_string_equal(a.items, te_expand(t, 1, "E-8/a"));
}

/* ---- history ---- */

static void test_history_foreign_ids_reset_every_channel(void **state)
{
    struct te *t = *state;
    te_pub(t, "a", "1");
    te_pub(t, "b", "2");
    te_pub(t, "a,b", "3");
    char older[MSG_ID_MAX], newer[MSG_ID_MAX], ahead[MSG_ID_MAX];
    snprintf(older, sizeof(older), "%s", te_id(t, -1, 1));
    snprintf(newer, sizeof(newer), "%s", te_id(t, 1, 1));
    snprintf(ahead, sizeof(ahead), "%s", te_id(t, 0, 4));       /* not issued yet */
    char noseq[MSG_ID_MAX], junk[MSG_ID_MAX];
    snprintf(noseq, sizeof(noseq), "%x-", (unsigned)t->epoch);
    snprintf(junk, sizeof(junk), "%x-1x", (unsigned)t->epoch);
    const char *const afters[] = { "", "garbage", "0", "-1", older, newer, ahead, noseq, junk };
    for (size_t i = 0; i < sizeof(afters) / sizeof(afters[0]); i++) {
        struct te_answer a;
        te_ask(t, "a,b,c", afters[i], 0, &a);
        for (int c = 0; c < 3; c++)
            if (a.reset[c] != 1)
                fail_msg("after \"%s\": channel %d not reset", afters[i], c);
        assert_int_equal(a.nitems, 0);
        assert_int_equal(a.more, 0);
    }
    /* The newest id itself resumes with nothing missed. */
    struct te_answer a;
    te_ask(t, "a,b,c", te_id(t, 0, 3), 0, &a);
    assert_int_equal(a.reset[0] | a.reset[1] | a.reset[2], 0);
    assert_int_equal(a.nitems, 0);
}

static void test_history_items_in_id_order(void **state)
{
    struct te *t = *state;
    te_pub(t, "a", "1");
    te_pub(t, "b", "2");
    te_pub(t, "a,b", "3");
    te_pub(t, "c", "4");
    te_pub(t, "x,b", "5");
    static const struct {
        const char *chans;
        uint64_t    after;
        const char *want;     /* E = the epoch */
    } cases[] = {
        { "b,a",   0, "E-1/a E-2/b E-3/b E-3/a E-5/b" },
        { "a,b",   0, "E-1/a E-2/b E-3/a E-3/b E-5/b" },
        { "b,a",   2, "E-3/b E-3/a E-5/b" },
        { "c",     0, "E-4/c" },
        { "x",     4, "E-5/x" },
        { "b",     3, "E-5/b" },
        { "a,b,c", 5, "" },
        { "zz",    0, "" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct te_answer a;
        te_ask(t, cases[i].chans, te_id(t, 0, cases[i].after), 0, &a);
        const char *want = te_expand(t, 0, cases[i].want);
        if (strcmp(a.items, want) != 0)
            fail_msg("%s after %llu: got \"%s\", want \"%s\"", cases[i].chans,
                     (unsigned long long)cases[i].after, a.items, want);
        for (int c = 0; c < 3; c++)
            assert_int_equal(a.reset[c], 0);
        assert_int_equal(a.more, 0);
    }
}

static void test_history_reset_only_where_messages_were_evicted(void **state)
{
    (void)state;
    struct te t;
    te_open(&t, 3, TE_BIG);
    te_pub(&t, "a", "1");
    te_pub(&t, "a", "2");
    te_pub(&t, "b", "3");
    te_pub(&t, "b", "4");                    /* evicts E-1 */
    assert_int_equal(engine_memory_entries(t.e), 3);
    struct te_answer a;
    te_ask(&t, "a,b,c", te_id(&t, 0, 0), 0, &a);
    assert_int_equal(a.reset[0], 1);         /* a lost E-1 */
    assert_int_equal(a.reset[1], 0);
    assert_int_equal(a.reset[2], 1);         /* c holds nothing: global rule */
    /* Items only for the channels not reset. */
    assert_string_equal(a.items, te_expand(&t, 0, "E-3/b E-4/b"));
    te_ask(&t, "a,b,c", te_id(&t, 0, 1), 0, &a);
    assert_int_equal(a.reset[0] | a.reset[1] | a.reset[2], 0);
    assert_string_equal(a.items, te_expand(&t, 0, "E-2/a E-3/b E-4/b"));
    te_close(&t);
}

/* History off: everything is delivered and nothing can be resumed. */
static void test_history_disabled(void **state)
{
    (void)state;
    struct te t;
    te_open(&t, 0, TE_BIG);
    t.ret = 1;
    struct engine_result r;
    assert_int_equal(te_pub_id(&t, "a", "1", NULL, &r), 0);
    assert_int_equal(r.deliveries, 1);
    assert_string_equal(r.id, te_id(&t, 0, 1));
    assert_int_equal(engine_memory_entries(t.e), 0);
    assert_int_equal(engine_memory_bytes(t.e), 0);
    struct te_answer a;
    te_ask(&t, "a", te_id(&t, 0, 0), 0, &a);
    assert_int_equal(a.reset[0], 1);
    te_ask(&t, "a", te_id(&t, 0, 1), 0, &a);
    assert_int_equal(a.reset[0], 0);
    assert_int_equal(a.nitems, 0);
    te_close(&t);
}

static void test_set_limits_evicts(void **state)
{
    struct te *t = *state;
    for (int i = 0; i < 5; i++)
        te_pub(t, "a", "1");
    assert_int_equal(engine_memory_entries(t->e), 5);
    struct history_limits lim = { 2, TE_BIG, 0 };
    engine_memory_set_limits(t->e, &lim);
    assert_int_equal(engine_memory_entries(t->e), 2);
    struct te_answer a;
    te_ask(t, "a", te_id(t, 0, 2), 0, &a);
    assert_int_equal(a.reset[0], 1);
    te_ask(t, "a", te_id(t, 0, 3), 0, &a);
    assert_int_equal(a.reset[0], 0);
    assert_string_equal(a.items, te_expand(t, 0, "E-4/a E-5/a"));
}

/* Asks in slices of max_bytes until more = 0; returns the items joined
 * with "|" between slices. */
static const char *te_sliced(struct te *t, const char *chans, const char *after, size_t max_bytes)
{
    static char all[2048];
    all[0] = '\0';
    char cur[MSG_ID_MAX];
    snprintf(cur, sizeof(cur), "%s", after);
    for (int slices = 1;; slices++) {
        assert_true(slices < 100);
        struct te_answer a;
        te_ask(t, chans, cur, max_bytes, &a);
        for (int c = 0; c < WSPUSH_MAX_CHANNELS; c++)
            assert_int_equal(a.reset[c], 0);
        size_t used = strlen(all);
        snprintf(all + used, sizeof(all) - used, "%s%s", slices > 1 ? "|" : "", a.items);
        if (!a.more)
            return all;
        /* next is the id of the slice's last item. */
        assert_true(a.nitems >= 1);
        const char *last = strrchr(a.items, ' ');
        last = last ? last + 1 : a.items;
        assert_int_equal(strncmp(last, a.next, strlen(a.next)), 0);
        assert_int_equal(last[strlen(a.next)], '/');
        snprintf(cur, sizeof(cur), "%s", a.next);
    }
}

static void test_history_slices_by_max_bytes(void **state)
{
    struct te *t = *state;
    te_pub(t, "a", "1");
    te_pub(t, "b", "2");
    te_pub(t, "a,b", "3");
    te_pub(t, "a", "4");
    te_pub(t, "b", "5");
    /* The size of one message from a full answer. */
    struct te_answer a;
    te_ask(t, "a", te_id(t, 0, 3), 0, &a);
    size_t U = a.bytes;
    assert_string_equal(a.items, te_expand(t, 0, "E-4/a"));
    const struct {
        size_t      max_bytes;
        const char *want;
    } cases[] = {
        { 0,      "E-1/a E-2/b E-3/a E-3/b E-4/a E-5/b" },
        { 1,      "E-1/a|E-2/b|E-3/a E-3/b|E-4/a|E-5/b" },
        { U,      "E-1/a|E-2/b|E-3/a E-3/b|E-4/a|E-5/b" },
        { 2 * U,  "E-1/a E-2/b|E-3/a E-3/b|E-4/a E-5/b" },
        { 1 << 20, "E-1/a E-2/b E-3/a E-3/b E-4/a E-5/b" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = te_sliced(t, "a,b", te_id(t, 0, 0), cases[i].max_bytes);
        const char *want = te_expand(t, 0, cases[i].want);
        if (strcmp(got, want) != 0)
            fail_msg("max_bytes %zu: got \"%s\", want \"%s\"", cases[i].max_bytes, got, want);
    }
    /* Any budget: the slices join up with no duplicate and no gap. */
    char whole[512];
    snprintf(whole, sizeof(whole), "%s", te_expand(t, 0, "E-2/b E-3/b E-3/a E-4/a E-5/b"));
    for (size_t budget = 1; budget < 8 * U; budget += 3) {
        char flat[512];
        snprintf(flat, sizeof(flat), "%s", te_sliced(t, "b,a", te_id(t, 0, 1), budget));
        for (char *p = flat; *p; p++)
            if (*p == '|')
                *p = ' ';
        if (strcmp(flat, whole) != 0)
            fail_msg("max_bytes %zu: got \"%s\", want \"%s\"", budget, flat, whole);
    }
}

/* With room for two messages, a@1 is evicted by b@3; a@4 then gives a a
 * new history record, which must still remember the loss: a page resuming
 * a after E-0 gets a reset, not E-4 alone. */
static void test_history_reset_after_channel_history_recreated(void **state)
{
    (void)state;
    struct te t;
    te_open(&t, 2, TE_BIG);
    te_pub(&t, "a", "1");
    te_pub(&t, "b", "2");
    te_pub(&t, "b", "3");                    /* evicts E-1 */
    te_pub(&t, "a", "4");                    /* evicts E-2 */
    struct te_answer a0, a1;
    te_ask(&t, "a", te_id(&t, 0, 0), 0, &a0);
    te_ask(&t, "a", te_id(&t, 0, 1), 0, &a1);
    char want[64];
    snprintf(want, sizeof(want), "%s", te_expand(&t, 0, "E-4/a"));
    /* Checked after the frees, so the failure leaks nothing. */
    te_close(&t);
    assert_int_equal(a0.reset[0], 1);
    assert_int_equal(a1.reset[0], 0);
    assert_string_equal(a1.items, want);
}

/* ---- save / restore ---- */

struct te_dir {
    char dir[64];
    char path[128];
};

static void te_dir_new(struct te_dir *d)
{
    snprintf(d->dir, sizeof(d->dir), "/tmp/wspush-engine-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->path, sizeof(d->path), "%s/h.bin", d->dir);
}

static void te_dir_free(struct te_dir *d)
{
    unlink(d->path);
    rmdir(d->dir);
}

static void test_save_restore_continues_ids(void **state)
{
    (void)state;
    struct te_dir d;
    te_dir_new(&d);
    char err[256];
    /* The saved run has an epoch the restarted engine cannot have made
     * itself (16 s ahead), so ids continuing from it are the saved ones. */
    struct te t;
    te_open(&t, 100, TE_BIG);
    struct engine_result r;
    assert_int_equal(te_pub_id(&t, "a", "1", te_id(&t, 16, 5), &r), 0);
    te_pub(&t, "b", "[2]");
    te_pub(&t, "a,b", "{\"x\":3}");
    uint32_t saved = t.epoch + 16;
    assert_int_equal(engine_memory_save(t.e, d.path, err, sizeof(err)), 0);
    te_close(&t);

    te_open(&t, 100, TE_BIG);
    assert_true(t.epoch != saved);
    /* Ids of the saved run, relative to this engine's fresh epoch. */
    int64_t ds = (int64_t)saved - (int64_t)t.epoch;
    assert_int_equal(engine_memory_restore(t.e, d.path, err, sizeof(err)), 0);
    assert_int_equal(engine_memory_entries(t.e), 3);
    te_assert_last_id(&t, te_id(&t, ds, 7));
    /* A page that saw E-5 before the restart resumes across it. */
    struct te_answer a;
    te_ask(&t, "a,b", te_id(&t, ds, 5), 0, &a);
    assert_int_equal(a.reset[0] | a.reset[1], 0);
    assert_string_equal(a.items, te_expand(&t, ds, "E-6/b E-7/a E-7/b"));
    /* So does one from the start of the saved run. */
    te_ask(&t, "b", te_id(&t, ds, 0), 0, &a);
    assert_int_equal(a.reset[0], 0);
    assert_string_equal(a.items, te_expand(&t, ds, "E-6/b E-7/b"));
    /* The fresh epoch this engine started with is now foreign. */
    te_ask(&t, "a", te_id(&t, 0, 0), 0, &a);
    assert_int_equal(a.reset[0], 1);
    /* Ids continue the saved run. */
    t.ret = 3;
    assert_int_equal(te_pub_id(&t, "b", "8", NULL, &r), 0);
    assert_string_equal(r.id, te_id(&t, ds, 8));
    assert_int_equal(r.deliveries, 3);
    assert_int_equal(t.ndeliv, 1);                      /* restore delivers nothing */
    te_ask(&t, "b", te_id(&t, ds, 6), 0, &a);
    assert_string_equal(a.items, te_expand(&t, ds, "E-7/b E-8/b"));
    te_close(&t);
    te_dir_free(&d);
}

/* Restore keeps the gap rule per channel: a page resuming a after E-0
 * was told to reset before the restart (a lost E-1) and must be after it,
 * not handed E-2 and E-4 as if nothing were missing. */
static void test_restore_keeps_per_channel_gap(void **state)
{
    (void)state;
    struct te_dir d;
    te_dir_new(&d);
    char err[256];
    struct te t;
    te_open(&t, 3, TE_BIG);
    te_pub(&t, "a", "1");
    te_pub(&t, "a", "2");
    te_pub(&t, "b", "3");
    te_pub(&t, "a", "4");                    /* evicts E-1 */
    struct te_answer a;
    te_ask(&t, "a", te_id(&t, 0, 0), 0, &a);
    assert_int_equal(a.reset[0], 1);
    uint32_t saved = t.epoch;
    assert_int_equal(engine_memory_save(t.e, d.path, err, sizeof(err)), 0);
    te_close(&t);
    te_open(&t, 3, TE_BIG);
    int64_t ds = (int64_t)saved - (int64_t)t.epoch;
    assert_int_equal(engine_memory_restore(t.e, d.path, err, sizeof(err)), 0);
    te_ask(&t, "a", te_id(&t, ds, 1), 0, &a);
    assert_int_equal(a.reset[0], 0);
    assert_string_equal(a.items, te_expand(&t, ds, "E-2/a E-4/a"));
    te_ask(&t, "a", te_id(&t, ds, 0), 0, &a);
    /* Checked after the frees, so the failure leaks nothing. */
    te_close(&t);
    te_dir_free(&d);
    assert_int_equal(a.reset[0], 1);
}

static void te_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void test_restore_failure_keeps_fresh_epoch(void **state)
{
    (void)state;
    struct te_dir d;
    te_dir_new(&d);
    char err[256];
    struct te t;
    te_open(&t, 100, TE_BIG);
    struct engine_result r;
    assert_int_equal(te_pub_id(&t, "a", "1", te_id(&t, 16, 5), &r), 0);
    te_pub(&t, "a,b", "2");
    assert_int_equal(engine_memory_save(t.e, d.path, err, sizeof(err)), 0);
    te_close(&t);
    unsigned char good[1024];
    FILE *f = fopen(d.path, "rb");
    assert_non_null(f);
    size_t len = fread(good, 1, sizeof(good), f);
    fclose(f);
    assert_true(len > 40 && len < sizeof(good));

    enum { MISSING, EMPTY, TRUNCATED, NO_CHECKSUM, FLIPPED, FORMAT_1 };
    static const char *const what[] = { "missing", "empty", "truncated", "no checksum",
                                        "flipped", "format 1" };
    for (int k = MISSING; k <= FORMAT_1; k++) {
        unsigned char bad[1024];
        memcpy(bad, good, len);
        switch (k) {
        case MISSING:     unlink(d.path); break;
        case EMPTY:       te_write(d.path, bad, 0); break;
        case TRUNCATED:   te_write(d.path, bad, len / 2); break;
        case NO_CHECKSUM: te_write(d.path, bad, len - 4); break;
        case FLIPPED:     bad[len - 10] ^= 1; te_write(d.path, bad, len); break;
        case FORMAT_1:    bad[7] = '1'; te_write(d.path, bad, len); break;
        }
        te_open(&t, 100, TE_BIG);
        err[0] = '\0';
        if (engine_memory_restore(t.e, d.path, err, sizeof(err)) != -1)
            fail_msg("%s: restored", what[k]);
        assert_non_null(strstr(err, d.path));
        assert_int_equal(engine_memory_entries(t.e), 0);
        te_assert_last_id(&t, te_id(&t, 0, 0));
        assert_int_equal(te_pub_id(&t, "a", "1", NULL, &r), 0);
        assert_string_equal(r.id, te_id(&t, 0, 1));
        struct te_answer a;
        te_ask(&t, "a", te_id(&t, 16, 5), 0, &a);       /* the saved run's ids */
        assert_int_equal(a.reset[0], 1);
        te_ask(&t, "a", te_id(&t, 0, 0), 0, &a);
        assert_int_equal(a.reset[0], 0);
        assert_string_equal(a.items, te_expand(&t, 0, "E-1/a"));
        te_close(&t);
    }
    te_dir_free(&d);
}

/* ---- memory ---- */

static void test_bytes_count_cached_encodings(void **state)
{
    struct te *t = *state;
    assert_int_equal(engine_memory_bytes(t->e), 0);
    te_pub(t, "a,b", "{\"k\":1}");
    struct msg *m = t->keep;
    size_t b0 = engine_memory_bytes(t->e);
    assert_int_equal(b0, history_kept_bytes(m));
    /* Encoded after it was kept (a session sending from history). */
    rbuf_t *frame = msg_encoding(m, MSG_SLOT_WS, 1, te_encode);
    assert_non_null(frame);
    assert_true(engine_memory_bytes(t->e) >= b0 + rbuf_len(frame));
    assert_int_equal(engine_memory_bytes(t->e), history_kept_bytes(m));
    /* Encoded during delivery (a transport's fan-out), before it was kept. */
    t->encode_in_deliver = 1;
    size_t before = engine_memory_bytes(t->e);
    te_pub(t, "c", "2");
    assert_int_equal(engine_memory_bytes(t->e), before + history_kept_bytes(t->keep));
    /* All of it goes with the messages. */
    struct history_limits none = { 0, TE_BIG, 0 };
    engine_memory_set_limits(t->e, &none);
    assert_int_equal(engine_memory_entries(t->e), 0);
    assert_int_equal(engine_memory_bytes(t->e), 0);
}

/* A message bigger than max_bytes is delivered but not kept. */
static void test_oversized_message_delivered_not_kept(void **state)
{
    (void)state;
    struct te t;
    te_open(&t, 100, 1);
    t.ret = 5;
    struct engine_result r;
    assert_int_equal(te_pub_id(&t, "a", "1", NULL, &r), 0);
    assert_int_equal(r.deliveries, 5);
    assert_int_equal(t.ndeliv, 1);
    assert_int_equal(engine_memory_entries(t.e), 0);
    struct te_answer a;
    te_ask(&t, "a", te_id(&t, 0, 0), 0, &a);
    assert_int_equal(a.reset[0], 1);
    te_close(&t);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, te_setup, te_teardown)
    const struct CMUnitTest tests[] = {
        T(test_publish_assigns_ids_and_delivers_once),
        cmocka_unit_test(test_publish_with_id),
        T(test_newer_epoch_drops_old_history),
        T(test_history_foreign_ids_reset_every_channel),
        T(test_history_items_in_id_order),
        cmocka_unit_test(test_history_reset_only_where_messages_were_evicted),
        cmocka_unit_test(test_history_disabled),
        T(test_set_limits_evicts),
        T(test_history_slices_by_max_bytes),
        cmocka_unit_test(test_history_reset_after_channel_history_recreated),
        cmocka_unit_test(test_save_restore_continues_ids),
        cmocka_unit_test(test_restore_keeps_per_channel_gap),
        cmocka_unit_test(test_restore_failure_keeps_fresh_epoch),
        T(test_bytes_count_cached_encodings),
        cmocka_unit_test(test_oversized_message_delivered_not_kept),
    };
#undef T
    return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
