#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "handshake.h"
#include "log.h"
#include "pubsock.h"
#include "pattern.h"
#include "sendq.h"
#include "token.h"
#include "urlenc.h"
#include "utf8.h"

enum conn_state { CONN_HANDSHAKE, CONN_OPEN, CONN_CLOSING, CONN_DEAD };

enum conn_flag {
    CONN_DIRTY = 1 << 0,         /* on srv->dirty */
    CONN_AWAIT_PONG = 1 << 1,
    CONN_CLOSE_AFTER_FLUSH = 1 << 2,
    CONN_WANT_WRITE = 1 << 3,    /* EPOLLOUT armed */
    CONN_DISCARD = 1 << 4,       /* input out of step (after 1002/1009): read and drop */
};

struct conn {
    struct ev_io       io;
    struct ev_timer    timer;       /* the one deadline in force (see conn_schedule) */
    struct server     *srv;
    struct conn       *prev, *next; /* srv->conns */
    struct conn       *dirty_next;
    struct conn       *dead_next;
    uint8_t            state;
    uint8_t            flags;
    uint8_t            nsubs;
    struct buf         in;          /* handshake bytes, or a partial frame */
    struct sendq       out;
    struct chan_member *subs;       /* nsubs entries, fixed after the upgrade */
    char              *user;        /* token sub, NULL without a token */
    uint64_t           last_ping;   /* ms: last ping sent (or the upgrade) */
    uint64_t           last_msg;    /* ms: last broadcast queued (idle_timeout) */
};

static void conn_on_io(ev_loop_t *loop, struct ev_io *io, unsigned events);
static void conn_on_timer(ev_loop_t *loop, struct ev_timer *t);

struct conn *conn_next(const struct conn *c) { return c->next; }

const char *conn_user(const struct conn *c, size_t *len)
{
    if (!c->user || c->state == CONN_DEAD)
        return NULL;
    *len = strlen(c->user);
    return c->user;
}

static void conn_kill(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    c->state = CONN_DEAD;
    ev_io_stop(c->srv->loop, &c->io);
    ev_timer_stop(c->srv->loop, &c->timer);
    c->dead_next = c->srv->dead;
    c->srv->dead = c;
}

static void conn_mark_dirty(struct conn *c)
{
    if (!(c->flags & CONN_DIRTY)) {
        c->flags |= CONN_DIRTY;
        c->dirty_next = c->srv->dirty;
        c->srv->dirty = c;
    }
}

/* Queues r (the queue takes its own reference; ours is dropped). */
static int conn_queue_rbuf(struct conn *c, rbuf_t *r)
{
    if (!r)
        return -ENOMEM;
    int rc = sendq_push(&c->out, r);
    rbuf_unref(r);
    if (rc == 0)
        conn_mark_dirty(c);
    return rc;
}

/* Queues bytes private to this connection (handshake answer). */
static int conn_queue_copy(struct conn *c, const void *p, size_t len)
{
    return conn_queue_rbuf(c, rbuf_from(p, len));
}

/* Queues a frame private to this connection (pong, close, greeting). */
static int conn_queue_frame(struct conn *c, int opcode, const void *payload, size_t len)
{
    unsigned char hdr[10];
    size_t hl = frame_header(hdr, opcode, len);
    rbuf_t *r = rbuf_new(hl + len);
    if (r) {
        memcpy(rbuf_wdata(r), hdr, hl);
        if (len)
            memcpy(rbuf_wdata(r) + hl, payload, len);
    }
    return conn_queue_rbuf(c, r);
}

static void conn_schedule(struct conn *c);

void conn_close(struct conn *c, uint16_t code)
{
    if (c->state == CONN_HANDSHAKE) {
        conn_kill(c);
        return;
    }
    if (c->state != CONN_OPEN)
        return;
    unsigned char payload[2];
    buf_put_u16(payload, code);
    if (conn_queue_frame(c, FRAME_CLOSE, payload, 2) < 0) {
        conn_kill(c);
        return;
    }
    c->state = CONN_CLOSING;
    log_debug("fd %d: close %u sent", c->io.fd, code);
    ev_timer_start(c->srv->loop, &c->timer, (uint64_t)c->srv->cfg->close_timeout_ms, conn_on_timer);
}

