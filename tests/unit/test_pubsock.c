/* pubsock: the publish socket linked alone, with a stub engine and a stub
 * disconnect handler. The test binds a real socket in a temp dir and talks
 * to it through a client socket on the same ev loop; every wait is a run of
 * the loop bounded by a timer (no sleeps).
 *
 * Covered: a PUBLISH reaches the engine exactly and its ACK carries the
 * engine's deliveries and id; pipelined requests in one write and byte by
 * byte, answered in order; bad channel names and duplicates; data over
 * max_message_bytes (checked on the data, and on the frame by the decoder,
 * with the oversized frame skipped whole, also when it comes in pieces);
 * data that is not one JSON value; JSON edge values passed through verbatim;
 * an engine out of memory; DISCONNECT; malformed streams (error, then
 * close) and answer-type frames from a client (error, stay open); a peer
 * that shuts down its write side; a peer that never reads (bounded);
 * pubsock_stop (which removes only the file it made); pubsock_free with
 * peers in every state; pubsock_pump; a config swap; the SO_PEERCRED
 * allow-list (needs root to connect as another uid; skipped otherwise);
 * open errors, a live socket at the path included (not taken over), and
 * a stale socket file (replaced).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "cfg.h"
#include "engine.h"
#include "ev.h"
#include "ipc.h"
#include "log.h"
#include "pubsock.h"

#define TS_WAIT_MS   10000   /* bound on any wait; tests finish far sooner */
#define TS_MAX_MSG   1024    /* max_message_bytes of the test config */
#define TS_CLIENTS   8
#define TS_ID_BASE   "1700000000"
#define TS_LOG       64
#define TS_DATA_MAX  (TS_MAX_MSG + 64)

#define S(lit) { (lit), sizeof(lit) - 1 }

/* ---- stub engine: records what it is given, answers as scripted ---- */

struct stub_engine {
    struct engine base;
    int      calls;
    int      result;            /* what publish returns: 0 or -ENOMEM */
    uint32_t deliveries;        /* reported in every result */
    unsigned seq;               /* ids handed out so far */
    /* the last publish, copied */
    int      nchannels;
    char     channels[WSPUSH_MAX_CHANNELS][256];
    size_t   chan_len[WSPUSH_MAX_CHANNELS];
    char     data[TS_DATA_MAX];
    size_t   data_len;
    size_t   given_id_len;      /* pub->id.len: pubsock never picks ids */
    /* every publish as "ch1,ch2|data" (data cut at 100 bytes) */
    char     log[TS_LOG][300];
    /* defer = 1: outcomes are kept here and given by the test (an engine
     * answering later, as Redis does) */
    int      defer;
    int      ndeferred;
    struct {
        engine_published_fn *cb;
        void                *arg;
        int                  status;
        struct engine_result r;
    } deferred[TS_LOG];
};

static int stub_outcome(engine_t *e, const struct engine_publish *p, struct engine_result *r)
{
    struct stub_engine *s = (struct stub_engine *)e;
    int k = s->calls++;
    s->nchannels = p->nchannels;
    s->given_id_len = p->id.len;
    char line[300];
    size_t ll = 0;
    for (int i = 0; i < p->nchannels; i++) {
        assert_true(p->channels[i].len < sizeof s->channels[i]);
        memcpy(s->channels[i], p->channels[i].p, p->channels[i].len);
        s->channels[i][p->channels[i].len] = '\0';
        s->chan_len[i] = p->channels[i].len;
        ll += (size_t)snprintf(line + ll, sizeof line - ll, "%s%.*s", i ? "," : "",
                               (int)p->channels[i].len, p->channels[i].p);
        if (ll >= sizeof line)
            ll = sizeof line - 1;
    }
    assert_true(p->data.len <= sizeof s->data);
    memcpy(s->data, p->data.p, p->data.len);
    s->data_len = p->data.len;
    snprintf(line + ll, sizeof line - ll, "|%.*s", (int)(p->data.len > 100 ? 100 : p->data.len),
             p->data.p);
    if (k < TS_LOG)
        memcpy(s->log[k], line, sizeof line);
    if (s->result < 0)
        return s->result;
    s->seq++;
    snprintf(r->id, sizeof r->id, TS_ID_BASE "-%u", s->seq);
    r->deliveries = s->deliveries;
    return 0;
}

static void stub_publish(engine_t *e, const struct engine_publish *p, engine_published_fn *cb,
                         void *arg)
{
    struct stub_engine *s = (struct stub_engine *)e;
    struct engine_result r;
    memset(&r, 0, sizeof r);
    int status = stub_outcome(e, p, &r);
    if (!s->defer) {
        cb(arg, status, status == 0 ? &r : NULL);
        return;
    }
    assert_true(s->ndeferred < TS_LOG);
    int k = s->ndeferred++;
    s->deferred[k].cb = cb;
    s->deferred[k].arg = arg;
    s->deferred[k].status = status;
    s->deferred[k].r = r;
}

/* Gives deferred outcome k, with status instead of the planned one when
 * status != 1. */
static void stub_answer(struct stub_engine *s, int k, int status)
{
    assert_true(k < s->ndeferred && s->deferred[k].cb);
    if (status != 1)
        s->deferred[k].status = status;
    engine_published_fn *cb = s->deferred[k].cb;
    s->deferred[k].cb = NULL;
    cb(s->deferred[k].arg, s->deferred[k].status,
       s->deferred[k].status == 0 ? &s->deferred[k].r : NULL);
}

static void stub_history(engine_t *e, const struct engine_query *q, engine_answer_fn *cb, void *arg)
{
    (void)e;
    (void)q;
    struct engine_answer a;
    memset(&a, 0, sizeof a);
    cb(arg, &a);
}

static struct str stub_last_id(const engine_t *e)
{
    (void)e;
    return (struct str)S(TS_ID_BASE "-0");
}

static void stub_free(engine_t *e) { (void)e; }

static const struct engine_ops stub_ops = {
    .publish = stub_publish, .history = stub_history, .last_id = stub_last_id, .free = stub_free,
};

/* ---- fixture ---- */

struct ts;

/* The test's side of one connection to the publish socket. */
struct cli {
    struct ts   *t;
    struct ev_io io;
    int          fd;           /* -1: slot free */
    int          watching;
    struct buf   out;          /* still to send */
    struct buf   in;           /* answers received, not yet taken */
    int          reading;      /* 0: leave answers in the socket */
    int          shut;         /* shutdown(SHUT_WR) once out is sent */
    int          shut_done;
    int          eof;          /* read 0, or an error (err) */
    int          err;
};

typedef int ts_cond_fn(struct ts *t, void *arg);

struct ts {
    char               dir[64];
    char               path[CFG_PATH_MAX];
    struct cfg         cfg, cfg2;
    struct cfg        *live;   /* what pubsock reads through */
    ev_loop_t         *loop;
    struct pubsock    *ps;
    struct stub_engine eng;
    /* disconnect handler */
    int                dc_calls;
    char               dc_user[256];
    size_t             dc_len;
    uint32_t           dc_count;
    int                dc_status;
    /* loop driving */
    struct ev_hook     hook;
    struct ev_timer    deadline;
    int                timed_out;
    int                passes;
    ts_cond_fn        *cond;
    void              *cond_arg;
    struct cli         cli[TS_CLIENTS];
};

static void ts_disconnect_user(void *ctx, struct str user, pubsock_disconnected_fn *done,
                               void *arg)
{
    struct ts *t = ctx;
    t->dc_calls++;
    assert_true(user.len < sizeof t->dc_user);
    memcpy(t->dc_user, user.p, user.len);
    t->dc_len = user.len;
    done(arg, t->dc_status, t->dc_count);
}

static const struct pubsock_handlers ts_handlers = { ts_disconnect_user };

static void ts_hook(ev_loop_t *loop, void *data)
{
    struct ts *t = data;
    if (t->passes > 0) {
        if (--t->passes == 0)
            ev_stop(loop);
        else
            ev_poll_now(loop);
        return;
    }
    if (t->cond && t->cond(t, t->cond_arg))
        ev_stop(loop);
}

