/* conn: the WebSocket transport linked alone, over a scripted io table.
 *
 * read() hands out bytes from a per-connection script (as many as asked,
 * or read_max at a time for 1-byte feeds), then IO_AGAIN, or a scripted
 * end (0 = EOF, -errno); writev() appends to an output buffer, taking at
 * most write_max bytes a call (short writes), nothing (write_block: a full
 * socket) or failing (write_err). Readiness is real: each connection is
 * one end of a socketpair registered with the ev loop, and feeding writes
 * a byte to the other end; read() drains it once the script is used up,
 * so the loop calls the connection exactly while it has input. The loop
 * is driven one pass at a time (ev_poll_now + an after-pass hook, added
 * after conns_new's own, that stops it); only the timer cases let epoll
 * wait, for the conn's own deadlines (1-100 ms), under a guard timer. No
 * sleeps.
 *
 * Every case asserts the exact bytes on the wire, which handler ran with
 * what, and that closed() ran once per connection, right before its fd
 * was closed, with the session open() returned.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "buf.h"
#include "cfg.h"
#include "conn.h"
#include "ev.h"
#include "handshake.h"
#include "io.h"
#include "log.h"
#include "msg.h"
#include "sse.h"

#define TC_MAX_CONNS 700
#define TC_MAX_IOV   64
#define TC_MAX_PASSES 200000

/* RFC 6455 section 1.3's example key and its accept value. */
#define TC_KEY    "dGhlIHNhbXBsZSBub25jZQ=="
#define TC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static const char tc_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: " TC_ACCEPT "\r\n"
                             "\r\n";

static const char tc_400[] = "HTTP/1.1 400 Bad Request\r\n"
                             "Content-Type: text/plain; charset=utf-8\r\n"
                             "Content-Length: 12\r\n"
                             "Connection: close\r\n"
                             "\r\n"
                             "bad request\n";

static const unsigned char tc_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* ---- the scripted connection ---- */

struct tio {
    int           fd, peer;       /* fd went to conn_accept; peer is ours */
    int           io_closed;      /* io close() calls */
    struct conn  *conn;           /* from open() */
    /* input script */
    struct buf    in;
    size_t        read_max;       /* bytes per read(); 0 = as many as asked */
    int           read_needs_write; /* reads that first wait for writability (TLS) */
    int           end;            /* once `in` is used up, read() returns end_rc */
    ssize_t       end_rc;
    /* output */
    struct buf    out;
    size_t        write_max;      /* bytes per writev(); 0 = all */
    int           write_block;    /* writev() returns IO_AGAIN */
    ssize_t       write_err;      /* nonzero: writev() returns it */
    int           writev_calls;
    size_t        bytes_read;     /* handed to the connection by read() */
    const void   *iov_seen[TC_MAX_IOV];  /* first iov bases passed to writev */
    int           niov_seen;
    /* handlers */
    int           opens;
    char          query[512];
    char          resume[64];     /* the Last-Event-ID open() was given */
    const char   *greet;          /* open() sends it with send_json */
    int           refuse;         /* open() returns NULL with this code */
    int           close_in_open;  /* open() calls conn_transport.close with it */
    int           closed_calls;   /* closed() ran for this connection */
    void         *closed_session; /* with this session */
    int           drained_calls;  /* drained() ran for this session */
    size_t        drained_out;    /* bytes of output when it last ran */
    struct msg   *drained_send;   /* drained() replays it (and asks again) */
    int           drained_more;   /* ... this many times more */
    int           released;       /* released() ran with this tio as peer */
};

struct tc {
    ev_loop_t      *loop;
    struct cfg      cfg;
    struct cfg     *cfgp;
    conns_t        *cs;
    struct ev_hook  stop;
    struct ev_timer guard;
    int             guard_fired;
    struct tio     *tios[TC_MAX_CONNS];
    int             ntio;
    struct tio     *reading;      /* the tio whose read() ran last */
    unsigned long   activity;     /* progress made: bytes moved, handlers run */
    int             closed_pending;  /* closed() ran, its io close() not yet */
    void           *closed_session;
    int             closed_total;
    int             pumps;
    void          (*on_pump)(struct tc *tc);
    struct msg     *pump_msg;
    struct buf      want;         /* expected output, freed by teardown too */
};

/* io_ops carries no context and conn_accept() leaves io.state NULL, so the
 * scripted table finds its test through this one pointer (set by setup). */
static struct tc *tc_cur;

static struct tio *tio_of(const struct io *io)
{
    for (int i = 0; i < tc_cur->ntio; i++) {
        struct tio *t = tc_cur->tios[i];
        if (!t->io_closed && t->fd == io->fd)
            return t;
    }
    fail_msg("io call on unknown fd %d", io->fd);
    return NULL;
}

static void tio_drain(struct tio *t)
{
    char b[64];
    while (recv(t->fd, b, sizeof(b), MSG_DONTWAIT) > 0) {
    }
}

/* Makes the connection readable (nothing to do once it is gone: bytes fed
 * after that are never read). */
static void tio_poke(struct tio *t)
{
    if (!t->io_closed)
        assert_int_equal(send(t->peer, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL), 1);
}

static ssize_t tio_read(struct io *io, void *dst, size_t len)
{
    struct tio *t = tio_of(io);
    tc_cur->reading = t;
    assert_true(len > 0);
    io->flags &= ~IO_READ_NEEDS_WRITE;
    if (t->read_needs_write > 0) {
        /* A TLS record to write before the read can go on: nothing
         * readable is left to wake the connection, only writability. */
        t->read_needs_write--;
        io->flags |= IO_READ_NEEDS_WRITE;
        tio_drain(t);
        return IO_AGAIN;
    }
    size_t have = buf_used(&t->in);
    if (have > 0) {
        size_t n = have < len ? have : len;
        if (t->read_max && n > t->read_max)
            n = t->read_max;
        memcpy(dst, buf_head(&t->in), n);
        buf_consume(&t->in, n);
        t->bytes_read += n;
        if (buf_used(&t->in) == 0 && !t->end)
            tio_drain(t);
        tc_cur->activity++;
        return (ssize_t)n;
    }
    if (t->end) {
        tc_cur->activity++;
        return t->end_rc;
    }
    tio_drain(t);
    return IO_AGAIN;
}

static ssize_t tio_writev(struct io *io, const struct iovec *iov, int n)
{
    struct tio *t = tio_of(io);
    t->writev_calls++;
    assert_true(n > 0);
    if (t->write_err)
        return t->write_err;
    if (t->write_block)
        return IO_AGAIN;
    size_t room = t->write_max ? t->write_max : SIZE_MAX, w = 0;
    for (int i = 0; i < n && w < room; i++) {
        if (t->niov_seen < TC_MAX_IOV)
            t->iov_seen[t->niov_seen++] = iov[i].iov_base;
        size_t k = iov[i].iov_len < room - w ? iov[i].iov_len : room - w;
        assert_int_equal(buf_append(&t->out, iov[i].iov_base, k), 0);
        w += k;
    }
    if (w == 0)
        return IO_AGAIN;
    tc_cur->activity++;
    return (ssize_t)w;
}

static void tio_close(struct io *io)
{
    struct tio *t = tio_of(io);
    t->io_closed++;
    if (tc_cur->closed_pending) {
        t->closed_calls++;
        t->closed_session = tc_cur->closed_session;
        tc_cur->closed_pending = 0;
    }
    close(io->fd);
    tc_cur->activity++;
}

static const struct io_ops tio_ops = { tio_read, tio_writev, tio_close };

/* ---- the handler table ---- */

static void *tc_open(void *ctx, struct str query, struct str resume, struct conn *c, int *close_code)
{
    struct tc *tc = ctx;
    struct tio *t = tc->reading;
    assert_non_null(t);
    assert_non_null(c);
    t->conn = c;
    t->opens++;
    assert_true(query.len < sizeof(t->query));
    if (query.len)      /* an absent query may come as { NULL, 0 } */
        memcpy(t->query, query.p, query.len);
    t->query[query.len] = '\0';
    assert_true(resume.len < sizeof(t->resume));
    if (resume.len)
        memcpy(t->resume, resume.p, resume.len);
    t->resume[resume.len] = '\0';
    tc->activity++;
    if (t->greet)
        assert_int_equal(conn_transport.send_json(c, t->greet, strlen(t->greet), (struct str){ 0 }), 0);
    if (t->close_in_open)
        conn_transport.close(c, t->close_in_open);
    if (t->refuse) {
        *close_code = t->refuse;
        return NULL;
    }
    return t;       /* the session is the tio itself */
}

static void tc_closed(void *ctx, void *session)
{
    struct tc *tc = ctx;
    /* Paired with the io close() that conn_free does right after. */
    assert_false(tc->closed_pending);
    tc->closed_pending = 1;
    tc->closed_session = session;
    tc->closed_total++;
    tc->activity++;
}

static void tc_pump(void *ctx)
{
    struct tc *tc = ctx;
    tc->pumps++;
    if (tc->on_pump)
        tc->on_pump(tc);
}

/* The session is the tio: counts the call and, when asked, replays one
 * more message and asks again (what a streaming resume does). */
static void tc_drained(void *ctx, void *session)
{
    struct tc *tc = ctx;
    struct tio *t = session;
    t->drained_calls++;
    t->drained_out = buf_used(&t->out);
    tc->activity++;
    if (t->drained_send && t->drained_more > 0) {
        t->drained_more--;
        static const int c0[] = { 0 };
        assert_int_equal(conn_transport.replay_msg(t->conn, t->drained_send, c0, 1), 1);
        conn_transport.want_drained(t->conn);
    }
}

/* conn_accept's peer is the tio too (when a case passes one). */
static void tc_released(void *ctx, void *peer, int limited)
{
    struct tc *tc = ctx;
    struct tio *t = peer;
    (void)limited;
    assert_true(tc->closed_pending);     /* right after closed() */
    t->released++;
    tc->activity++;
}

static const struct conn_handlers tc_handlers = { tc_open, tc_closed, tc_pump, tc_drained,
                                                  tc_released };

/* ---- the loop ---- */

static void tc_stop_hook(ev_loop_t *loop, void *data)
{
    (void)data;
    ev_stop(loop);
}

static void tc_guard_cb(ev_loop_t *loop, struct ev_timer *t)
{
    (void)loop;
    ev_container_of(t, struct tc, guard)->guard_fired = 1;
}

/* One loop pass that does not wait: dispatch, timers due, conns' flush and
 * reap, then our hook stops it. */
static void tc_pass(struct tc *tc)
{
    ev_poll_now(tc->loop);
    assert_int_equal(ev_run(tc->loop), 0);
}

/* Passes until one makes no progress. */
static void tc_settle(struct tc *tc)
{
    for (int i = 0; i < TC_MAX_PASSES; i++) {
        unsigned long a = tc->activity;
        tc_pass(tc);
        if (tc->activity == a)
            return;
    }
    fail_msg("no quiescence after %d passes", TC_MAX_PASSES);
}

