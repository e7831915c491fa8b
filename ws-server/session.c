#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "list.h"
#include "log.h"
#include "msgid.h"
#include "pattern.h"
#include "token.h"
#include "urlenc.h"

/* Bytes for the URL-decoded channels and token of one query; a query is
 * bounded by max_header_bytes, which cfg caps well below this. */
#define SESSION_DECODE_MAX 65536

struct sessions {
    hub_t             *hub;
    engine_t          *engine;
    revoke_t          *revoked;
    struct cfg *const *cfg;
    struct list        all;
    char              *decoded;    /* SESSION_DECODE_MAX, reused by every open */
    struct stats_session stats;
};

/* A resume streams: while replaying is not 0, the history after
 * resume_after is queued a slice at a time (at most the transport's room),
 * the next slice when the transport has written the last. Live messages of
 * the channels still replaying are not queued meanwhile: the replay
 * reaches them in the history, in id order, or the channel gets a reset
 * when the history lost one. A message is never sent twice nor skipped,
 * and a page that never reads pins at most one slice.
 *
 * A channel reset mid-resume leaves the replay, but its live messages are
 * held (session_hold) until the resume ends: sent at once they would carry
 * ids past messages still to be replayed on the other channels, and a
 * page that reconnects from the last id it saw would skip those.
 *
 * An engine that answers later (Redis) may hand over, while a slice's
 * question is in flight, a live copy that its answer will not hold (it
 * was published after the read ran): such copies of replaying channels
 * are held too ("pending") and settled by the answer (session_settle):
 * dropped when the replay goes on past them or sent them already, kept
 * otherwise. So the engine holds nothing for a resume, and a page's
 * resume makes only that page wait (within send_buffer_bytes). Pending
 * copies past send_buffer_bytes (a catch-up's burst, a busy channel) are
 * dropped instead, and the replay asks once more after the answer, from
 * the last message it sent: the history has them. Only when that happens
 * SESSION_REASKS_MAX answers running is the page a slow consumer (1013). */
#define SESSION_REASKS_MAX 3

struct session_hold {
    size_t first, n, cap, bytes;          /* items[first..n) still held */
    /* bytes: msg_bytes() when held; sending may add encodings to the
     * message, so that, not msg_bytes() then, comes off the total. */
    struct session_held { struct msg *m; int chan; size_t bytes; int pending; } *items;
};

struct session_slice;

struct session {
    struct list_node            node;      /* sessions.all */
    sessions_t                 *ss;
    void                       *transport;
    const struct transport_ops *ops;
    char                       *user;      /* token sub, NULL without one */
    long                        iat;       /* the token's iat (0: none), for records learned later */
    char                       *resume_after; /* MSG_ID_MAX bytes while a resume streams */
    struct session_hold        *hold;      /* while a resume streams */
    size_t                      resume_len;
    uint32_t                    replaying; /* bit i: subs[i] still being replayed */
    int                         resume_reset; /* a channel of this resume was reset */
    int                         reask;     /* pending copies were dropped: ask again */
    int                         reasks;    /* answers running that ended so */
    struct session_slice       *asking;    /* the slice whose answer is awaited */
    /* An engine answering later (Redis) may hand a live copy of a message
     * already replayed after the replay: subs in `marked` skip live
     * messages up to `mark`, the newest replayed, until a newer one. */
    uint32_t                    marked;
    struct msgid                mark;
    int                         nsubs;
    struct chan_member          subs[];    /* fixed after the open */
};

_Static_assert(WSPUSH_MAX_CHANNELS <= 32, "session.replaying has a bit per channel");

sessions_t *sessions_new(hub_t *hub, engine_t *engine, revoke_t *revoked, struct cfg *const *cfg)
{
    sessions_t *ss = calloc(1, sizeof(*ss));
    if (!ss)
        return NULL;
    ss->decoded = malloc(SESSION_DECODE_MAX);
    if (!ss->decoded) {
        free(ss);
        return NULL;
    }
    ss->hub = hub;
    ss->engine = engine;
    ss->revoked = revoked;
    ss->cfg = cfg;
    list_init(&ss->all);
    return ss;
}

