#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "frame.h"
#include "handshake.h"
#include "list.h"
#include "log.h"
#include "pmdeflate.h"
#include "sendq.h"
#include "sse.h"
#include "utf8.h"
#include "wspush.h"

/* One read buffer for every socket: a connection only keeps bytes of a
 * frame that arrived in pieces, so idle connections hold no buffer. */
#define CONN_READ_CHUNK 65536
/* How long a reserve slot waits for its request head. */
#define CONN_LIMITED_HEAD_MS 1000
/* During a fan-out, publish-socket peers and the Redis link are pumped
 * once CONN_PUMP_US microseconds have passed since the last pump, looked
 * at every CONN_PUMP_CHECK flushed connections: a publisher waiting for
 * its ack waits about that long at most, whatever a writev costs, and a
 * pump (a read per publish peer, two ioctls for Redis) stays a small
 * share of the time. */
#define CONN_PUMP_US    50
#define CONN_PUMP_CHECK 16
/* Bound on flush rounds per pass, so a relentless publisher cannot starve
 * accepts and timers; what is left stays dirty for the next pass. */
#define CONN_FLUSH_ROUNDS 16

enum conn_state { CONN_HANDSHAKE, CONN_OPEN, CONN_CLOSING, CONN_DEAD };

enum conn_flag {
    CONN_DIRTY = 1 << 0,         /* on cs->dirty */
    CONN_AWAIT_PONG = 1 << 1,
    CONN_CLOSE_AFTER_FLUSH = 1 << 2,  /* hang up once the queue is written; no more reads */
    CONN_WANT_WRITE = 1 << 3,    /* EPOLLOUT armed */
    CONN_DISCARD = 1 << 4,       /* input out of step (a length that cannot be skipped): drop it */
    CONN_PEER_CLOSED = 1 << 5,   /* the page's close arrived: nothing after it is read */
    CONN_WANT_DRAINED = 1 << 6,  /* call h.drained once the queue is empty */
    CONN_LIMITED = 1 << 7,       /* a reserve slot: /healthz 200, anything else 503 */
    CONN_PER_IP = 1 << 8,        /* the reserve slot is for max_connections_per_ip */
    CONN_UPGRADED = 1 << 9,      /* counted in stats.open (sse_open) until freed */
    CONN_DEFLATE = 1 << 10,      /* permessage-deflate negotiated */
};

/* What differs between the two transports once the request head is
 * answered: the bytes of a message, of a control object (subscribed,
 * reset), of the keep-alive and of the last word (a close frame, or SSE's
 * close event), and whether the client speaks after its head (WebSocket
 * frames: pongs awaited, its close answered). The queue, the flush, the
 * timers and the limits are one state machine for both. */
struct conn_kind {
    enum msg_slot  slot;
    msg_encode_fn *encode;
    rbuf_t      *(*control)(const char *json, size_t len, struct str id);
    rbuf_t      *(*keepalive)(void);
    rbuf_t      *(*last)(int code);
    int            two_way;
};

struct conns {
    ev_loop_t           *loop;
    struct cfg *const   *cfg;
    struct conn_handlers h;
    void                *ctx;
    struct ev_hook       after;
    struct list          live;      /* every connection not yet killed */
    struct list          dead;      /* killed this pass, freed by the hook */
    struct conn         *dirty;     /* singly linked: queued frames to flush */
    unsigned             pump_us;   /* CONN_PUMP_US, or conns_set_pump_interval's */
    unsigned char       *scratch;   /* CONN_READ_CHUNK */
    size_t               nlimited;  /* CONN_LIMITED connections not yet freed */
    pmd_t               *pmd;       /* the one compressor, made on first use */
    struct stats_conn    stats;
};

struct conn {
    struct ev_io       watch;
    struct ev_timer    timer;       /* the one deadline in force (see conn_schedule) */
    struct io          io;
    struct list_node   node;        /* cs->live or cs->dead */
    conns_t           *cs;
    struct conn       *dirty_next;
    void              *session;
    void              *peer;        /* given to conn_accept, handed to h.released */
    const struct conn_kind *kind;   /* WebSocket until a GET /sse is answered */
    uint8_t            state;
    uint16_t           flags;
    uint64_t           skip;        /* bytes of a refused frame still to drop */
    struct buf         in;          /* handshake bytes, or a partial frame */
    struct sendq       out;
    uint64_t           last_ping;   /* ms: last ping sent (or the upgrade) */
    uint64_t           last_msg;    /* ms: last message queued (idle_timeout) */
};

static void conn_on_io(ev_loop_t *loop, struct ev_io *w, unsigned events);
static void conn_on_timer(ev_loop_t *loop, struct ev_timer *t);
static void conn_schedule(struct conn *c);
static void conn_hang_up(struct conn *c);
static const struct conn_kind conn_ws, conn_sse;