void conn_deliver(void *conn, rbuf_t *frame, void *srvp)
{
    struct conn *c = conn;
    struct server *srv = srvp;
    if (c->state != CONN_OPEN)
        return;
    if (c->out.bytes + rbuf_len(frame) > (size_t)srv->cfg->send_buffer_bytes) {
        /* A slow consumer must not grow memory: drop what it has not
         * started receiving and tell it why. It reconnects with last_id. */
        log_info("fd %d: slow consumer, %zu bytes queued: closing 1013", c->io.fd, c->out.bytes);
        sendq_drop_unsent(&c->out);
        conn_close(c, 1013);
        return;
    }
    if (sendq_push(&c->out, frame) < 0) {
        conn_close(c, 1011);
        return;
    }
    c->last_msg = ev_now(srv->loop);
    conn_mark_dirty(c);
}

int conn_accept(struct server *srv, int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->srv = srv;
    c->state = CONN_HANDSHAKE;
    int rc = ev_io_start(srv->loop, &c->io, fd, EV_READ, conn_on_io);
    if (rc < 0) {
        close(fd);
        free(c);
        return rc;
    }
    c->next = srv->conns.head;
    if (c->next)
        c->next->prev = c;
    srv->conns.head = c;
    srv->conns.n++;
    ev_timer_start(srv->loop, &c->timer, (uint64_t)srv->cfg->handshake_timeout_ms, conn_on_timer);
    return 0;
}

/* ---- handshake ---- */

static void conn_http_error(struct conn *c, enum hs_verdict v, const struct hs_request *req)
{
    char resp[512];
    int n = hs_response(v, req, resp, sizeof(resp));
    buf_free(&c->in);
    if (n > 0 && conn_queue_copy(c, resp, (size_t)n) == 0) {
        /* Answer, then hang up; the handshake timer still bounds it. */
        c->flags |= CONN_CLOSE_AFTER_FLUSH;
        ev_io_set(c->srv->loop, &c->io, 0);
        return;
    }
    conn_kill(c);
}

static void conn_replay_visit(rbuf_t *frame, void *arg)
{
    struct conn *c = arg;
    /* Replayed frames are shared with the history, so queuing them costs a
     * pointer each; they are not held to send_buffer_bytes, or a page far
     * behind could never catch up. */
    if (sendq_push(&c->out, frame) == 0)
        conn_mark_dirty(c);
}

/* last_id: a reset for the channels whose gap cannot be filled, then every
 * missed message of the others, all before any live message (this runs
 * within one loop pass, so nothing can interleave). */
static int conn_resume(struct conn *c, const char *raw, size_t rawlen)
{
    struct server *srv = c->srv;
    char id[BROKER_ID_MAX];
    ssize_t idlen = rawlen < sizeof(id) ? url_decode(raw, rawlen, id, 0) : -1;
    struct channel *chs[WSPUSH_MAX_CHANNELS];
    int reset[WSPUSH_MAX_CHANNELS];
    for (int i = 0; i < c->nsubs; i++)
        chs[i] = c->subs[i].ch;
    uint64_t now = ev_now(srv->loop);
    if (idlen < 0)
        idlen = 0;      /* unparsable: broker_gaps resets every channel */
    broker_gaps(srv->broker, chs, c->nsubs, id, (size_t)idlen, now, reset);
    struct buf msg = { 0 };
    int rc = 0, nreset = 0;
    for (int i = 0; i < c->nsubs; i++) {
        if (!reset[i])
            continue;
        rc |= buf_printf(&msg, "%s\"%s\"", nreset++ ? "," : "{\"type\":\"reset\",\"channels\":[",
                         chan_name(chs[i]));
    }
    if (nreset) {
        rc |= buf_printf(&msg, "]}");
        if (rc == 0)
            rc = conn_queue_frame(c, FRAME_TEXT, buf_head(&msg), buf_used(&msg));
    }
    buf_free(&msg);
    if (rc == 0) {
        size_t n = broker_replay(srv->broker, chs, c->nsubs, id, (size_t)idlen, reset,
                                 conn_replay_visit, c);
        log_debug("fd %d: resumed after %.*s: %zu replayed, %d channel(s) reset", c->io.fd,
                  (int)idlen, id, n, nreset);
    }
    return rc;
}