void sessions_free(sessions_t *ss)
{
    if (!ss)
        return;
    free(ss->decoded);
    free(ss);
}

size_t sessions_count(const sessions_t *ss) { return ss->all.n; }
const struct stats_session *sessions_stats(const sessions_t *ss) { return &ss->stats; }

/* The token's claims decide the channels that are not public. Returns 0
 * (claims filled when has_claims) or a close code. */
static int session_check_token(sessions_t *ss, struct str query, const struct str *names, int n,
                               struct tok_claims *claims, int *has_claims)
{
    const struct cfg *cfg = *ss->cfg;
    int need_token = 0;
    for (int i = 0; i < n; i++)
        if (!pat_match_any(&cfg->public_channels, NULL, names[i].p, names[i].len))
            need_token = 1;
    const char *raw;
    size_t rawlen;
    int has = url_query_get(query.p, query.len, "token", &raw, &rawlen);
    if (has < 0 || (need_token && has == 0))
        return 4401;
    *has_claims = 0;
    if (has == 1) {
        char *tok = ss->decoded + SESSION_DECODE_MAX / 2;
        ssize_t tl = url_decode(raw, rawlen, tok, 0);
        if (tl <= 0)
            return 4401;
        long now = revoke_clock();
        int rc = tok_verify(tok, (size_t)tl, &cfg->secret, &cfg->previous_secret, now, claims);
        if (rc < 0) {
            log_info("subscribe: token refused: %s", tok_strerror(rc));
            return 4401;
        }
        *has_claims = 1;
        struct str sub = { claims->sub, strlen(claims->sub) };
        rc = revoke_check(ss->revoked, sub, claims->iat, claims->exp, now);
        if (rc < 0) {
            log_info("subscribe: token of '%s' refused: %s", claims->sub, revoke_strerror(rc));
            return 4401;
        }
    }
    for (int i = 0; i < n; i++) {
        if (pat_match_any(&cfg->public_channels, NULL, names[i].p, names[i].len))
            continue;
        int ok = 0;
        for (int k = 0; k < claims->nchannels && !ok; k++)
            ok = pat_match(claims->channels[k], NULL, names[i].p, names[i].len);
        if (!ok)
            return 4403;
    }
    return 0;
}

/* resuming: the page gave an id to resume after. Without one, the
 * greeting's last_id is also the id a reader that keeps one resumes after
 * (SSE's lastEventId): an EventSource whose stream ends before its first
 * message then reconnects from there, not from nothing. A resume keeps
 * the id the reader has: the replay sets it, message by message. */
static int session_greet(struct session *s, const struct str *names, int n, int resuming)
{
    struct buf greet = { 0 };
    struct str last = engine_last_id(s->ss->engine);
    int rc = buf_printf(&greet, "{\"type\":\"subscribed\",\"channels\":[");
    for (int i = 0; i < n; i++)
        rc |= buf_printf(&greet, "%s\"%.*s\"", i ? "," : "", (int)names[i].len, names[i].p);
    rc |= buf_printf(&greet, "],\"last_id\":\"%.*s\"}", (int)last.len, last.p);
    if (rc == 0)
        rc = s->ops->send_json(s->transport, buf_head(&greet), buf_used(&greet),
                               resuming ? (struct str){ 0 } : last);
    buf_free(&greet);
    return rc;
}

struct session_slice;
static void session_mark(struct session *s, const struct session_slice *r, struct msg *m,
                         const int *chans, int n);

/* One slice's question and where its answer goes (s = NULL: the session
 * closed before the answer came). */
struct session_slice {
    struct session *s;
    struct str      names[WSPUSH_MAX_CHANNELS];  /* the channels still replaying */
    int             sub[WSPUSH_MAX_CHANNELS];    /* names[k] is subs[sub[k]] */
    int             n;
};

/* Drops what is still held (the session closes). */
static void session_hold_drop(struct session *s)
{
    struct session_hold *h = s->hold;
    if (!h)
        return;
    s->hold = NULL;
    for (size_t i = h->first; i < h->n; i++)
        msg_unref(h->items[i].m);
    free(h->items);
    free(h);
}