static void ts_deadline(ev_loop_t *loop, struct ev_timer *tm)
{
    struct ts *t = ev_container_of(tm, struct ts, deadline);
    t->timed_out = 1;
    ev_stop(loop);
}

static void ts_run(struct ts *t)
{
    t->timed_out = 0;
    assert_int_equal(ev_timer_start(t->loop, &t->deadline, TS_WAIT_MS, ts_deadline), 0);
    ev_poll_now(t->loop);
    assert_int_equal(ev_run(t->loop), 0);
    ev_timer_stop(t->loop, &t->deadline);
}

/* Runs passes until cond holds (at least one pass). */
static void ts_run_until(struct ts *t, ts_cond_fn *cond, void *arg)
{
    t->cond = cond;
    t->cond_arg = arg;
    ts_run(t);
    t->cond = NULL;
    assert_true(cond(t, arg));
}

/* Runs exactly n passes, none of them waiting. */
static void ts_run_passes(struct ts *t, int n)
{
    t->passes = n;
    ts_run(t);
    t->passes = 0;
    assert_false(t->timed_out);
}

static void ts_open(struct ts *t)
{
    char err[256] = "";
    t->ps = pubsock_open(t->loop, &t->live, &t->eng.base, &ts_handlers, t, err, sizeof err);
    if (!t->ps)
        fail_msg("pubsock_open: %s", err);
}

static int ts_setup(void **state)
{
    struct ts *t = calloc(1, sizeof *t);
    assert_non_null(t);
    snprintf(t->dir, sizeof t->dir, "/tmp/test_pubsock.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/pub.sock", t->dir);
    cfg_defaults(&t->cfg);
    snprintf(t->cfg.publish_socket, sizeof t->cfg.publish_socket, "%s", t->path);
    t->cfg.max_message_bytes = TS_MAX_MSG;
    t->cfg.publish_socket_mode = 0600;
    t->live = &t->cfg;
    t->eng.base.ops = &stub_ops;
    t->eng.deliveries = 3;
    for (int i = 0; i < TS_CLIENTS; i++)
        t->cli[i].fd = -1;
    char err[128];
    t->loop = ev_loop_new(err, sizeof err);
    assert_non_null(t->loop);
    ev_after_add(t->loop, &t->hook, ts_hook, t);
    ts_open(t);
    *state = t;
    return 0;
}

static void cli_close(struct cli *c);

static int ts_teardown(void **state)
{
    struct ts *t = *state;
    for (int i = 0; i < TS_CLIENTS; i++)
        cli_close(&t->cli[i]);
    pubsock_free(t->ps);
    ev_after_remove(t->loop, &t->hook);
    ev_loop_free(t->loop);
    unlink(t->path);
    rmdir(t->dir);
    free(t);
    return 0;
}

/* ---- the client ---- */

static void cli_watch(struct cli *c)
{
    if (!c->watching)
        return;
    if (c->eof) {
        /* A hung-up socket stays "ready" for epoll: stop watching it. */
        ev_io_stop(c->t->loop, &c->io);
        c->watching = 0;
        return;
    }
    unsigned ev = (c->reading ? EV_READ : 0) | (buf_used(&c->out) ? EV_WRITE : 0);
    assert_int_equal(ev_io_set(c->t->loop, &c->io, ev), 0);
}

static void cli_read(struct cli *c)
{
    while (!c->eof) {
        assert_int_equal(buf_reserve(&c->in, 65536), 0);
        ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            continue;
        }
        if (n == 0) {
            c->eof = 1;
        } else if (errno == EINTR) {
            continue;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            /* ECONNRESET: the server closed with requests unread, or
             * closed a connection it never accepted. */
            c->err = errno;
            c->eof = 1;
        }
        break;
    }
}