/* Passes that may wait (for conn's own timers) until cond holds; a 2 s
 * guard timer bounds each wait and fails the test if it is what fired. */
static void tc_wait(struct tc *tc, int (*cond)(struct tc *, struct tio *), struct tio *t)
{
    tc->guard_fired = 0;
    assert_int_equal(ev_timer_start(tc->loop, &tc->guard, 2000, tc_guard_cb), 0);
    while (!cond(tc, t)) {
        assert_int_equal(ev_run(tc->loop), 0);
        if (tc->guard_fired)
            fail_msg("timed out waiting");
    }
    ev_timer_stop(tc->loop, &tc->guard);
    tc_settle(tc);
}

/* Nothing left to do: the loop sleeps until a 5 ms timer instead of
 * spinning (a connection whose queue drained must stop watching for
 * writability, the socket being always writable here). */
static void tc_assert_quiet(struct tc *tc)
{
    int passes = 0;
    tc->guard_fired = 0;
    assert_int_equal(ev_timer_start(tc->loop, &tc->guard, 5, tc_guard_cb), 0);
    while (!tc->guard_fired && passes < 10000) {
        assert_int_equal(ev_run(tc->loop), 0);
        passes++;
    }
    assert_true(passes <= 2);
}

static int tc_setup(void **state)
{
    struct tc *tc = calloc(1, sizeof(*tc));
    assert_non_null(tc);
    char err[128];
    tc->loop = ev_loop_new(err, sizeof(err));
    assert_non_null(tc->loop);
    cfg_defaults(&tc->cfg);
    tc->cfg.ping_interval_ms = 0;   /* no timers unless a case asks */
    tc->cfgp = &tc->cfg;
    tc->cs = conns_new(tc->loop, &tc->cfgp, &tc_handlers, tc);
    if (tc->cs)
        conns_set_pump_interval(tc->cs, 0);     /* counted, not timed */
    assert_non_null(tc->cs);
    ev_after_add(tc->loop, &tc->stop, tc_stop_hook, tc);
    tc_cur = tc;
    *state = tc;
    return 0;
}

static int tc_teardown(void **state)
{
    struct tc *tc = *state;
    conns_free(tc->cs);
    ev_after_remove(tc->loop, &tc->stop);
    ev_timer_stop(tc->loop, &tc->guard);
    ev_loop_free(tc->loop);
    for (int i = 0; i < tc->ntio; i++) {
        struct tio *t = tc->tios[i];
        /* Every connection went through closed() exactly once. */
        if (t->fd >= 0) {
            assert_int_equal(t->io_closed, 1);
            assert_int_equal(t->closed_calls, 1);
        }
        close(t->peer);
        buf_free(&t->in);
        buf_free(&t->out);
        free(t);
    }
    msg_unref(tc->pump_msg);
    buf_free(&tc->want);
    free(tc);
    tc_cur = NULL;
    return 0;
}

/* ---- connections, input, output ---- */

/* An empty buffer for the expected bytes, owned by the fixture so that a
 * failed assertion leaks nothing. */
static struct buf *tc_want(struct tc *tc)
{
    buf_free(&tc->want);
    return &tc->want;
}

static struct tio *tc_accept_as(struct tc *tc, unsigned flags, int with_peer)
{
    assert_true(tc->ntio < TC_MAX_CONNS);
    struct tio *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    t->fd = sv[0];
    t->peer = sv[1];
    tc->tios[tc->ntio++] = t;
    assert_int_equal(conn_accept(tc->cs, t->fd, &tio_ops, NULL, flags, with_peer ? t : NULL), 0);
    return t;
}

static struct tio *tc_accept(struct tc *tc) { return tc_accept_as(tc, 0, 0); }

static void tio_feed(struct tio *t, const void *p, size_t n)
{
    assert_int_equal(buf_append(&t->in, p, n), 0);
    tio_poke(t);
}

static void tio_feed_str(struct tio *t, const char *s) { tio_feed(t, s, strlen(s)); }

/* After the script: EOF (0) or a read error (-errno). */
static void tio_end(struct tio *t, ssize_t rc)
{
    t->end = 1;
    t->end_rc = rc;
    tio_poke(t);
}

/* The whole output equals want; then forget it. */
static void tio_expect(struct tio *t, const void *want, size_t len)
{
    assert_int_equal(buf_used(&t->out), len);
    if (len)
        assert_memory_equal(buf_head(&t->out), want, len);
    buf_reset(&t->out);
}

static void tio_expect_buf(struct tio *t, struct buf *want)
{
    tio_expect(t, buf_head(want), buf_used(want));
    buf_free(want);
}

/* Freed: closed() ran once with session, then its fd was closed. */
static void tio_assert_freed(struct tio *t, void *session)
{
    assert_int_equal(t->io_closed, 1);
    assert_int_equal(t->closed_calls, 1);
    assert_ptr_equal(t->closed_session, session);
}

static void tio_assert_live(struct tio *t)
{
    assert_int_equal(t->io_closed, 0);
    assert_int_equal(t->closed_calls, 0);
}

static int tc_request(char *out, size_t cap, const char *target, const char *extra)
{
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: example.com\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " TC_KEY "\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s"
                     "\r\n",
                     target, extra);
    assert_true(n > 0 && (size_t)n < cap);
    return n;
}

/* A connection past its 101 (consumed from the output), open() run. */
static struct tio *tc_open_conn(struct tc *tc)
{
    char req[512];
    struct tio *t = tc_accept(tc);
    tc_request(req, sizeof(req), "/push?channels=c", "");
    tio_feed_str(t, req);
    tc_settle(tc);
    tio_expect(t, tc_101, strlen(tc_101));
    assert_int_equal(t->opens, 1);
    return t;
}

/* A client frame: first byte b0 (FIN, RSV, opcode), masked unless
 * unmasked is set, payload < 65536. Returns its length. */
static size_t tc_cframe(unsigned char *out, unsigned b0, const void *payload, size_t len, int unmasked)
{
    size_t h = 0;
    unsigned char m = unmasked ? 0 : 0x80;
    out[h++] = (unsigned char)b0;
    if (len < 126) {
        out[h++] = (unsigned char)(m | len);
    } else {
        out[h++] = (unsigned char)(m | 126);
        out[h++] = (unsigned char)(len >> 8);
        out[h++] = (unsigned char)len;
    }
    if (!unmasked) {
        memcpy(out + h, tc_mask, 4);
        h += 4;
    }
    const unsigned char *p = payload;
    for (size_t i = 0; i < len; i++)
        out[h + i] = unmasked ? p[i] : (unsigned char)(p[i] ^ tc_mask[i % 4]);
    return h + len;
}

/* A client close frame with a code (and reason); code < 0: empty payload. */
static size_t tc_cclose(unsigned char *out, int code, const char *reason)
{
    unsigned char p[125];
    size_t n = 0;
    if (code >= 0) {
        p[n++] = (unsigned char)(code >> 8);
        p[n++] = (unsigned char)code;
        size_t rl = strlen(reason);
        memcpy(p + n, reason, rl);
        n += rl;
    }
    return tc_cframe(out, 0x88, p, n, 0);
}

/* The server frame we expect: unmasked, FIN set. */
static void tc_ex_frame(struct buf *b, int opcode, const void *payload, size_t len)
{
    unsigned char h[4] = { (unsigned char)(0x80 | opcode) };
    size_t hl = 2;
    if (len < 126) {
        h[1] = (unsigned char)len;
    } else {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    }
    assert_int_equal(buf_append(b, h, hl), 0);
    assert_int_equal(buf_append(b, payload, len), 0);
}

static void tc_ex_close(struct buf *b, unsigned code)
{
    unsigned char p[2] = { (unsigned char)(code >> 8), (unsigned char)code };
    tc_ex_frame(b, 0x8, p, 2);
}

static void tc_ex_str(struct buf *b, const char *s) { assert_int_equal(buf_append(b, s, strlen(s)), 0); }

/* Feeds [p, p+n) in chunks of `chunk` bytes, one chunk per settle (0: all
 * at once); read_max = chunk also splits what one read() returns. */
static void tio_feed_chunked(struct tc *tc, struct tio *t, const void *p, size_t n, size_t chunk)
{
    const unsigned char *b = p;
    t->read_max = chunk;
    if (chunk == 0) {
        tio_feed(t, b, n);
        tc_settle(tc);
        return;
    }
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        tio_feed(t, b + off, k);
        tc_settle(tc);
    }
}

static struct msg *tc_msg(const char *id, const char *chan, const char *data)
{
    struct str ch[2] = { { chan, strlen(chan) }, { "other", 5 } };
    struct msg *m = msg_new((struct str){ id, strlen(id) }, ch, 2, (struct str){ data, strlen(data) });
    assert_non_null(m);
    return m;
}

static void tc_ex_msg(struct buf *b, const char *id, const char *chan, const char *data)
{
    char env[1024];
    int n = snprintf(env, sizeof(env), "{\"type\":\"message\",\"channel\":\"%s\",\"id\":\"%s\",\"data\":%s}",
                     chan, id, data);
    assert_true(n > 0 && (size_t)n < sizeof(env));
    tc_ex_frame(b, 0x1, env, (size_t)n);
}

/* ---- the opening handshake ---- */

/* A reserve slot (CONN_ACCEPT_LIMITED): /healthz gets its 200 and an
 * upgrade its 503, whole and byte by byte; other requests their usual
 * page; open() never runs. released() gets the peer once, right after
 * closed(); conns_limited() counts the slot until it is freed. */
static void test_limited_slot(void **state)
{
    struct tc *tc = *state;
    char up[512];
    tc_request(up, sizeof(up), "/push?channels=c", "");
    static const char health[] = "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n";
    const struct {
        const char *req;
        enum hs_verdict v;
    } rows[] = {
        { up, HS_SERVICE_UNAVAILABLE },
        { health, HS_HEALTHZ },
        { "GET /healthz HTTP/1.0\r\n\r\n", HS_HEALTHZ },
        { "GARBAGE\r\n\r\n", HS_BAD_REQUEST },
    };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
        for (size_t c = 0; c < 2; c++) {
            char page[512];
            int plen = hs_response(rows[r].v, NULL, page, sizeof(page));
            assert_true(plen > 0);
            struct tio *t = tc_accept_as(tc, CONN_ACCEPT_LIMITED, 1);
            assert_int_equal(conns_limited(tc->cs), 1);
            tio_feed_chunked(tc, t, rows[r].req, strlen(rows[r].req), c);
            tio_expect(t, page, (size_t)plen);
            assert_int_equal(t->opens, 0);
            tio_assert_freed(t, NULL);
            assert_int_equal(t->released, 1);
            assert_int_equal(conns_limited(tc->cs), 0);
        }
    /* An ordinary connection with a peer: released once when freed. */
    struct tio *t = tc_accept_as(tc, 0, 1);
    tio_feed_str(t, up);
    tc_settle(tc);
    tio_expect(t, tc_101, strlen(tc_101));
    assert_int_equal(t->opens, 1);
    assert_int_equal(conns_limited(tc->cs), 0);
    assert_int_equal(t->released, 0);
    tio_end(t, 0);
    tc_settle(tc);
    tio_assert_freed(t, t);
    assert_int_equal(t->released, 1);
}