/* Channels, token and last_id from the query string. Returns 0 or the
 * close code to send right after the upgrade. */
static int conn_subscribe(struct conn *c, const struct hs_request *req)
{
    struct server *srv = c->srv;
    const struct cfg *cfg = srv->cfg;
    const char *raw;
    size_t rawlen;
    /* The query is bounded by max_header_bytes; the scratch buffer holds
     * both decoded values. */
    char *decoded = srv->decoded;
    size_t half = sizeof(srv->decoded) / 2;

    if (req->query.len > half - 1 ||
        url_query_get(req->query.p, req->query.len, "channels", &raw, &rawlen) != 1)
        return 4400;
    ssize_t dl = url_decode(raw, rawlen, decoded, 0);
    if (dl <= 0)
        return 4400;
    struct str names[WSPUSH_MAX_CHANNELS];
    int max = cfg->max_channels < WSPUSH_MAX_CHANNELS ? cfg->max_channels : WSPUSH_MAX_CHANNELS;
    int n = pat_split_channels(decoded, (size_t)dl, names, max);
    if (n <= 0)
        return 4400;

    int need_token = 0;
    for (int i = 0; i < n; i++)
        if (!pat_match_any(&cfg->public_channels, NULL, names[i].p, names[i].len))
            need_token = 1;

    const char *traw;
    size_t trawlen;
    int has_token = url_query_get(req->query.p, req->query.len, "token", &traw, &trawlen);
    if (has_token < 0 || (need_token && has_token == 0))
        return 4401;
    struct tok_claims claims;
    int have_claims = 0;
    if (has_token == 1) {
        char *tok = decoded + half;
        ssize_t tl = url_decode(traw, trawlen, tok, 0);
        if (tl <= 0)
            return 4401;
        int rc = tok_verify(tok, (size_t)tl, &cfg->secret, &cfg->previous_secret,
                            (long)time(NULL), &claims);
        if (rc < 0) {
            log_info("fd %d: token refused: %s", c->io.fd, tok_strerror(rc));
            return 4401;
        }
        have_claims = 1;
    }
    int code = 0;
    for (int i = 0; i < n && !code; i++) {
        if (pat_match_any(&cfg->public_channels, NULL, names[i].p, names[i].len))
            continue;
        int ok = 0;
        for (int k = 0; k < claims.nchannels && !ok; k++)
            ok = pat_match(claims.channels[k], NULL, names[i].p, names[i].len);
        if (!ok)
            code = 4403;
    }
    if (!code && have_claims && claims.sub[0]) {
        c->user = strdup(claims.sub);
        if (!c->user)
            code = 1011;
    }
    if (have_claims)
        tok_claims_free(&claims);
    if (code)
        return code;

    c->subs = calloc((size_t)n, sizeof(*c->subs));
    if (!c->subs)
        return 1011;
    c->nsubs = (uint8_t)n;
    struct buf greet = { 0 };
    int rc = buf_printf(&greet, "{\"type\":\"subscribed\",\"channels\":[");
    for (int i = 0; i < n; i++) {
        c->subs[i].owner = c;
        struct channel *ch = chan_lookup(srv->channels, names[i].p, names[i].len, 1);
        if (!ch || chan_subscribe(ch, &c->subs[i]) < 0) {
            if (ch)
                chan_release(srv->channels, ch);
            buf_free(&greet);
            return 1011;
        }
        rc |= buf_printf(&greet, "%s\"%.*s\"", i ? "," : "", (int)names[i].len, names[i].p);
    }
    rc |= buf_printf(&greet, "],\"last_id\":\"%s\"}", broker_last_id(srv->broker));
    if (rc == 0)
        rc = conn_queue_frame(c, FRAME_TEXT, buf_head(&greet), buf_used(&greet));
    buf_free(&greet);
    if (rc == 0 && url_query_get(req->query.p, req->query.len, "last_id", &raw, &rawlen) == 1)
        rc = conn_resume(c, raw, rawlen);
    return rc == 0 ? 0 : 1011;
}

/* Handles a request head in [p, p+len). Returns the bytes of the head
 * once it is complete (the connection has then answered: upgraded, or an
 * error page queued), or HS_NEED_MORE. */