static void cli_flush(struct cli *c)
{
    while (buf_used(&c->out) > 0) {
        ssize_t n = send(c->fd, buf_head(&c->out), buf_used(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        c->err = errno;
        buf_reset(&c->out);
    }
    if (buf_used(&c->out) == 0 && c->shut && !c->shut_done) {
        assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
        c->shut_done = 1;
    }
}

static void cli_io(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct cli *c = ev_container_of(io, struct cli, io);
    if (events & EV_WRITE)
        cli_flush(c);
    if ((events & EV_READ) && c->reading)
        cli_read(c);
    cli_watch(c);
}

/* Returns -errno when connect() fails (then no slot is used). */
static int cli_try_connect(struct ts *t, struct cli **out)
{
    int slot = 0;
    while (slot < TS_CLIENTS && t->cli[slot].fd >= 0)
        slot++;
    assert_true(slot < TS_CLIENTS);
    struct cli *c = &t->cli[slot];
    memset(c, 0, sizeof *c);
    c->t = t;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t plen = strlen(t->path);
    assert_true(plen < sizeof sa.sun_path);
    memcpy(sa.sun_path, t->path, plen + 1);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(c->fd);
        c->fd = -1;
        return -e;
    }
    c->reading = 1;
    assert_int_equal(ev_io_start(t->loop, &c->io, c->fd, EV_READ, cli_io), 0);
    c->watching = 1;
    *out = c;
    return 0;
}

static struct cli *cli_connect(struct ts *t)
{
    struct cli *c = NULL;
    assert_int_equal(cli_try_connect(t, &c), 0);
    return c;
}

static void cli_close(struct cli *c)
{
    if (c->fd < 0)
        return;
    if (c->watching)
        ev_io_stop(c->t->loop, &c->io);
    close(c->fd);
    buf_free(&c->out);
    buf_free(&c->in);
    c->fd = -1;
    c->watching = 0;
}

/* Queues b's bytes (b is emptied) and sends what the socket takes now:
 * a buffer that fits goes out in one write. */
static void cli_send(struct cli *c, struct buf *b)
{
    assert_int_equal(buf_append(&c->out, buf_head(b), buf_used(b)), 0);
    buf_free(b);
    cli_flush(c);
    cli_watch(c);
}

static void cli_send_bytes(struct cli *c, const void *p, size_t n)
{
    assert_int_equal(buf_append(&c->out, p, n), 0);
    cli_flush(c);
    assert_int_equal(buf_used(&c->out), 0);
    cli_watch(c);
}

/* Complete frames in c->in, not taken yet. */
static int cli_frames(const struct cli *c)
{
    const unsigned char *p = (const unsigned char *)buf_head(&c->in);
    size_t left = buf_used(&c->in);
    int n = 0;
    while (left >= 4) {
        size_t f = (size_t)buf_get_u32(p) + 4;
        if (f > left)
            break;
        p += f;
        left -= f;
        n++;
    }
    return n;
}

struct want {
    struct cli *c;
    int frames;     /* at least this many frames in c->in */
    int eof;        /* and the server's close seen */
    int sent;       /* and everything queued sent (and shut down if asked) */
};

static int ts_want(struct ts *t, void *arg)
{
    (void)t;
    const struct want *w = arg;
    if (cli_frames(w->c) < w->frames)
        return 0;
    if (w->eof && !w->c->eof)
        return 0;
    if (w->sent && (buf_used(&w->c->out) > 0 || (w->c->shut && !w->c->shut_done)))
        return 0;
    return 1;
}

static int ts_calls_reach(struct ts *t, void *arg)
{
    return t->eng.calls >= *(const int *)arg;
}

static void cli_wait_frames(struct cli *c, int frames)
{
    struct want w = { c, frames, 0, 0 };
    ts_run_until(c->t, ts_want, &w);
}

static void cli_wait_eof(struct cli *c)
{
    struct want w = { c, 0, 1, 0 };
    ts_run_until(c->t, ts_want, &w);
}

/* An answer as received, strings copied. */
struct ans {
    uint8_t  type;
    uint32_t req;
    uint32_t count;
    uint16_t code;
    char     id[256];
    char     text[256];
};

static void ans_cstr(char *dst, struct str s)
{
    memcpy(dst, s.p, s.len);   /* u8 lengths: < 256 */
    dst[s.len] = '\0';
}

static struct ans cli_take(struct cli *c)
{
    struct ipc_msg m;
    ssize_t n = ipc_decode(buf_head(&c->in), buf_used(&c->in), 1u << 20, &m);
    if (n <= 0)
        fail_msg("no complete answer (decode %zd, %zu bytes)", n, buf_used(&c->in));
    struct ans a = { .type = m.type, .req = m.req_id, .count = m.count, .code = m.code };
    if (m.type == IPC_ACK)
        ans_cstr(a.id, m.id);
    if (m.type == IPC_ERROR)
        ans_cstr(a.text, m.text);
    buf_consume(&c->in, (size_t)n);
    return a;
}

static void expect_ack(struct cli *c, uint32_t req, uint32_t count, unsigned seq)
{
    struct ans a = cli_take(c);
    if (a.type != IPC_ACK)
        fail_msg("request %u: answer 0x%02x (code %u, '%s'), want ACK", req, a.type, a.code, a.text);
    assert_int_equal(a.req, req);
    assert_int_equal(a.count, count);
    char id[64];
    snprintf(id, sizeof id, TS_ID_BASE "-%u", seq);
    assert_string_equal(a.id, id);
}

static void expect_error(struct cli *c, uint32_t req, uint16_t code)
{
    struct ans a = cli_take(c);
    if (a.type != IPC_ERROR)
        fail_msg("request %u: answer 0x%02x, want ERROR %u", req, a.type, code);
    assert_int_equal(a.code, code);
    assert_int_equal(a.req, req);
    assert_true(strlen(a.text) > 0);
}

static void expect_disconnected(struct cli *c, uint32_t req, uint32_t count)
{
    struct ans a = cli_take(c);
    assert_int_equal(a.type, IPC_DISCONNECTED);
    assert_int_equal(a.req, req);
    assert_int_equal(a.count, count);
}

static void enc_publish(struct buf *b, uint32_t req, const struct str *ch, int n, struct str data)
{
    assert_int_equal(ipc_encode_publish(b, req, ch, n, data.p, data.len), 0);
}

static void enc_publish1(struct buf *b, uint32_t req, const char *ch, const char *data)
{
    struct str s = { ch, strlen(ch) };
    enc_publish(b, req, &s, 1, (struct str){ data, strlen(data) });
}

/* One request, its answer awaited and checked by the caller. */
static void cli_publish1(struct cli *c, uint32_t req, const char *ch, const char *data)
{
    struct buf b = { 0 };
    enc_publish1(&b, req, ch, data);
    int before = cli_frames(c);
    cli_send(c, &b);
    cli_wait_frames(c, before + 1);
}

static void assert_engine_data(const struct stub_engine *e, struct str want)
{
    assert_int_equal(e->data_len, want.len);
    assert_memory_equal(e->data, want.p, want.len);
}

/* A JSON string of exactly n bytes ("xxx...x"). */
static char ts_big[TS_MAX_MSG + 2];
static void fill_json_string(char *p, size_t n)
{
    p[0] = '"';
    memset(p + 1, 'x', n - 2);
    p[n - 1] = '"';
}

/* ---- PUBLISH ---- */

static void test_publish_ack(void **state)
{
    struct ts *t = *state;
    t->eng.deliveries = 7;
    struct cli *c = cli_connect(t);
    struct buf b = { 0 };
    const struct str ch[] = { S("news"), S("user/alice@example.com") };
    enc_publish(&b, 42, ch, 2, (struct str)S("{\"a\":1}"));
    cli_send(c, &b);
    cli_wait_frames(c, 1);

    assert_int_equal(t->eng.calls, 1);
    assert_int_equal(t->eng.nchannels, 2);
    assert_string_equal(t->eng.channels[0], "news");
    assert_string_equal(t->eng.channels[1], "user/alice@example.com");
    assert_engine_data(&t->eng, (struct str)S("{\"a\":1}"));
    assert_int_equal(t->eng.given_id_len, 0);
    expect_ack(c, 42, 7, 1);

    /* Exactly one answer, and the connection stays open. */
    ts_run_passes(t, 3);
    assert_int_equal(cli_frames(c), 0);
    assert_false(c->eof);
    cli_publish1(c, 43, "news", "2");
    expect_ack(c, 43, 7, 2);
}

/* ---- pipelining ---- */

struct rq {
    uint8_t    type;            /* IPC_PUBLISH or IPC_DISCONNECT */
    uint32_t   req;
    int        nch;
    struct str ch[3];
    struct str data;            /* the user for DISCONNECT */
    uint8_t    want;            /* answer type */
    uint16_t   code;            /* for IPC_ERROR */
};

static const struct rq pipeline[] = {
    { IPC_PUBLISH, 1, 1, { S("a") }, S("1"), IPC_ACK, 0 },
    { IPC_DISCONNECT, 2, 0, { { 0 } }, S("bob"), IPC_DISCONNECTED, 0 },
    { IPC_PUBLISH, 3, 1, { S("bad name") }, S("1"), IPC_ERROR, IPC_ERR_BAD_CHANNEL },
    { IPC_PUBLISH, 4, 2, { S("x"), S("x") }, S("1"), IPC_ERROR, IPC_ERR_BAD_CHANNEL },
    { IPC_PUBLISH, 5, 1, { S("a") }, S("{"), IPC_ERROR, IPC_ERR_BAD_DATA },
    { IPC_PUBLISH, 6, 1, { S("a") }, { ts_big, TS_MAX_MSG + 1 }, IPC_ERROR, IPC_ERR_TOO_BIG },
    { IPC_PUBLISH, 7, 2, { S("a"), S("b") }, S("[1,2]"), IPC_ACK, 0 },
    { IPC_PUBLISH, 0xFFFFFFFFu, 1, { S("z") }, S("\"s\""), IPC_ACK, 0 },
    { IPC_PUBLISH, 0, 1, { S("z") }, S("null"), IPC_ACK, 0 },
};
#define NPIPE ((int)(sizeof pipeline / sizeof pipeline[0]))

static void enc_rq(struct buf *b, const struct rq *r)
{
    if (r->type == IPC_PUBLISH)
        enc_publish(b, r->req, r->ch, r->nch, r->data);
    else
        assert_int_equal(ipc_encode_disconnect(b, r->req, r->data.p, r->data.len), 0);
}

/* Checks the answers (in order) and what reached the engine. */
static void check_pipeline(struct ts *t, struct cli *c)
{
    unsigned seq = 0;
    for (int i = 0; i < NPIPE; i++) {
        const struct rq *r = &pipeline[i];
        if (r->want == IPC_ACK)
            expect_ack(c, r->req, t->eng.deliveries, ++seq);
        else if (r->want == IPC_DISCONNECTED)
            expect_disconnected(c, r->req, t->dc_count);
        else
            expect_error(c, r->req, r->code);
    }
    assert_int_equal(cli_frames(c), 0);
    assert_int_equal(t->eng.calls, 4);
    assert_string_equal(t->eng.log[0], "a|1");
    assert_string_equal(t->eng.log[1], "a,b|[1,2]");
    assert_string_equal(t->eng.log[2], "z|\"s\"");
    assert_string_equal(t->eng.log[3], "z|null");
    assert_int_equal(t->dc_calls, 1);
    assert_int_equal(t->dc_len, 3);
    assert_memory_equal(t->dc_user, "bob", 3);
}

static void test_pipelined_one_write(void **state)
{
    struct ts *t = *state;
    t->dc_count = 5;
    struct cli *c = cli_connect(t);
    struct buf b = { 0 };
    for (int i = 0; i < NPIPE; i++)
        enc_rq(&b, &pipeline[i]);
    size_t total = buf_used(&b);
    cli_send(c, &b);
    /* One write: the socket took it all at once. */
    assert_int_equal(buf_used(&c->out), 0);
    assert_true(total < 4096);
    cli_wait_frames(c, NPIPE);
    ts_run_passes(t, 3);
    assert_int_equal(cli_frames(c), NPIPE);
    check_pipeline(t, c);
}

/* Each byte is its own read on the server side; an answer comes once the
 * last byte of its request is in, and not before. */
static void test_pipelined_byte_by_byte(void **state)
{
    struct ts *t = *state;
    t->dc_count = 5;
    struct cli *c = cli_connect(t);
    struct buf b = { 0 };
    size_t ends[NPIPE];
    for (int i = 0; i < NPIPE; i++) {
        enc_rq(&b, &pipeline[i]);
        ends[i] = buf_used(&b);
    }
    int done = 0;
    for (size_t k = 0; k < ends[NPIPE - 1]; k++) {
        cli_send_bytes(c, buf_head(&b) + k, 1);
        if (k + 1 == ends[done])
            done++;
        cli_wait_frames(c, done);
        assert_int_equal(cli_frames(c), done);
    }
    buf_free(&b);
    assert_int_equal(done, NPIPE);
    check_pipeline(t, c);
}

/* ---- channels ---- */

static void test_bad_channel(void **state)
{
    struct ts *t = *state;
    static const struct str bad[] = {
        S("bad name"), S("caf\xc3\xa9"), S("a,b"), S("*"), S("a\0b"), S("chan\n"), S("#"),
        S("a?"), S("\xff"),
    };
    char longname[202];
    memset(longname, 'a', sizeof longname);
    struct cli *c = cli_connect(t);
    uint32_t req = 100;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct buf b = { 0 };
        enc_publish(&b, ++req, &bad[i], 1, (struct str)S("1"));
        cli_send(c, &b);
        cli_wait_frames(c, 1);
        expect_error(c, req, IPC_ERR_BAD_CHANNEL);
    }
    /* 201 bytes: one over the limit. */
    struct str lname = { longname, 201 };
    struct buf b = { 0 };
    enc_publish(&b, ++req, &lname, 1, (struct str)S("1"));
    cli_send(c, &b);
    cli_wait_frames(c, 1);
    expect_error(c, req, IPC_ERR_BAD_CHANNEL);
    /* A bad name anywhere in the list refuses the whole publish. */
    const struct str mid[] = { S("ok"), S("bad!"), S("ok2") };
    enc_publish(&b, ++req, mid, 3, (struct str)S("1"));
    struct str last32[WSPUSH_MAX_CHANNELS];
    char names[WSPUSH_MAX_CHANNELS][8];
    for (int i = 0; i < WSPUSH_MAX_CHANNELS; i++) {
        snprintf(names[i], sizeof names[i], "c%d", i);
        last32[i] = (struct str){ names[i], strlen(names[i]) };
    }
    last32[WSPUSH_MAX_CHANNELS - 1] = (struct str)S("c 31");
    enc_publish(&b, ++req, last32, WSPUSH_MAX_CHANNELS, (struct str)S("1"));
    cli_send(c, &b);
    cli_wait_frames(c, 2);
    expect_error(c, req - 1, IPC_ERR_BAD_CHANNEL);
    expect_error(c, req, IPC_ERR_BAD_CHANNEL);
    assert_int_equal(t->eng.calls, 0);

    /* The valid edges: 200 bytes, every allowed byte, 32 channels. */
    lname.len = 200;
    enc_publish(&b, ++req, &lname, 1, (struct str)S("1"));
    enc_publish1(&b, ++req, "AZaz09_-.:/@", "2");
    last32[WSPUSH_MAX_CHANNELS - 1] = (struct str){ names[WSPUSH_MAX_CHANNELS - 1], 3 };
    enc_publish(&b, ++req, last32, WSPUSH_MAX_CHANNELS, (struct str)S("3"));
    cli_send(c, &b);
    cli_wait_frames(c, 3);
    expect_ack(c, req - 2, 3, 1);
    expect_ack(c, req - 1, 3, 2);
    expect_ack(c, req, 3, 3);
    assert_int_equal(t->eng.calls, 3);
    assert_int_equal(t->eng.nchannels, WSPUSH_MAX_CHANNELS);
    for (int i = 0; i < WSPUSH_MAX_CHANNELS; i++)
        assert_string_equal(t->eng.channels[i], names[i]);
    assert_int_equal(strlen(t->eng.log[0]), 200 + 2);
    assert_string_equal(t->eng.log[1], "AZaz09_-.:/@|2");
}