static const size_t tc_chunks[] = { 0, 1, 2, 3, 7, 64 };
#define TC_NCHUNKS (sizeof(tc_chunks) / sizeof(tc_chunks[0]))

static void test_upgrade_whole_and_chunked(void **state)
{
    struct tc *tc = *state;
    static const struct {
        const char *target, *query;
    } rows[] = {
        { "/push?channels=a%2Cb&last_id=7", "channels=a%2Cb&last_id=7" },
        { "/", "" },
        { "/ws?", "" },
        { "/any/path?x=%20y", "x=%20y" },
    };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
        for (size_t k = 0; k < TC_NCHUNKS; k++) {
            char req[512];
            int n = tc_request(req, sizeof(req), rows[r].target, "Origin: https://example.com\r\n");
            struct tio *t = tc_accept(tc);
            tio_feed_chunked(tc, t, req, (size_t)n, tc_chunks[k]);
            tio_expect(t, tc_101, strlen(tc_101));
            assert_int_equal(t->opens, 1);
            assert_string_equal(t->query, rows[r].query);
            tio_assert_live(t);
        }
    assert_int_equal(conns_count(tc->cs), 4 * TC_NCHUNKS);
    assert_int_equal(tc->closed_total, 0);
}

/* Every proper prefix of a request, then EOF or a reset: no answer, no
 * open(), and the connection is freed with a NULL session. */
static void test_upgrade_truncated(void **state)
{
    struct tc *tc = *state;
    char req[512];
    int n = tc_request(req, sizeof(req), "/push?channels=c", "");
    static const ssize_t ends[] = { 0, -ECONNRESET };
    for (int k = 0; k < n; k++)
        for (size_t e = 0; e < 2; e++) {
            struct tio *t = tc_accept(tc);
            tio_feed(t, req, (size_t)k);
            tc_settle(tc);
            tio_assert_live(t);
            tio_end(t, ends[e]);
            tc_settle(tc);
            tio_expect(t, "", 0);
            assert_int_equal(t->opens, 0);
            tio_assert_freed(t, NULL);
        }
    assert_int_equal(conns_count(tc->cs), 0);
}

/* The page may send frames before it sees our 101; they are handled in
 * order after the upgrade, in one read or byte by byte. */
static void test_frames_behind_the_request(void **state)
{
    struct tc *tc = *state;
    for (size_t k = 0; k < TC_NCHUNKS; k++) {
        unsigned char in[1024];
        size_t n = (size_t)tc_request((char *)in, sizeof(in), "/push?channels=c", "");
        n += tc_cframe(in + n, 0x89, "hi", 2, 0);
        n += tc_cclose(in + n, 1000, "");
        struct tio *t = tc_accept(tc);
        tio_feed_chunked(tc, t, in, n, tc_chunks[k]);
        struct buf *want = tc_want(tc);
        tc_ex_str(want, tc_101);
        tc_ex_frame(want, 0xA, "hi", 2);
        tc_ex_close(want, 1000);
        tio_expect_buf(t, want);
        tio_assert_freed(t, t);
    }
    assert_int_equal(conns_count(tc->cs), 0);
}

/* open() refusing: 101, then a close frame with its code; the connection
 * waits for the page's close, refuses to send, and is freed with a NULL
 * session. */
static void test_open_refused(void **state)
{
    struct tc *tc = *state;
    static const int codes[] = { 4403, 4400, 4401, 1011 };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        for (size_t k = 0; k < 2; k++) {
            char req[512];
            int n = tc_request(req, sizeof(req), "/push?channels=secret", "");
            struct tio *t = tc_accept(tc);
            t->refuse = codes[i];
            tio_feed_chunked(tc, t, req, (size_t)n, k);
            struct buf *want = tc_want(tc);
            tc_ex_str(want, tc_101);
            tc_ex_close(want, (unsigned)codes[i]);
            tio_expect_buf(t, want);
            assert_int_equal(t->opens, 1);
            assert_string_equal(t->query, "channels=secret");
            tio_assert_live(t);

            struct msg *m = tc_msg("1", "secret", "1");
            assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 0);
            static const int c0[] = { 0 };
            assert_int_equal(conn_transport.replay_msg(t->conn, m, c0, 1), -EPIPE);
            msg_unref(m);
            tc_settle(tc);
            tio_expect(t, "", 0);

            unsigned char cl[16];
            tio_feed(t, cl, tc_cclose(cl, codes[i], ""));
            tc_settle(tc);
            tio_expect(t, "", 0);       /* the answer to our close: no reply */
            tio_assert_freed(t, NULL);
        }
    assert_int_equal(conns_count(tc->cs), 0);
}

/* What open() sends rides right behind the 101. */
static void test_open_greeting(void **state)
{
    struct tc *tc = *state;
    static const char greet[] = "{\"type\":\"subscribed\",\"channels\":[\"c\"],\"last_id\":\"\"}";
    char req[512];
    int n = tc_request(req, sizeof(req), "/push?channels=c", "");
    struct tio *t = tc_accept(tc);
    t->greet = greet;
    tio_feed(t, req, (size_t)n);
    tc_settle(tc);
    struct buf *want = tc_want(tc);
    tc_ex_str(want, tc_101);
    tc_ex_frame(want, 0x1, greet, strlen(greet));
    tio_expect_buf(t, want);
    tio_assert_live(t);
}

/* A request that is not an upgrade gets its page, whole even through
 * short writes, and then the connection ends without open(). */
static void test_http_errors(void **state)
{
    struct tc *tc = *state;
    tc->cfg.allowed_origins.n = 1;
    tc->cfg.allowed_origins.items[0] = (char *)"https://example.com";
    static const char k[] = "Sec-WebSocket-Key: " TC_KEY "\r\n";
    static const char ws[] = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    static const char v13[] = "Sec-WebSocket-Version: 13\r\n";
    char rows_buf[8][512];
    struct {
        const char *req;
        enum hs_verdict v;
    } rows[] = {
        { "GARBAGE\r\n\r\n", HS_BAD_REQUEST },
        { "\r\n\r\n", HS_BAD_REQUEST },
        { rows_buf[0], HS_BAD_REQUEST },       /* POST */
        { rows_buf[1], HS_BAD_REQUEST },       /* HTTP/1.0 */
        { rows_buf[2], HS_UPGRADE_REQUIRED },  /* no Upgrade */
        { rows_buf[3], HS_UPGRADE_REQUIRED },  /* version 8 */
        { rows_buf[4], HS_BAD_REQUEST },       /* bad key */
        { rows_buf[5], HS_FORBIDDEN },         /* Origin not allowed */
        { rows_buf[6], HS_HEALTHZ },
        { rows_buf[7], HS_BAD_REQUEST },       /* duplicate key */
    };
    snprintf(rows_buf[0], 512, "POST / HTTP/1.1\r\nHost: h\r\n%s%s%s\r\n", ws, k, v13);
    snprintf(rows_buf[1], 512, "GET / HTTP/1.0\r\nHost: h\r\n%s%s%s\r\n", ws, k, v13);
    snprintf(rows_buf[2], 512, "GET / HTTP/1.1\r\nHost: h\r\n%s%s\r\n", k, v13);
    snprintf(rows_buf[3], 512, "GET / HTTP/1.1\r\nHost: h\r\n%s%sSec-WebSocket-Version: 8\r\n\r\n", ws, k);
    snprintf(rows_buf[4], 512, "GET / HTTP/1.1\r\nHost: h\r\n%sSec-WebSocket-Key: short\r\n%s\r\n", ws, v13);
    snprintf(rows_buf[5], 512, "GET / HTTP/1.1\r\nHost: h\r\n%s%s%sOrigin: https://evil.example\r\n\r\n", ws, k, v13);
    snprintf(rows_buf[6], 512, "GET /healthz HTTP/1.0\r\n\r\n");
    snprintf(rows_buf[7], 512, "GET / HTTP/1.1\r\nHost: h\r\n%s%s%s%s\r\n", ws, k, k, v13);
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
        for (size_t c = 0; c < TC_NCHUNKS; c++)
            for (size_t wm = 0; wm < 2; wm++) {
                char page[512];
                int plen = hs_response(rows[r].v, NULL, page, sizeof(page));
                assert_true(plen > 0);
                struct tio *t = tc_accept(tc);
                t->write_max = wm ? 3 : 0;
                /* Bytes behind the head are never read as frames. */
                unsigned char in[1024];
                size_t n = strlen(rows[r].req);
                memcpy(in, rows[r].req, n);
                n += tc_cframe(in + n, 0x89, "x", 1, 0);
                tio_feed_chunked(tc, t, in, n, tc_chunks[c]);
                tio_expect(t, page, (size_t)plen);
                assert_int_equal(t->opens, 0);
                tio_assert_freed(t, NULL);
            }
    /* The 400 page, spelled out once. */
    struct tio *t = tc_accept(tc);
    tio_feed_str(t, "GARBAGE\r\n\r\n");
    tc_settle(tc);
    tio_expect(t, tc_400, strlen(tc_400));
    tio_assert_freed(t, NULL);
    assert_int_equal(conns_count(tc->cs), 0);
    tc->cfg.allowed_origins.n = 0;
    tc->cfg.allowed_origins.items[0] = NULL;
}

/* A request of a given head length: the Host line padded out. */
static size_t tc_request_of_len(char *out, size_t want)
{
    char base[512];
    size_t bl = (size_t)tc_request(base, sizeof(base), "/", "X-Pad: \r\n");
    assert_true(want >= bl && want < 4096);
    /* Insert want - bl filler characters after "X-Pad: ". */
    const char *pad = strstr(base, "X-Pad: ") + 7;
    size_t pre = (size_t)(pad - base);
    memcpy(out, base, pre);
    memset(out + pre, 'a', want - bl);
    memcpy(out + pre + (want - bl), pad, bl - pre);
    return want;
}

