#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "list.h"
#include "log.h"
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
};

struct session {
    struct list_node            node;      /* sessions.all */
    sessions_t                 *ss;
    void                       *transport;
    const struct transport_ops *ops;
    char                       *user;      /* token sub, NULL without one */
    int                         nsubs;
    struct chan_member          subs[];    /* fixed after the open */
};

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
        long now = (long)time(NULL);
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

static int session_greet(struct session *s, const struct str *names, int n)
{
    struct buf greet = { 0 };
    struct str last = engine_last_id(s->ss->engine);
    int rc = buf_printf(&greet, "{\"type\":\"subscribed\",\"channels\":[");
    for (int i = 0; i < n; i++)
        rc |= buf_printf(&greet, "%s\"%.*s\"", i ? "," : "", (int)names[i].len, names[i].p);
    rc |= buf_printf(&greet, "],\"last_id\":\"%.*s\"}", (int)last.len, last.p);
    if (rc == 0)
        rc = s->ops->send_json(s->transport, buf_head(&greet), buf_used(&greet));
    buf_free(&greet);
    return rc;
}

struct session_resume {
    struct session   *s;
    const struct str *names;
    int               n;
    int               rc;
};

/* The engine's answer: a reset for the channels whose gap cannot be
 * filled, then every missed message of the others. */
static void session_on_history(void *arg, const struct engine_answer *a)
{
    struct session_resume *r = arg;
    struct session *s = r->s;
    struct buf msg = { 0 };
    int rc = 0, nreset = 0;
    for (int i = 0; i < r->n; i++) {
        if (!a->reset[i])
            continue;
        rc |= buf_printf(&msg, "%s\"%.*s\"", nreset++ ? "," : "{\"type\":\"reset\",\"channels\":[",
                         (int)r->names[i].len, r->names[i].p);
    }
    if (nreset) {
        rc |= buf_printf(&msg, "]}");
        if (rc == 0)
            rc = s->ops->send_json(s->transport, buf_head(&msg), buf_used(&msg));
    }
    buf_free(&msg);
    for (size_t i = 0; i < a->nitems && rc == 0; i++)
        s->ops->replay_msg(s->transport, a->items[i].m, a->items[i].chan);
    log_debug("subscribe: resumed: %zu replayed, %d channel(s) reset", a->nitems, nreset);
    r->rc = rc;
}

/* last_id: what the page missed, before any live message. The memory
 * engine answers at once; an engine that answers later must have the
 * session hold live messages back until then (not needed yet). */
static int session_resume(struct session *s, const struct str *names, int n, const char *raw,
                          size_t rawlen)
{
    char id[MSG_ID_MAX];
    ssize_t idlen = rawlen < sizeof(id) ? url_decode(raw, rawlen, id, 0) : -1;
    if (idlen < 0)
        idlen = 0;      /* unparsable: the engine resets every channel */
    struct engine_query q = { names, n, { id, (size_t)idlen }, 0 };
    struct session_resume r = { s, names, n, -1 };
    engine_history(s->ss->engine, &q, session_on_history, &r);
    return r.rc;
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

struct session *session_open(sessions_t *ss, struct str query, void *transport,
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
    if (session_greet(s, names, n) < 0)
        goto nomem;
    if (url_query_get(query.p, query.len, "last_id", &raw, &rawlen) == 1 &&
        session_resume(s, names, n, raw, rawlen) < 0)
        goto nomem;
    *close_code = 0;
    return s;
nomem:
    session_close(s);
    *close_code = 1011;
    return NULL;
}

void session_close(struct session *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nsubs; i++)
        hub_unsubscribe(s->ss->hub, &s->subs[i]);
    list_remove(&s->ss->all, &s->node);
    free(s->user);
    free(s);
}

int session_deliver(void *owner, struct msg *m, int chan)
{
    struct session *s = owner;
    return s->ops->send_msg(s->transport, m, chan);
}

uint32_t sessions_disconnect_user(sessions_t *ss, struct str user)
{
    uint32_t n = 0;
    struct list_node *pos, *tmp;
    /* A scan of every session: revocation is rare, and an index by user
     * would cost every connection memory. Closing does not free (the
     * transport frees after the pass), so the walk is safe. */
    list_for_each_safe(pos, tmp, &ss->all) {
        struct session *s = list_entry(pos, struct session, node);
        if (s->user && strlen(s->user) == user.len && memcmp(s->user, user.p, user.len) == 0) {
            s->ops->close(s->transport, 4401);
            n++;
        }
    }
    return n;
}