static const struct cfg *conn_cfg(const struct conn *c) { return *c->cs->cfg; }

static void conn_kill(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->state == CONN_OPEN)      /* gone without a close frame */
        c->cs->stats.closed[stats_close_slot(1006)]++;
    c->state = CONN_DEAD;
    ev_io_stop(c->cs->loop, &c->watch);
    ev_timer_stop(c->cs->loop, &c->timer);
    list_move(&c->cs->live, &c->cs->dead, &c->node);
}

/* A dead connection is never listed: the reap may free it before a
 * later flush round would walk the list. */
static void conn_mark_dirty(struct conn *c)
{
    if (!(c->flags & CONN_DIRTY) && c->state != CONN_DEAD) {
        c->flags |= CONN_DIRTY;
        c->dirty_next = c->cs->dirty;
        c->cs->dirty = c;
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

static int conn_queue_copy(struct conn *c, const void *p, size_t len)
{
    return conn_queue_rbuf(c, rbuf_from(p, len));
}

/* A WebSocket frame private to one connection (pong, close, greeting). */
static rbuf_t *conn_ws_frame(int opcode, const void *payload, size_t len)
{
    unsigned char hdr[10];
    size_t hl = frame_header(hdr, opcode, len);
    rbuf_t *r = rbuf_new(hl + len);
    if (r) {
        memcpy(rbuf_wdata(r), hdr, hl);
        if (len)
            memcpy(rbuf_wdata(r) + hl, payload, len);
    }
    return r;
}

static int conn_queue_frame(struct conn *c, int opcode, const void *payload, size_t len)
{
    return conn_queue_rbuf(c, conn_ws_frame(opcode, payload, len));
}

/* Sends close code; counted is the code wspush_connections_closed_total
 * counts (the page's own close, echoed, must not pass for ours). An SSE
 * stream ends once its close event is written: nothing is awaited. */
static void conn_close_as(struct conn *c, uint16_t code, uint16_t counted)
{
    if (c->state == CONN_HANDSHAKE) {
        conn_kill(c);
        return;
    }
    if (c->state != CONN_OPEN)
        return;
    c->cs->stats.closed[stats_close_slot(counted)]++;
    c->state = CONN_CLOSING;
    if (conn_queue_rbuf(c, c->kind->last(code)) < 0) {
        conn_kill(c);
        return;
    }
    log_debug("fd %d: close %u sent", c->io.fd, code);
    ev_timer_start(c->cs->loop, &c->timer, (uint64_t)conn_cfg(c)->close_timeout_ms, conn_on_timer);
    if (!c->kind->two_way)
        conn_hang_up(c);
}

static void conn_close(struct conn *c, uint16_t code) { conn_close_as(c, code, code); }

/* ---- the transport table (what a session calls) ---- */

/* The WebSocket encoding of a message: one text frame carrying the
 * envelope, made once per message and channel (msg.h caches it). */
static rbuf_t *conn_encode(const struct msg *m, int chan)
{
    size_t payload = msg_envelope_len(m, chan);
    unsigned char hdr[10];
    size_t hl = frame_header(hdr, FRAME_TEXT, payload);
    rbuf_t *r = rbuf_new(hl + payload);
    if (!r)
        return NULL;
    memcpy(rbuf_wdata(r), hdr, hl);
    msg_envelope(m, chan, rbuf_wdata(r) + hl);
    return r;
}

struct conn_deflate_job {
    conns_t *cs;
    rbuf_t  *plain;      /* the message's MSG_SLOT_WS frame */
    int      level;
};

/* The permessage-deflate encoding of a message: the payload of its plain
 * frame compressed into a text frame with RSV1, made once per message and
 * channel and shared by every connection that negotiated the extension.
 * When compressing does not make it smaller (or cannot be done: sending a
 * message plain is always allowed) it is the plain frame itself, so that
 * choice too is made once. */
static rbuf_t *conn_encode_deflate(void *ctx, const struct msg *m, int chan)
{
    struct conn_deflate_job *j = ctx;
    conns_t *cs = j->cs;
    size_t len = msg_envelope_len(m, chan);
    size_t hl = rbuf_len(j->plain) - len;
    if (!cs->pmd)
        cs->pmd = pmd_new(j->level);
    /* Compressed straight behind room for the plain frame's header,
     * which is at least as long as the compressed frame's. */
    rbuf_t *r = cs->pmd ? rbuf_new(hl + len + PMD_TAIL) : NULL;
    ssize_t n = r ? pmd_compress(cs->pmd, j->level, rbuf_data(j->plain) + hl, len,
                                 rbuf_wdata(r) + hl, len)
                  : PMD_E_ZLIB;
    if (n < 0) {
        rbuf_unref(r);
        cs->stats.deflate_plain++;
        return rbuf_ref(j->plain);
    }
    unsigned char hdr[10];
    size_t zhl = frame_header(hdr, FRAME_TEXT | FRAME_RSV1, (uint64_t)n);
    if (zhl != hl)
        memmove(rbuf_wdata(r) + zhl, rbuf_wdata(r) + hl, (size_t)n);
    memcpy(rbuf_wdata(r), hdr, zhl);
    cs->stats.deflate_compressed++;
    cs->stats.deflate_in_bytes += len;
    cs->stats.deflate_out_bytes += (uint64_t)n;
    return rbuf_shrink(r, zhl + (size_t)n);
}

/* The encoding of channel chan of m for c (its kind's: a WebSocket frame or an
 * SSE event): a compressed frame when c negotiated
 * permessage-deflate and the message is at least deflate_min_bytes
 * (small ones gain little and cost a compression each) and at most
 * deflate_max_bytes (compression runs inline in the event loop: a large
 * one would stall every connection). NULL when out of memory. */
static rbuf_t *conn_frame(struct conn *c, struct msg *m, int chan)
{
    const struct cfg *cfg = conn_cfg(c);
    rbuf_t *plain = msg_encoding(m, c->kind->slot, chan, c->kind->encode);
    size_t len = msg_envelope_len(m, chan);
    if (!plain || !(c->flags & CONN_DEFLATE) || len < (size_t)cfg->deflate_min_bytes ||
        len > (size_t)cfg->deflate_max_bytes)
        return plain;
    struct conn_deflate_job j = { c->cs, plain, cfg->deflate_level };
    rbuf_t *z = msg_encoding_with(m, MSG_SLOT_WS_DEFLATE, chan, conn_encode_deflate, &j);
    return z ? z : plain;
}

static int conn_t_send_msg(void *t, struct msg *m, int chan)
{
    struct conn *c = t;
    if (c->state != CONN_OPEN)
        return 0;
    rbuf_t *frame = conn_frame(c, m, chan);
    if (!frame) {
        conn_close(c, 1011);
        return 0;
    }
    if (c->out.bytes + rbuf_len(frame) > (size_t)conn_cfg(c)->send_buffer_bytes) {
        /* A slow consumer must not grow memory: drop what it has not
         * started receiving and tell it why. It reconnects with last_id. */
        log_info("fd %d: slow consumer, %zu bytes queued: closing 1013", c->io.fd, c->out.bytes);
        sendq_drop_unsent(&c->out, c->io.held);
        conn_close(c, 1013);
        return 0;
    }
    if (sendq_push(&c->out, frame) < 0) {
        conn_close(c, 1011);
        return 0;
    }
    c->last_msg = ev_now(c->cs->loop);
    conn_mark_dirty(c);
    return 1;
}

/* A message's frames for the page's channels, all or none (transport.h):
 * a resume then never splits a message between two slices. */
static int conn_t_replay_msg(void *t, struct msg *m, const int *chans, int n)
{
    struct conn *c = t;
    if (c->state != CONN_OPEN)
        return -EPIPE;
    rbuf_t *frames[WSPUSH_MAX_CHANNELS];
    size_t total = 0;
    if (n < 1 || n > WSPUSH_MAX_CHANNELS)
        return -EINVAL;
    for (int i = 0; i < n; i++) {
        frames[i] = conn_frame(c, m, chans[i]);
        if (!frames[i]) {
            conn_close(c, 1011);
            return -ENOMEM;
        }
        total += rbuf_len(frames[i]);
    }
    if (!sendq_empty(&c->out) && c->out.bytes + total > (size_t)conn_cfg(c)->send_buffer_bytes)
        return 0;
    for (int i = 0; i < n; i++)
        if (sendq_push(&c->out, frames[i]) < 0) {
            conn_close(c, 1011);
            return -ENOMEM;
        }
    c->last_msg = ev_now(c->cs->loop);
    conn_mark_dirty(c);
    return 1;
}

static size_t conn_t_room(void *t)
{
    struct conn *c = t;
    size_t budget = (size_t)conn_cfg(c)->send_buffer_bytes;
    if (c->state != CONN_OPEN || c->out.bytes >= budget)
        return 0;
    return budget - c->out.bytes;
}

/* Reported by conn_flush(), which a dirty connection meets after the pass
 * even with nothing queued. */
static void conn_t_want_drained(void *t)
{
    struct conn *c = t;
    if (c->state != CONN_OPEN)
        return;
    c->flags |= CONN_WANT_DRAINED;
    conn_mark_dirty(c);
}

static int conn_t_is_open(void *t) { return ((struct conn *)t)->state == CONN_OPEN; }

static int conn_t_send_json(void *t, const char *json, size_t len, struct str id)
{
    struct conn *c = t;
    /* No data frame follows our close frame (RFC 6455 5.5.1). */
    if (c->state != CONN_OPEN)
        return 0;
    return conn_queue_rbuf(c, c->kind->control(json, len, id));
}

static void conn_t_close(void *t, int code) { conn_close(t, (uint16_t)code); }

static rbuf_t *conn_ws_text(const char *json, size_t len, struct str id)
{
    (void)id;       /* a WebSocket page resumes with last_id, which it keeps itself */
    return conn_ws_frame(FRAME_TEXT, json, len);
}
static rbuf_t *conn_ws_ping(void) { return conn_ws_frame(FRAME_PING, NULL, 0); }

static rbuf_t *conn_ws_close(int code)
{
    unsigned char payload[2];
    buf_put_u16(payload, (uint16_t)code);
    return conn_ws_frame(FRAME_CLOSE, payload, 2);
}

static rbuf_t *conn_sse_keepalive(void) { return rbuf_from(SSE_KEEPALIVE, sizeof(SSE_KEEPALIVE) - 1); }

static const struct conn_kind conn_ws = {
    MSG_SLOT_WS, conn_encode, conn_ws_text, conn_ws_ping, conn_ws_close, 1,
};
static const struct conn_kind conn_sse = {
    MSG_SLOT_SSE, sse_encode, sse_control, conn_sse_keepalive, sse_close_event, 0,
};

const struct transport_ops conn_transport = {
    .send_msg = conn_t_send_msg,
    .replay_msg = conn_t_replay_msg,
    .room = conn_t_room,
    .want_drained = conn_t_want_drained,
    .is_open = conn_t_is_open,
    .send_json = conn_t_send_json,
    .close = conn_t_close,
};

/* ---- accepting ---- */

int conn_accept(conns_t *cs, int fd, const struct io_ops *ops, void *state, unsigned flags, void *peer)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        io_close(&(struct io){ ops, fd, state, 0, 0 });
        return -ENOMEM;
    }
    c->cs = cs;
    c->state = CONN_HANDSHAKE;
    c->kind = &conn_ws;
    c->io = (struct io){ ops, fd, state, 0, 0 };
    int rc = ev_io_start(cs->loop, &c->watch, fd, EV_READ, conn_on_io);
    if (rc < 0) {
        io_close(&c->io);
        free(c);
        return rc;
    }
    c->peer = peer;
    if (flags & CONN_ACCEPT_LIMITED) {
        c->flags |= CONN_LIMITED;
        if (flags & CONN_ACCEPT_PER_IP)
            c->flags |= CONN_PER_IP;
        cs->nlimited++;
    }
    list_push(&cs->live, &c->node);
    /* A reserve slot only answers /healthz or 503: a client that sends
     * nothing must not hold one for the whole handshake_timeout. */
    uint64_t deadline = (uint64_t)(*cs->cfg)->handshake_timeout_ms;
    if ((c->flags & CONN_LIMITED) && deadline > CONN_LIMITED_HEAD_MS)
        deadline = CONN_LIMITED_HEAD_MS;
    ev_timer_start(cs->loop, &c->timer, deadline, conn_on_timer);
    return 0;
}