static void test_duplicate_channel(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    struct buf b = { 0 };
    const struct str aba[] = { S("a"), S("b"), S("a") };
    const struct str aa[] = { S("a"), S("a") };
    enc_publish(&b, 1, aba, 3, (struct str)S("1"));
    enc_publish(&b, 2, aa, 2, (struct str)S("1"));
    struct str many[WSPUSH_MAX_CHANNELS];
    char names[WSPUSH_MAX_CHANNELS][8];
    for (int i = 0; i < WSPUSH_MAX_CHANNELS; i++) {
        snprintf(names[i], sizeof names[i], "c%d", i);
        many[i] = (struct str){ names[i], strlen(names[i]) };
    }
    many[WSPUSH_MAX_CHANNELS - 1] = many[0];
    enc_publish(&b, 3, many, WSPUSH_MAX_CHANNELS, (struct str)S("1"));
    /* Not duplicates: names differ in case, or one is a prefix. */
    const struct str case_[] = { S("a"), S("A") };
    const struct str prefix[] = { S("ab"), S("a") };
    enc_publish(&b, 4, case_, 2, (struct str)S("1"));
    enc_publish(&b, 5, prefix, 2, (struct str)S("2"));
    cli_send(c, &b);
    cli_wait_frames(c, 5);
    expect_error(c, 1, IPC_ERR_BAD_CHANNEL);
    expect_error(c, 2, IPC_ERR_BAD_CHANNEL);
    expect_error(c, 3, IPC_ERR_BAD_CHANNEL);
    expect_ack(c, 4, 3, 1);
    expect_ack(c, 5, 3, 2);
    assert_int_equal(t->eng.calls, 2);
    assert_string_equal(t->eng.log[0], "a,A|1");
    assert_string_equal(t->eng.log[1], "ab,a|2");
}

/* ---- size ---- */

static void test_too_big_data(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    char max[TS_MAX_MSG];
    fill_json_string(max, sizeof max);
    struct buf b = { 0 };
    struct str a = S("a");
    enc_publish(&b, 1, &a, 1, (struct str){ max, TS_MAX_MSG });
    enc_publish(&b, 2, &a, 1, (struct str){ ts_big, TS_MAX_MSG + 1 });
    enc_publish1(&b, 3, "a", "3");
    cli_send(c, &b);
    cli_wait_frames(c, 3);
    expect_ack(c, 1, 3, 1);
    expect_error(c, 2, IPC_ERR_TOO_BIG);
    expect_ack(c, 3, 3, 2);
    assert_int_equal(t->eng.calls, 2);
    assert_string_equal(t->eng.log[1], "a|3");
}

/* A frame over what the decoder accepts: answered TOO_BIG and skipped
 * whole. Its data is made of valid PUBLISH frames to "evil": any of them
 * answered would mean the skip landed inside the frame. */
static void oversized_then_valid(struct buf *b, uint32_t big_req, uint32_t next_req)
{
    struct buf evil = { 0 };
    enc_publish1(&evil, 9999, "evil", "666");
    enum { BIG = 16384 };      /* over any max_frame for max_message_bytes 1024 */
    char *data = malloc(BIG);
    assert_non_null(data);
    for (size_t k = 0; k < BIG; k++)
        data[k] = buf_head(&evil)[k % buf_used(&evil)];
    buf_free(&evil);
    struct str a = S("a");
    enc_publish(b, big_req, &a, 1, (struct str){ data, BIG });
    free(data);
    enc_publish1(b, next_req, "b", "2");
}