static ssize_t conn_handshake(struct conn *c, const char *p, size_t len)
{
    const struct cfg *cfg = c->srv->cfg;
    struct hs_request req;
    ssize_t n = hs_parse(p, len, &req);
    if (n == HS_NEED_MORE) {
        if (len < (size_t)cfg->max_header_bytes)
            return HS_NEED_MORE;
        conn_http_error(c, HS_HEADERS_TOO_LARGE, NULL);
        return (ssize_t)len;
    }
    if (n < 0 || (size_t)n > (size_t)cfg->max_header_bytes) {
        conn_http_error(c, n < 0 ? HS_BAD_REQUEST : HS_HEADERS_TOO_LARGE, NULL);
        return (ssize_t)len;
    }
    enum hs_verdict v = hs_check(&req, &cfg->allowed_origins);
    if (v != HS_UPGRADE) {
        conn_http_error(c, v, &req);
        return (ssize_t)len;
    }
    char resp[512];
    int rl = hs_response(HS_UPGRADE, &req, resp, sizeof(resp));
    if (rl < 0 || conn_queue_copy(c, resp, (size_t)rl) < 0) {
        conn_kill(c);
        return (ssize_t)len;
    }
    c->state = CONN_OPEN;
    c->last_ping = c->last_msg = ev_now(c->srv->loop);
    int code = conn_subscribe(c, &req);
    if (code) {
        log_info("fd %d: subscription refused: close %d", c->io.fd, code);
        conn_close(c, (uint16_t)code);
        return n;
    }
    conn_schedule(c);
    return n;
}

/* ---- frames from the client ---- */

/* Handles one complete frame. Returns 0 to go on, -1 when the connection
 * is closing or dead. */
static int conn_on_frame(struct conn *c, const struct frame *f)
{
    unsigned char payload[125];
    size_t len = (size_t)f->payload_len;
    switch (f->opcode) {
    case FRAME_PING:
        if (c->state != CONN_OPEN)
            return 0;
        if (c->out.bytes + len + 2 > (size_t)c->srv->cfg->send_buffer_bytes) {
            /* Pings from a peer that does not read its pongs would queue
             * without bound: the same cap as for broadcasts. */
            log_info("fd %d: pongs not read, %zu bytes queued: closing 1013", c->io.fd, c->out.bytes);
            sendq_drop_unsent(&c->out);
            conn_close(c, 1013);
            return -1;
        }
        frame_unmask(payload, f->payload, len, f->mask, 0);
        if (conn_queue_frame(c, FRAME_PONG, payload, len) < 0)
            conn_kill(c);
        return 0;
    case FRAME_PONG:
        c->flags &= (uint8_t)~CONN_AWAIT_PONG;
        return 0;
    case FRAME_CLOSE: {
        frame_unmask(payload, f->payload, len, f->mask, 0);
        int code = frame_close_code(payload, len < 2 ? len : 2);
        uint16_t reply;
        if (code < 0)
            reply = 1002;
        else if (len > 2 && !utf8_valid(payload + 2, len - 2))
            reply = 1007;
        else
            reply = code == 1005 ? 1000 : (uint16_t)code;
        if (c->state == CONN_CLOSING) {
            conn_kill(c);       /* the answer to our close: done */
            return -1;
        }
        conn_close(c, reply);
        c->flags |= CONN_CLOSE_AFTER_FLUSH;
        return -1;
    }
    default:
        /* Push-only: a client data frame is a policy violation. */
        if (c->state == CONN_OPEN)
            conn_close(c, 1008);
        return -1;
    }
}

/* Parses every complete frame in [p, p+len); returns the bytes used. */
static size_t conn_parse_frames(struct conn *c, const unsigned char *p, size_t len)
{
    size_t used = 0;
    if (c->flags & CONN_DISCARD)
        return len;
    while (used < len && (c->state == CONN_OPEN || c->state == CONN_CLOSING)) {
        struct frame f;
        ssize_t n = frame_parse(p + used, len - used, (uint64_t)c->srv->cfg->max_frame_bytes, 0, &f);
        if (n == FRAME_NEED_MORE)
            break;
        if (n < 0) {
            /* Past a bad header nothing lines up any more: later bytes
             * are dropped (never parsed as frames, never a reason to drop
             * the close frame we queued) until the peer closes or
             * close_timeout. */
            c->flags |= CONN_DISCARD;
            if (c->state == CONN_OPEN)
                conn_close(c, n == FRAME_E_TOO_BIG ? 1009 : 1002);
            return len;
        }
        used += (size_t)n;
        if (conn_on_frame(c, &f) < 0 && c->state != CONN_CLOSING)
            return len;
    }
    return used;
}

