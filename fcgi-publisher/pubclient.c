#include "pubclient.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"

/* Answers are small (an id, a short error text). */
#define PUBC_MAX_ANSWER 4096
#define PUBC_READ_CHUNK 4096

/* One request, from pubc_publish() until its callback has run.
 *
 * Frames are placed by their position in the out stream: every byte ever
 * queued has one, and out_pos is the position of the first byte still in
 * c->out. So start < out_pos says part of the frame reached a connection
 * (ws-server may have acted on it) and end <= out_pos says all of it did;
 * an unsent frame is still whole in c->out and can go to a new connection
 * without a copy. */
struct pubc_req {
    uint64_t      ticket;
    uint64_t      deadline;       /* ev_now() ms */
    uint64_t      start, end;     /* the frame's place in the out stream */
    pubc_done_cb *cb;             /* NULL: cancelled */
    void         *ctx;
    int           rc;             /* the failure to report, once failed */
    uint32_t      req_id;
    uint8_t       expect;         /* the success answer: IPC_ACK or IPC_DISCONNECTED */
    uint8_t       retried;        /* already moved to a new connection once */
};

/* The requests in send order: a ring whose capacity doubles when full, so
 * the steady state allocates nothing. The first pubc.ndone entries have
 * failed and wait for their callback (failures are always of the oldest
 * requests, so they form a prefix); the rest wait for an answer. */
struct pubc_ring {
    struct pubc_req *v;
    size_t           cap;         /* 0 or a power of two */
    size_t           head;
    size_t           n;
};

struct pubc {
    ev_loop_t       *loop;
    char             path[PUBC_PATH_MAX];
    int              fd;          /* -1 when not connected */
    int              path_changed;  /* close the connection once idle */
    int              in_cb;       /* a callback is running: failures queue up */
    uint64_t         conn_gen;    /* changes at each close and connect: tells a
                                     reader that a callback replaced the
                                     connection (and emptied in) */
    struct ev_io     io;
    struct ev_timer  timer;       /* deadline of the oldest request waiting */
    uint32_t         next_id;
    uint64_t         next_ticket;
    /* Invariant: out holds only bytes of waiting requests, and holds none
     * while fd < 0 (a break either reconnects or fails them all). */
    struct buf       out;         /* frames queued, not yet sent */
    uint64_t         out_pos;     /* stream position of buf_head(&out) */
    struct buf       in;          /* answers read, not yet decoded */
    struct pubc_ring reqs;
    size_t           ndone;       /* failed, callback not yet run */
    pubc_link_cb    *on_link;     /* optional: the connection opened / closed */
    void            *link_ctx;
};

static const struct pubc_result pubc_no_result;

static struct pubc_req *pubc_ring_at(const struct pubc_ring *r, size_t i)
{
    return &r->v[(r->head + i) & (r->cap - 1)];
}

/* Makes room for one more request. */
static int pubc_ring_reserve(struct pubc_ring *r)
{
    if (r->n < r->cap)
        return 0;
    size_t cap = r->cap ? r->cap * 2 : 8;
    struct pubc_req *v = malloc(cap * sizeof *v);
    if (!v)
        return PUBC_E_NOMEM;
    for (size_t i = 0; i < r->n; i++)
        v[i] = *pubc_ring_at(r, i);
    free(r->v);
    r->v = v;
    r->cap = cap;
    r->head = 0;
    return 0;
}

static struct pubc_req pubc_ring_shift(struct pubc_ring *r)
{
    struct pubc_req q = r->v[r->head];
    r->head = (r->head + 1) & (r->cap - 1);
    r->n--;
    return q;
}

static size_t pubc_waiting(const pubc_t *c) { return c->reqs.n - c->ndone; }

static struct pubc_req *pubc_oldest(const pubc_t *c) { return pubc_ring_at(&c->reqs, c->ndone); }

static void pubc_on_io(ev_loop_t *loop, struct ev_io *io, unsigned events);
static void pubc_on_timeout(ev_loop_t *loop, struct ev_timer *t);

pubc_t *pubc_new(ev_loop_t *loop, const char *path)
{
    size_t n = strlen(path);
    if (n == 0 || n >= PUBC_PATH_MAX)
        return NULL;
    pubc_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    memcpy(c->path, path, n + 1);
    c->fd = -1;
    c->next_id = 1;
    c->next_ticket = 1;
    return c;
}

/* Closes the connection only: the requests and c->out are the caller's
 * business. */
static void pubc_hangup(pubc_t *c)
{
    if (c->fd < 0)
        return;
    ev_io_stop(c->loop, &c->io);
    close(c->fd);
    c->fd = -1;
    c->conn_gen++;
    c->path_changed = 0;
    buf_reset(&c->in);
    if (c->on_link)
        c->on_link(c->link_ctx, 0);
}