/* After the replay: sends the held messages as the queue takes them (the
 * resume's last slice may still fill it: sent at once they could pass the
 * send budget and close the page with 1013), the rest when it drains. Live
 * messages keep joining the hold until it is empty, so order holds. */
static void session_hold_flush(struct session *s)
{
    struct session_hold *h = s->hold;
    while (h && h->first < h->n) {
        struct session_held *it = &h->items[h->first];
        int rc = s->ops->replay_msg(s->transport, it->m, &it->chan, 1);
        if (rc == 0) {
            s->ops->want_drained(s->transport);
            return;
        }
        if (rc < 0)
            break;                          /* closing: the rest is moot */
        h->bytes -= it->bytes;
        msg_unref(it->m);
        h->first++;
    }
    session_hold_drop(s);
}

/* The pending copies go: a question asked after they came reaches them.
 * Returns how many went. */
static size_t session_drop_pending(struct session *s)
{
    struct session_hold *h = s->hold;
    size_t out = h->first, n = h->n - h->first;
    for (size_t i = h->first; i < h->n; i++) {
        if (h->items[i].pending) {
            h->bytes -= h->items[i].bytes;
            msg_unref(h->items[i].m);
            continue;
        }
        h->items[out++] = h->items[i];
    }
    h->n = out;
    return n - (out - h->first);
}

/* Holds a live message of a channel reset mid-resume. Returns 1 (it will
 * be sent when the resume ends) or 0: closing, out of memory, or more held
 * than send_buffer_bytes (then the page is closed with 1013 and resumes
 * later from what it has). */
static int session_hold(struct session *s, struct msg *m, int chan, int pending)
{
    struct session_hold *h = s->hold;
    if (!h || !s->ops->is_open(s->transport))
        return 0;
    size_t budget = (size_t)(*s->ss->cfg)->send_buffer_bytes;
    if (h->bytes + msg_bytes(m) > budget && s->asking && s->reasks < SESSION_REASKS_MAX &&
        (session_drop_pending(s) > 0 || pending)) {
        s->reask = 1;                    /* the next question reaches them */
        if (pending)
            return 1;                    /* m with them */
    }
    if (h->bytes + msg_bytes(m) > budget) {
        log_info("subscribe: live messages held behind a resume past send_buffer_bytes: 1013");
        s->ops->close(s->transport, 1013);
        return 0;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 8;
        struct session_held *items = realloc(h->items, cap * sizeof(*items));
        if (!items) {
            s->ops->close(s->transport, 1011);
            return 0;
        }
        h->items = items;
        h->cap = cap;
    }
    h->items[h->n++] = (struct session_held){ msg_ref(m), chan, msg_bytes(m), pending };
    h->bytes += msg_bytes(m);
    return 1;
}

static int session_replays(const struct session *s, struct str name);
static int session_sent(const struct session *s, struct msg *m, int chan);

/* The answer to a slice is in: the live copies held while it was asked
 * (pending) are dropped when their channel still replays (the next
 * question, asked after they came, reaches them) or when the replay sent
 * them; the others now wait like any held message. ending: the replay is
 * over for every channel. */
static void session_settle(struct session *s, int ending)
{
    struct session_hold *h = s->hold;
    if (!h)
        return;
    size_t out = h->first;
    for (size_t i = h->first; i < h->n; i++) {
        struct session_held it = h->items[i];
        if (it.pending) {
            if ((!ending && session_replays(s, msg_channel(it.m, it.chan))) ||
                session_sent(s, it.m, it.chan)) {
                h->bytes -= it.bytes;
                msg_unref(it.m);
                continue;
            }
            it.pending = 0;
        }
        h->items[out++] = it;
    }
    h->n = out;
}

/* The answer reset some channels: their copies that came while it was
 * asked now wait like any held message of a reset channel (not "pending":
 * no question of theirs will reach them). */
static void session_settle_reset(struct session *s)
{
    struct session_hold *h = s->hold;
    for (size_t i = h ? h->first : 0; h && i < h->n; i++)
        if (h->items[i].pending && !session_replays(s, msg_channel(h->items[i].m, h->items[i].chan)))
            h->items[i].pending = 0;
}

