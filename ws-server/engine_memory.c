#include "engine_memory.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channel.h"
#include "msgid.h"

struct engine_memory {
    struct engine    base;       /* first: engine_t * points here */
    ev_loop_t       *loop;
    chan_registry_t *reg;        /* channels that hold history */
    history_t       *history;
    uint32_t         epoch;
    uint64_t         seq;
    char             last_id[MSG_ID_MAX];
    uint64_t         published;  /* messages accepted since the start */
};

static struct engine_memory *em(engine_t *e) { return (struct engine_memory *)e; }
static const struct engine_memory *cem(const engine_t *e) { return (const struct engine_memory *)e; }

static void em_format_id(uint32_t epoch, uint64_t seq, char out[MSG_ID_MAX])
{
    msgid_format((struct msgid){ epoch, seq }, out);
}

static int em_parse_id(struct str id, uint32_t *epoch, uint64_t *seq)
{
    struct msgid m;
    if (msgid_parse(id, &m) < 0)
        return -1;
    *epoch = m.epoch;
    *seq = m.seq;
    return 0;
}

static int em_publish_now(engine_t *e, const struct engine_publish *p, struct engine_result *r)
{
    struct engine_memory *m = em(e);
    uint32_t epoch = m->epoch;
    uint64_t seq = m->seq + 1;
    char id[MSG_ID_MAX];
    em_format_id(epoch, seq, id);
    if (p->id.len) {
        /* A relayed id must be the one this engine would write for it
         * (no leading zeros, seq >= 1: "<epoch>-0" is the greeting's "no
         * message yet"), so every node names the message alike. */
        if (em_parse_id(p->id, &epoch, &seq) < 0 || seq == 0 || epoch < m->epoch ||
            (epoch == m->epoch && seq <= m->seq))
            return -EINVAL;
        em_format_id(epoch, seq, id);
        if (strlen(id) != p->id.len || memcmp(id, p->id.p, p->id.len) != 0)
            return -EINVAL;
    }
    struct msg *msg = msg_new((struct str){ id, strlen(id) }, p->channels, p->nchannels, p->data);
    if (!msg)
        return -ENOMEM;
    if (epoch != m->epoch) {
        /* A new run's ids: what history holds cannot be compared with
         * them any more. */
        history_reset(m->history);
        m->epoch = epoch;
    }
    m->seq = seq;
    memcpy(m->last_id, id, sizeof(id));
    uint64_t now = ev_now(m->loop);
    history_expire(m->history, now);
    /* Delivered first: history may drop the message at once (too big,
     * history off), and a page must still get it. */
    r->deliveries = e->deliver(e->deliver_ctx, msg);
    history_append(m->history, msg, seq, now);
    msg_unref(msg);
    m->published++;
    memcpy(r->id, id, sizeof(id));
    return 0;
}

/* Everything is here: the outcome is known before returning. */
static void em_publish(engine_t *e, const struct engine_publish *p, engine_published_fn *cb,
                       void *arg)
{
    struct engine_result r;
    memset(&r, 0, sizeof(r));
    int rc = em_publish_now(e, p, &r);
    cb(arg, rc, rc == 0 ? &r : NULL);
}

struct em_collect {
    struct engine_item *items;
    size_t              n, cap;
    int                 failed;
};

static void em_collect(void *arg, struct msg *msg, int chan)
{
    struct em_collect *c = arg;
    if (c->failed)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct engine_item *items = realloc(c->items, cap * sizeof(*items));
        if (!items) {
            c->failed = 1;
            return;
        }
        c->items = items;
        c->cap = cap;
    }
    c->items[c->n++] = (struct engine_item){ msg, chan };
}

static void em_history(engine_t *e, const struct engine_query *q, engine_answer_fn *cb, void *arg)
{
    struct engine_memory *m = em(e);
    struct engine_answer a = { 0 };
    uint32_t epoch;
    uint64_t since = 0;
    history_expire(m->history, ev_now(m->loop));
    /* An id from another run, or one that does not parse: every channel
     * resets (the page reloads its state). */
    int foreign = em_parse_id(q->after, &epoch, &since) < 0 || epoch != m->epoch || since > m->seq;
    struct str keep[WSPUSH_MAX_CHANNELS];
    int nkeep = 0;
    int n = q->nchannels < WSPUSH_MAX_CHANNELS ? q->nchannels : WSPUSH_MAX_CHANNELS;
    for (int i = 0; i < n; i++) {
        a.reset[i] = foreign || !history_can_resume(m->history, q->channels[i], since);
        if (!a.reset[i])
            keep[nkeep++] = q->channels[i];
    }
    struct em_collect c = { 0 };
    uint64_t next = since;
    if (nkeep)
        a.more = history_replay(m->history, keep, nkeep, since, q->max_bytes, em_collect, &c, &next);
    if (c.failed) {
        a.failed = 1;
        a.more = 0;
        for (int i = 0; i < n; i++)
            a.reset[i] = 1;
        c.n = 0;
    }
    a.items = c.items;
    a.nitems = c.n;
    if (a.more)
        em_format_id(m->epoch, next, a.next);
    cb(arg, &a);
    free(c.items);
}

static struct str em_last_id(const engine_t *e)
{
    const struct engine_memory *m = cem(e);
    return (struct str){ m->last_id, strlen(m->last_id) };
}

static void em_free(engine_t *e)
{
    struct engine_memory *m = em(e);
    history_free(m->history);
    chan_registry_free(m->reg);
    free(m);
}

static const struct engine_ops em_ops = {
    .publish = em_publish,
    .history = em_history,
    .last_id = em_last_id,
    .free = em_free,
};

engine_t *engine_memory_new(ev_loop_t *loop, const struct history_limits *lim,
                            engine_deliver_fn *deliver, void *deliver_ctx)
{
    struct engine_memory *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->reg = chan_registry_new();
    m->history = m->reg ? history_new(m->reg, lim) : NULL;
    if (!m->history) {
        chan_registry_free(m->reg);
        free(m);
        return NULL;
    }
    m->base.ops = &em_ops;
    m->base.deliver = deliver;
    m->base.deliver_ctx = deliver_ctx;
    m->loop = loop;
    /* Seconds since the epoch: a restarted server gets a larger epoch. */
    m->epoch = (uint32_t)time(NULL);
    em_format_id(m->epoch, 0, m->last_id);
    return &m->base;
}

void engine_memory_set_limits(engine_t *e, const struct history_limits *lim)
{
    history_set_limits(em(e)->history, lim, ev_now(em(e)->loop));
}

int engine_memory_save(engine_t *e, const char *path, char *err, size_t errlen)
{
    struct engine_memory *m = em(e);
    return history_save(m->history, path, m->epoch, m->seq, ev_now(m->loop), err, errlen);
}

int engine_memory_restore(engine_t *e, const char *path, char *err, size_t errlen)
{
    struct engine_memory *m = em(e);
    uint32_t epoch;
    uint64_t seq;
    if (history_load(m->history, path, em_format_id, &epoch, &seq, ev_now(m->loop), err, errlen) < 0)
        return -1;
    m->epoch = epoch;
    m->seq = seq;
    em_format_id(epoch, seq, m->last_id);
    return 0;
}

size_t engine_memory_entries(const engine_t *e) { return history_entries(cem(e)->history); }
size_t engine_memory_bytes(const engine_t *e) { return history_bytes(cem(e)->history); }
uint64_t engine_memory_published(const engine_t *e) { return cem(e)->published; }