/* Forgets the unsent bytes (their requests are failing). */
static void pubc_drop_out(pubc_t *c)
{
    c->out_pos += buf_used(&c->out);
    buf_reset(&c->out);
}

void pubc_free(pubc_t *c)
{
    if (!c)
        return;
    pubc_hangup(c);
    ev_timer_stop(c->loop, &c->timer);
    buf_free(&c->out);
    buf_free(&c->in);
    free(c->reqs.v);
    free(c);
}

int pubc_set_path(pubc_t *c, const char *path)
{
    size_t n = strlen(path);
    if (n == 0 || n >= PUBC_PATH_MAX)
        return PUBC_E_INVALID;
    memcpy(c->path, path, n + 1);
    if (c->fd >= 0) {
        if (pubc_waiting(c) == 0)
            pubc_hangup(c);
        else
            c->path_changed = 1;
    }
    return 0;
}

static int pubc_connect(pubc_t *c)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return PUBC_E_UNAVAILABLE;
    /* A Unix connect never goes "in progress": it succeeds, or fails with
     * EAGAIN when the backlog is full, which counts as unavailable too. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        ev_io_start(c->loop, &c->io, fd, EV_READ, pubc_on_io) < 0) {
        close(fd);
        return PUBC_E_UNAVAILABLE;
    }
    c->fd = fd;
    c->conn_gen++;
    if (c->on_link)
        c->on_link(c->link_ctx, 1);
    return 0;
}

int pubc_open(pubc_t *c)
{
    return c->fd >= 0 ? 0 : pubc_connect(c);
}

void pubc_on_link(pubc_t *c, pubc_link_cb *cb, void *ctx)
{
    c->on_link = cb;
    c->link_ctx = ctx;
}

/* Keeps the timer on the oldest waiting request's deadline. Fails only
 * when the timer is not armed and the loop cannot grow its heap. */
static int pubc_arm(pubc_t *c)
{
    if (pubc_waiting(c) == 0) {
        ev_timer_stop(c->loop, &c->timer);
        return 0;
    }
    uint64_t deadline = pubc_oldest(c)->deadline, now = ev_now(c->loop);
    if (ev_timer_armed(&c->timer) && c->timer.when == deadline)
        return 0;
    return ev_timer_start(c->loop, &c->timer, deadline > now ? deadline - now : 0,
                          pubc_on_timeout) < 0 ? PUBC_E_NOMEM : 0;
}

/* Runs the callbacks of failed requests. A callback may queue, cancel or
 * flush, and what fails meanwhile joins the same queue: callbacks never
 * nest. */
static void pubc_deliver(pubc_t *c)
{
    if (c->in_cb)
        return;
    c->in_cb = 1;
    while (c->ndone > 0) {
        struct pubc_req q = pubc_ring_shift(&c->reqs);
        c->ndone--;
        if (q.cb)
            q.cb(q.ctx, q.rc, &pubc_no_result);
    }
    c->in_cb = 0;
    pubc_arm(c);
}

/* Fails every waiting request with rc and drops the connection: once the
 * stream is in doubt no later answer can be trusted to match. */
static void pubc_fail_all(pubc_t *c, int rc)
{
    pubc_hangup(c);
    pubc_drop_out(c);
    for (size_t i = c->ndone; i < c->reqs.n; i++)
        pubc_ring_at(&c->reqs, i)->rc = rc;
    c->ndone = c->reqs.n;
}

/* The connection broke (EOF, reset, EPIPE). Requests that put bytes on it
 * fail, since ws-server may have acted on them. The others go to one new
 * connection, once: a ws-server restart between two requests costs none,
 * but a server that keeps dying does not keep them forever. Sent frames
 * come before unsent ones and retried ones before the rest (they were the
 * whole queue when moved), so the failures are the oldest requests. */
static void pubc_break(pubc_t *c)
{
    pubc_hangup(c);
    while (pubc_waiting(c) > 0) {
        struct pubc_req *q = pubc_oldest(c);
        if (q->start >= c->out_pos && !q->retried)
            break;
        q->rc = PUBC_E_UNAVAILABLE;
        c->ndone++;
    }
    if (pubc_waiting(c) == 0) {
        pubc_drop_out(c);
        return;
    }
    /* Drop the unsent tails of the failed frames; the rest go out whole. */
    uint64_t start = pubc_oldest(c)->start;
    buf_consume(&c->out, (size_t)(start - c->out_pos));
    c->out_pos = start;
    for (size_t i = c->ndone; i < c->reqs.n; i++)
        pubc_ring_at(&c->reqs, i)->retried = 1;
    if (pubc_connect(c) < 0)
        pubc_fail_all(c, PUBC_E_UNAVAILABLE);
}