/* Before a replayed message of id `before` is queued: the held messages
 * of reset channels older than it go first, so the page sees one id
 * order across its channels (they used to wait for the resume's end,
 * behind newer replayed ones). Pending copies keep their place: settled
 * with the answer. 1: done; 0: no room (the replay waits too); -1:
 * closing. */
static int session_hold_send_before(struct session *s, struct str before)
{
    struct session_hold *h = s->hold;
    struct msgid limit, id;
    if (!h || h->first == h->n || msgid_parse(before, &limit) < 0)
        return 1;
    int rc = 1;
    size_t out = h->first;
    for (size_t i = h->first; i < h->n; i++) {
        struct session_held it = h->items[i];
        if (rc == 1 && !it.pending && msgid_parse(msg_id(it.m), &id) == 0 &&
            msgid_cmp(id, limit) < 0) {
            int r = s->ops->replay_msg(s->transport, it.m, &it.chan, 1);
            if (r > 0) {
                h->bytes -= it.bytes;
                msg_unref(it.m);
                continue;
            }
            rc = r < 0 ? -1 : 0;
        }
        h->items[out++] = it;
    }
    h->n = out;
    return rc;
}

static void session_resume_end(struct session *s)
{
    if (s->resume_reset)
        s->ss->stats.resumes_reset++;
    else
        s->ss->stats.resumes_exact++;
    s->replaying = 0;
    free(s->resume_after);
    s->resume_after = NULL;
    session_hold_flush(s);
}

/* The engine's answer: a reset for the channels whose gap cannot be
 * filled (they leave the replay and get live messages from now on), then
 * the slice's messages of the others; with more, the next slice is asked
 * for once the transport has written this one. */
static void session_on_slice_now(struct session *s, struct session_slice *r,
                                 const struct engine_answer *a);

static void session_on_slice(void *arg, const struct engine_answer *a)
{
    struct session_slice *r = arg;
    struct session *s = r->s;
    if (s) {
        s->asking = NULL;
        session_on_slice_now(s, r, a);
    }
    free(r);
}

static void session_on_slice_now(struct session *s, struct session_slice *r,
                                 const struct engine_answer *a)
{
    struct buf msg = { 0 };
    int rc = 0, nreset = 0;
    for (int k = 0; k < r->n; k++) {
        if (!a->reset[k] && !a->failed)
            continue;
        s->replaying &= ~(1u << r->sub[k]);
        s->marked &= ~(1u << r->sub[k]);   /* its last id meant nothing here (a future one?) */
        rc |= buf_printf(&msg, "%s\"%.*s\"", nreset++ ? "," : "{\"type\":\"reset\",\"channels\":[",
                         (int)r->names[k].len, r->names[k].p);
    }
    if (nreset) {
        s->resume_reset = 1;
        rc |= buf_printf(&msg, "]}");
        if (rc == 0)
            rc = s->ops->send_json(s->transport, buf_head(&msg), buf_used(&msg), (struct str){ 0 });
    }
    buf_free(&msg);
    if (rc < 0) {
        session_resume_end(s);
        s->ops->close(s->transport, 1011);
        return;
    }
    if (nreset)
        session_settle_reset(s);
    /* The visits of one message (one per replayed channel it is on) are
     * consecutive, the items being in id order; they are queued together. */
    size_t k = 0;
    int rc2 = 1;
    while (k < a->nitems) {
        int chans[WSPUSH_MAX_CHANNELS], n = 0;
        size_t j = k;
        while (j < a->nitems && a->items[j].m == a->items[k].m && n < WSPUSH_MAX_CHANNELS)
            chans[n++] = a->items[j++].chan;
        rc2 = session_hold_send_before(s, msg_id(a->items[k].m));
        if (rc2 <= 0)
            break;
        rc2 = s->ops->replay_msg(s->transport, a->items[k].m, chans, n);
        if (rc2 <= 0)
            break;
        s->ss->stats.replayed += (uint64_t)n;
        session_mark(s, r, a->items[k].m, chans, n);
        k = j;
    }
    log_debug("subscribe: resume slice: %zu of %zu replayed, %d channel(s) reset", k, a->nitems,
              nreset);
    int reask = s->reask;
    s->reask = 0;
    /* Counted only when asking again is all that keeps the replay going. */
    s->reasks = reask && k == a->nitems && !a->more ? s->reasks + 1 : 0;
    session_settle(s, rc2 < 0 || !s->replaying || !s->ops->is_open(s->transport) ||
                      (k == a->nitems && !a->more && !reask));
    if (rc2 < 0 || !s->replaying || !s->ops->is_open(s->transport)) {
        session_resume_end(s);      /* closing, or every channel reset */
        return;
    }
    struct str next = { a->next, strlen(a->next) };
    if (k < a->nitems) {
        if (k == 0) {
            /* Not even one message fits yet (the queue holds live
             * messages of a reset channel): the same slice again later. */
            s->ops->want_drained(s->transport);
            return;
        }
        next = msg_id(a->items[k - 1].m);   /* no room: go on after the last one queued */
    } else if (!a->more && !reask) {
        session_resume_end(s);      /* caught up */
        return;
    } else if (!a->more) {
        /* Copies published after the read were dropped: once more. */
        next = k > 0 ? msg_id(a->items[k - 1].m) : (struct str){ s->resume_after, s->resume_len };
    }
    memmove(s->resume_after, next.p, next.len);
    s->resume_len = next.len;
    s->ops->want_drained(s->transport);
}