static void test_header_limit(void **state)
{
    struct tc *tc = *state;
    tc->cfg.max_header_bytes = 256;
    static const struct {
        size_t len;
        int complete;       /* 0: no blank line ever comes */
        int upgrade;        /* 1: 101, 0: 431 */
    } rows[] = {
        { 255, 1, 1 }, { 256, 1, 1 }, { 257, 1, 0 }, { 400, 1, 0 }, { 1000, 0, 0 }, { 256, 0, 0 },
    };
    char page[512];
    int plen = hs_response(HS_HEADERS_TOO_LARGE, NULL, page, sizeof(page));
    assert_true(plen > 0);
    assert_memory_equal(page, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46);
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
        for (size_t c = 0; c < TC_NCHUNKS; c++) {
            char req[4096];
            size_t n;
            if (rows[r].complete) {
                n = tc_request_of_len(req, rows[r].len);
            } else {
                n = rows[r].len;
                memcpy(req, "GET / HTTP/1.1\r\nX: ", 19);
                memset(req + 19, 'a', n - 19);
            }
            struct tio *t = tc_accept(tc);
            tio_feed_chunked(tc, t, req, n, tc_chunks[c]);
            if (rows[r].upgrade) {
                tio_expect(t, tc_101, strlen(tc_101));
                assert_int_equal(t->opens, 1);
                tio_assert_live(t);
            } else {
                tio_expect(t, page, (size_t)plen);
                assert_int_equal(t->opens, 0);
                tio_assert_freed(t, NULL);
                /* The head is never read past max_header_bytes + 1. */
                assert_true(t->bytes_read <= 257);
            }
        }
}

/* ---- frames from the page ---- */

static void test_ping_pong(void **state)
{
    struct tc *tc = *state;
    unsigned char big[125];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (unsigned char)(i * 7);
    static const char hello[] = "hello";
    const struct {
        const void *p;
        size_t len;
        int times;
    } rows[] = { { "", 0, 1 }, { hello, 5, 1 }, { big, 125, 1 }, { hello, 5, 3 } };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
        for (size_t c = 0; c < TC_NCHUNKS; c++) {
            struct tio *t = tc_open_conn(tc);
            unsigned char in[1024];
            size_t n = 0;
            struct buf *want = tc_want(tc);
            for (int i = 0; i < rows[r].times; i++) {
                n += tc_cframe(in + n, 0x89, rows[r].p, rows[r].len, 0);
                tc_ex_frame(want, 0xA, rows[r].p, rows[r].len);
            }
            /* A pong from the page is taken silently. */
            n += tc_cframe(in + n, 0x8A, "p", 1, 0);
            tio_feed_chunked(tc, t, in, n, tc_chunks[c]);
            tio_expect_buf(t, want);
            tio_assert_live(t);
        }
}

/* The page closes: we answer (echoing a valid code, 1000 for none, 1002
 * for a bad code, 1007 for a reason that is not UTF-8), and the
 * connection is freed once the answer is out, with its session. */
static void test_client_close(void **state)
{
    struct tc *tc = *state;
    static const struct {
        const unsigned char *payload;
        size_t len;
        unsigned reply;
    } rows[] = {
        { (const unsigned char *)"", 0, 1000 },
        { (const unsigned char *)"\x03\xe8", 2, 1000 },
        { (const unsigned char *)"\x03\xe9" "bye", 5, 1001 },
        { (const unsigned char *)"\x0f\xa0", 2, 4000 },
        { (const unsigned char *)"\x03\xed", 2, 1002 },          /* 1005 is never sent */
        { (const unsigned char *)"\x03\xe7", 2, 1002 },          /* 999 */
        { (const unsigned char *)"\x03", 1, 1002 },              /* one byte */
        { (const unsigned char *)"\x03\xe8\xff", 3, 1007 },      /* reason not UTF-8 */
    };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
        for (size_t c = 0; c < TC_NCHUNKS; c++)
            for (size_t wm = 0; wm < 2; wm++) {
                struct tio *t = tc_open_conn(tc);
                t->write_max = wm ? 3 : 0;
                unsigned char in[256];
                size_t n = tc_cframe(in, 0x88, rows[r].payload, rows[r].len, 0);
                /* Anything after the close is not answered. */
                n += tc_cframe(in + n, 0x89, "late", 4, 0);
                tio_feed_chunked(tc, t, in, n, tc_chunks[c]);
                struct buf *want = tc_want(tc);
                tc_ex_close(want, rows[r].reply);
                tio_expect_buf(t, want);
                tio_assert_freed(t, t);
            }
    assert_int_equal(conns_count(tc->cs), 0);
}

/* Push-only: a data frame is a policy violation (1008), decided by its
 * opcode whatever its length; a frame breaking RFC 6455 is a protocol
 * error (1002) and a control frame over max_frame_bytes 1009. Every
 * refused frame is skipped by its length, so the page's close that
 * follows is read and ends the connection at once (it used to be dropped
 * after a 1002/1009, and the connection lingered until close_timeout).
 * Only a 64-bit length with its top bit set cannot be skipped: then the
 * input is dropped until EOF. */