/* ---- handshake ---- */

/* Every error page is a refusal before the upgrade (stats.h reasons). */
static void conn_count_refusal(struct conn *c, enum hs_verdict v)
{
    enum stats_refusal r;
    switch (v) {
    case HS_FORBIDDEN:
        r = STATS_REFUSED_ORIGIN;
        break;
    case HS_UPGRADE_REQUIRED:
        r = STATS_REFUSED_VERSION;
        break;
    case HS_SERVICE_UNAVAILABLE:
        r = c->flags & CONN_PER_IP ? STATS_REFUSED_PER_IP : STATS_REFUSED_LIMIT;
        break;
    case HS_UPGRADE:
    case HS_HEALTHZ:
        return;
    default:
        r = STATS_REFUSED_BAD_REQUEST;
        break;
    }
    c->cs->stats.refused.n[r]++;
}

/* Answers [p, p+n) (n <= 0: could not be made) and hangs up; the
 * handshake timer still bounds it. */
static void conn_refuse(struct conn *c, const char *p, int n)
{
    buf_free(&c->in);
    if (n > 0 && conn_queue_copy(c, p, (size_t)n) == 0) {
        c->flags |= CONN_CLOSE_AFTER_FLUSH;
        ev_io_set(c->cs->loop, &c->watch, 0);
        return;
    }
    conn_kill(c);
}