static void check_oversized(struct ts *t, struct cli *c, uint32_t big_req, uint32_t next_req,
                            unsigned seq)
{
    cli_wait_frames(c, 2);
    ts_run_passes(t, 3);
    assert_int_equal(cli_frames(c), 2);
    expect_error(c, big_req, IPC_ERR_TOO_BIG);
    expect_ack(c, next_req, 3, seq);
    assert_false(c->eof);
    for (int i = 0; i < t->eng.calls && i < TS_LOG; i++)
        assert_null(strstr(t->eng.log[i], "evil"));
}

static void test_too_big_frame(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    struct buf b = { 0 };
    oversized_then_valid(&b, 7, 8);
    cli_send(c, &b);
    check_oversized(t, c, 7, 8, 1);
    assert_int_equal(t->eng.calls, 1);
    assert_string_equal(t->eng.log[0], "b|2");
}

static void test_too_big_frame_in_pieces(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    struct buf b = { 0 };
    oversized_then_valid(&b, 7, 8);
    size_t total = buf_used(&b), next_len = 9 + 1 + 2 + 4 + 1;
    size_t big_end = total - next_len;
    /* The header byte by byte, then 1000-byte pieces, one of which ends 5
     * bytes into the next request, whose rest comes byte by byte. */
    size_t k = 0;
    while (k < total) {
        size_t n = k < 20 || k >= big_end + 5 ? 1 : 1000;
        if (k < big_end + 5 && k + n > big_end + 5)
            n = big_end + 5 - k;
        cli_send_bytes(c, buf_head(&b) + k, n);
        k += n;
        ts_run_passes(t, 1);
        assert_int_equal(t->eng.calls, 0 + (k == total));
    }
    buf_free(&b);
    check_oversized(t, c, 7, 8, 1);
    assert_int_equal(t->eng.calls, 1);

    /* Then the same with the whole frame in one write. */
    oversized_then_valid(&b, 9, 10);
    cli_send(c, &b);
    check_oversized(t, c, 9, 10, 2);
}

/* ---- data ---- */

static void test_bad_data(void **state)
{
    struct ts *t = *state;
    static const struct str bad[] = {
        S(""), S(" "), S("{"), S("1 2"), S("[1,]"), S("'a'"), S("NaN"), S("01"), S("1."),
        S("tru"), S("{\"a\":1}x"), S("\"\xff\""), S("\"a\x01\""), S("\"\0\""),
        S("\xef\xbb\xbf" "1"), S("{\"a\"}"), S("\"abc"), S("[1] [2]"),
    };
    struct cli *c = cli_connect(t);
    struct buf b = { 0 };
    struct str a = S("a");
    int n = (int)(sizeof bad / sizeof bad[0]);
    for (int i = 0; i < n; i++)
        enc_publish(&b, (uint32_t)(i + 1), &a, 1, bad[i]);
    enc_publish1(&b, 1000, "a", "true");
    cli_send(c, &b);
    cli_wait_frames(c, n + 1);
    for (int i = 0; i < n; i++)
        expect_error(c, (uint32_t)(i + 1), IPC_ERR_BAD_DATA);
    expect_ack(c, 1000, 3, 1);
    assert_int_equal(t->eng.calls, 1);
}

/* Valid JSON reaches the engine byte for byte (never re-serialised). */
static void test_json_edges_verbatim(void **state)
{
    struct ts *t = *state;
    static char deep[1000];
    for (int i = 0; i < 500; i++) {
        deep[i] = '[';
        deep[999 - i] = ']';
    }
    const struct str good[] = {
        S("12345678901234567890123"), S("\"a\\u0000b\""), S("\"\\ud83d\\ude00\""),
        S(" [1, 2] \n"), S("-0"), S("1e-400"), S("1E+2"), S("\"caf\xc3\xa9\""), S("null"),
        S("true"), S("{}"), S("[]"), S("\"\""), S("{\"a\":{\"a\":[0.5,-1e10]}}"),
        S("-12345678901234567890123.25e-3"), S("\t\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"\r\n"),
        { deep, sizeof deep },
    };
    struct cli *c = cli_connect(t);
    struct str a = S("a");
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct buf b = { 0 };
        enc_publish(&b, (uint32_t)i, &a, 1, good[i]);
        cli_send(c, &b);
        cli_wait_frames(c, 1);
        struct ans r = cli_take(c);
        if (r.type != IPC_ACK)
            fail_msg("value %zu '%.*s': answer 0x%02x code %u", i, (int)good[i].len, good[i].p,
                     r.type, r.code);
        assert_int_equal(t->eng.calls, (int)i + 1);
        assert_engine_data(&t->eng, good[i]);
    }
}

/* Numbers beyond a double's range are valid JSON, but jansson (the
 * validator) cannot hold them: they are refused with a message of their
 * own, the same rule as fcgi-publisher's and the CLI's, and the engine is
 * not called. */
static void test_json_numbers_beyond_double(void **state)
{
    struct ts *t = *state;
    char digits[400];
    memset(digits, '9', sizeof digits);
    const struct str big[] = { S("1e400"), S("-1e400"), { digits, sizeof digits } };
    struct cli *c = cli_connect(t);
    struct str a = S("a");
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        struct buf b = { 0 };
        enc_publish(&b, (uint32_t)i, &a, 1, big[i]);
        cli_send(c, &b);
        cli_wait_frames(c, 1);
        struct ans r = cli_take(c);
        assert_int_equal(r.type, IPC_ERROR);
        assert_int_equal(r.code, IPC_ERR_BAD_DATA);
        assert_non_null(strstr(r.text, "beyond a double's range"));
    }
    assert_int_equal(t->eng.calls, 0);
}

/* ---- engine failure ---- */

static void test_engine_enomem(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    t->eng.result = -ENOMEM;
    cli_publish1(c, 11, "a", "1");
    expect_error(c, 11, IPC_ERR_INTERNAL);
    assert_int_equal(t->eng.calls, 1);
    assert_string_equal(t->eng.log[0], "a|1");
    t->eng.result = 0;
    cli_publish1(c, 12, "a", "2");
    expect_ack(c, 12, 3, 1);
    assert_int_equal(t->eng.calls, 2);
}

/* ---- DISCONNECT ---- */

static void test_disconnect(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    t->dc_count = 3;
    struct buf b = { 0 };
    assert_int_equal(ipc_encode_disconnect(&b, 21, "alice", 5), 0);
    cli_send(c, &b);
    cli_wait_frames(c, 1);
    expect_disconnected(c, 21, 3);
    assert_int_equal(t->dc_calls, 1);
    assert_int_equal(t->dc_len, 5);
    assert_memory_equal(t->dc_user, "alice", 5);

    /* 255 bytes of anything, NUL included, reach the handler as sent. */
    char user[255];
    for (int i = 0; i < 255; i++)
        user[i] = (char)(i * 7);
    t->dc_count = 0;
    assert_int_equal(ipc_encode_disconnect(&b, 22, user, sizeof user), 0);
    cli_send(c, &b);
    cli_wait_frames(c, 1);
    expect_disconnected(c, 22, 0);
    assert_int_equal(t->dc_calls, 2);
    assert_int_equal(t->dc_len, 255);
    assert_memory_equal(t->dc_user, user, 255);
    assert_int_equal(t->eng.calls, 0);
}

/* A cluster node's disconnect that reached only this node. */
static void test_disconnect_unavailable(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    t->dc_count = 2;
    t->dc_status = ENGINE_E_UNAVAILABLE;
    struct buf b = { 0 };
    assert_int_equal(ipc_encode_disconnect(&b, 5, "bob", 3), 0);
    cli_send(c, &b);
    cli_wait_frames(c, 1);
    struct ans a = cli_take(c);
    assert_int_equal(a.type, IPC_ERROR);
    assert_int_equal(a.req, 5);
    assert_int_equal(a.code, IPC_ERR_UNAVAILABLE);
    assert_non_null(strstr(a.text, "2 connection(s) closed on this node"));
    assert_non_null(strstr(a.text, "other nodes were not reached"));
}

