/* pubclient: the test plays ws-server on a Unix socket of its own and
 * drives the client's loop by hand. Pipelined answers in order, error
 * answers, mismatched ids, timeouts, a connection the server closed
 * (retried without error when nothing of the request had been sent,
 * UNAVAILABLE when it had), no listener, cancellation, bad arguments,
 * a frame larger than the socket buffer, a path change, and callbacks
 * that queue more requests. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "ev.h"
#include "ipc.h"
#include "pubclient.h"

#define TP_WAIT_MS 3000     /* bound on any wait; tests finish far sooner */

struct tp {
    struct ev_hook after;
    char       dir[64];
    char       path[PUBC_PATH_MAX];
    int        lfd;
    ev_loop_t *loop;
    pubc_t    *pc;
};

/* One request's outcome, as the callback saw it. */
struct tp_done {
    int                calls;
    int                rc;
    struct pubc_result res;
};

/* One accepted connection, seen from the server side. */
struct srv {
    int        fd;
    struct buf in;
};

/* A request as the server decoded it (strings copied). */
struct srv_req {
    uint8_t  type;
    uint32_t id;
    int      nchannels;
    char     channel[256];
    size_t   data_len;
    char     data[64];
    char     user[256];
};

static int tp_listen(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static void tp_after(ev_loop_t *loop, void *data)
{
    (void)loop;
    struct tp *t = data;
    if (t->pc)
        pubc_flush(t->pc);
}

static int tp_setup(void **state)
{
    struct tp *t = calloc(1, sizeof *t);
    assert_non_null(t);
    snprintf(t->dir, sizeof t->dir, "/tmp/test_pubclient.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/pub.sock", t->dir);
    t->lfd = tp_listen(t->path);
    char err[128];
    t->loop = ev_loop_new(err, sizeof err);
    assert_non_null(t->loop);
    ev_after_add(t->loop, &t->after, tp_after, t);
    t->pc = pubc_new(t->loop, t->path);
    assert_non_null(t->pc);
    *state = t;
    return 0;
}

static int tp_teardown(void **state)
{
    struct tp *t = *state;
    pubc_free(t->pc);
    ev_loop_free(t->loop);
    if (t->lfd >= 0)
        close(t->lfd);
    unlink(t->path);
    char other[PUBC_PATH_MAX + 8];
    snprintf(other, sizeof other, "%s/other.sock", t->dir);
    unlink(other);
    rmdir(t->dir);
    free(t);
    return 0;
}

static void tp_stop(ev_loop_t *loop, struct ev_timer *timer)
{
    (void)timer;
    ev_stop(loop);
}

/* Runs the client's loop for about ms; the first pass does not wait, so
 * what was queued is flushed at once. */
static void tp_spin(struct tp *t, int ms)
{
    struct ev_timer stop = { 0 };
    assert_int_equal(ev_timer_start(t->loop, &stop, (uint64_t)ms, tp_stop), 0);
    ev_poll_now(t->loop);
    assert_int_equal(ev_run(t->loop), 0);
    ev_timer_stop(t->loop, &stop);
}

static void tp_spin_until_done(struct tp *t, const struct tp_done *d)
{
    for (int waited = 0; d->calls == 0; waited += 5) {
        assert_true(waited < TP_WAIT_MS);
        tp_spin(t, 5);
    }
}

static void tp_cb(void *ctx, int rc, const struct pubc_result *res)
{
    struct tp_done *d = ctx;
    d->calls++;
    d->rc = rc;
    d->res = *res;
}

static int tp_publish(struct tp *t, const char *channel, const char *data, int timeout_ms,
                      struct tp_done *d, uint64_t *ticket)
{
    struct str ch = { channel, strlen(channel) };
    uint64_t dummy;
    return pubc_publish(t->pc, &ch, 1, data, strlen(data), timeout_ms, tp_cb, d,
                        ticket ? ticket : &dummy);
}

static struct srv srv_accept(struct tp *t)
{
    struct srv s = { .fd = -1 };
    for (int waited = 0; s.fd < 0; waited += 5) {
        s.fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (s.fd >= 0)
            break;
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        assert_true(waited < TP_WAIT_MS);
        tp_spin(t, 5);
    }
    return s;
}

static void srv_close(struct srv *s)
{
    close(s->fd);
    buf_free(&s->in);
}

/* Reads what the client sent so far. Returns 0 at EOF, else 1. */
static int srv_fill(struct srv *s)
{
    for (;;) {
        assert_int_equal(buf_reserve(&s->in, 64 * 1024), 0);
        ssize_t n = recv(s->fd, s->in.data + s->in.len, s->in.cap - s->in.len, 0);
        if (n > 0) {
            s->in.len += (size_t)n;
            continue;
        }
        if (n == 0)
            return 0;
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        return 1;
    }
}

static void srv_cstr(char *dst, size_t cap, struct str s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.p, n);
    dst[n] = '\0';
}