/* cors: the Origin to echo (an SSE request's: admitted, or refused with
 * 403 "origin"). */
static void conn_http_error(struct conn *c, enum hs_verdict v, const struct hs_request *req,
                            struct str cors)
{
    conn_count_refusal(c, v);
    if (req && req->sse && (v == HS_FORBIDDEN || v == HS_SERVICE_UNAVAILABLE)) {
        /* The refusals of /sse are JSON, readable by the page's fetch(). */
        struct buf page = { 0 };
        int rc = sse_refuse(&page, v == HS_FORBIDDEN ? SSE_ORIGIN : SSE_UNAVAILABLE, cors);
        conn_refuse(c, buf_head(&page), rc == 0 ? (int)buf_used(&page) : -1);
        buf_free(&page);
        return;
    }
    char resp[512];
    conn_refuse(c, resp, hs_response(v, req, resp, sizeof(resp)));
}

/* Starts the event stream of an admitted GET /sse: its head, then the
 * session, whose greeting follows the head. A subscription refused is
 * an HTTP status instead, the head never sent. */
static void conn_sse_start(struct conn *c, const struct hs_request *req)
{
    struct buf head = { 0 };
    int code = 1011;
    c->kind = &conn_sse;
    c->state = CONN_OPEN;
    c->last_ping = c->last_msg = ev_now(c->cs->loop);
    if (sse_head(&head, req->origin) == 0 && conn_queue_copy(c, buf_head(&head), buf_used(&head)) == 0)
        c->session = c->cs->h.open(c->cs->ctx, req->query, req->last_event_id, c, &code);
    buf_free(&head);
    if (!c->session) {
        log_info("fd %d: event stream refused: %d", c->io.fd, code);
        sendq_clear(&c->out);
        c->state = CONN_HANDSHAKE;
        struct buf page = { 0 };
        int rc = sse_refuse(&page, sse_refusal_of(code), req->origin);
        conn_refuse(c, buf_head(&page), rc == 0 ? (int)buf_used(&page) : -1);
        buf_free(&page);
        return;
    }
    c->flags |= CONN_UPGRADED;
    c->cs->stats.sse_accepted++;
    c->cs->stats.sse_open++;
    if (c->state == CONN_OPEN)
        conn_schedule(c);
}

