/* session: the live messages held behind a resume, against a scripted
 * engine (it answers each history question with the next scripted slice)
 * and a scripted transport (a queue of `room` bytes that the test empties;
 * queuing a message makes its frame, which adds to msg_bytes() as the real
 * transports do, once per message and slot). The real hub, channels and
 * messages. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "cfg.h"
#include "hub.h"
#include "msg.h"
#include "revoke.h"
#include "session.h"

#define TS_BUDGET 65536

/* ---- the scripted engine */

struct ts_engine {
    struct engine               head;
    const struct engine_answer *answers[4];   /* the next questions' answers */
    int                         next, asked;
    int                         later;        /* answer when ts_answer says (Redis) */
    engine_answer_fn           *cb;           /* the question awaiting ts_answer */
    void                       *arg;
};

static void ts_publish(engine_t *e, const struct engine_publish *p, engine_published_fn *cb, void *arg)
{
    (void)e, (void)p, (void)cb, (void)arg;
    fail_msg("the session test publishes nothing");
}

static void ts_history(engine_t *e, const struct engine_query *q, engine_answer_fn *cb, void *arg)
{
    struct ts_engine *t = (struct ts_engine *)e;
    (void)q;
    assert_non_null(t->answers[t->next]);
    t->asked++;
    if (t->later) {
        assert_null(t->cb);
        t->cb = cb;
        t->arg = arg;
        return;
    }
    cb(arg, t->answers[t->next++]);
}

/* The question in flight gets its scripted answer. */
static void ts_answer(struct ts_engine *t)
{
    engine_answer_fn *cb = t->cb;
    assert_non_null(cb);
    t->cb = NULL;
    cb(t->arg, t->answers[t->next++]);
}

static struct str ts_last_id(const engine_t *e)
{
    (void)e;
    return (struct str){ "1-0", 3 };
}

static void ts_engine_free(engine_t *e) { (void)e; }

static const struct engine_ops ts_engine_ops = { ts_publish, ts_history, ts_last_id, ts_engine_free, NULL, NULL };

/* ---- the scripted transport */

struct ts_conn {
    size_t queued;            /* bytes in the queue, up to TS_BUDGET */
    char   got[16][MSG_ID_MAX]; /* ids of the messages queued, in order */
    int    ngot;
    int    close_code;
    int    want_drained;
};

static rbuf_t *ts_encode(const struct msg *m, int chan)
{
    rbuf_t *r = rbuf_new(msg_envelope_len(m, chan));
    if (r)
        msg_envelope(m, chan, rbuf_wdata(r));
    return r;
}

/* Queues m when its frame fits: 1, or 0 (nothing queued). */
static int ts_queue(struct ts_conn *c, struct msg *m, int chan, int fit_or_fail)
{
    rbuf_t *frame = msg_encoding(m, MSG_SLOT_WS, chan, ts_encode);
    assert_non_null(frame);
    if (c->queued + rbuf_len(frame) > TS_BUDGET) {
        if (fit_or_fail)
            c->close_code = 1013;
        return 0;
    }
    c->queued += rbuf_len(frame);
    struct str id = msg_id(m);
    assert_true(c->ngot < 16);
    memcpy(c->got[c->ngot], id.p, id.len);
    c->got[c->ngot++][id.len] = '\0';
    return 1;
}

static int ts_send_msg(void *t, struct msg *m, int chan) { return ts_queue(t, m, chan, 1); }

static int ts_replay_msg(void *t, struct msg *m, const int *chans, int n)
{
    assert_int_equal(n, 1);
    return ts_queue(t, m, chans[0], 0);
}

static size_t ts_room(void *t)
{
    struct ts_conn *c = t;
    return TS_BUDGET - c->queued;
}

static void ts_want_drained(void *t) { ((struct ts_conn *)t)->want_drained = 1; }
static int ts_is_open(void *t) { return ((struct ts_conn *)t)->close_code == 0; }

static int ts_send_json(void *t, const char *json, size_t len, struct str id)
{
    (void)t, (void)json, (void)len, (void)id;
    return 0;
}