void session_drained(struct session *s)
{
    if (!s->replaying) {
        session_hold_flush(s);
        return;
    }
    size_t room = s->ops->room(s->transport);
    if (room == 0) {
        /* Not writable yet after all (or closing: then never again). */
        s->ops->want_drained(s->transport);
        return;
    }
    /* Kept until the answer, which an engine may give later (Redis). */
    struct session_slice *r = calloc(1, sizeof(*r));
    if (!r) {
        session_resume_end(s);
        s->ops->close(s->transport, 1011);
        return;
    }
    r->s = s;
    for (int i = 0; i < s->nsubs; i++) {
        if (!(s->replaying & (1u << i)))
            continue;
        const struct channel *ch = s->subs[i].ch;
        r->names[r->n] = (struct str){ chan_name(ch), chan_name_len(ch) };
        r->sub[r->n++] = i;
    }
    s->asking = r;
    struct engine_query q = { r->names, r->n, { s->resume_after, s->resume_len }, room };
    engine_history(s->ss->engine, &q, session_on_slice, r);
}

/* last_id (URL-encoded when encoded): the resume starts once the
 * greeting is written (the first slice then has the whole send budget). */
static int session_resume(struct session *s, const char *raw, size_t rawlen, int encoded)
{
    s->resume_after = malloc(MSG_ID_MAX);
    s->hold = calloc(1, sizeof(*s->hold));
    if (!s->resume_after || !s->hold)
        return -1;
    ssize_t idlen = -1;
    if (rawlen < MSG_ID_MAX && encoded) {
        idlen = url_decode(raw, rawlen, s->resume_after, 0);
    } else if (rawlen < MSG_ID_MAX) {
        memcpy(s->resume_after, raw, rawlen);
        idlen = (ssize_t)rawlen;
    }
    if (idlen < 0)
        idlen = 0;      /* unparsable: the engine resets every channel */
    s->resume_len = (size_t)idlen;
    s->replaying = s->nsubs == 32 ? UINT32_MAX : (1u << s->nsubs) - 1;
    /* The page has every message up to its last id: a live copy up to it
     * (an engine catching a channel new to its node up from an older id
     * than the page's) is not sent again. */
    if (msgid_parse((struct str){ s->resume_after, s->resume_len }, &s->mark) == 0)
        s->marked = s->replaying;
    s->ops->want_drained(s->transport);
    return 0;
}

/* 1 when the channel called name is still being replayed to s. */
static int session_replays(const struct session *s, struct str name)
{
    for (int i = 0; i < s->nsubs; i++) {
        if (!(s->replaying & (1u << i)))
            continue;
        const struct channel *ch = s->subs[i].ch;
        if (chan_name_len(ch) == name.len && memcmp(chan_name(ch), name.p, name.len) == 0)
            return 1;
    }
    return 0;
}