/* The next request from the client, running the client's loop meanwhile
 * (a large frame goes out over several passes). */
static struct srv_req srv_request(struct tp *t, struct srv *s)
{
    for (int waited = 0;; waited += 5) {
        struct ipc_msg m;
        ssize_t n = ipc_decode(buf_head(&s->in), buf_used(&s->in), 64u << 20, &m);
        if (n > 0) {
            struct srv_req r = { .type = m.type, .id = m.req_id, .nchannels = m.nchannels };
            if (m.type == IPC_PUBLISH) {
                srv_cstr(r.channel, sizeof r.channel, m.channels[0]);
                r.data_len = m.data.len;
                srv_cstr(r.data, sizeof r.data, m.data);
            } else {
                srv_cstr(r.user, sizeof r.user, m.user);
            }
            buf_consume(&s->in, (size_t)n);
            return r;
        }
        assert_int_equal(n, IPC_NEED_MORE);
        assert_true(waited < TP_WAIT_MS);
        tp_spin(t, 5);
        assert_int_equal(srv_fill(s), 1);
    }
}

/* Waits for the client to close the connection. */
static void srv_expect_eof(struct tp *t, struct srv *s)
{
    for (int waited = 0; srv_fill(s); waited += 5) {
        assert_true(waited < TP_WAIT_MS);
        tp_spin(t, 5);
    }
}

static void srv_write(struct srv *s, struct buf *b)
{
    while (buf_used(b) > 0) {
        ssize_t n = send(s->fd, buf_head(b), buf_used(b), MSG_NOSIGNAL);
        assert_true(n > 0);
        buf_consume(b, (size_t)n);
    }
    buf_free(b);
}

static void srv_ack(struct srv *s, uint32_t id, uint32_t subscribers, const char *msg_id)
{
    struct buf b = { 0 };
    assert_int_equal(ipc_encode_ack(&b, id, subscribers, msg_id, strlen(msg_id)), 0);
    srv_write(s, &b);
}

/* (1) Two requests queued in one pass go out together; the answers, sent
 * in one write, complete them in order. */
static void test_pipelined_acks_in_order(void **state)
{
    struct tp *t = *state;
    struct tp_done a = { 0 }, b = { 0 };
    assert_int_equal(tp_publish(t, "news", "{\"n\":1}", 1000, &a, NULL), 0);
    assert_int_equal(tp_publish(t, "user/bob", "[2]", 1000, &b, NULL), 0);
    assert_int_equal(pubc_pending(t->pc), 2);

    struct srv s = srv_accept(t);
    struct srv_req ra = srv_request(t, &s), rb = srv_request(t, &s);
    assert_int_equal(ra.type, IPC_PUBLISH);
    assert_int_equal(ra.nchannels, 1);
    assert_string_equal(ra.channel, "news");
    assert_string_equal(ra.data, "{\"n\":1}");
    assert_string_equal(rb.channel, "user/bob");
    assert_string_equal(rb.data, "[2]");
    assert_int_not_equal(ra.id, rb.id);

    struct buf out = { 0 };
    assert_int_equal(ipc_encode_ack(&out, ra.id, 3, "m-1", 3), 0);
    assert_int_equal(ipc_encode_ack(&out, rb.id, 5, "m-2", 3), 0);
    srv_write(&s, &out);
    tp_spin_until_done(t, &b);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.res.count, 3);
    assert_string_equal(a.res.id, "m-1");
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.res.count, 5);
    assert_string_equal(b.res.id, "m-2");
    assert_int_equal(pubc_pending(t->pc), 0);

    /* The connection stays for the next request. */
    struct tp_done c = { 0 };
    assert_int_equal(tp_publish(t, "news", "3", 1000, &c, NULL), 0);
    struct srv_req rc = srv_request(t, &s);
    srv_ack(&s, rc.id, 0, "m-3");
    tp_spin_until_done(t, &c);
    assert_int_equal(c.rc, 0);
    assert_string_equal(c.res.id, "m-3");
    srv_close(&s);
}