/* Handles a request head in [p, p+len). Returns the bytes of the head
 * once it is complete (the connection has then answered: upgraded, or an
 * error page queued), or HS_NEED_MORE. */
static ssize_t conn_handshake(struct conn *c, const char *p, size_t len)
{
    const struct cfg *cfg = conn_cfg(c);
    struct hs_request req;
    ssize_t n = hs_parse(p, len, &req);
    if (n == HS_NEED_MORE) {
        if (len < (size_t)cfg->max_header_bytes)
            return HS_NEED_MORE;
        conn_http_error(c, HS_HEADERS_TOO_LARGE, NULL, (struct str){ 0 });
        return (ssize_t)len;
    }
    if (n < 0 || (size_t)n > (size_t)cfg->max_header_bytes) {
        conn_http_error(c, n < 0 ? HS_BAD_REQUEST : HS_HEADERS_TOO_LARGE, NULL, (struct str){ 0 });
        return (ssize_t)len;
    }
    enum hs_verdict v = hs_check(&req, &cfg->allowed_origins);
    if ((v == HS_UPGRADE || v == HS_SSE) && (c->flags & CONN_LIMITED)) {
        conn_http_error(c, HS_SERVICE_UNAVAILABLE, &req, req.origin);
        return (ssize_t)len;
    }
    if (v == HS_SSE) {
        conn_sse_start(c, &req);
        /* A stream's client says nothing after its head: conn_feed ends
         * the stream on any byte that follows it. */
        return c->state == CONN_OPEN ? n : (ssize_t)len;
    }
    if (v != HS_UPGRADE) {
        /* The SSE 403 for an origin not allowed echoes that origin too:
         * its body says only "origin not allowed", and a page that cannot
         * read it (a fetch() without the header fails blind) would retry
         * for ever instead of stopping. */
        conn_http_error(c, v, &req, req.sse ? req.origin : (struct str){ 0 });
        return (ssize_t)len;
    }
    /* Decided at the upgrade: a reload that turns deflate off leaves the
     * connections that have it as they are. */
    int deflate = cfg->deflate && req.deflate == HS_DEFLATE_OFFERED;
    char resp[512];
    int rl = hs_upgrade_response(&req, deflate, resp, sizeof(resp));
    if (rl < 0 || conn_queue_copy(c, resp, (size_t)rl) < 0) {
        conn_kill(c);
        return (ssize_t)len;
    }
    c->state = CONN_OPEN;
    c->flags |= CONN_UPGRADED;
    if (deflate) {
        c->flags |= CONN_DEFLATE;
        c->cs->stats.deflate_upgrades++;
    }
    c->cs->stats.accepted++;
    c->cs->stats.open++;
    c->last_ping = c->last_msg = ev_now(c->cs->loop);
    int code = 0;
    c->session = c->cs->h.open(c->cs->ctx, req.query, (struct str){ 0 }, c, &code);
    if (!c->session) {
        log_info("fd %d: subscription refused: close %d", c->io.fd, code);
        conn_close(c, (uint16_t)code);
        return n;
    }
    /* open() may have closed it: close_timeout stays the deadline. */
    if (c->state == CONN_OPEN)
        conn_schedule(c);
    return n;
}