static void test_bad_frames(void **state)
{
    struct tc *tc = *state;
    unsigned char big[200];
    memset(big, 'a', sizeof(big));
    static const struct {
        unsigned b0;
        const char *payload;
        int unmasked;
        unsigned code;
        int max;            /* max_frame_bytes for the row, 0 = default */
    } rows[] = {
        { 0x81, "hi", 1, 1002, 0 },    /* unmasked */
        { 0x81, "hi", 0, 1008, 0 },    /* text */
        { 0x82, "hi", 0, 1008, 0 },    /* binary */
        { 0x01, "hi", 0, 1008, 0 },    /* first fragment of a text message */
        { 0xC1, "hi", 0, 1002, 0 },    /* RSV1 without an extension */
        { 0x83, "", 0, 1002, 0 },      /* reserved opcode */
        { 0x80, "hi", 0, 1002, 0 },    /* continuation of nothing */
        { 0x09, "", 0, 1002, 0 },      /* fragmented ping */
        { 0x8A, NULL, 1, 1002, 0 },    /* unmasked pong */
        { 0x89, NULL, 0, 1002, 0 },    /* ping of 126 bytes */
        { 0x81, NULL, 0, 1008, 0 },    /* text of 200 bytes > max_frame_bytes: the opcode decides */
        { 0x82, NULL, 0, 1008, 0 },    /* binary of 200 bytes */
        { 0x89, "0123456789", 0, 1009, 5 },  /* ping over a (test-only) max of 5 */
    };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
        for (size_t c = 0; c < TC_NCHUNKS; c++) {
            struct tio *t = tc_open_conn(tc);
            if (rows[r].max)
                tc->cfg.max_frame_bytes = rows[r].max;
            unsigned char in[512];
            size_t n;
            if (rows[r].payload)
                n = tc_cframe(in, rows[r].b0, rows[r].payload, strlen(rows[r].payload), rows[r].unmasked);
            else if (rows[r].b0 == 0x8A)
                n = tc_cframe(in, rows[r].b0, "p", 1, 1);
            else
                n = tc_cframe(in, rows[r].b0, big, rows[r].b0 == 0x89 ? 126 : 200, 0);
            tio_feed_chunked(tc, t, in, n, tc_chunks[c]);
            struct buf *want = tc_want(tc);
            tc_ex_close(want, rows[r].code);
            tio_expect_buf(t, want);
            tio_assert_live(t);
            /* The page's close, then a ping nobody reads. */
            n = tc_cclose(in, 1000, "");
            n += tc_cframe(in + n, 0x89, "x", 1, 0);
            tio_feed_chunked(tc, t, in, n, tc_chunks[c]);
            tio_expect(t, "", 0);
            tio_assert_freed(t, t);
            tc->cfg.max_frame_bytes = 125;
        }
    assert_int_equal(conns_count(tc->cs), 0);

    /* A length that cannot be skipped (binary, so 1008): the input is
     * dropped, a close included. */
    struct tio *t = tc_open_conn(tc);
    static const unsigned char top[] = { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
    tio_feed(t, top, sizeof(top));
    tc_settle(tc);
    struct buf *want = tc_want(tc);
    tc_ex_close(want, 1008);
    tio_expect_buf(t, want);
    unsigned char in[16];
    tio_feed(t, in, tc_cclose(in, 1000, ""));
    tc_settle(tc);
    tio_assert_live(t);
    tio_end(t, 0);
    tc_settle(tc);
    tio_assert_freed(t, t);
}

/* A data frame is refused from its first two bytes: a page announcing
 * 64 KiB (or 2^62 bytes) of text gets its 1008 before sending any of it;
 * what it sends next is skipped without being kept (bytes_read shows it
 * was read), and its close still ends the connection. Byte by byte too. */
static void test_data_frame_refused_at_its_header(void **state)
{
    struct tc *tc = *state;
    static const unsigned char heads[][10] = {
        { 0x81, 0x80 | 126, 0xFF, 0xFF },
        { 0x82, 0x80 | 127, 0x40, 0, 0, 0, 0, 0, 0, 0 },
    };
    static const size_t hlen[] = { 4, 10 };
    for (size_t h = 0; h < 2; h++)
        for (size_t chunk = 0; chunk <= 1; chunk++) {
            struct tio *t = tc_open_conn(tc);
            t->read_max = chunk;
            tio_feed(t, heads[h], 2);
            tc_settle(tc);
            struct buf *want = tc_want(tc);
            tc_ex_close(want, 1008);
            tio_expect_buf(t, want);
            tio_feed(t, heads[h] + 2, hlen[h] - 2);
            tc_settle(tc);
            if (h == 0) {
                /* The mask key and the whole payload: skipped. */
                unsigned char *pay = calloc(1, 65535 + 4);
                assert_non_null(pay);
                size_t before = t->bytes_read;
                tio_feed(t, pay, 65535 + 4);
                t->read_max = 0;
                tc_settle(tc);
                assert_int_equal(t->bytes_read - before, 65535 + 4);
                free(pay);
                unsigned char in[16];
                tio_feed(t, in, tc_cclose(in, 1000, ""));
                tc_settle(tc);
                tio_expect(t, "", 0);
                tio_assert_freed(t, t);
            } else {
                /* 2^62 bytes announced: whatever follows is its payload. */
                unsigned char in[16];
                tio_feed(t, in, tc_cclose(in, 1000, ""));
                tc_settle(tc);
                tio_assert_live(t);
                tio_end(t, 0);
                tc_settle(tc);
                tio_assert_freed(t, t);
            }
        }
}

/* ---- sending ---- */

static int tc_enc_calls;

static rbuf_t *tc_enc_never(const struct msg *m, int chan)
{
    (void)m;
    (void)chan;
    tc_enc_calls++;
    return NULL;
}

static int tio_saw_iov(const struct tio *t, const void *p)
{
    for (int i = 0; i < t->niov_seen; i++)
        if (t->iov_seen[i] == p)
            return 1;
    return 0;
}

/* One message to two connections: encoded once, on the message (slot
 * MSG_SLOT_WS), and both queues write that very buffer. */
static void test_send_msg_shared_encoding(void **state)
{
    struct tc *tc = *state;
    struct tio *a = tc_open_conn(tc), *b = tc_open_conn(tc);
    char data[300];
    memset(data, 0, sizeof(data));
    data[0] = '"';
    memset(data + 1, 'z', 200);      /* a payload past 125 bytes: 16-bit length */
    data[201] = '"';
    const char *datas[] = { "{\"x\":1}", data };
    for (size_t d = 0; d < 2; d++)
        for (int chan = 0; chan < 2; chan++) {
            const char *cname = chan == 0 ? "c" : "other";
            struct msg *m = tc_msg("42-1", "c", datas[d]);
            size_t before = msg_bytes(m);
            a->niov_seen = b->niov_seen = 0;
            assert_int_equal(conn_transport.send_msg(a->conn, m, chan), 1);
            assert_int_equal(conn_transport.send_msg(b->conn, m, chan), 1);
            tc_enc_calls = 0;
            rbuf_t *r = msg_encoding(m, MSG_SLOT_WS, chan, tc_enc_never);
            assert_int_equal(tc_enc_calls, 0);
            assert_non_null(r);
            assert_true(msg_bytes(m) > before);   /* the cache holds it */
            struct buf *want = tc_want(tc);
            tc_ex_msg(want, "42-1", cname, datas[d]);
            assert_int_equal(rbuf_len(r), buf_used(want));
            assert_memory_equal(rbuf_data(r), buf_head(want), buf_used(want));
            tc_settle(tc);
            assert_true(tio_saw_iov(a, rbuf_data(r)));
            assert_true(tio_saw_iov(b, rbuf_data(r)));
            tio_expect(a, buf_head(want), buf_used(want));
            tio_expect_buf(b, want);
            /* The other slot was never filled by this transport. */
            tc_enc_calls = 0;
            assert_null(msg_encoding(m, MSG_SLOT_SSE, chan, tc_enc_never));
            assert_int_equal(tc_enc_calls, 1);
            msg_unref(m);   /* the queues released theirs after writing */
        }
    tio_assert_live(a);
    tio_assert_live(b);
}

/* permessage-deflate: an offer gets the extension in the 101 (deflate
 * on) or not (off). A message from deflate_min_bytes up reaches every
 * deflate connection as one shared RSV1 frame, compressed once (slot
 * MSG_SLOT_WS_DEFLATE) and inflating to the plain frame's payload; a
 * smaller one, and every plain connection, get the plain frame. A data
 * frame with RSV1 from a deflate connection is still a data frame: 1008. */
static void test_deflate_shared_frame(void **state)
{
    struct tc *tc = *state;
    static const char ext[] = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    char want101[512];
    snprintf(want101, sizeof(want101), "%.*sSec-WebSocket-Extensions: permessage-deflate; "
             "server_no_context_takeover\r\n\r\n",
             (int)(strlen(tc_101) - 2), tc_101);
    struct tio *z[2], *plain = tc_open_conn(tc);
    for (int i = 0; i < 2; i++) {
        char req[512];
        z[i] = tc_accept(tc);
        tc_request(req, sizeof(req), "/push?channels=c", ext);
        tio_feed_str(z[i], req);
        tc_settle(tc);
        tio_expect(z[i], want101, strlen(want101));
    }
    /* deflate = off: the same offer is declined. */
    tc->cfg.deflate = 0;
    char req[512];
    struct tio *off = tc_accept(tc);
    tc_request(req, sizeof(req), "/push?channels=c", ext);
    tio_feed_str(off, req);
    tc_settle(tc);
    tio_expect(off, tc_101, strlen(tc_101));
    tc->cfg.deflate = 1;
    assert_int_equal(conns_stats(tc->cs)->deflate_upgrades, 2);

    char big[700];
    big[0] = '"';
    for (int i = 1; i < 600; i++)
        big[i] = "the quick brown fox "[i % 20];
    big[600] = '"';
    big[601] = '\0';
    const char *datas[] = { big, "{\"x\":1}" };
    for (int d = 0; d < 2; d++) {
        struct msg *m = tc_msg("42-1", "c", datas[d]);
        z[0]->niov_seen = z[1]->niov_seen = plain->niov_seen = 0;
        struct tio *all[] = { z[0], z[1], plain, off };
        for (int i = 0; i < 4; i++)
            assert_int_equal(conn_transport.send_msg(all[i]->conn, m, 0), 1);
        tc_enc_calls = 0;
        rbuf_t *p = msg_encoding(m, MSG_SLOT_WS, 0, tc_enc_never);
        assert_non_null(p);
        rbuf_t *c = d == 0 ? msg_encoding(m, MSG_SLOT_WS_DEFLATE, 0, tc_enc_never) : p;
        assert_int_equal(tc_enc_calls, 0);
        assert_non_null(c);
        tc_settle(tc);
        assert_true(tio_saw_iov(z[0], rbuf_data(c)));
        assert_true(tio_saw_iov(z[1], rbuf_data(c)));
        assert_true(tio_saw_iov(plain, rbuf_data(p)));
        struct buf *want = tc_want(tc);
        tc_ex_msg(want, "42-1", "c", datas[d]);
        tio_expect_buf(plain, want);
        want = tc_want(tc);
        tc_ex_msg(want, "42-1", "c", datas[d]);
        tio_expect_buf(off, want);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(buf_used(&z[i]->out), rbuf_len(c));
            assert_memory_equal(buf_head(&z[i]->out), rbuf_data(c), rbuf_len(c));
            buf_reset(&z[i]->out);
        }
        if (d == 0) {
            /* RSV1, FIN, text; a 7-bit length where the plain frame
             * needs 16 bits (the compressed bytes were moved up). */
            const unsigned char *f = rbuf_data(c);
            assert_int_equal(f[0], 0xC1);
            assert_int_equal(rbuf_data(p)[1], 126);
            size_t n = f[1];
            assert_true(n < 126);
            assert_int_equal(rbuf_len(c), 2 + n);
            unsigned char in[1024], out[1024];
            memcpy(in, f + 2, n);
            memcpy(in + n, "\x00\x00\xff\xff", 4);
            z_stream s;
            memset(&s, 0, sizeof(s));
            assert_int_equal(inflateInit2(&s, -15), Z_OK);
            s.next_in = in;
            s.avail_in = (uInt)(n + 4);
            s.next_out = out;
            s.avail_out = sizeof(out);
            assert_int_equal(inflate(&s, Z_SYNC_FLUSH), Z_OK);
            size_t got = sizeof(out) - s.avail_out;
            inflateEnd(&s);
            assert_int_equal(got, rbuf_len(p) - 4);
            assert_memory_equal(out, rbuf_data(p) + 4, got);
        }
        msg_unref(m);
    }
    assert_int_equal(conns_stats(tc->cs)->deflate_compressed, 1);
    assert_int_equal(conns_stats(tc->cs)->deflate_plain, 0);

    /* A compressed-looking data frame from the page: 1008, not 1002. */
    unsigned char in[64];
    size_t n = tc_cframe(in, 0xC1, "hi", 2, 0);
    tio_feed_chunked(tc, z[0], in, n, 1);
    struct buf *want = tc_want(tc);
    tc_ex_close(want, 1008);
    tio_expect_buf(z[0], want);
    /* RSV1 on a control frame stays a protocol error. */
    n = tc_cframe(in, 0xC9, "p", 1, 0);
    tio_feed_chunked(tc, z[1], in, n, 1);
    want = tc_want(tc);
    tc_ex_close(want, 1002);
    tio_expect_buf(z[1], want);
}

/* Once our close is queued nothing more is: send_msg returns 0,
 * replay_msg -EPIPE, and a second close adds no frame. */
static void test_send_on_closing(void **state)
{
    struct tc *tc = *state;
    struct tio *t = tc_open_conn(tc);
    struct msg *m = tc_msg("1", "c", "1");
    assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 1);
    conn_transport.close(t->conn, 4401);
    conn_transport.close(t->conn, 4000);
    assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 0);
    static const int c0[] = { 0 };
    assert_int_equal(conn_transport.replay_msg(t->conn, m, c0, 1), -EPIPE);
    tc_settle(tc);
    struct buf *want = tc_want(tc);
    tc_ex_msg(want, "1", "c", "1");
    tc_ex_close(want, 4401);
    tio_expect_buf(t, want);
    assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 0);
    msg_unref(m);
    unsigned char cl[16];
    tio_feed(t, cl, tc_cclose(cl, 4401, ""));
    tc_settle(tc);
    tio_expect(t, "", 0);
    tio_assert_freed(t, t);
}

/* RFC 6455 5.5.1: no data frame after our close frame, send_json's
 * included (it used to queue one behind the close). */
static void test_send_json_after_close(void **state)
{
    struct tc *tc = *state;
    struct tio *t = tc_open_conn(tc);
    conn_transport.close(t->conn, 4401);
    conn_transport.send_json(t->conn, "{\"type\":\"reset\"}", 16, (struct str){ 0 });
    tc_settle(tc);
    struct buf *want = tc_want(tc);
    tc_ex_close(want, 4401);
    tio_expect_buf(t, want);
}

/* The send budget: a message that would take the queue past
 * send_buffer_bytes is refused (0), everything not yet started is dropped
 * and the connection is closed with 1013. A frame already started is
 * finished first so the stream stays well-formed. replay_msg is held to
 * the same budget without closing: a message that does not fit is not
 * queued (0), except into an empty queue. */