/* (2) An ERROR answer is REFUSED with ws-server's code and text and leaves
 * the connection usable; DISCONNECTED completes a disconnect. */
static void test_error_answer_and_disconnect(void **state)
{
    struct tp *t = *state;
    struct tp_done a = { 0 }, b = { 0 };
    uint64_t ticket;
    assert_int_equal(tp_publish(t, "news", "1", 1000, &a, NULL), 0);
    assert_int_equal(pubc_disconnect(t->pc, "alice", 1000, tp_cb, &b, &ticket), 0);
    struct srv s = srv_accept(t);
    struct srv_req ra = srv_request(t, &s), rb = srv_request(t, &s);
    assert_int_equal(rb.type, IPC_DISCONNECT);
    assert_string_equal(rb.user, "alice");

    struct buf out = { 0 };
    assert_int_equal(ipc_encode_error(&out, ra.id, IPC_ERR_NOT_ALLOWED, "no publishing here"), 0);
    assert_int_equal(ipc_encode_disconnected(&out, rb.id, 2), 0);
    srv_write(&s, &out);
    tp_spin_until_done(t, &b);
    assert_int_equal(a.rc, PUBC_E_REFUSED);
    assert_int_equal(a.res.code, IPC_ERR_NOT_ALLOWED);
    assert_string_equal(a.res.text, "no publishing here");
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.res.count, 2);
    srv_close(&s);
}

/* (3) An answer that is not for the oldest request fails every request
 * with PROTO and drops the connection; so does an answer of the wrong
 * type. */
static void test_wrong_answer_fails_all(void **state)
{
    struct tp *t = *state;
    struct tp_done a = { 0 }, b = { 0 };
    assert_int_equal(tp_publish(t, "news", "1", 1000, &a, NULL), 0);
    assert_int_equal(tp_publish(t, "news", "2", 1000, &b, NULL), 0);
    struct srv s = srv_accept(t);
    struct srv_req ra = srv_request(t, &s), rb = srv_request(t, &s);
    (void)ra;
    srv_ack(&s, rb.id, 1, "m-2");
    tp_spin_until_done(t, &a);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.rc, PUBC_E_PROTO);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.rc, PUBC_E_PROTO);
    assert_int_equal(pubc_pending(t->pc), 0);
    srv_expect_eof(t, &s);
    srv_close(&s);

    /* DISCONNECTED for a publish. */
    struct tp_done c = { 0 };
    assert_int_equal(tp_publish(t, "news", "3", 1000, &c, NULL), 0);
    s = srv_accept(t);
    struct srv_req rc = srv_request(t, &s);
    struct buf out = { 0 };
    assert_int_equal(ipc_encode_disconnected(&out, rc.id, 1), 0);
    srv_write(&s, &out);
    tp_spin_until_done(t, &c);
    assert_int_equal(c.rc, PUBC_E_PROTO);
    srv_expect_eof(t, &s);
    srv_close(&s);
}

/* (4) No answer by the oldest request's deadline: every request fails
 * with TIMEOUT and the connection is dropped. */
static void test_timeout_fails_all(void **state)
{
    struct tp *t = *state;
    struct tp_done a = { 0 }, b = { 0 };
    uint64_t t0 = ev_now(t->loop);
    assert_int_equal(tp_publish(t, "news", "1", 60, &a, NULL), 0);
    assert_int_equal(tp_publish(t, "news", "2", 5000, &b, NULL), 0);
    struct srv s = srv_accept(t);
    srv_request(t, &s);
    srv_request(t, &s);
    tp_spin_until_done(t, &a);
    assert_true(ev_now(t->loop) - t0 >= 60);
    assert_int_equal(a.rc, PUBC_E_TIMEOUT);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.rc, PUBC_E_TIMEOUT);
    assert_int_equal(pubc_pending(t->pc), 0);
    srv_expect_eof(t, &s);
    srv_close(&s);
}

/* (5) The server closed an idle connection (a restart): the next request
 * goes out on a new one without error, whether or not the client saw the
 * EOF first. */