/* ---- frames from the client ---- */

/* The close handshake is over on our side: our close frame (sent before,
 * or the echo just queued) is the last frame. TCP is closed once it is
 * written, at once when it already is; close_timeout (still armed) bounds
 * a page that stops reading. Reading stops here. */
static void conn_hang_up(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    if (sendq_empty(&c->out)) {
        conn_kill(c);
        return;
    }
    c->flags |= CONN_CLOSE_AFTER_FLUSH;
    ev_io_set(c->cs->loop, &c->watch, c->flags & CONN_WANT_WRITE ? EV_WRITE : 0);
}

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
        if (c->out.bytes + len + 2 > (size_t)conn_cfg(c)->send_buffer_bytes) {
            /* Pings from a peer that does not read its pongs would queue
             * without bound: the same cap as for messages. */
            log_info("fd %d: pongs not read, %zu bytes queued: closing 1013", c->io.fd, c->out.bytes);
            sendq_drop_unsent(&c->out, c->io.held);
            conn_close(c, 1013);
            return -1;
        }
        frame_unmask(payload, f->payload, len, f->mask, 0);
        if (conn_queue_frame(c, FRAME_PONG, payload, len) < 0)
            conn_kill(c);
        return 0;
    case FRAME_PONG:
        /* The timer waits for the pong deadline: move it to the next
         * ping, which may come sooner (ping_interval < pong_timeout). */
        if (c->flags & CONN_AWAIT_PONG) {
            c->flags &= (uint16_t)~CONN_AWAIT_PONG;
            conn_schedule(c);
        }
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
        /* Nothing the page sends after its close is read (RFC 6455
         * 5.5.1). In CLOSING this is the answer to our close frame. */
        c->flags |= CONN_PEER_CLOSED;
        if (c->state == CONN_OPEN)
            conn_close_as(c, reply, code < 0 || reply == 1007 || reply == 1000 || reply == 1001
                                        ? reply : 0);   /* 0: "other" */
        conn_hang_up(c);
        return -1;
    }
    default:
        /* Push-only: a client data frame is a policy violation. */
        if (c->state == CONN_OPEN)
            conn_close(c, 1008);
        return -1;
    }
}

/* Parses every complete frame in [p, p+len); returns the bytes used (the
 * rest, the start of a frame, is kept for the next read).
 *
 * A frame is refused as soon as its first two bytes decide it: a data
 * frame (push-only: 1008, whatever its length) or a protocol error (1002);
 * one over max_frame_bytes (1009) once its length is in. A refused frame is
 * then skipped by its length, never buffered, so the page's close that
 * follows is still read and ends the connection at once. Only a length
 * that cannot be skipped (64-bit with the top bit set) leaves the input
 * out of step: it is dropped until EOF or close_timeout. */