static void test_send_budget(void **state)
{
    struct tc *tc = *state;
    struct buf one = { 0 };
    tc_ex_msg(&one, "7", "c", "\"v\"");
    const size_t F = buf_used(&one);
    buf_free(&one);
    const struct {
        size_t budget;
        int nsend;
        int rets[4];
    } rows[] = {
        { 0, 1, { 0 } },
        { 1, 1, { 0 } },
        { F - 1, 1, { 0 } },
        { F, 2, { 1, 0 } },
        { 2 * F, 3, { 1, 1, 0 } },
        { 2 * F + 1, 3, { 1, 1, 0 } },
        { 3 * F, 4, { 1, 1, 1, 0 } },
    };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        struct tio *t = tc_open_conn(tc);
        tc->cfg.send_buffer_bytes = (int)rows[r].budget;
        struct msg *m = tc_msg("7", "c", "\"v\"");
        for (int i = 0; i < rows[r].nsend; i++)
            assert_int_equal(conn_transport.send_msg(t->conn, m, 0), rows[r].rets[i]);
        assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 0);    /* closing now */
        tc_settle(tc);
        struct buf *want = tc_want(tc);
        tc_ex_close(want, 1013);
        tio_expect_buf(t, want);
        msg_unref(m);
        tc->cfg.send_buffer_bytes = 1 << 20;
        unsigned char cl[16];
        tio_feed(t, cl, tc_cclose(cl, 1013, ""));
        tc_settle(tc);
        tio_assert_freed(t, t);
    }

    /* What was flushed no longer counts. */
    struct tio *t = tc_open_conn(tc);
    tc->cfg.send_buffer_bytes = (int)F;
    struct msg *m = tc_msg("7", "c", "\"v\"");
    struct buf *want = tc_want(tc);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 1);
        tc_settle(tc);
        tc_ex_msg(want, "7", "c", "\"v\"");
    }
    /* Replays are held to it too: a message's channels all or none, a
     * message always fits an empty queue, and no room is not a 1013
     * (nothing queued, the resume goes on once the queue drains). */
    static const int c0[] = { 0 }, both[] = { 0, 1 };
    struct buf two = { 0 };
    tc_ex_msg(&two, "7", "c", "\"v\"");
    tc_ex_msg(&two, "7", "other", "\"v\"");
    const size_t F2 = buf_used(&two);
    buf_free(&two);
    assert_int_equal(conn_transport.room(t->conn), F);
    tc->cfg.send_buffer_bytes = (int)F - 1;
    assert_int_equal(conn_transport.room(t->conn), F - 1);
    assert_int_equal(conn_transport.replay_msg(t->conn, m, both, 2), 1);
    assert_int_equal(conn_transport.room(t->conn), 0);
    tc_ex_msg(want, "7", "c", "\"v\"");
    tc_ex_msg(want, "7", "other", "\"v\"");
    tc_settle(tc);
    tio_expect_buf(t, want);
    want = tc_want(tc);
    tc->cfg.send_buffer_bytes = (int)(F + F2 - 1);
    assert_int_equal(conn_transport.replay_msg(t->conn, m, c0, 1), 1);
    assert_int_equal(conn_transport.room(t->conn), F2 - 1);
    assert_int_equal(conn_transport.replay_msg(t->conn, m, both, 2), 0);   /* no room: none */
    assert_int_equal(conn_transport.room(t->conn), F2 - 1);
    assert_true(conn_transport.is_open(t->conn));
    assert_int_equal(conn_transport.replay_msg(t->conn, m, c0, 1), 1);
    tc_ex_msg(want, "7", "c", "\"v\"");
    tc_ex_msg(want, "7", "c", "\"v\"");
    tc_settle(tc);
    tio_expect_buf(t, want);
    tio_assert_live(t);
    want = tc_want(tc);

    /* A frame started on the wire is finished before the 1013. */
    tc->cfg.send_buffer_bytes = (int)(2 * F - 6);
    t->write_max = 5;
    assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 1);
    tc_pass(tc);                            /* 5 bytes out, F - 5 queued */
    assert_int_equal(buf_used(&t->out), 5);
    assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 0);
    tc_settle(tc);
    tc_ex_msg(want, "7", "c", "\"v\"");
    tc_ex_close(want, 1013);
    tio_expect_buf(t, want);
    tc_assert_quiet(tc);
    msg_unref(m);
    tc->cfg.send_buffer_bytes = 1 << 20;
}

/* Pongs count against the budget too: a page that pings and never reads
 * is closed with 1013. */
static void test_pong_budget(void **state)
{
    struct tc *tc = *state;
    struct tio *t = tc_open_conn(tc);
    t->write_block = 1;
    tc->cfg.send_buffer_bytes = 3 * 7;      /* three pongs of "hello" */
    unsigned char in[256];
    size_t n = 0;
    for (int i = 0; i < 4; i++)
        n += tc_cframe(in + n, 0x89, "hello", 5, 0);
    tio_feed(t, in, n);
    tc_settle(tc);
    tio_expect(t, "", 0);
    t->write_block = 0;
    tc_settle(tc);
    struct buf *want = tc_want(tc);
    tc_ex_close(want, 1013);
    tio_expect_buf(t, want);
    tc->cfg.send_buffer_bytes = 1 << 20;
}

/* Short writes (write_max bytes a call) and a full socket (IO_AGAIN): all
 * frames arrive, whole and in order, and the connection waits for
 * writability meanwhile. */
static void test_short_writes(void **state)
{
    struct tc *tc = *state;
    static const size_t maxes[] = { 1, 3, 7, 100 };
    for (size_t w = 0; w < sizeof(maxes) / sizeof(maxes[0]); w++)
        for (int block = 0; block < 2; block++) {
            char req[512];
            int rl = tc_request(req, sizeof(req), "/push?channels=c", "");
            struct tio *t = tc_accept(tc);
            t->greet = "{\"type\":\"subscribed\"}";
            t->write_max = maxes[w];
            t->write_block = block;
            tio_feed(t, req, (size_t)rl);
            tc_settle(tc);
            struct buf *want = tc_want(tc);
            tc_ex_str(want, tc_101);
            tc_ex_frame(want, 0x1, t->greet, strlen(t->greet));
            char id[8], data[8];
            for (int i = 0; i < 20; i++) {
                snprintf(id, sizeof(id), "%d", i + 1);
                snprintf(data, sizeof(data), "%d", i * 11);
                struct msg *m = tc_msg(id, "c", data);
                assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 1);
                msg_unref(m);       /* the queue holds the encoding */
                tc_ex_msg(want, id, "c", data);
                if (i == 10) {
                    unsigned char ping[16];
                    tio_feed(t, ping, tc_cframe(ping, 0x89, "mid", 3, 0));
                    tc_pass(tc);
                    tc_ex_frame(want, 0xA, "mid", 3);
                }
            }
            tc_settle(tc);
            if (block) {
                assert_int_equal(buf_used(&t->out), 0);
                t->write_block = 0;
                tc_settle(tc);
            }
            assert_true(t->writev_calls > 1);
            tio_expect_buf(t, want);
            tio_assert_live(t);
            tc_assert_quiet(tc);
        }
}

/* ---- the connection ending ---- */

static void test_read_end_frees(void **state)
{
    struct tc *tc = *state;
    static const ssize_t ends[] = { 0, -ECONNRESET, -EIO, -ETIMEDOUT };
    for (size_t e = 0; e < sizeof(ends) / sizeof(ends[0]); e++) {
        /* In the handshake: NULL session. */
        struct tio *h = tc_accept(tc);
        tio_feed_str(h, "GET / HT");
        tio_end(h, ends[e]);
        tc_settle(tc);
        tio_expect(h, "", 0);
        tio_assert_freed(h, NULL);
        /* Open: its session, with or without output pending. */
        for (int pending = 0; pending < 2; pending++) {
            struct tio *t = tc_open_conn(tc);
            if (pending) {
                t->write_block = 1;
                assert_int_equal(conn_transport.send_json(t->conn, "{}", 2, (struct str){ 0 }), 0);
                tc_settle(tc);
            }
            tio_end(t, ends[e]);
            tc_settle(tc);
            tio_expect(t, "", 0);
            tio_assert_freed(t, t);
        }
        /* Closing (ours sent, no answer yet). */
        struct tio *t = tc_open_conn(tc);
        conn_transport.close(t->conn, 1001);
        tc_settle(tc);
        struct buf *want = tc_want(tc);
        tc_ex_close(want, 1001);
        tio_expect_buf(t, want);
        tio_end(t, ends[e]);
        tc_settle(tc);
        tio_assert_freed(t, t);
    }
    assert_int_equal(conns_count(tc->cs), 0);
}

static void test_write_error_frees(void **state)
{
    struct tc *tc = *state;
    static const ssize_t errs[] = { -EPIPE, -ECONNRESET };
    for (size_t e = 0; e < 2; e++) {
        struct tio *t = tc_open_conn(tc);
        t->write_err = errs[e];
        struct msg *m = tc_msg("1", "c", "1");
        assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 1);
        msg_unref(m);
        tc_settle(tc);
        tio_expect(t, "", 0);
        tio_assert_freed(t, t);
        /* An error page that cannot be written. */
        struct tio *h = tc_accept(tc);
        h->write_err = errs[e];
        tio_feed_str(h, "GARBAGE\r\n\r\n");
        tc_settle(tc);
        tio_assert_freed(h, NULL);
    }
    assert_int_equal(conns_count(tc->cs), 0);
}

/* Shutdown: every open connection gets close 1001 (once, however often
 * it is asked); one still in its handshake just ends. conns_count counts
 * connections until they are freed. */
static void test_close_all(void **state)
{
    struct tc *tc = *state;
    assert_int_equal(conns_count(tc->cs), 0);
    struct tio *a = tc_open_conn(tc), *b = tc_open_conn(tc);
    struct tio *c = tc_open_conn(tc);
    conn_transport.close(c->conn, 4401);
    tc_settle(tc);
    struct buf *want = tc_want(tc);
    tc_ex_close(want, 4401);
    tio_expect_buf(c, want);
    struct tio *h = tc_accept(tc);
    tio_feed_str(h, "GET / HTTP/1.1\r\n");
    tc_settle(tc);
    assert_int_equal(conns_count(tc->cs), 4);

    conns_close_all(tc->cs, 1001);
    conns_close_all(tc->cs, 1001);
    assert_int_equal(conns_count(tc->cs), 4);     /* h is killed, not yet freed */
    tc_settle(tc);
    assert_int_equal(conns_count(tc->cs), 3);
    tio_assert_freed(h, NULL);
    tio_expect(h, "", 0);
    tc_ex_close(want, 1001);
    tio_expect(a, buf_head(want), buf_used(want));
    tio_expect_buf(b, want);
    tio_expect(c, "", 0);                          /* already closing */

    unsigned char cl[16];
    size_t n = tc_cclose(cl, 1001, "");
    tio_feed(a, cl, n);
    tio_feed(b, cl, n);
    tio_feed(c, cl, n);
    tc_settle(tc);
    assert_int_equal(conns_count(tc->cs), 0);
    tio_assert_freed(a, a);
    tio_assert_freed(b, b);
    tio_assert_freed(c, c);
    tio_expect(a, "", 0);
    tio_expect(b, "", 0);
}

static void test_accept_bad_fd(void **state)
{
    struct tc *tc = *state;
    struct tio *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    t->fd = -1;
    t->peer = -1;
    tc->tios[tc->ntio++] = t;
    assert_int_equal(conn_accept(tc->cs, -1, &tio_ops, NULL, CONN_ACCEPT_LIMITED, t), -EBADF);
    assert_int_equal(t->released, 0);       /* the caller keeps its peer */
    assert_int_equal(conns_limited(tc->cs), 0);
    assert_int_equal(t->io_closed, 1);      /* the fd is closed on failure */
    assert_int_equal(t->closed_calls, 0);   /* there was never a session */
    assert_int_equal(conns_count(tc->cs), 0);
    assert_int_equal(tc->closed_total, 0);
}

/* ---- timers (each wait is epoll's, on conn's own 1 ms deadlines) ---- */

static int tc_freed(struct tc *tc, struct tio *t)
{
    (void)tc;
    return t->io_closed > 0;
}

static int tc_has_output(struct tc *tc, struct tio *t)
{
    (void)tc;
    return buf_used(&t->out) > 0;
}

static int tc_opened(struct tc *tc, struct tio *t)
{
    (void)tc;
    return t->opens > 0;
}

/* A read that waits for writability (io.h IO_READ_NEEDS_WRITE, a TLS
 * handshake message that did not fit) is retried once the socket is
 * writable, not when more input comes; then the connection stops
 * watching writability again. */
static void test_read_needing_write(void **state)
{
    struct tc *tc = *state;
    char req[512];
    struct tio *t = tc_accept(tc);
    t->read_needs_write = 2;
    tc_request(req, sizeof(req), "/push?channels=c", "");
    tio_feed_str(t, req);
    tc_wait(tc, tc_opened, t);
    assert_int_equal(t->read_needs_write, 0);
    tio_expect(t, tc_101, strlen(tc_101));
    tc_assert_quiet(tc);
}