static void test_idle_close_then_new_connection(void **state)
{
    struct tp *t = *state;
    struct tp_done a = { 0 }, b = { 0 }, c = { 0 };
    assert_int_equal(tp_publish(t, "news", "1", 1000, &a, NULL), 0);
    struct srv s = srv_accept(t);
    srv_ack(&s, srv_request(t, &s).id, 1, "m-1");
    tp_spin_until_done(t, &a);
    assert_int_equal(a.rc, 0);

    /* Closed with no loop pass in between: the send meets EPIPE before a
     * byte of the request went out, so it moves to a new connection. */
    srv_close(&s);
    assert_int_equal(tp_publish(t, "news", "2", 1000, &b, NULL), 0);
    pubc_flush(t->pc);
    assert_int_equal(b.calls, 0);
    s = srv_accept(t);
    struct srv_req rb = srv_request(t, &s);
    assert_string_equal(rb.data, "2");
    srv_ack(&s, rb.id, 2, "m-2");
    tp_spin_until_done(t, &b);
    assert_int_equal(b.rc, 0);
    assert_string_equal(b.res.id, "m-2");

    /* Closed while the client's loop runs: it sees the EOF and closes
     * quietly; the next request connects anew. */
    srv_close(&s);
    tp_spin(t, 20);
    assert_int_equal(tp_publish(t, "news", "3", 1000, &c, NULL), 0);
    s = srv_accept(t);
    struct srv_req rc = srv_request(t, &s);
    srv_ack(&s, rc.id, 3, "m-3");
    tp_spin_until_done(t, &c);
    assert_int_equal(c.rc, 0);
    assert_string_equal(c.res.id, "m-3");
    srv_close(&s);
}

/* The server closes after reading a request and before answering: that
 * request may have been published, so it fails UNAVAILABLE, not retried. */
static void test_close_after_send_is_unavailable(void **state)
{
    struct tp *t = *state;
    struct tp_done a = { 0 };
    assert_int_equal(tp_publish(t, "news", "1", 1000, &a, NULL), 0);
    struct srv s = srv_accept(t);
    srv_request(t, &s);
    srv_close(&s);
    tp_spin_until_done(t, &a);
    assert_int_equal(a.rc, PUBC_E_UNAVAILABLE);
    assert_int_equal(pubc_pending(t->pc), 0);
    /* Nothing came back on a new connection. */
    assert_int_equal(accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK), -1);
}

/* ws-server went away for good: the request not yet sent gets one new
 * connection, which cannot be made, so it fails UNAVAILABLE through its
 * callback (pubc_publish had already returned 0). */
static void test_restart_without_listener(void **state)
{
    struct tp *t = *state;
    struct tp_done a = { 0 }, b = { 0 };
    assert_int_equal(tp_publish(t, "news", "1", 1000, &a, NULL), 0);
    struct srv s = srv_accept(t);
    srv_ack(&s, srv_request(t, &s).id, 1, "m-1");
    tp_spin_until_done(t, &a);
    srv_close(&s);
    close(t->lfd);
    t->lfd = -1;
    unlink(t->path);
    assert_int_equal(tp_publish(t, "news", "2", 1000, &b, NULL), 0);
    tp_spin_until_done(t, &b);
    assert_int_equal(b.rc, PUBC_E_UNAVAILABLE);
    assert_int_equal(pubc_pending(t->pc), 0);
}

/* (6) No listener: UNAVAILABLE at once, and no callback ever. */
static void test_no_listener_unavailable_at_once(void **state)
{
    struct tp *t = *state;
    close(t->lfd);
    t->lfd = -1;
    struct tp_done a = { 0 };
    assert_int_equal(tp_publish(t, "news", "1", 1000, &a, NULL), PUBC_E_UNAVAILABLE);
    uint64_t ticket;
    assert_int_equal(pubc_disconnect(t->pc, "bob", 1000, tp_cb, &a, &ticket), PUBC_E_UNAVAILABLE);
    assert_int_equal(pubc_pending(t->pc), 0);
    unlink(t->path);
    assert_int_equal(tp_publish(t, "news", "1", 1000, &a, NULL), PUBC_E_UNAVAILABLE);
    tp_spin(t, 20);
    assert_int_equal(a.calls, 0);
}