/* Feeds newly read bytes [p, p+n) through the state machine. Bytes are
 * parsed straight from the shared read buffer; only an incomplete request
 * head or frame is copied into the connection's own buffer, so a
 * connection whose peer sends whole messages never holds one. */
static void conn_feed(struct conn *c, const unsigned char *p, size_t n)
{
    if (buf_used(&c->in) > 0) {
        if (buf_append(&c->in, p, n) < 0) {
            conn_kill(c);
            return;
        }
        p = (const unsigned char *)buf_head(&c->in);
        n = buf_used(&c->in);
    }
    size_t used = 0;
    if (c->state == CONN_HANDSHAKE) {
        ssize_t h = conn_handshake(c, (const char *)p, n);
        if (h == HS_NEED_MORE)
            goto keep;
        used = (size_t)h;
    }
    /* Frames may follow the head in the same read (sent before our 101). */
    if (c->state == CONN_OPEN || c->state == CONN_CLOSING)
        used += conn_parse_frames(c, p + used, n - used);
    else
        used = n;
keep:
    if (c->state == CONN_DEAD)
        return;
    if (p == (const unsigned char *)buf_head(&c->in) && buf_used(&c->in) > 0) {
        buf_consume(&c->in, used);
        if (buf_used(&c->in) == 0)
            buf_free(&c->in);
    } else if (used < n && buf_append(&c->in, p + used, n - used) < 0) {
        conn_kill(c);
    }
}