static void ts_close(void *t, int code) { ((struct ts_conn *)t)->close_code = code; }

static const struct transport_ops ts_ops = {
    .send_msg = ts_send_msg,
    .replay_msg = ts_replay_msg,
    .room = ts_room,
    .want_drained = ts_want_drained,
    .is_open = ts_is_open,
    .send_json = ts_send_json,
    .close = ts_close,
};

/* The queue is written out: the drained handler runs, as the transport's. */
static void ts_drain(struct ts_conn *c, struct session *s)
{
    assert_true(c->want_drained);
    c->want_drained = 0;
    c->queued = 0;
    session_drained(s);
}

static struct msg *ts_msg(const char *id, const char *chan, size_t datalen)
{
    char *data = malloc(datalen);
    assert_non_null(data);
    memset(data, 'x', datalen);
    data[0] = data[datalen - 1] = '"';
    struct str name = { chan, strlen(chan) };
    struct msg *m = msg_new((struct str){ id, strlen(id) }, &name, 1, (struct str){ data, datalen });
    free(data);
    assert_non_null(m);
    return m;
}

/* The real hub and sessions over eng, every channel public. */
struct ts_world {
    struct cfg  cfg, *cfgp;
    revoke_t   *rv;
    hub_t      *hub;
    sessions_t *ss;
};

static void ts_world_open(struct ts_world *w, struct ts_engine *eng)
{
    cfg_defaults(&w->cfg);
    w->cfg.send_buffer_bytes = TS_BUDGET;
    w->cfg.public_channels.n = 1;
    w->cfg.public_channels.items[0] = strdup("*");
    w->cfgp = &w->cfg;
    struct revoke_limits lim = { 3600, 100 };
    w->rv = revoke_new(&lim, 0);
    w->hub = hub_new(session_deliver);
    w->ss = sessions_new(w->hub, &eng->head, w->rv, &w->cfgp);
    assert_true(w->rv && w->hub && w->ss);
}

static void ts_world_close(struct ts_world *w)
{
    sessions_free(w->ss);
    hub_free(w->hub);
    revoke_free(w->rv);
    cfg_free(&w->cfg);
}

/* A page resumes a and b; b cannot be filled (reset) while a's replay
 * goes on, so b's live messages are held. When the replay ends the queue
 * takes two of the three held; the hold then counts the third only, and a
 * small live message joins it. Charged msg_bytes() when held, a message
 * has grown by its frame once queued: taking that larger size off made
 * the held total wrap, and the small one closed the page with 1013. */
static void test_hold_counts_what_it_charged(void **state)
{
    (void)state;
    struct ts_engine eng = { .head = { &ts_engine_ops, NULL, NULL } };
    struct ts_world w;
    ts_world_open(&w, &eng);
    hub_t *hub = w.hub;
    sessions_t *ss = w.ss;

    /* a's last replayed message leaves 30,000 bytes of room. */
    struct msg *replayed = ts_msg("1-5", "a", TS_BUDGET - 30000 - 80);
    struct engine_item item = { replayed, 0 };
    struct engine_answer first = { .reset = { 0, 1 }, .items = &item, .nitems = 1, .more = 1 };
    strcpy(first.next, "1-5");
    struct engine_answer last = { .nitems = 0 };
    eng.answers[0] = &first;
    eng.answers[1] = &last;

    struct ts_conn c = { 0 };
    int code = -1;
    static const char q[] = "channels=a,b&last_id=1-1";
    struct session *s = session_open(ss, (struct str){ q, sizeof(q) - 1 }, (struct str){ 0 }, &c,
                                     &ts_ops, &code);
    assert_non_null(s);
    assert_int_equal(code, 0);
    c.want_drained = 1;       /* the greeting */
    ts_drain(&c, s);          /* slice 1: b reset, a's message queued */
    assert_int_equal(eng.asked, 1);
    assert_int_equal(c.ngot, 1);

    /* Three live b messages of 14,000 bytes: held (42 KB of 64). */
    struct msg *live[4] = { ts_msg("1-6", "b", 14000), ts_msg("1-7", "b", 14000),
                            ts_msg("1-8", "b", 14000), ts_msg("1-9", "b", 100) };
    for (int i = 0; i < 3; i++)
        assert_int_equal(hub_publish(hub, live[i]), 1);
    assert_int_equal(c.ngot, 1);

    /* The replay ends (the queue was not written): two held ones fit. */
    c.want_drained = 1;
    session_drained(s);
    assert_int_equal(eng.asked, 2);
    assert_int_equal(c.ngot, 3);
    assert_true(c.want_drained);

    /* A small live b message joins the one still held. */
    assert_int_equal(hub_publish(hub, live[3]), 1);
    assert_int_equal(c.close_code, 0);
    ts_drain(&c, s);
    assert_int_equal(c.close_code, 0);
    static const char *want[] = { "1-5", "1-6", "1-7", "1-8", "1-9" };
    assert_int_equal(c.ngot, 5);
    for (int i = 0; i < 5; i++)
        assert_string_equal(c.got[i], want[i]);

    session_close(s);
    for (int i = 0; i < 4; i++)
        msg_unref(live[i]);
    msg_unref(replayed);
    ts_world_close(&w);
}