/* (7) A cancelled request's callback never runs; the next one's does. */
static void test_cancel(void **state)
{
    struct tp *t = *state;
    struct tp_done a = { 0 }, b = { 0 };
    uint64_t ta, tb;
    assert_int_equal(tp_publish(t, "news", "1", 1000, &a, &ta), 0);
    assert_int_equal(tp_publish(t, "news", "2", 1000, &b, &tb), 0);
    assert_int_not_equal(ta, tb);
    pubc_cancel(t->pc, ta);
    pubc_cancel(t->pc, 999999);        /* unknown: ignored */
    struct srv s = srv_accept(t);
    struct srv_req ra = srv_request(t, &s), rb = srv_request(t, &s);
    srv_ack(&s, ra.id, 1, "m-1");
    srv_ack(&s, rb.id, 2, "m-2");
    tp_spin_until_done(t, &b);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.rc, 0);
    assert_string_equal(b.res.id, "m-2");
    assert_int_equal(pubc_pending(t->pc), 0);
    srv_close(&s);
}

/* (8) Arguments outside the protocol's range: INVALID at once, nothing
 * queued, no connection made. */
static void test_invalid_arguments(void **state)
{
    struct tp *t = *state;
    struct tp_done a = { 0 };
    uint64_t ticket;
    char long_name[300];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    struct str ch[WSPUSH_MAX_CHANNELS + 1];
    for (int i = 0; i <= WSPUSH_MAX_CHANNELS; i++)
        ch[i] = (struct str){ "news", 4 };

    assert_int_equal(pubc_publish(t->pc, ch, 0, "1", 1, 1000, tp_cb, &a, &ticket), PUBC_E_INVALID);
    assert_int_equal(pubc_publish(t->pc, ch, WSPUSH_MAX_CHANNELS + 1, "1", 1, 1000, tp_cb, &a, &ticket),
                     PUBC_E_INVALID);
    assert_int_equal(pubc_publish(t->pc, ch, 1, "1", (size_t)UINT32_MAX + 1, 1000, tp_cb, &a,
                                  &ticket), PUBC_E_INVALID);
    struct str empty = { "", 0 }, longer = { long_name, 256 };
    assert_int_equal(pubc_publish(t->pc, &empty, 1, "1", 1, 1000, tp_cb, &a, &ticket),
                     PUBC_E_INVALID);
    assert_int_equal(pubc_publish(t->pc, &longer, 1, "1", 1, 1000, tp_cb, &a, &ticket),
                     PUBC_E_INVALID);
    assert_int_equal(pubc_disconnect(t->pc, "", 1000, tp_cb, &a, &ticket), PUBC_E_INVALID);
    long_name[256] = '\0';
    assert_int_equal(pubc_disconnect(t->pc, long_name, 1000, tp_cb, &a, &ticket), PUBC_E_INVALID);
    assert_int_equal(pubc_pending(t->pc), 0);
    tp_spin(t, 10);
    assert_int_equal(a.calls, 0);
    assert_int_equal(accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK), -1);

    /* Paths that do not fit a Unix socket address. */
    char path[PUBC_PATH_MAX + 1];
    memset(path, 'p', sizeof path - 1);
    path[sizeof path - 1] = '\0';
    assert_null(pubc_new(t->loop, path));
    assert_null(pubc_new(t->loop, ""));
    assert_int_equal(pubc_set_path(t->pc, path), PUBC_E_INVALID);

    /* 255 bytes is still a valid user; the request is queued. */
    long_name[255] = '\0';
    assert_int_equal(pubc_disconnect(t->pc, long_name, 1000, tp_cb, &a, &ticket), 0);
    assert_int_equal(pubc_pending(t->pc), 1);
}

/* More requests in flight than the queue first holds, with answers taken
 * in between so that the ring wraps before it grows. */