/* ---- an engine that answers later (Redis) ---- */

/* Outcomes given out of order, between answers known at once (a refused
 * channel, a disconnect): the answers still go out in request order, and
 * none before its own outcome. */
static void test_deferred_answers_in_order(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    t->eng.defer = 1;
    struct buf b = { 0 };
    enc_publish1(&b, 1, "a", "1");
    enc_publish1(&b, 2, "a", "2");
    enc_publish1(&b, 3, "bad channel", "3");
    assert_int_equal(ipc_encode_disconnect(&b, 4, "u", 1), 0);
    enc_publish1(&b, 5, "a", "5");
    enc_publish1(&b, 6, "a", "6");
    cli_send(c, &b);
    int four = 4;
    ts_run_until(t, ts_calls_reach, &four);
    ts_run_passes(t, 3);
    assert_int_equal(cli_frames(c), 0);
    assert_int_equal(t->dc_calls, 1);

    stub_answer(&t->eng, 3, ENGINE_E_TIMEOUT);       /* request 6 */
    stub_answer(&t->eng, 1, 1);                      /* request 2 */
    ts_run_passes(t, 3);
    assert_int_equal(cli_frames(c), 0);              /* 1 still waits */
    stub_answer(&t->eng, 0, 1);                      /* request 1 */
    cli_wait_frames(c, 4);
    ts_run_passes(t, 2);
    assert_int_equal(cli_frames(c), 4);              /* 5 waits */
    expect_ack(c, 1, 3, 1);
    expect_ack(c, 2, 3, 2);
    expect_error(c, 3, IPC_ERR_BAD_CHANNEL);
    expect_disconnected(c, 4, 0);
    stub_answer(&t->eng, 2, ENGINE_E_UNAVAILABLE);   /* request 5 */
    cli_wait_frames(c, 2);
    expect_error(c, 5, IPC_ERR_UNAVAILABLE);
    expect_error(c, 6, IPC_ERR_TIMEOUT);
    const struct stats_pubsock *st = pubsock_stats(t->ps);
    assert_int_equal(st->ok, 3);
    assert_int_equal(st->refused, 3);
}

/* A peer gone before its outcomes: they come later and find nothing to
 * answer (ASan: no use after free, no leak). */
static void test_deferred_peer_gone(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    t->eng.defer = 1;
    struct buf b = { 0 };
    enc_publish1(&b, 1, "a", "1");
    enc_publish1(&b, 2, "a", "2");
    cli_send(c, &b);
    int two = 2;
    ts_run_until(t, ts_calls_reach, &two);
    stub_answer(&t->eng, 1, 1);
    cli_close(c);
    ts_run_passes(t, 3);
    stub_answer(&t->eng, 0, 1);
    ts_run_passes(t, 2);
    /* The socket still serves others. */
    t->eng.defer = 0;
    struct cli *d = cli_connect(t);
    cli_publish1(d, 7, "a", "7");
    expect_ack(d, 7, 3, 3);
}

/* ---- malformed streams ---- */

struct raw {
    const char *what;
    const char *p;
    size_t      n;
};
#define RAW(what, lit) { what, lit, sizeof(lit) - 1 }

static const struct raw malformed[] = {
    RAW("unknown type 0x03", "\x00\x00\x00\x05" "\x03" "\x00\x00\x00\x07"),
    RAW("type 0x00", "\x00\x00\x00\x05" "\x00" "\x00\x00\x00\x07"),
    RAW("unknown type, huge length", "\xff\xff\xff\xff" "\x7e" "\x00\x00\x00\x07"),
    RAW("length 0", "\x00\x00\x00\x00"),
    RAW("length 4", "\x00\x00\x00\x04" "\x01" "\x00\x00\x00"),
    RAW("publish, 0 channels", "\x00\x00\x00\x0a" "\x01" "\x00\x00\x00\x07" "\x00" "\x00\x00\x00\x00"),
    RAW("publish, 33 channels", "\x00\x00\x00\x06" "\x01" "\x00\x00\x00\x07" "\x21"),
    RAW("publish, empty channel",
        "\x00\x00\x00\x0c" "\x01" "\x00\x00\x00\x07" "\x01" "\x00" "\x00\x00\x00\x01" "1"),
    RAW("publish, byte past the body",
        "\x00\x00\x00\x0e" "\x01" "\x00\x00\x00\x07" "\x01" "\x01" "a" "\x00\x00\x00\x01" "1" "X"),
    RAW("publish, data past the frame",
        "\x00\x00\x00\x0d" "\x01" "\x00\x00\x00\x07" "\x01" "\x01" "a" "\x00\x00\x00\x64" "1"),
    RAW("disconnect, empty user", "\x00\x00\x00\x06" "\x02" "\x00\x00\x00\x07" "\x00"),
    RAW("disconnect, no body", "\x00\x00\x00\x05" "\x02" "\x00\x00\x00\x07"),
    RAW("error frame, code 0", "\x00\x00\x00\x08" "\xff" "\x00\x00\x00\x07" "\x00\x00" "\x00"),
};

/* A valid request, the bad frame, another valid request, in one write:
 * the first is answered, then ERROR MALFORMED, then the server hangs up
 * without running the third. */
static void test_malformed_closes(void **state)
{
    struct ts *t = *state;
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        struct cli *c = cli_connect(t);
        struct buf b = { 0 };
        enc_publish1(&b, 1, "a", "1");
        assert_int_equal(buf_append(&b, malformed[i].p, malformed[i].n), 0);
        enc_publish1(&b, 2, "b", "2");
        cli_send(c, &b);
        cli_wait_eof(c);
        if (cli_frames(c) != 2)
            fail_msg("%s: %d answers before the close", malformed[i].what, cli_frames(c));
        expect_ack(c, 1, 3, (unsigned)i + 1);
        struct ans a = cli_take(c);
        if (a.type != IPC_ERROR || a.code != IPC_ERR_MALFORMED)
            fail_msg("%s: answer 0x%02x code %u", malformed[i].what, a.type, a.code);
        assert_int_equal(t->eng.calls, (int)i + 1);
        assert_string_equal(t->eng.log[i], "a|1");
        cli_close(c);
    }
    assert_int_equal(t->dc_calls, 0);
}

/* Answer-type frames are well framed: refused one by one, and the
 * connection goes on. */
static void test_answer_frames_refused(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    struct buf b = { 0 };
    assert_int_equal(ipc_encode_ack(&b, 31, 1, "x", 1), 0);
    assert_int_equal(ipc_encode_disconnected(&b, 32, 1), 0);
    assert_int_equal(ipc_encode_error(&b, 33, IPC_ERR_TOO_BIG, "no"), 0);
    enc_publish1(&b, 34, "a", "1");
    cli_send(c, &b);
    cli_wait_frames(c, 4);
    expect_error(c, 31, IPC_ERR_MALFORMED);
    expect_error(c, 32, IPC_ERR_MALFORMED);
    expect_error(c, 33, IPC_ERR_MALFORMED);
    expect_ack(c, 34, 3, 1);
    ts_run_passes(t, 2);
    assert_false(c->eof);
}

/* ---- end of input ---- */

static void test_shutdown_write_small(void **state)
{
    struct ts *t = *state;
    t->dc_count = 1;
    struct cli *c = cli_connect(t);
    struct buf b = { 0 };
    enc_publish1(&b, 1, "a", "1");
    assert_int_equal(ipc_encode_disconnect(&b, 2, "u", 1), 0);
    enc_publish1(&b, 3, "bad name", "1");
    c->shut = 1;
    cli_send(c, &b);
    assert_true(c->shut_done);
    cli_wait_eof(c);
    assert_int_equal(c->err, 0);
    assert_int_equal(cli_frames(c), 3);
    expect_ack(c, 1, 3, 1);
    expect_disconnected(c, 2, 1);
    expect_error(c, 3, IPC_ERR_BAD_CHANNEL);

    /* A request cut short by the shutdown is not answered. */
    c = cli_connect(t);
    enc_publish1(&b, 4, "a", "4");
    enc_publish1(&b, 5, "a", "5");
    b.len -= 3;
    c->shut = 1;
    cli_send(c, &b);
    cli_wait_eof(c);
    assert_int_equal(cli_frames(c), 1);
    expect_ack(c, 4, 3, 2);
    assert_int_equal(buf_used(&c->in), 0);
    assert_int_equal(t->eng.calls, 2);
}