static void conn_read(struct conn *c)
{
    struct server *srv = c->srv;
    for (;;) {
        size_t room = sizeof(srv->scratch);
        if (c->state == CONN_HANDSHAKE)
            room = (size_t)srv->cfg->max_header_bytes + 1 - buf_used(&c->in);
        ssize_t n = read(c->io.fd, srv->scratch, room);
        if (n > 0) {
            conn_feed(c, srv->scratch, (size_t)n);
            if (c->state == CONN_DEAD || (c->flags & CONN_CLOSE_AFTER_FLUSH) || (size_t)n < room)
                return;
            continue;
        }
        if (n == 0) {
            conn_kill(c);           /* peer closed */
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            conn_kill(c);
        return;
    }
}

/* ---- writing ---- */

static void conn_flush(struct conn *c)
{
    ssize_t w = sendq_flush(&c->out, c->io.fd);
    if (w < 0) {
        conn_kill(c);
        return;
    }
    if (sendq_empty(&c->out)) {
        if (c->flags & CONN_CLOSE_AFTER_FLUSH) {
            conn_kill(c);
            return;
        }
        if (c->flags & CONN_WANT_WRITE) {
            c->flags &= (uint8_t)~CONN_WANT_WRITE;
            ev_io_set(c->srv->loop, &c->io, EV_READ);
        }
    } else if (!(c->flags & CONN_WANT_WRITE)) {
        c->flags |= CONN_WANT_WRITE;
        unsigned ev = EV_WRITE;
        if (!(c->flags & CONN_CLOSE_AFTER_FLUSH))
            ev |= EV_READ;
        ev_io_set(c->srv->loop, &c->io, ev);
    }
}

/* Publish-socket peers are pumped every this many flushed connections. */
#define CONN_PUMP_EVERY 256
/* Bound on flush rounds per pass, so a relentless publisher cannot starve
 * accepts and timers; what is left stays dirty for the next pass. */
#define CONN_FLUSH_ROUNDS 16

void conn_flush_dirty(struct server *srv)
{
    for (int round = 0; round < CONN_FLUSH_ROUNDS && srv->dirty; round++) {
        struct conn *c = srv->dirty;
        srv->dirty = NULL;
        unsigned k = 0;
        while (c) {
            struct conn *next = c->dirty_next;
            c->flags &= (uint8_t)~CONN_DIRTY;
            if (c->state != CONN_DEAD)
                conn_flush(c);
            c = next;
            /* Connections still ahead keep CONN_DIRTY, so frames pumped in
             * now ride in their coming writev; those behind are queued
             * again on srv->dirty for the next round. */
            if (++k % CONN_PUMP_EVERY == 0 && c && srv->pubsock)
                pubsock_pump(srv->pubsock);
        }
    }
    if (srv->dirty)
        ev_poll_now(srv->loop);
}

static void conn_on_io(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct conn *c = ev_container_of(io, struct conn, io);
    if (c->state == CONN_DEAD)
        return;
    if (events & EV_WRITE)
        conn_flush(c);
    if ((events & EV_READ) && c->state != CONN_DEAD && !(c->flags & CONN_CLOSE_AFTER_FLUSH))
        conn_read(c);
}

/* ---- timers ---- */

/* Arms the timer for the earliest of: the pong deadline or the next ping,
 * and the idle deadline. */
static void conn_schedule(struct conn *c)
{
    const struct cfg *cfg = c->srv->cfg;
    uint64_t now = ev_now(c->srv->loop);
    uint64_t due = UINT64_MAX;
    if (c->flags & CONN_AWAIT_PONG)
        due = c->last_ping + (uint64_t)cfg->pong_timeout_ms;
    else if (cfg->ping_interval_ms > 0)
        due = c->last_ping + (uint64_t)cfg->ping_interval_ms;
    if (cfg->idle_timeout_ms > 0 && c->last_msg + (uint64_t)cfg->idle_timeout_ms < due)
        due = c->last_msg + (uint64_t)cfg->idle_timeout_ms;
    if (due == UINT64_MAX)
        ev_timer_stop(c->srv->loop, &c->timer);
    else
        ev_timer_start(c->srv->loop, &c->timer, due > now ? due - now : 0, conn_on_timer);
}

static void conn_on_timer(ev_loop_t *loop, struct ev_timer *t)
{
    struct conn *c = ev_container_of(t, struct conn, timer);
    const struct cfg *cfg = c->srv->cfg;
    uint64_t now = ev_now(loop);
    if (c->state != CONN_OPEN) {
        /* Handshake too slow (slowloris), or no answer to our close. */
        log_debug("fd %d: timeout in state %d", c->io.fd, c->state);
        conn_kill(c);
        return;
    }
    if (cfg->idle_timeout_ms > 0 && now >= c->last_msg + (uint64_t)cfg->idle_timeout_ms) {
        conn_close(c, 1000);
        return;
    }
    if (c->flags & CONN_AWAIT_PONG) {
        if (now >= c->last_ping + (uint64_t)cfg->pong_timeout_ms) {
            log_info("fd %d: no pong in %d ms", c->io.fd, cfg->pong_timeout_ms);
            conn_kill(c);
            return;
        }
    } else if (cfg->ping_interval_ms > 0 && now >= c->last_ping + (uint64_t)cfg->ping_interval_ms) {
        if (conn_queue_frame(c, FRAME_PING, NULL, 0) < 0) {
            conn_kill(c);
            return;
        }
        c->flags |= CONN_AWAIT_PONG;
        c->last_ping = now;
    }
    conn_schedule(c);
}

/* ---- freeing ---- */

static void conn_free(struct conn *c)
{
    struct server *srv = c->srv;
    for (int i = 0; i < c->nsubs; i++)
        chan_unsubscribe(srv->channels, &c->subs[i]);
    free(c->subs);
    free(c->user);
    buf_free(&c->in);
    sendq_clear(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns.head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->conns.n--;
    close(c->io.fd);
    free(c);
}

void conn_reap_dead(struct server *srv)
{
    struct conn *c = srv->dead;
    srv->dead = NULL;
    while (c) {
        struct conn *next = c->dead_next;
        /* A dead connection may still sit on the dirty list of this pass:
         * the flush ran first, so unlinking here is safe. */
        conn_free(c);
        c = next;
    }
}

void conn_free_all(struct server *srv)
{
    conn_flush_dirty(srv);
    for (struct conn *c = srv->conns.head; c; c = c->next)
        conn_kill(c);
    conn_reap_dead(srv);
}