static void test_many_in_flight(void **state)
{
    struct tp *t = *state;
    enum { N = 40 };
    struct tp_done d[N];
    struct srv_req r[N];
    memset(d, 0, sizeof d);
    for (int i = 0; i < 6; i++)
        assert_int_equal(tp_publish(t, "news", "1", 1000, &d[i], NULL), 0);
    struct srv s = srv_accept(t);
    for (int i = 0; i < 6; i++)
        r[i] = srv_request(t, &s);
    for (int i = 0; i < 4; i++)
        srv_ack(&s, r[i].id, (uint32_t)i, "m");
    tp_spin_until_done(t, &d[3]);
    assert_int_equal(pubc_pending(t->pc), 2);
    for (int i = 6; i < N; i++)
        assert_int_equal(tp_publish(t, "news", "1", 1000, &d[i], NULL), 0);
    for (int i = 6; i < N; i++)
        r[i] = srv_request(t, &s);
    for (int i = 4; i < N; i++)
        srv_ack(&s, r[i].id, (uint32_t)i, "m");
    tp_spin_until_done(t, &d[N - 1]);
    for (int i = 0; i < N; i++) {
        assert_int_equal(d[i].calls, 1);
        assert_int_equal(d[i].rc, 0);
        assert_int_equal(d[i].res.count, (uint32_t)i);
    }
    assert_int_equal(pubc_pending(t->pc), 0);
    srv_close(&s);
}

/* A frame larger than the socket buffer goes out over several passes
 * (EV_WRITE), and a request queued behind it follows intact. */
static void test_large_frame_partial_sends(void **state)
{
    struct tp *t = *state;
    size_t len = 4u << 20;
    char *data = malloc(len + 1);
    assert_non_null(data);
    memset(data, 'x', len);
    data[0] = '"';
    data[len - 1] = '"';
    data[len] = '\0';
    struct tp_done a = { 0 }, b = { 0 };
    assert_int_equal(tp_publish(t, "big", data, 2000, &a, NULL), 0);
    assert_int_equal(tp_publish(t, "small", "1", 2000, &b, NULL), 0);
    free(data);
    struct srv s = srv_accept(t);
    struct srv_req ra = srv_request(t, &s), rb = srv_request(t, &s);
    assert_int_equal(ra.data_len, len);
    assert_string_equal(rb.channel, "small");
    srv_ack(&s, ra.id, 1, "m-1");
    srv_ack(&s, rb.id, 1, "m-2");
    tp_spin_until_done(t, &b);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    srv_close(&s);
}

/* A new path applies once the connection is idle: the request in flight
 * completes on the old connection, the next goes to the new socket. */
static void test_set_path_once_idle(void **state)
{
    struct tp *t = *state;
    struct tp_done a = { 0 }, b = { 0 };
    assert_int_equal(tp_publish(t, "news", "1", 1000, &a, NULL), 0);
    struct srv s = srv_accept(t);
    struct srv_req ra = srv_request(t, &s);

    char other[PUBC_PATH_MAX];
    snprintf(other, sizeof other, "%s/other.sock", t->dir);
    int lfd2 = tp_listen(other);
    assert_int_equal(pubc_set_path(t->pc, other), 0);
    srv_ack(&s, ra.id, 1, "m-1");
    tp_spin_until_done(t, &a);
    assert_int_equal(a.rc, 0);
    srv_expect_eof(t, &s);
    srv_close(&s);

    assert_int_equal(tp_publish(t, "news", "2", 1000, &b, NULL), 0);
    int old_lfd = t->lfd;
    t->lfd = lfd2;
    s = srv_accept(t);
    t->lfd = old_lfd;
    srv_ack(&s, srv_request(t, &s).id, 2, "m-2");
    tp_spin_until_done(t, &b);
    assert_int_equal(b.rc, 0);
    assert_int_equal(accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK), -1);

    /* Idle already: closed at once. */
    assert_int_equal(pubc_set_path(t->pc, t->path), 0);
    assert_int_equal(srv_fill(&s), 0);
    srv_close(&s);
    close(lfd2);
}

/* An answer callback queues and flushes a request on a connection the
 * server has just closed: the request sent earlier fails, the new one is
 * retried, and the failure's callback runs after the answer's returned,
 * not inside it. */
struct tp_nest {
    struct tp     *t;
    int            depth;
    int            order[2];    /* tags of the callbacks, in the order they ran */
    int            n;
    struct tp_done c;           /* the request queued from the first callback */
};

struct tp_nest_req {
    struct tp_nest *nt;
    int             tag;        /* 1 = answered, 2 = fails */
    struct tp_done  done;
};