static size_t conn_parse_frames(struct conn *c, const unsigned char *p, size_t len)
{
    size_t used = 0;
    while (used < len) {
        if ((c->state != CONN_OPEN && c->state != CONN_CLOSING) ||
            (c->flags & (CONN_DISCARD | CONN_PEER_CLOSED)))
            return len;
        if (c->skip) {
            size_t k = len - used < c->skip ? len - used : (size_t)c->skip;
            used += k;
            c->skip -= k;
            continue;
        }
        const unsigned char *q = p + used;
        size_t n = len - used;
        uint16_t code;
        /* With permessage-deflate a data frame may carry RSV1: it is
         * still a data frame, refused with 1008 like any other. */
        int op = frame_peek_opcode(q, n, 0, c->flags & CONN_DEFLATE ? FRAME_EXT_DEFLATE : 0);
        if (op == FRAME_NEED_MORE)
            break;
        if (op == FRAME_TEXT || op == FRAME_BINARY) {
            code = 1008;
        } else if (op < 0) {
            code = 1002;
        } else {
            struct frame f;
            ssize_t r = frame_parse(q, n, (uint64_t)conn_cfg(c)->max_frame_bytes, 0, &f);
            if (r == FRAME_NEED_MORE)
                break;
            if (r >= 0) {
                used += (size_t)r;
                conn_on_frame(c, &f);
                continue;
            }
            code = r == FRAME_E_TOO_BIG ? 1009 : 1002;
        }
        if (c->state == CONN_OPEN)
            conn_close(c, code);
        uint64_t size;
        int rc = frame_size(q, n, &size);
        if (rc == FRAME_NEED_MORE)
            break;          /* refused again, without a second close, when the length is in */
        if (rc < 0) {
            c->flags |= CONN_DISCARD;
            return len;
        }
        c->skip = size;
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
    /* Frames may follow the head in the same read (sent before our 101).
     * An SSE client has nothing to say after its head: a byte from it
     * ends the stream, which would otherwise read (over TLS, decrypt)
     * whatever it sends for ever. */
    int streaming = c->state == CONN_OPEN || c->state == CONN_CLOSING;
    if (streaming && c->kind->two_way) {
        used += conn_parse_frames(c, p + used, n - used);
    } else if (streaming && used < n) {
        log_info("fd %d: event stream client sent bytes after its request: hung up", c->io.fd);
        conn_kill(c);
        return;
    } else {
        used = n;
    }
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
    unsigned char *scratch = c->cs->scratch;
    for (;;) {
        size_t room = CONN_READ_CHUNK;
        if (c->state == CONN_HANDSHAKE)
            room = (size_t)conn_cfg(c)->max_header_bytes + 1 - buf_used(&c->in);
        ssize_t n = io_read(&c->io, scratch, room);
        if (n > 0) {
            conn_feed(c, scratch, (size_t)n);
            if (c->state == CONN_DEAD || (c->flags & CONN_CLOSE_AFTER_FLUSH) || (size_t)n < room)
                return;
            continue;
        }
        if (n != IO_AGAIN)
            conn_kill(c);           /* peer closed (0) or a read error */
        else if ((c->io.flags & IO_READ_NEEDS_WRITE) && !(c->flags & CONN_WANT_WRITE)) {
            /* conn_on_io reads again once writable; a flush with nothing
             * queued turns EV_WRITE off again. */
            c->flags |= CONN_WANT_WRITE;
            ev_io_set(c->cs->loop, &c->watch, EV_READ | EV_WRITE);
        }
        return;
    }
}

/* ---- writing ---- */

static void conn_flush(struct conn *c)
{
    ssize_t w = sendq_flush(&c->out, &c->io);
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
            c->flags &= (uint16_t)~CONN_WANT_WRITE;
            ev_io_set(c->cs->loop, &c->watch, EV_READ);
        }
        /* What the handler queues now marks the connection dirty again:
         * it is written in the next flush round of this pass. */
        if ((c->flags & CONN_WANT_DRAINED) && c->state == CONN_OPEN) {
            c->flags &= (uint16_t)~CONN_WANT_DRAINED;
            if (c->cs->h.drained)
                c->cs->h.drained(c->cs->ctx, c->session);
        }
    } else if (!(c->flags & CONN_WANT_WRITE)) {
        c->flags |= CONN_WANT_WRITE;
        unsigned ev = EV_WRITE;
        if (!(c->flags & CONN_CLOSE_AFTER_FLUSH))
            ev |= EV_READ;
        ev_io_set(c->cs->loop, &c->watch, ev);
    }
}

/* The loop's clock is per pass (milliseconds); a fan-out needs finer. */
static uint64_t conn_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void conns_flush_dirty(conns_t *cs)
{
    uint64_t pumped = conn_clock_us();
    for (int round = 0; round < CONN_FLUSH_ROUNDS && cs->dirty; round++) {
        struct conn *c = cs->dirty;
        cs->dirty = NULL;
        unsigned k = 0;
        while (c) {
            struct conn *next = c->dirty_next;
            c->flags &= (uint16_t)~CONN_DIRTY;
            if (c->state != CONN_DEAD)
                conn_flush(c);
            c = next;
            /* Connections still ahead keep CONN_DIRTY, so messages pumped
             * in now ride in their coming writev; those behind are queued
             * again on cs->dirty for the next round. */
            if (++k % CONN_PUMP_CHECK == 0 && c && cs->h.pump) {
                uint64_t now = conn_clock_us();
                if (now - pumped >= cs->pump_us) {
                    cs->h.pump(cs->ctx);
                    pumped = now;
                }
            }
        }
    }
    if (cs->dirty)
        ev_poll_now(cs->loop);
}

static void conn_on_io(ev_loop_t *loop, struct ev_io *w, unsigned events)
{
    (void)loop;
    struct conn *c = ev_container_of(w, struct conn, watch);
    int read_waits_write = (c->io.flags & IO_READ_NEEDS_WRITE) != 0;
    if (events & EV_WRITE)
        conn_flush(c);
    if ((events & EV_READ || (events & EV_WRITE && read_waits_write)) && c->state != CONN_DEAD &&
        !(c->flags & CONN_CLOSE_AFTER_FLUSH))
        conn_read(c);
}

/* ---- timers ---- */

/* Arms the timer for the earliest of: the pong deadline or the next ping,
 * and the idle deadline. */