static struct session *session_new(sessions_t *ss, int n, void *transport,
                                   const struct transport_ops *ops)
{
    struct session *s = calloc(1, sizeof(*s) + (size_t)n * sizeof(s->subs[0]));
    if (!s)
        return NULL;
    s->ss = ss;
    s->transport = transport;
    s->ops = ops;
    list_push(&ss->all, &s->node);
    return s;
}

static struct session *session_open_checked(sessions_t *ss, struct str query, struct str resume,
                                            void *transport,
                                            const struct transport_ops *ops, int *close_code)
{
    const struct cfg *cfg = *ss->cfg;
    const char *raw;
    size_t rawlen;
    *close_code = 4400;
    if (query.len > SESSION_DECODE_MAX / 2 - 1 ||
        url_query_get(query.p, query.len, "channels", &raw, &rawlen) != 1)
        return NULL;
    ssize_t dl = url_decode(raw, rawlen, ss->decoded, 0);
    if (dl <= 0)
        return NULL;
    struct str names[WSPUSH_MAX_CHANNELS];
    int max = cfg->max_channels < WSPUSH_MAX_CHANNELS ? cfg->max_channels : WSPUSH_MAX_CHANNELS;
    int n = pat_split_channels(ss->decoded, (size_t)dl, names, max);
    if (n <= 0)
        return NULL;

    struct tok_claims claims;
    int has_claims = 0;
    *close_code = session_check_token(ss, query, names, n, &claims, &has_claims);
    struct session *s = NULL;
    if (*close_code == 0) {
        s = session_new(ss, n, transport, ops);
        if (s && has_claims && claims.sub[0] && !(s->user = strdup(claims.sub))) {
            session_close(s);
            s = NULL;
        }
        if (s && has_claims)
            s->iat = claims.iat;
        if (!s)
            *close_code = 1011;
    }
    if (has_claims)
        tok_claims_free(&claims);
    if (!s)
        return NULL;

    for (int i = 0; i < n; i++) {
        s->subs[i].owner = s;
        if (hub_subscribe(ss->hub, names[i], &s->subs[i]) < 0)
            goto nomem;
        s->nsubs = i + 1;
    }
    int has_last_id = url_query_get(query.p, query.len, "last_id", &raw, &rawlen) == 1;
    if (session_greet(s, names, n, resume.len > 0 || has_last_id) < 0)
        goto nomem;
    if (resume.len > 0) {
        if (session_resume(s, resume.p, resume.len, 0) < 0)
            goto nomem;
    } else if (has_last_id && session_resume(s, raw, rawlen, 1) < 0) {
        goto nomem;
    }
    *close_code = 0;
    return s;
nomem:
    session_close(s);
    *close_code = 1011;
    return NULL;
}

struct session *session_open(sessions_t *ss, struct str query, struct str resume, void *transport,
                             const struct transport_ops *ops, int *close_code)
{
    struct session *s = session_open_checked(ss, query, resume, transport, ops, close_code);
    if (!s) {
        /* 1011 (out of memory) is no refusal: the close count shows it. */
        if (*close_code == 4400)
            ss->stats.refused.n[STATS_REFUSED_CHANNELS]++;
        else if (*close_code == 4401)
            ss->stats.refused.n[STATS_REFUSED_TOKEN]++;
        else if (*close_code == 4403)
            ss->stats.refused.n[STATS_REFUSED_NOT_COVERED]++;
    }
    return s;
}

void session_close(struct session *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nsubs; i++)
        hub_unsubscribe(s->ss->hub, &s->subs[i]);
    list_remove(&s->ss->all, &s->node);
    if (s->asking)
        s->asking->s = NULL;     /* its answer finds no one */
    session_hold_drop(s);
    free(s->resume_after);
    free(s->user);
    free(s);
}