/* Deadlines armed inside a pass (from dispatch or a timer) are computed
 * from that pass's clock, so a 1 ms close_timeout cannot fire before the
 * close frame is flushed in the same pass; ping and idle use 100 ms so
 * that they cannot fire while tc_open_conn is still checking the 101. */
static void test_timers(void **state)
{
    struct tc *tc = *state;
    /* A handshake that never completes. */
    tc->cfg.handshake_timeout_ms = 1;
    struct tio *h = tc_accept(tc);
    tio_feed_str(h, "GET / HTTP/1.1\r\nHost:");
    tc_wait(tc, tc_freed, h);
    tio_expect(h, "", 0);
    assert_int_equal(h->opens, 0);
    tio_assert_freed(h, NULL);
    tc->cfg.handshake_timeout_ms = 5000;

    /* No answer to our close (1008 for a text frame). */
    tc->cfg.close_timeout_ms = 1;
    struct tio *t = tc_open_conn(tc);
    unsigned char in[16];
    tio_feed(t, in, tc_cframe(in, 0x81, "hi", 2, 0));
    tc_wait(tc, tc_freed, t);
    struct buf *want = tc_want(tc);
    tc_ex_close(want, 1008);
    tio_expect_buf(t, want);
    tio_assert_freed(t, t);

    /* Pings; a pong re-arms them, a missing pong ends the connection. */
    tc->cfg.ping_interval_ms = 100;
    tc->cfg.pong_timeout_ms = 100;
    t = tc_open_conn(tc);
    tc_wait(tc, tc_has_output, t);
    tc_ex_frame(want, 0x9, "", 0);
    tio_expect_buf(t, want);
    tio_feed(t, in, tc_cframe(in, 0x8A, "", 0, 0));
    tc_settle(tc);
    tc_wait(tc, tc_has_output, t);
    tc_ex_frame(want, 0x9, "", 0);
    tio_expect_buf(t, want);
    tio_assert_live(t);
    tc_wait(tc, tc_freed, t);
    tio_expect(t, "", 0);
    tio_assert_freed(t, t);
    tc->cfg.ping_interval_ms = 0;

    /* No message for idle_timeout: close 1000, then close_timeout. */
    tc->cfg.idle_timeout_ms = 100;
    t = tc_open_conn(tc);
    tc_wait(tc, tc_freed, t);
    tc_ex_close(want, 1000);
    tio_expect_buf(t, want);
    tio_assert_freed(t, t);
    tc->cfg.idle_timeout_ms = 0;
    tc->cfg.close_timeout_ms = 2000;
}

/* open() may close the connection it is handed and still return a
 * session (conn.h does not forbid it): close_timeout must still bound
 * the wait for the page's answer (the ping/idle schedule used to replace
 * the close timer). */
static void test_close_in_open_keeps_close_timeout(void **state)
{
    struct tc *tc = *state;
    tc->cfg.close_timeout_ms = 1;
    char req[512];
    int n = tc_request(req, sizeof(req), "/push?channels=c", "");
    struct tio *t = tc_accept(tc);
    t->close_in_open = 4401;
    tio_feed(t, req, (size_t)n);
    tc_settle(tc);
    struct buf *want = tc_want(tc);
    tc_ex_str(want, tc_101);
    tc_ex_close(want, 4401);
    tio_expect_buf(t, want);
    tc_wait(tc, tc_freed, t);
    tio_assert_freed(t, t);
    tc->cfg.close_timeout_ms = 2000;
}

/* The page's close arrives while our own close frame is still queued
 * (sent in the same read as the frame that made us close, or stuck behind
 * a full socket): RFC 6455 5.5.1 wants a close frame back, and ours is
 * the answer, so it must still go out whole before TCP is closed (it used
 * to be dropped: a bare FIN, Autobahn 7.1.5). */
static void test_page_close_while_ours_unsent(void **state)
{
    struct tc *tc = *state;
    /* In one read: a text frame (we close 1008) and the page's close. */
    struct tio *t = tc_open_conn(tc);
    unsigned char in[64];
    size_t n = tc_cframe(in, 0x81, "hi", 2, 0);
    n += tc_cclose(in + n, 1000, "");
    tio_feed(t, in, n);
    tc_settle(tc);
    tio_assert_freed(t, t);
    struct buf *want = tc_want(tc);
    tc_ex_close(want, 1008);
    tio_expect_buf(t, want);
}

static void test_page_close_while_ours_blocked(void **state)
{
    struct tc *tc = *state;
    /* Our 1013 waits behind a full socket when the page closes. */
    struct tio *t = tc_open_conn(tc);
    tc->cfg.send_buffer_bytes = 1;
    t->write_block = 1;
    struct msg *m = tc_msg("1", "c", "1");
    assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 0);
    msg_unref(m);
    tc_settle(tc);
    unsigned char in[16];
    tio_feed(t, in, tc_cclose(in, 1001, ""));
    tc_settle(tc);
    t->write_block = 0;
    tc_settle(tc);
    tc->cfg.send_buffer_bytes = 1 << 20;
    struct buf *want = tc_want(tc);
    tc_ex_close(want, 1013);
    tio_expect_buf(t, want);
    tio_assert_freed(t, t);
}

static void tc_pump_json_all(struct tc *tc)
{
    for (int i = 0; i < tc->ntio; i++)
        conn_transport.send_json(tc->tios[i]->conn, "{}", 2, (struct str){ 0 });
}

/* A connection killed during a flush and queued to again by a pump
 * stays on the dirty list when the flush runs out of rounds
 * (CONN_FLUSH_ROUNDS); the reap must not free it while still listed (it
 * did: ASan saw a heap-use-after-free in conns_flush_dirty). Nothing is
 * queued on a dead connection now, and dead ones leave the list before
 * the reap. */
static void test_dead_conn_left_on_dirty_list(void **state)
{
    struct tc *tc = *state;
    while (tc->ntio < 600)
        tc_open_conn(tc);
    struct msg *m = tc_msg("1", "c", "1");
    for (int i = 0; i < tc->ntio; i++) {
        tc->tios[i]->write_err = -EPIPE;
        assert_int_equal(conn_transport.send_msg(tc->tios[i]->conn, m, 0), 1);
    }
    msg_unref(m);
    tc->on_pump = tc_pump_json_all;
    tc_pass(tc);                /* 16 rounds; every connection reaped */
    tc->on_pump = NULL;
    assert_int_equal(conns_count(tc->cs), 0);
    tc_pass(tc);                /* walks the freed connections */
}

/* want_drained: one drained() call once the queue is empty, after the
 * bytes were written (at the next flush when it already is); none on a
 * closing connection. A handler that queues a message and asks again
 * streams one message per drain, each written before the next is queued,
 * also through a socket that takes a few bytes at a time. */
static void test_drained(void **state)
{
    struct tc *tc = *state;
    struct tio *t = tc_open_conn(tc);
    assert_true(conn_transport.is_open(t->conn));
    conn_transport.want_drained(t->conn);
    tc_settle(tc);
    assert_int_equal(t->drained_calls, 1);
    tc_settle(tc);
    assert_int_equal(t->drained_calls, 1);      /* once per ask */

    struct msg *m = tc_msg("9", "c", "9");
    struct buf one = { 0 };
    tc_ex_msg(&one, "9", "c", "9");
    const size_t F = buf_used(&one);
    buf_free(&one);
    for (size_t wmax = 0; wmax <= 3; wmax += 3) {
        t->write_max = wmax;
        t->drained_calls = 0;
        t->drained_send = m;
        t->drained_more = 5;
        buf_reset(&t->out);
        conn_transport.want_drained(t->conn);
        tc_settle(tc);
        assert_int_equal(t->drained_calls, 6);
        assert_int_equal(t->drained_out, 5 * F);   /* all written before the last call */
        struct buf *want = tc_want(tc);
        for (int i = 0; i < 5; i++)
            tc_ex_msg(want, "9", "c", "9");
        tio_expect_buf(t, want);
    }
    t->write_max = 0;
    t->drained_send = NULL;

    /* A blocked socket: no call until it takes the bytes. */
    t->drained_calls = 0;
    t->write_block = 1;
    assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 1);
    conn_transport.want_drained(t->conn);
    tc_settle(tc);
    assert_int_equal(t->drained_calls, 0);
    t->write_block = 0;
    tc_settle(tc);
    assert_int_equal(t->drained_calls, 1);
    struct buf *want = tc_want(tc);
    tc_ex_msg(want, "9", "c", "9");
    tio_expect_buf(t, want);

    /* Closing: no call, no room, not open. */
    conn_transport.close(t->conn, 4401);
    conn_transport.want_drained(t->conn);
    tc_settle(tc);
    assert_int_equal(t->drained_calls, 1);
    assert_int_equal(conn_transport.room(t->conn), 0);
    assert_false(conn_transport.is_open(t->conn));
    msg_unref(m);
}

/* ---- Server-Sent Events: the same machine with sse.h's bytes ---- */

static const char tc_sse_head[] = "HTTP/1.1 200 OK\r\n"
                                  "Content-Type: text/event-stream\r\n"
                                  "Cache-Control: no-cache\r\n"
                                  "X-Accel-Buffering: no\r\n"
                                  "Connection: close\r\n";

/* GET /sse, whole and in chunks: the head (the Origin echoed for CORS),
 * the greeting as an event, messages as id + data lines encoded once per
 * message and channel, bytes after the head ignored, and a close that
 * ends the stream with its event and hangs up without waiting for the
 * page. Counted as a stream, not an upgrade. */