/* More answers than the socket buffers hold are pending when the server
 * sees the end of input: it sends them all, then closes. */
static void test_shutdown_write_many(void **state)
{
    struct ts *t = *state;
    enum { N = 12000 };
    struct cli *c = cli_connect(t);
    struct buf b = { 0 };
    for (uint32_t i = 1; i <= N; i++)
        enc_publish1(&b, i, "c", "1");
    c->reading = 0;
    c->shut = 1;
    cli_send(c, &b);
    struct want sent = { c, 0, 0, 1 };
    ts_run_until(t, ts_want, &sent);
    int calls = N;
    ts_run_until(t, ts_calls_reach, &calls);
    c->reading = 1;
    cli_watch(c);
    cli_wait_eof(c);
    assert_int_equal(c->err, 0);
    assert_int_equal(cli_frames(c), N);
    for (uint32_t i = 1; i <= N; i++) {
        struct ans a = cli_take(c);
        if (a.type != IPC_ACK || a.req != i)
            fail_msg("answer %u: type 0x%02x req %u", i, a.type, a.req);
    }
}

/* A peer that pipelines without reading: once enough answers wait
 * (pubsock.c's PUBSOCK_OUT_HIGH, 1 MiB) the server stops reading it, so
 * the answers held stay bounded; when the peer reads, the rest follows in
 * order. DISCONNECT is the cheapest request (13-byte answers, counted by
 * the handler); 300000 of them make 3.9 MB of answers. */
static void test_unread_answers_bounded(void **state)
{
    struct ts *t = *state;
    enum { N = 300000 };
    struct cli *c = cli_connect(t);
    struct buf b = { 0 };
    for (uint32_t i = 1; i <= N; i++)
        assert_int_equal(ipc_encode_disconnect(&b, i, "u", 1), 0);
    c->reading = 0;
    cli_send(c, &b);
    /* Run until nothing moves: the server no longer reads, the client
     * can no longer write. */
    int prev_calls = -1;
    size_t prev_out = 0;
    for (int i = 0; t->dc_calls != prev_calls || buf_used(&c->out) != prev_out; i++) {
        assert_true(i < 100000);
        prev_calls = t->dc_calls;
        prev_out = buf_used(&c->out);
        ts_run_passes(t, 2);
    }
    int queued = 0;
    assert_int_equal(ioctl(c->fd, FIONREAD, &queued), 0);
    size_t held = (size_t)t->dc_calls * 13 - (size_t)queued;
    if (held > (2u << 20))
        fail_msg("%d of %d requests answered while the peer reads nothing: %zu bytes of "
                 "answers held", t->dc_calls, N, held);
    c->reading = 1;
    cli_watch(c);
    cli_wait_frames(c, N);
    assert_int_equal(t->dc_calls, N);
    for (uint32_t i = 1; i <= N; i++) {
        struct ans a = cli_take(c);
        if (a.type != IPC_DISCONNECTED || a.req != i)
            fail_msg("answer %u: type 0x%02x req %u", i, a.type, a.req);
    }
}

/* ---- stop, free, pump ---- */

static void test_stop(void **state)
{
    struct ts *t = *state;
    struct cli *a = cli_connect(t);
    cli_publish1(a, 1, "a", "1");
    expect_ack(a, 1, 3, 1);
    /* Connected but not yet accepted when the socket stops. */
    struct cli *late = cli_connect(t);
    enc_publish1(&late->out, 2, "a", "2");
    cli_flush(late);

    pubsock_stop(t->ps);
    struct stat st;
    assert_int_equal(lstat(t->path, &st), -1);
    assert_int_equal(errno, ENOENT);
    struct cli *refused = NULL;
    int rc = cli_try_connect(t, &refused);
    assert_true(rc == -ENOENT || rc == -ECONNREFUSED);

    /* The backlog connection is closed, unanswered. */
    cli_wait_eof(late);
    assert_int_equal(cli_frames(late), 0);

    /* The accepted peer is still served. */
    t->dc_count = 2;
    struct buf b = { 0 };
    enc_publish1(&b, 3, "a", "3");
    assert_int_equal(ipc_encode_disconnect(&b, 4, "z", 1), 0);
    cli_send(a, &b);
    cli_wait_frames(a, 2);
    expect_ack(a, 3, 3, 2);
    expect_disconnected(a, 4, 2);
    assert_int_equal(t->eng.calls, 2);

    pubsock_stop(t->ps);   /* twice: a no-op */
    cli_publish1(a, 5, "a", "5");
    expect_ack(a, 5, 3, 3);
}

/* pubsock_stop removes only the socket file it made: one put at the path
 * since (by another process, as addr_listen does it: bind elsewhere, then
 * rename over the path) stays, and keeps answering. */