/* The replayed visits of m raise the mark of their channels. */
static void session_mark(struct session *s, const struct session_slice *r, struct msg *m,
                         const int *chans, int n)
{
    struct msgid id;
    if (msgid_parse(msg_id(m), &id) < 0)
        return;
    for (int k = 0; k < n; k++) {
        struct str name = msg_channel(m, chans[k]);
        for (int j = 0; j < r->n; j++)
            if (r->names[j].len == name.len && memcmp(r->names[j].p, name.p, name.len) == 0)
                s->marked |= 1u << r->sub[j];
    }
    if (msgid_cmp(id, s->mark) > 0)
        s->mark = id;
}

/* 1 when m is on a marked channel and not newer than the mark: the
 * replay has sent it already. */
static int session_sent(const struct session *s, struct msg *m, int chan)
{
    struct msgid id;
    if (!s->marked || msgid_parse(msg_id(m), &id) < 0 || msgid_cmp(id, s->mark) > 0)
        return 0;
    struct str name = msg_channel(m, chan);
    for (int i = 0; i < s->nsubs; i++) {
        const struct channel *ch = s->subs[i].ch;
        if ((s->marked & (1u << i)) && chan_name_len(ch) == name.len &&
            memcmp(chan_name(ch), name.p, name.len) == 0)
            return 1;
    }
    return 0;
}

/* session_sent for a live copy; the first newer one clears the marks
 * (copies come in id order). */
static int session_replayed(struct session *s, struct msg *m, int chan)
{
    struct msgid id;
    if (msgid_parse(msg_id(m), &id) < 0 || msgid_cmp(id, s->mark) > 0) {
        s->marked = 0;
        return 0;
    }
    return session_sent(s, m, chan);
}

/* The hub's reset for a channel of this session (hub_each): the node
 * lost messages of it that it cannot recover (engine_redis.c). */
void session_reset_channel(void *owner, struct str channel)
{
    struct session *s = owner;
    struct buf msg = { 0 };
    if (buf_printf(&msg, "{\"type\":\"reset\",\"channels\":[\"%.*s\"]}", (int)channel.len,
                   channel.p) < 0 ||
        s->ops->send_json(s->transport, buf_head(&msg), buf_used(&msg), (struct str){ 0 }) < 0)
        s->ops->close(s->transport, 1011);
    buf_free(&msg);
}

int session_deliver(void *owner, struct msg *m, int chan)
{
    struct session *s = owner;
    if (s->marked && session_replayed(s, m, chan))
        return 1;
    /* Counted as queued while the page can still get it: the replay
     * brings it, after the older messages, in id order. */
    if (s->replaying && session_replays(s, msg_channel(m, chan))) {
        if (s->asking && !s->reask)   /* the answer may not hold it: settled by the answer */
            return session_hold(s, m, chan, 1);
        return s->ops->is_open(s->transport);
    }
    if (s->hold)
        return session_hold(s, m, chan, 0); /* after the replay and what is held */
    return s->ops->send_msg(s->transport, m, chan);
}

uint32_t sessions_disconnect_user(sessions_t *ss, struct str user)
{
    uint32_t n = 0;
    struct list_node *pos, *tmp;
    /* A scan of every session: revocation is rare, and an index by user
     * would cost every connection memory. Closing does not free (the
     * transport frees after the pass), so the walk is safe. A page still
     * closing from an earlier disconnect is not counted again. */
    list_for_each_safe(pos, tmp, &ss->all) {
        struct session *s = list_entry(pos, struct session, node);
        if (s->user && strlen(s->user) == user.len && memcmp(s->user, user.p, user.len) == 0 &&
            s->ops->is_open(s->transport)) {
            s->ops->close(s->transport, 4401);
            n++;
        }
    }
    return n;
}

uint32_t sessions_close_revoked(sessions_t *ss, long floor_s)
{
    uint32_t n = 0;
    struct list_node *pos, *tmp;
    list_for_each_safe(pos, tmp, &ss->all) {
        struct session *s = list_entry(pos, struct session, node);
        if (s->user && s->ops->is_open(s->transport) &&
            ((s->iat != 0 && s->iat <= floor_s) ||
             revoke_is_revoked(ss->revoked, (struct str){ s->user, strlen(s->user) }, s->iat))) {
            s->ops->close(s->transport, 4401);
            n++;
        }
    }
    return n;
}