static void test_sse_stream(void **state)
{
    struct tc *tc = *state;
    static const char greet[] = "{\"type\":\"subscribed\",\"channels\":[\"c\"],\"last_id\":\"\"}";
    static const char req[] = "GET /sse?channels=c HTTP/1.1\r\nHost: x\r\n"
                              "Origin: https://page.example\r\nLast-Event-ID: 7-1\r\n\r\n";
    for (size_t k = 0; k < TC_NCHUNKS; k++) {
        struct tio *t = tc_accept(tc);
        t->greet = greet;
        tio_feed_chunked(tc, t, req, strlen(req), tc_chunks[k]);
        struct buf *want = tc_want(tc);
        tc_ex_str(want, tc_sse_head);
        tc_ex_str(want, "Access-Control-Allow-Origin: https://page.example\r\nVary: Origin\r\n\r\n");
        tc_ex_str(want, "event: subscribed\ndata: ");
        tc_ex_str(want, greet);
        tc_ex_str(want, "\n\n");
        tio_expect_buf(t, want);
        assert_string_equal(t->query, "channels=c");
        assert_string_equal(t->resume, "7-1");
        assert_int_equal(conns_stats(tc->cs)->sse_open, 1);

        struct tio *u = tc_open_conn(tc);       /* a WebSocket on the same message */
        struct msg *m = tc_msg("42-1", "c", "{\"x\":\n1}");
        assert_int_equal(conn_transport.send_msg(t->conn, m, 0), 1);
        assert_int_equal(conn_transport.send_msg(u->conn, m, 0), 1);
        tc_enc_calls = 0;
        rbuf_t *r = msg_encoding(m, MSG_SLOT_SSE, 0, tc_enc_never);
        assert_int_equal(tc_enc_calls, 0);
        tc_settle(tc);
        assert_true(tio_saw_iov(t, rbuf_data(r)));
        static const char ev[] = "id: 42-1\ndata: {\"type\":\"message\",\"channel\":\"c\",\"id\":\"42-1\",\"data\":{\"x\":\n"
                                 "data: 1}}\n\n";
        tio_expect(t, ev, strlen(ev));
        want = tc_want(tc);
        tc_ex_msg(want, "42-1", "c", "{\"x\":\n1}");
        tio_expect_buf(u, want);
        msg_unref(m);
        tio_end(u, 0);

        conn_transport.close(t->conn, 4401);
        assert_int_equal(conn_transport.is_open(t->conn), 0);
        tc_settle(tc);
        static const char bye[] = "event: close\ndata: {\"type\":\"close\",\"code\":4401}\n\n";
        tio_expect(t, bye, strlen(bye));
        tio_assert_freed(t, t);
    }
    /* A byte from the page after its head, later or in the same read,
     * ends the stream at once: hung up on, no close event, nothing read
     * for ever. */
    static const char *const after[] = { NULL, "GET / HTTP/1.1\r\n\r\n\x88\x80" };
    for (size_t k = 0; k < 2; k++) {
        struct tio *t = tc_accept(tc);
        t->greet = greet;
        if (after[k]) {
            tio_feed_str(t, req);
            tc_settle(tc);
            tio_assert_live(t);
            buf_reset(&t->out);
            tio_feed_str(t, after[k]);
        } else {
            char both[sizeof(req) + 1];
            memcpy(both, req, sizeof(req) - 1);
            both[sizeof(req) - 1] = 'x';
            tio_feed(t, both, sizeof(req));
        }
        tc_settle(tc);
        tio_expect(t, "", 0);
        tio_assert_freed(t, t);
    }
    const struct stats_conn *st = conns_stats(tc->cs);
    assert_int_equal(st->sse_accepted, TC_NCHUNKS + 2);
    assert_int_equal(st->sse_open, 0);
    assert_int_equal(st->accepted, TC_NCHUNKS);     /* the WebSockets only */
    assert_int_equal(st->closed[stats_close_slot(4401)], TC_NCHUNKS);
    assert_int_equal(st->closed[stats_close_slot(1006)], TC_NCHUNKS + 2);
}

/* A subscription refused by open(): the status and JSON body instead of
 * the head (with the CORS header for an admitted Origin), then the end;
 * nothing counted as a stream. An Origin not allowed, and a reserve slot,
 * are refused before open() in the same JSON. */
static void test_sse_refused(void **state)
{
    struct tc *tc = *state;
    static const int codes[] = { 4400, 4401, 4403, 1011 };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        struct tio *t = tc_accept(tc);
        t->refuse = codes[i];
        t->greet = "{\"type\":\"subscribed\"}";  /* queued by open() before it refuses: dropped */
        tio_feed_str(t, "GET /sse?channels=c HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\n\r\n");
        tc_settle(tc);
        struct buf *want = tc_want(tc);
        assert_int_equal(sse_refuse(want, sse_refusal_of(codes[i]), (struct str){ "http://a.example", 16 }), 0);
        tio_expect_buf(t, want);
        assert_int_equal(t->opens, 1);
        tio_assert_freed(t, NULL);
    }
    tc->cfg.allowed_origins.n = 1;
    tc->cfg.allowed_origins.items[0] = (char *)"https://example.com";
    struct tio *t = tc_accept(tc);
    tio_feed_str(t, "GET /sse?channels=c HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n");
    tc_settle(tc);
    struct buf *want = tc_want(tc);
    /* The refused origin is echoed: its page must read the 403 to stop. */
    assert_int_equal(sse_refuse(want, SSE_ORIGIN, (struct str){ "https://evil.example", 20 }), 0);
    tio_expect_buf(t, want);
    assert_int_equal(t->opens, 0);
    tio_assert_freed(t, NULL);
    t = tc_accept_as(tc, CONN_ACCEPT_LIMITED, 0);
    tio_feed_str(t, "GET /sse?channels=c HTTP/1.1\r\nHost: x\r\nOrigin: https://example.com\r\n\r\n");
    tc_settle(tc);
    want = tc_want(tc);
    assert_int_equal(sse_refuse(want, SSE_UNAVAILABLE, (struct str){ "https://example.com", 19 }), 0);
    tio_expect_buf(t, want);
    assert_int_equal(t->opens, 0);
    tio_assert_freed(t, NULL);
    tc->cfg.allowed_origins.n = 0;
    const struct stats_conn *st = conns_stats(tc->cs);
    assert_int_equal(st->sse_accepted, 0);
    assert_int_equal(st->refused.n[STATS_REFUSED_ORIGIN], 1);
    assert_int_equal(st->refused.n[STATS_REFUSED_LIMIT], 1);
}

/* A keep-alive comment every ping_interval, and no pong awaited: the
 * stream outlives pong_timeout. */
static void test_sse_keepalive(void **state)
{
    struct tc *tc = *state;
    tc->cfg.ping_interval_ms = 20;
    tc->cfg.pong_timeout_ms = 5;
    struct tio *t = tc_accept(tc);
    tio_feed_str(t, "GET /sse?channels=c HTTP/1.1\r\nHost: x\r\n\r\n");
    tc_settle(tc);
    buf_reset(&t->out);
    for (int i = 0; i < 3; i++) {
        tc_wait(tc, tc_has_output, t);
        tio_expect(t, SSE_KEEPALIVE, strlen(SSE_KEEPALIVE));
    }
    tio_assert_live(t);
    tc->cfg.ping_interval_ms = 0;
}

/* ---- fan-out across many connections ---- */

static void tc_pump_send(struct tc *tc)
{
    if (tc->pumps != 1)
        return;
    for (int i = 0; i < tc->ntio; i++)
        assert_int_equal(conn_transport.send_msg(tc->tios[i]->conn, tc->pump_msg, 0), 1);
}

/* pump() runs every 16 connections flushed in one pass (with interval 0;
 * and only when more remain); what it queues reaches every connection,
 * after what was queued before, in the same pass or the next round. */
static void test_pump(void **state)
{
    struct tc *tc = *state;
    static const struct {
        int nconn, pumps;
    } rows[] = { { 16, 0 }, { 17, 1 }, { 40, 2 }, { 49, 3 } };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        while (tc->ntio < rows[r].nconn)
            tc_open_conn(tc);
        struct msg *m = tc_msg("1", "c", "1");
        tc->pumps = 0;
        tc->on_pump = NULL;
        for (int i = 0; i < tc->ntio; i++)
            assert_int_equal(conn_transport.send_msg(tc->tios[i]->conn, m, 0), 1);
        tc_pass(tc);
        assert_int_equal(tc->pumps, rows[r].pumps);
        struct buf *want = tc_want(tc);
        tc_ex_msg(want, "1", "c", "1");
        for (int i = 0; i < tc->ntio; i++)
            tio_expect(tc->tios[i], buf_head(want), buf_used(want));
        buf_free(want);
        msg_unref(m);
    }
    /* A message pumped in mid-flush. */
    struct msg *m = tc_msg("1", "c", "1");
    tc->pump_msg = tc_msg("2", "c", "2");
    tc->pumps = 0;
    tc->on_pump = tc_pump_send;
    for (int i = 0; i < tc->ntio; i++)
        assert_int_equal(conn_transport.send_msg(tc->tios[i]->conn, m, 0), 1);
    tc_pass(tc);
    assert_true(tc->pumps >= 2);
    struct buf *want = tc_want(tc);
    tc_ex_msg(want, "1", "c", "1");
    tc_ex_msg(want, "2", "c", "2");
    for (int i = 0; i < tc->ntio; i++)
        tio_expect(tc->tios[i], buf_head(want), buf_used(want));
    buf_free(want);
    msg_unref(m);
    tc->on_pump = NULL;
    assert_int_equal(conns_count(tc->cs), (size_t)tc->ntio);
    /* Timed: no pump before the interval has passed, however many
     * connections were flushed. */
    conns_set_pump_interval(tc->cs, 1000000000u);
    tc->pumps = 0;
    m = tc_msg("3", "c", "3");
    for (int i = 0; i < tc->ntio; i++)
        assert_int_equal(conn_transport.send_msg(tc->tios[i]->conn, m, 0), 1);
    tc_pass(tc);
    assert_int_equal(tc->pumps, 0);
    msg_unref(m);
    conns_set_pump_interval(tc->cs, 0);
}

/* conns_free() ends every connection: closed() once each, fds closed
 * (checked in teardown). */
static void test_conns_free_frees_all(void **state)
{
    struct tc *tc = *state;
    tc_open_conn(tc);
    struct tio *t = tc_open_conn(tc);
    conn_transport.close(t->conn, 1001);
    struct tio *h = tc_accept(tc);
    tio_feed_str(h, "GET /");
    tc_settle(tc);
    assert_int_equal(conns_count(tc->cs), 3);
}

#define T(f) cmocka_unit_test_setup_teardown(f, tc_setup, tc_teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_init("test_conn", LOG_ERROR);
    const struct CMUnitTest tests[] = {
        T(test_upgrade_whole_and_chunked),
        T(test_limited_slot),
        T(test_upgrade_truncated),
        T(test_frames_behind_the_request),
        T(test_open_refused),
        T(test_open_greeting),
        T(test_http_errors),
        T(test_header_limit),
        T(test_ping_pong),
        T(test_client_close),
        T(test_bad_frames),
        T(test_data_frame_refused_at_its_header),
        T(test_send_msg_shared_encoding),
        T(test_deflate_shared_frame),
        T(test_send_on_closing),
        T(test_send_json_after_close),
        T(test_send_budget),
        T(test_pong_budget),
        T(test_short_writes),
        T(test_read_end_frees),
        T(test_write_error_frees),
        T(test_close_all),
        T(test_accept_bad_fd),
        T(test_read_needing_write),
        T(test_timers),
        T(test_close_in_open_keeps_close_timeout),
        T(test_page_close_while_ours_unsent),
        T(test_page_close_while_ours_blocked),
        T(test_drained),
        T(test_pump),
        T(test_conns_free_frees_all),
        T(test_sse_stream),
        T(test_sse_refused),
        T(test_sse_keepalive),
        T(test_dead_conn_left_on_dirty_list),
    };
    return cmocka_run_group_tests_name("conn", tests, NULL, NULL);
}