static void test_stop_spares_replaced_file(void **state)
{
    struct ts *t = *state;
    char tmp[CFG_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/other.sock", t->dir);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    assert_true(strlen(tmp) < sizeof sa.sun_path);
    memcpy(sa.sun_path, tmp, strlen(tmp) + 1);
    int other = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(other >= 0);
    assert_int_equal(bind(other, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(other, 4), 0);
    struct stat mine;
    assert_int_equal(lstat(tmp, &mine), 0);
    assert_int_equal(rename(tmp, t->path), 0);

    pubsock_stop(t->ps);
    pubsock_free(t->ps);
    t->ps = NULL;
    struct stat st;
    int rc = lstat(t->path, &st);
    struct cli *c = NULL;
    int crc = cli_try_connect(t, &c);
    close(other);
    assert_int_equal(rc, 0);
    assert_true(st.st_ino == mine.st_ino && st.st_dev == mine.st_dev);
    assert_int_equal(crc, 0);
}

static void test_free_with_peers(void **state)
{
    struct ts *t = *state;
    struct cli *idle = cli_connect(t);
    cli_publish1(idle, 1, "a", "1");
    expect_ack(idle, 1, 3, 1);
    /* Half a request in the server's input buffer. */
    struct cli *half = cli_connect(t);
    struct buf b = { 0 };
    enc_publish1(&b, 2, "a", "2");
    b.len -= 2;
    cli_send(half, &b);
    /* Done sending, answers pending in the server's output buffer. */
    struct cli *full = cli_connect(t);
    full->reading = 0;
    full->shut = 1;
    for (uint32_t i = 0; i < 12000; i++)
        enc_publish1(&b, i, "c", "1");
    cli_send(full, &b);
    struct want sent = { full, 0, 0, 1 };
    ts_run_until(t, ts_want, &sent);
    int calls = 1 + 12000;
    ts_run_until(t, ts_calls_reach, &calls);
    ts_run_passes(t, 3);
    /* Never accepted. */
    struct cli *backlog = cli_connect(t);

    pubsock_free(t->ps);
    t->ps = NULL;
    struct stat st;
    assert_int_equal(lstat(t->path, &st), -1);

    /* Every peer sees the close; the loop runs on without pubsock's hook. */
    full->reading = 1;
    cli_watch(full);
    struct cli *all[] = { idle, half, full, backlog };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cli_wait_eof(all[i]);
    ts_run_passes(t, 2);
    assert_int_equal(t->eng.calls, calls);
}

/* pubsock_pump answers a peer at once, without a loop pass. */
static void test_pump(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    cli_publish1(c, 1, "a", "1");
    expect_ack(c, 1, 3, 1);
    pubsock_pump(t->ps);             /* nothing pending: nothing happens */
    cli_read(c);
    assert_int_equal(buf_used(&c->in), 0);

    struct buf b = { 0 };
    enc_publish1(&b, 2, "a", "2");
    enc_publish1(&b, 3, "a", "3");
    cli_send(c, &b);
    assert_int_equal(t->eng.calls, 1);
    pubsock_pump(t->ps);
    assert_int_equal(t->eng.calls, 3);
    cli_read(c);
    assert_int_equal(cli_frames(c), 2);
    expect_ack(c, 2, 3, 2);
    expect_ack(c, 3, 3, 3);
}

/* The limits are read through the live pointer: a swapped config applies
 * to the next request. */
static void test_cfg_swap(void **state)
{
    struct ts *t = *state;
    struct cli *c = cli_connect(t);
    t->cfg2 = t->cfg;
    t->cfg2.max_message_bytes = 4;
    cli_publish1(c, 1, "a", "12345");
    expect_ack(c, 1, 3, 1);
    t->live = &t->cfg2;
    cli_publish1(c, 2, "a", "12345");
    expect_error(c, 2, IPC_ERR_TOO_BIG);
    cli_publish1(c, 3, "a", "1234");
    expect_ack(c, 3, 3, 2);
    t->live = &t->cfg;
    cli_publish1(c, 4, "a", "12345");
    expect_ack(c, 4, 3, 3);
}

/* ---- who may publish ---- */

/* Connects with the given effective ids (root only); returns the client. */
static struct cli *cli_connect_as(struct ts *t, uid_t uid, gid_t gid)
{
    struct cli *c = NULL;
    int ok = setegid(gid) == 0 && seteuid(uid) == 0;
    int rc = ok ? cli_try_connect(t, &c) : -EPERM;
    int back = seteuid(0) == 0 && setegid(0) == 0;
    assert_true(back);
    assert_true(ok);
    assert_int_equal(rc, 0);
    return c;
}

static void test_allow_list(void **state)
{
    struct ts *t = *state;
    /* Our own uid is always allowed, whatever the lists say. */
    char other_uid[32], other_gid[32];
    snprintf(other_uid, sizeof other_uid, "%u", (unsigned)getuid() + 12345u);
    snprintf(other_gid, sizeof other_gid, "%u", (unsigned)getgid() + 12345u);
    t->cfg.publish_allow_uids.n = 1;
    t->cfg.publish_allow_uids.items[0] = other_uid;
    t->cfg.publish_allow_gids.n = 1;
    t->cfg.publish_allow_gids.items[0] = other_gid;
    struct cli *self = cli_connect(t);
    cli_publish1(self, 1, "a", "1");
    expect_ack(self, 1, 3, 1);
    if (getuid() != 0) {
        t->cfg.publish_allow_uids.n = t->cfg.publish_allow_gids.n = 0;
        skip();
    }
    assert_int_equal(chmod(t->dir, 0711), 0);
    assert_int_equal(chmod(t->path, 0666), 0);

    /* Another uid, in neither list: every request refused, connection kept. */
    struct cli *out = cli_connect_as(t, 65534, 65534);
    struct buf b = { 0 };
    enc_publish1(&b, 2, "a", "2");
    assert_int_equal(ipc_encode_disconnect(&b, 3, "u", 1), 0);
    enc_publish1(&b, 4, "a", "3");
    cli_send(out, &b);
    cli_wait_frames(out, 3);
    expect_error(out, 2, IPC_ERR_NOT_ALLOWED);
    expect_error(out, 3, IPC_ERR_NOT_ALLOWED);
    expect_error(out, 4, IPC_ERR_NOT_ALLOWED);
    assert_false(out->eof);
    assert_int_equal(t->eng.calls, 1);
    assert_int_equal(t->dc_calls, 0);

    /* Allowed by gid, then by uid. */
    t->cfg.publish_allow_gids.items[0] = (char *)"65534";
    struct cli *by_gid = cli_connect_as(t, 65534, 65534);
    cli_publish1(by_gid, 5, "a", "5");
    expect_ack(by_gid, 5, 3, 2);
    t->cfg.publish_allow_uids.items[0] = (char *)"65534";
    struct cli *by_uid = cli_connect_as(t, 65534, 0);
    cli_publish1(by_uid, 6, "a", "6");
    expect_ack(by_uid, 6, 3, 3);
    /* The decision was made at accept: the refused peer stays refused. */
    cli_publish1(out, 7, "a", "7");
    expect_error(out, 7, IPC_ERR_NOT_ALLOWED);
    t->cfg.publish_allow_uids.n = t->cfg.publish_allow_gids.n = 0;
}

/* ---- open ---- */

static void test_open_errors(void **state)
{
    struct ts *t = *state;
    struct cfg bad = t->cfg;
    struct cfg *live = &bad;
    char err[256];
    char p[4][CFG_PATH_MAX];
    snprintf(p[0], sizeof p[0], "%s/no/such/dir/pub.sock", t->dir);
    snprintf(p[1], sizeof p[1], "%s/regular", t->dir);
    snprintf(p[2], sizeof p[2], "%s/%0150d", t->dir, 0);
    snprintf(p[3], sizeof p[3], "%s", t->path);   /* ours, live: not stolen */
    FILE *f = fopen(p[1], "w");
    assert_non_null(f);
    fputs("keep", f);
    fclose(f);
    for (int i = 0; i < 4; i++) {
        memcpy(bad.publish_socket, p[i], sizeof bad.publish_socket);
        err[0] = '\0';
        struct pubsock *ps = pubsock_open(t->loop, &live, &t->eng.base, &ts_handlers, t, err,
                                          sizeof err);
        assert_null(ps);
        assert_true(strlen(err) > 0);
    }
    struct stat st;
    assert_int_equal(stat(p[1], &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 4);
    unlink(p[1]);
    /* The running one is untouched. */
    struct cli *c = cli_connect(t);
    cli_publish1(c, 1, "a", "1");
    expect_ack(c, 1, 3, 1);
}

/* A socket file nobody listens on (a crashed server's) is replaced, and
 * the new one removes it when freed. */
static void test_open_over_stale_file(void **state)
{
    struct ts *t = *state;
    pubsock_free(t->ps);
    t->ps = NULL;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, t->path, strlen(t->path) + 1);
    int dead = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(dead >= 0);
    assert_int_equal(bind(dead, (struct sockaddr *)&sa, sizeof sa), 0);
    close(dead);
    struct stat st;
    assert_int_equal(lstat(t->path, &st), 0);
    ts_open(t);
    struct cli *c = cli_connect(t);
    cli_publish1(c, 1, "a", "1");
    expect_ack(c, 1, 3, 1);
    pubsock_free(t->ps);
    t->ps = NULL;
    assert_int_equal(lstat(t->path, &st), -1);
    assert_int_equal(errno, ENOENT);
}

int main(void)
{
    log_init("test_pubsock", LOG_ERROR);
    fill_json_string(ts_big, TS_MAX_MSG + 1);
#define T(f) cmocka_unit_test_setup_teardown(f, ts_setup, ts_teardown)
    const struct CMUnitTest tests[] = {
        T(test_publish_ack),
        T(test_pipelined_one_write),
        T(test_pipelined_byte_by_byte),
        T(test_bad_channel),
        T(test_duplicate_channel),
        T(test_too_big_data),
        T(test_too_big_frame),
        T(test_too_big_frame_in_pieces),
        T(test_bad_data),
        T(test_json_edges_verbatim),
        T(test_json_numbers_beyond_double),
        T(test_engine_enomem),
        T(test_disconnect),
        T(test_disconnect_unavailable),
        T(test_deferred_answers_in_order),
        T(test_deferred_peer_gone),
        T(test_malformed_closes),
        T(test_answer_frames_refused),
        T(test_shutdown_write_small),
        T(test_shutdown_write_many),
        T(test_unread_answers_bounded),
        T(test_stop),
        T(test_stop_spares_replaced_file),
        T(test_free_with_peers),
        T(test_pump),
        T(test_cfg_swap),
        T(test_allow_list),
        T(test_open_errors),
        T(test_open_over_stale_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