/* Sends c->out until it is empty or the socket is full. */
static void pubc_send(pubc_t *c)
{
    while (c->fd >= 0 && buf_used(&c->out) > 0) {
        ssize_t n = send(c->fd, buf_head(&c->out), buf_used(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            c->out_pos += (uint64_t)n;
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (ev_io_set(c->loop, &c->io, EV_READ | EV_WRITE) < 0)
                pubc_fail_all(c, PUBC_E_UNAVAILABLE);
            return;
        }
        pubc_break(c);      /* a retry may have reconnected: go on */
    }
    if (c->fd >= 0)
        ev_io_set(c->loop, &c->io, EV_READ);
}

void pubc_flush(pubc_t *c)
{
    pubc_send(c);
    pubc_deliver(c);
}

size_t pubc_pending(const pubc_t *c) { return c->reqs.n; }

static void pubc_copy(char *dst, size_t cap, const struct str *s)
{
    size_t n = s->len < cap - 1 ? s->len : cap - 1;
    memcpy(dst, s->p, n);
    dst[n] = '\0';
}

/* Turns a decoded answer into rc and *res; expect is the success type. */
static int pubc_answer(const struct ipc_msg *msg, uint8_t expect, struct pubc_result *res)
{
    if (msg->type == expect) {
        res->count = msg->count;
        if (expect == IPC_ACK)
            pubc_copy(res->id, sizeof res->id, &msg->id);
        return 0;
    }
    if (msg->type == IPC_ERROR) {
        res->code = msg->code;
        pubc_copy(res->text, sizeof res->text, &msg->text);
        return PUBC_E_REFUSED;
    }
    return PUBC_E_PROTO;
}

/* Completes requests with the whole answers in c->in, oldest first. Stops
 * when a callback closed the connection (c->in went with it). Runs from
 * the loop, where no failure is waiting for its callback (every entry
 * point delivers them before returning), so the oldest waiting request is
 * the ring's head. */
static void pubc_answers(pubc_t *c)
{
    uint64_t gen = c->conn_gen;
    while (c->conn_gen == gen) {
        struct ipc_msg msg;
        ssize_t n = ipc_decode(buf_head(&c->in), buf_used(&c->in), PUBC_MAX_ANSWER, &msg);
        if (n == IPC_NEED_MORE)
            return;
        struct pubc_result res;
        memset(&res, 0, sizeof res);
        struct pubc_req *q = pubc_waiting(c) > 0 ? pubc_oldest(c) : NULL;
        /* An answer to a frame not wholly sent cannot be the server's
         * answer to it. */
        int rc = n < 0 || !q || q->req_id != msg.req_id || q->end > c->out_pos
                     ? PUBC_E_PROTO : pubc_answer(&msg, q->expect, &res);
        if (rc == PUBC_E_PROTO) {
            pubc_fail_all(c, PUBC_E_PROTO);
            return;
        }
        buf_consume(&c->in, (size_t)n);
        struct pubc_req done = pubc_ring_shift(&c->reqs);
        /* Before the callback, so that what it queues goes to the new path. */
        if (c->path_changed && pubc_waiting(c) == 0)
            pubc_hangup(c);
        pubc_arm(c);
        if (done.cb) {
            c->in_cb = 1;
            done.cb(done.ctx, rc, &res);
            c->in_cb = 0;
            pubc_deliver(c);
        }
    }
}

/* Reads what is there and completes requests; EOF or an error breaks the
 * connection. */
static void pubc_read(pubc_t *c)
{
    uint64_t gen = c->conn_gen;
    for (;;) {
        if (buf_reserve(&c->in, PUBC_READ_CHUNK) < 0) {
            pubc_fail_all(c, PUBC_E_NOMEM);
            return;
        }
        size_t room = c->in.cap - c->in.len;
        ssize_t r = recv(c->fd, c->in.data + c->in.len, room, 0);
        if (r > 0) {
            c->in.len += (size_t)r;
            pubc_answers(c);
            /* A short read drained the socket; the loop is level-triggered
             * and tells again if more (or EOF) comes. */
            if (c->conn_gen != gen || (size_t)r < room)
                return;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        pubc_break(c);
        return;
    }
}

static void pubc_on_io(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    pubc_t *c = ev_container_of(io, pubc_t, io);
    if (events & EV_READ)
        pubc_read(c);
    if (events & EV_WRITE)
        pubc_send(c);
    pubc_deliver(c);
}

static void pubc_on_timeout(ev_loop_t *loop, struct ev_timer *t)
{
    pubc_t *c = ev_container_of(t, pubc_t, timer);
    if (pubc_waiting(c) > 0 && pubc_oldest(c)->deadline > ev_now(loop)) {
        pubc_arm(c);
        return;
    }
    pubc_fail_all(c, PUBC_E_TIMEOUT);
    pubc_deliver(c);
}

/* Takes the frame just appended to c->out back out. */
static void pubc_unqueue(pubc_t *c, size_t queued)
{
    c->out.len = c->out.off + queued;
    if (queued == 0)
        buf_reset(&c->out);
}

/* Queues the frame that was appended to c->out after its first `queued`
 * bytes, connecting first if need be; on failure c->out is as it was. */
static int pubc_queue(pubc_t *c, uint8_t expect, uint32_t req_id, size_t queued,
                      int timeout_ms, pubc_done_cb *cb, void *ctx, uint64_t *ticket)
{
    int rc = pubc_ring_reserve(&c->reqs);
    if (rc == 0 && c->fd < 0)
        rc = pubc_connect(c);
    if (rc < 0) {
        pubc_unqueue(c, queued);
        return rc;
    }
    struct pubc_req *q = pubc_ring_at(&c->reqs, c->reqs.n);
    *q = (struct pubc_req){
        .ticket = c->next_ticket,
        .deadline = ev_now(c->loop) + (uint64_t)(timeout_ms > 0 ? timeout_ms : 1),
        .start = c->out_pos + queued,
        .end = c->out_pos + buf_used(&c->out),
        .cb = cb,
        .ctx = ctx,
        .req_id = req_id,
        .expect = expect,
    };
    c->reqs.n++;
    if (pubc_arm(c) < 0) {
        c->reqs.n--;
        pubc_unqueue(c, queued);
        return PUBC_E_NOMEM;
    }
    *ticket = c->next_ticket++;
    return 0;
}

int pubc_publish(pubc_t *c, const struct str *channels, int n, const char *data, size_t len,
                 int timeout_ms, pubc_done_cb *cb, void *ctx, uint64_t *ticket)
{
    struct str ch[WSPUSH_MAX_CHANNELS];
    if (n < 1 || n > WSPUSH_MAX_CHANNELS || len > UINT32_MAX)
        return PUBC_E_INVALID;
    for (int i = 0; i < n; i++) {
        ch[i].p = channels[i].p;
        ch[i].len = channels[i].len;
    }
    uint32_t id = c->next_id;
    /* A count, not an index: encoding may move the unsent bytes. */
    size_t queued = buf_used(&c->out);
    int rc = ipc_encode_publish(&c->out, id, ch, n, data, len);
    if (rc < 0)
        return rc == -ENOMEM ? PUBC_E_NOMEM : PUBC_E_INVALID;
    rc = pubc_queue(c, IPC_ACK, id, queued, timeout_ms, cb, ctx, ticket);
    if (rc == 0)
        c->next_id++;
    return rc;
}

int pubc_disconnect(pubc_t *c, const char *user, int timeout_ms, pubc_done_cb *cb, void *ctx,
                    uint64_t *ticket)
{
    size_t ulen = strlen(user);
    if (ulen < 1 || ulen > 255)
        return PUBC_E_INVALID;
    uint32_t id = c->next_id;
    size_t queued = buf_used(&c->out);
    int rc = ipc_encode_disconnect(&c->out, id, user, ulen);
    if (rc < 0)
        return rc == -ENOMEM ? PUBC_E_NOMEM : PUBC_E_INVALID;
    rc = pubc_queue(c, IPC_DISCONNECTED, id, queued, timeout_ms, cb, ctx, ticket);
    if (rc == 0)
        c->next_id++;
    return rc;
}

void pubc_cancel(pubc_t *c, uint64_t ticket)
{
    for (size_t i = 0; i < c->reqs.n; i++) {
        struct pubc_req *q = pubc_ring_at(&c->reqs, i);
        if (q->ticket == ticket) {
            q->cb = NULL;
            return;
        }
    }
}

const char *pubc_strerror(int code)
{
    switch (code) {
    case PUBC_E_UNAVAILABLE: return "ws-server unavailable";
    case PUBC_E_TIMEOUT:     return "ws-server did not answer in time";
    case PUBC_E_REFUSED:     return "ws-server refused the request";
    case PUBC_E_PROTO:       return "unexpected answer from ws-server";
    case PUBC_E_INVALID:     return "invalid request";
    case PUBC_E_NOMEM:       return "out of memory";
    default:                 return "publish failed";
    }
}