static void conn_schedule(struct conn *c)
{
    const struct cfg *cfg = conn_cfg(c);
    uint64_t now = ev_now(c->cs->loop);
    uint64_t due = UINT64_MAX;
    if (c->flags & CONN_AWAIT_PONG)
        due = c->last_ping + (uint64_t)cfg->pong_timeout_ms;
    else if (cfg->ping_interval_ms > 0)
        due = c->last_ping + (uint64_t)cfg->ping_interval_ms;
    if (cfg->idle_timeout_ms > 0 && c->last_msg + (uint64_t)cfg->idle_timeout_ms < due)
        due = c->last_msg + (uint64_t)cfg->idle_timeout_ms;
    if (due == UINT64_MAX)
        ev_timer_stop(c->cs->loop, &c->timer);
    else
        ev_timer_start(c->cs->loop, &c->timer, due > now ? due - now : 0, conn_on_timer);
}

static void conn_on_timer(ev_loop_t *loop, struct ev_timer *t)
{
    struct conn *c = ev_container_of(t, struct conn, timer);
    const struct cfg *cfg = conn_cfg(c);
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
        if (!c->kind->two_way && c->out.bytes > (size_t)cfg->send_buffer_bytes) {
            /* A stream has no pong: keep-alives to a page that does not
             * read are held to the send budget like messages. */
            sendq_drop_unsent(&c->out, c->io.held);
            conn_close(c, 1013);
            return;
        }
        if (conn_queue_rbuf(c, c->kind->keepalive()) < 0) {
            conn_kill(c);
            return;
        }
        if (c->kind->two_way)
            c->flags |= CONN_AWAIT_PONG;
        c->last_ping = now;
    }
    conn_schedule(c);
}

/* ---- the set, freeing ---- */

static void conn_free(struct conn *c)
{
    conns_t *cs = c->cs;
    if (cs->h.closed)
        cs->h.closed(cs->ctx, c->session);
    if (c->peer && cs->h.released)
        cs->h.released(cs->ctx, c->peer, (c->flags & CONN_LIMITED) != 0);
    if (c->flags & CONN_LIMITED)
        cs->nlimited--;
    if ((c->flags & CONN_UPGRADED) && c->kind == &conn_sse)
        cs->stats.sse_open--;
    else if (c->flags & CONN_UPGRADED)
        cs->stats.open--;
    buf_free(&c->in);
    sendq_clear(&c->out);
    list_remove(&cs->dead, &c->node);
    io_close(&c->io);
    free(c);
}

static void conns_reap(conns_t *cs)
{
    struct list_node *n;
    /* A dead connection may still sit on the dirty list of this pass:
     * the flush ran first, so freeing here is safe. */
    while ((n = list_first(&cs->dead)) != NULL)
        conn_free(list_entry(n, struct conn, node));
}

/* Connections killed after they were listed (a write error in this
 * pass) leave the dirty list before the reap frees them. */
static void conns_unlist_dead(conns_t *cs)
{
    struct conn **pp = &cs->dirty;
    while (*pp) {
        struct conn *c = *pp;
        if (c->state == CONN_DEAD) {
            c->flags &= (uint16_t)~CONN_DIRTY;
            *pp = c->dirty_next;
        } else {
            pp = &c->dirty_next;
        }
    }
}

static void conns_after(ev_loop_t *loop, void *data)
{
    (void)loop;
    conns_t *cs = data;
    conns_flush_dirty(cs);
    conns_unlist_dead(cs);
    conns_reap(cs);
}

conns_t *conns_new(ev_loop_t *loop, struct cfg *const *cfg, const struct conn_handlers *h, void *ctx)
{
    conns_t *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return NULL;
    cs->scratch = malloc(CONN_READ_CHUNK);
    if (!cs->scratch) {
        free(cs);
        return NULL;
    }
    cs->loop = loop;
    cs->cfg = cfg;
    cs->pump_us = CONN_PUMP_US;
    cs->h = *h;
    cs->ctx = ctx;
    list_init(&cs->live);
    list_init(&cs->dead);
    ev_after_add(loop, &cs->after, conns_after, cs);
    return cs;
}

void conns_set_pump_interval(conns_t *cs, unsigned us) { cs->pump_us = us; }

void conns_close_all(conns_t *cs, uint16_t code)
{
    struct list_node *pos, *tmp;
    list_for_each_safe(pos, tmp, &cs->live)
        conn_close(list_entry(pos, struct conn, node), code);
}

size_t conns_count(const conns_t *cs) { return cs->live.n + cs->dead.n; }
size_t conns_limited(const conns_t *cs) { return cs->nlimited; }
const struct stats_conn *conns_stats(const conns_t *cs) { return &cs->stats; }

void conns_free(conns_t *cs)
{
    if (!cs)
        return;
    conns_flush_dirty(cs);
    struct list_node *n;
    while ((n = list_first(&cs->live)) != NULL)
        conn_kill(list_entry(n, struct conn, node));
    cs->dirty = NULL;
    conns_reap(cs);
    ev_after_remove(cs->loop, &cs->after);
    pmd_free(cs->pmd);
    free(cs->scratch);
    free(cs);
}