static void tp_nest_cb(void *ctx, int rc, const struct pubc_result *res)
{
    struct tp_nest_req *q = ctx;
    struct tp_nest *nt = q->nt;
    assert_int_equal(nt->depth, 0);
    nt->depth++;
    nt->order[nt->n++] = q->tag;
    tp_cb(&q->done, rc, res);
    if (q->tag == 1) {
        assert_int_equal(tp_publish(nt->t, "news", "3", 1000, &nt->c, NULL), 0);
        pubc_flush(nt->t->pc);
    }
    nt->depth--;
}

static void test_failure_inside_callback_is_deferred(void **state)
{
    struct tp *t = *state;
    struct tp_nest nt = { .t = t };
    struct tp_nest_req a = { &nt, 1, { 0 } }, b = { &nt, 2, { 0 } };
    struct str news = { "news", 4 };
    uint64_t ticket;
    assert_int_equal(pubc_publish(t->pc, &news, 1, "1", 1, 1000, tp_nest_cb, &a, &ticket), 0);
    assert_int_equal(pubc_publish(t->pc, &news, 1, "2", 1, 1000, tp_nest_cb, &b, &ticket), 0);
    struct srv s = srv_accept(t);
    struct srv_req ra = srv_request(t, &s);
    srv_request(t, &s);
    srv_ack(&s, ra.id, 1, "m-1");
    srv_close(&s);
    tp_spin_until_done(t, &b.done);
    assert_int_equal(nt.n, 2);
    assert_int_equal(nt.order[0], 1);
    assert_int_equal(nt.order[1], 2);
    assert_int_equal(a.done.rc, 0);
    assert_int_equal(b.done.rc, PUBC_E_UNAVAILABLE);
    s = srv_accept(t);
    struct srv_req rc = srv_request(t, &s);
    assert_string_equal(rc.data, "3");
    srv_ack(&s, rc.id, 3, "m-3");
    tp_spin_until_done(t, &nt.c);
    assert_int_equal(nt.c.rc, 0);
    srv_close(&s);
}

/* A failure callback queues the next request from inside the loop: it
 * gets a connection of its own. */
struct tp_chain {
    struct tp     *t;
    int            calls;
    int            rcs[4];
    struct tp_done last;
};

static void tp_chain_cb(void *ctx, int rc, const struct pubc_result *res)
{
    (void)res;
    struct tp_chain *ch = ctx;
    ch->rcs[ch->calls++] = rc;
    if (ch->calls == 2)
        assert_int_equal(tp_publish(ch->t, "news", "last", 1000, &ch->last, NULL), 0);
}

static void test_callbacks_queue_more(void **state)
{
    struct tp *t = *state;
    struct tp_chain ch = { .t = t };
    struct str news = { "news", 4 };
    uint64_t ticket;
    assert_int_equal(pubc_publish(t->pc, &news, 1, "1", 1, 1000, tp_chain_cb, &ch, &ticket), 0);
    assert_int_equal(pubc_publish(t->pc, &news, 1, "2", 1, 1000, tp_chain_cb, &ch, &ticket), 0);
    struct srv s = srv_accept(t);
    srv_request(t, &s);
    srv_request(t, &s);
    /* Both were sent: the break fails both; the second's callback queues
     * a request that gets a new connection. */
    srv_close(&s);
    s = srv_accept(t);
    assert_int_equal(ch.calls, 2);
    assert_int_equal(ch.rcs[0], PUBC_E_UNAVAILABLE);
    assert_int_equal(ch.rcs[1], PUBC_E_UNAVAILABLE);
    struct srv_req r = srv_request(t, &s);
    assert_string_equal(r.data, "last");
    srv_ack(&s, r.id, 7, "m-last");
    tp_spin_until_done(t, &ch.last);
    assert_int_equal(ch.last.rc, 0);
    assert_int_equal(ch.last.res.count, 7);
    srv_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pipelined_acks_in_order, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_error_answer_and_disconnect, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_answer_fails_all, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_fails_all, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_idle_close_then_new_connection, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_close_after_send_is_unavailable, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_no_listener_unavailable_at_once, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_large_frame_partial_sends, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_set_path_once_idle, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_callbacks_queue_more, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_failure_inside_callback_is_deferred, tp_setup,
                                        tp_teardown),
        cmocka_unit_test_setup_teardown(test_restart_without_listener, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_many_in_flight, tp_setup, tp_teardown),
    };
    return cmocka_run_group_tests_name("pubclient", tests, NULL, NULL);
}