/* An engine that answers later (Redis): live messages of the replaying
 * channel that come while a question is in flight are held by the
 * session and settled by the answer. During slice 1 (more follows) 1-3
 * comes: dropped, slice 2 (asked after it came) has it. During slice 2,
 * 1-4 (in its answer: sent once) and 1-5 (published after the read ran:
 * not in it, sent after the replay) come. */
static void test_live_messages_during_a_late_answer_are_settled(void **state)
{
    (void)state;
    struct ts_engine eng = { .head = { &ts_engine_ops, NULL, NULL }, .later = 1 };
    struct ts_world w;
    ts_world_open(&w, &eng);
    hub_t *hub = w.hub;
    sessions_t *ss = w.ss;

    struct msg *m[5] = { ts_msg("1-2", "a", 100), ts_msg("1-3", "a", 100), ts_msg("1-4", "a", 100),
                         ts_msg("1-5", "a", 100), ts_msg("1-4", "a", 100) };
    struct engine_item it1[1] = { { m[0], 0 } };
    struct engine_item it2[2] = { { m[1], 0 }, { m[4], 0 } };
    struct engine_answer first = { .items = it1, .nitems = 1, .more = 1 };
    strcpy(first.next, "1-2");
    struct engine_answer second = { .items = it2, .nitems = 2 };
    eng.answers[0] = &first;
    eng.answers[1] = &second;

    struct ts_conn c = { 0 };
    int code = -1;
    static const char q[] = "channels=a&last_id=1-1";
    struct session *s = session_open(ss, (struct str){ q, sizeof(q) - 1 }, (struct str){ 0 }, &c,
                                     &ts_ops, &code);
    assert_non_null(s);
    c.want_drained = 1;       /* the greeting */
    ts_drain(&c, s);          /* slice 1 asked */
    assert_int_equal(hub_publish(hub, m[1]), 1);
    assert_int_equal(c.ngot, 0);
    ts_answer(&eng);          /* 1-2; 1-3 is left to slice 2 */
    assert_int_equal(c.ngot, 1);
    ts_drain(&c, s);          /* slice 2 asked */
    assert_int_equal(hub_publish(hub, m[2]), 1);
    assert_int_equal(hub_publish(hub, m[3]), 1);
    assert_int_equal(c.ngot, 1);
    ts_answer(&eng);          /* 1-3, 1-4 replayed; then the held 1-5 */
    assert_int_equal(c.close_code, 0);
    static const char *want[] = { "1-2", "1-3", "1-4", "1-5" };
    assert_int_equal(c.ngot, 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(c.got[i], want[i]);

    session_close(s);
    for (int i = 0; i < 5; i++)
        msg_unref(m[i]);
    ts_world_close(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_counts_what_it_charged),
        cmocka_unit_test(test_live_messages_during_a_late_answer_are_settled),
    };
    return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
