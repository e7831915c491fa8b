#include "front.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "fcgi.h"
#include "list.h"
#include "listener.h"
#include "log.h"

#define FRONT_READ_CHUNK     16384
/* Bytes read from one connection per wake-up: the others get their turn. */
#define FRONT_READ_PER_PASS  (256 * 1024)
#define FRONT_ACCEPT_PER_PASS 64
/* A buffer grown past this by one big request is released once it is
 * answered, so a keep-alive connection idles small. */
#define FRONT_KEEP_BUF_MAX   (64 * 1024)
/* Answers a web server has not read yet: past this, its connection is not
 * read from until they drain, so one that only writes cannot grow us. */
#define FRONT_OUT_PAUSE      (64 * 1024)
/* What GET_VALUES announces: nginx and Apache only ask out of courtesy. */
#define FRONT_ANNOUNCED_CONNS "1024"

enum front_state {
    FRONT_IDLE,      /* between requests */
    FRONT_PARAMS,    /* BEGIN_REQUEST seen, reading PARAMS */
    FRONT_STDIN,     /* PARAMS complete, reading the body */
    FRONT_HANDED,    /* given to on_request, waiting for front_reply */
};

struct front_pair {
    uint32_t name;   /* offsets into strs of NUL-terminated strings */
    uint32_t value;
};

struct front_req {
    struct front_conn *conn;
    uint16_t           id;
    uint8_t            state;
    uint8_t            keep_conn;
    uint8_t            truncated;
    struct buf         raw;       /* the PARAMS stream, reassembled */
    struct buf         strs;      /* name\0value\0... once PARAMS ended */
    struct front_pair *pairs;
    int                npairs, pairs_cap;
    struct front_limits limits;   /* those in force when the request began */
    struct buf         body;      /* the kept part of the body */
    size_t             body_sent; /* what the web server sent in all */
    void              *data;
};

struct front_conn {
    struct ev_io       io;
    struct ev_timer    stall;         /* armed while a request is being received */
    uint64_t           last_rx;       /* ev_now() of the last bytes read */
    front_t           *f;
    struct buf         in, out;
    struct front_req   req;
    /* On f->conns while open; on f->dead from front_conn_close() until
     * front_flush() frees it (never inside its own callback). */
    struct list_node   node;
    struct front_conn *next_dirty;    /* output waiting for front_flush (if dirty) */
    uint8_t            dirty, closing, dead;
};

struct front {
    ev_loop_t            *loop;
    /* Accepts on a duplicate of the caller's fd (listener_stop closes it;
     * the caller's stays the caller's, as front.h promises). */
    struct listener       listener;
    struct front_handlers h;
    struct front_limits   limits;
    struct list           conns, dead;
    /* Singly linked through next_dirty, pushed at the head: O(1), and a
     * connection is on it at most once (its dirty flag). */
    struct front_conn    *dirty;
    size_t                busy;
    int                   stopping;
};

static void front_conn_io(ev_loop_t *loop, struct ev_io *io, unsigned events);

/* ---- requests ---------------------------------------------------------- */

static void front_req_reset(struct front_req *r)
{
    r->state = FRONT_IDLE;
    r->truncated = 0;
    r->npairs = 0;
    r->body_sent = 0;
    r->data = NULL;
    struct buf *bufs[] = { &r->raw, &r->strs, &r->body };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (bufs[i]->cap > FRONT_KEEP_BUF_MAX)
            buf_free(bufs[i]);
        else
            buf_reset(bufs[i]);
    }
}

static void front_req_free(struct front_req *r)
{
    buf_free(&r->raw);
    buf_free(&r->strs);
    buf_free(&r->body);
    free(r->pairs);
}

static int front_add_pair(struct front_req *r, const struct fcgi_pair *p)
{
    if (r->npairs == FRONT_PARAMS_COUNT_MAX) {
        r->truncated = 1;
        return 0;
    }
    if (r->npairs == r->pairs_cap) {
        int cap = r->pairs_cap ? r->pairs_cap * 2 : 32;
        struct front_pair *np = realloc(r->pairs, (size_t)cap * sizeof *np);
        if (!np)
            return -ENOMEM;
        r->pairs = np;
        r->pairs_cap = cap;
    }
    static const char nul = '\0';
    struct front_pair *fp = &r->pairs[r->npairs];
    fp->name = (uint32_t)r->strs.len;
    if (buf_append(&r->strs, p->name, p->name_len) < 0 || buf_append(&r->strs, &nul, 1) < 0)
        return -ENOMEM;
    fp->value = (uint32_t)r->strs.len;
    if (buf_append(&r->strs, p->value, p->value_len) < 0 || buf_append(&r->strs, &nul, 1) < 0)
        return -ENOMEM;
    r->npairs++;
    return 0;
}

/* Turns the reassembled PARAMS stream into the lookup table. Returns 0, or
 * -1 when the stream is corrupt or memory runs out. */
static int front_parse_params(struct front_req *r)
{
    size_t off = 0, len = buf_used(&r->raw);
    /* No params at all: the buffer may hold no memory (data is NULL). */
    const char *p = len ? buf_head(&r->raw) : NULL;
    while (off < len) {
        struct fcgi_pair pair;
        ssize_t n = fcgi_pair_parse(p + off, len - off, len, &pair);
        if (n < 0 && r->truncated)
            break;                    /* the pair cut by the limit */
        if (n < 0)
            return -1;
        if (front_add_pair(r, &pair) < 0)
            return -1;
        off += (size_t)n;
    }
    buf_reset(&r->raw);
    return 0;
}

const char *front_param(const struct front_req *req, const char *name)
{
    for (int i = 0; i < req->npairs; i++)
        if (strcmp(req->strs.data + req->pairs[i].name, name) == 0)
            return req->strs.data + req->pairs[i].value;
    return NULL;
}

const char *front_param_repeated(const struct front_req *req, const char *const *names, size_t n)
{
    uint64_t seen = 0;
    if (n > 64)
        n = 64;
    for (int i = 0; i < req->npairs; i++) {
        const char *name = req->strs.data + req->pairs[i].name;
        for (size_t k = 0; k < n; k++) {
            if (strcmp(name, names[k]) != 0)
                continue;
            if (seen & (UINT64_C(1) << k))
                return names[k];
            seen |= UINT64_C(1) << k;
            break;
        }
    }
    return NULL;
}

int front_param_count(const struct front_req *req) { return req->npairs; }

void front_param_at(const struct front_req *req, int i, const char **name, size_t *name_len,
                    const char **value, size_t *value_len)
{
    const struct front_pair *p = &req->pairs[i];
    /* Each string is followed by its NUL: a value ends where the next
     * name (or the table) begins. */
    size_t end = i + 1 < req->npairs ? req->pairs[i + 1].name : req->strs.len;
    *name = req->strs.data + p->name;
    *name_len = p->value - p->name - 1;
    *value = req->strs.data + p->value;
    *value_len = end - p->value - 1;
}

const char *front_body(const struct front_req *req, size_t *kept, size_t *sent)
{
    *kept = req->body.len;
    *sent = req->body_sent;
    return req->body.data ? req->body.data : "";
}

int   front_req_truncated(const struct front_req *req) { return req->truncated; }
void  front_req_set_data(struct front_req *req, void *data) { req->data = data; }
void *front_req_data(const struct front_req *req) { return req->data; }

/* ---- connections ------------------------------------------------------- */

static void front_mark_dirty(struct front_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = 1;
    c->next_dirty = c->f->dirty;
    c->f->dirty = c;
}

/* Closes c now and frees it at the end of the pass; a request handed out
 * and not answered is cancelled. */
static void front_conn_close(struct front_conn *c)
{
    front_t *f = c->f;
    if (c->dead)
        return;
    c->dead = 1;
    if (c->req.state != FRONT_IDLE) {
        f->busy--;
        if (c->req.state == FRONT_HANDED && f->h.on_cancel)
            f->h.on_cancel(f->h.ctx, &c->req);
        c->req.state = FRONT_IDLE;
    }
    ev_io_stop(f->loop, &c->io);
    ev_timer_stop(f->loop, &c->stall);
    close(c->io.fd);
    list_move(&f->conns, &f->dead, &c->node);
}

static void front_conn_free(struct front_conn *c)
{
    buf_free(&c->in);
    buf_free(&c->out);
    front_req_free(&c->req);
    free(c);
}

/* Writes what is queued; closes the connection once drained if asked. */
static void front_conn_send(struct front_conn *c)
{
    if (c->dead)
        return;
    while (buf_used(&c->out) > 0) {
        ssize_t n = send(c->io.fd, buf_head(&c->out), buf_used(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            unsigned ev = buf_used(&c->out) > FRONT_OUT_PAUSE ? EV_WRITE : EV_READ | EV_WRITE;
            ev_io_set(c->f->loop, &c->io, ev);
            return;
        }
        front_conn_close(c);
        return;
    }
    if (c->closing && c->req.state == FRONT_IDLE) {
        front_conn_close(c);
        return;
    }
    ev_io_set(c->f->loop, &c->io, EV_READ);
}

/* Queues an END_REQUEST for id (on a request refused or aborted). */
static int front_end(struct front_conn *c, uint16_t id, uint8_t protocol_status)
{
    if (fcgi_encode_end(&c->out, id, 0, protocol_status) < 0)
        return -1;
    front_mark_dirty(c);
    return 0;
}

/* The request on c is over: ready for the next one, or for closing. */
static void front_req_done(struct front_conn *c)
{
    front_t *f = c->f;
    f->busy--;
    ev_timer_stop(f->loop, &c->stall);
    front_req_reset(&c->req);
    if (!c->req.keep_conn || f->stopping)
        c->closing = 1;
    front_mark_dirty(c);
}

int front_reply(struct front_req *req, const void *cgi, size_t len)
{
    struct front_conn *c = req->conn;
    if (c->dead || req->state != FRONT_HANDED)
        return -EINVAL;
    if ((len > 0 && fcgi_encode_stream(&c->out, FCGI_STDOUT, req->id, cgi, len) < 0) ||
        fcgi_encode_stream(&c->out, FCGI_STDOUT, req->id, NULL, 0) < 0 ||
        fcgi_encode_end(&c->out, req->id, 0, FCGI_REQUEST_COMPLETE) < 0) {
        log_error("front: out of memory answering a request");
        /* The owner is answering: no on_cancel for this request. */
        c->f->busy--;
        req->state = FRONT_IDLE;
        front_conn_close(c);
        return -ENOMEM;
    }
    front_req_done(c);
    return 0;
}

static void front_dispatch(struct front_conn *c)
{
    struct front_req *r = &c->req;
    /* The body is handed out as a C string as well. */
    if (buf_reserve(&r->body, 1) < 0) {
        front_conn_close(c);
        return;
    }
    r->body.data[r->body.len] = '\0';
    r->state = FRONT_HANDED;
    ev_timer_stop(c->f->loop, &c->stall);
    c->f->h.on_request(c->f->h.ctx, r);
}

/* Answers a GET_VALUES: the variables asked that we know. */
static int front_get_values(struct front_conn *c, const struct fcgi_record *rec)
{
    static const struct { const char *name, *value; } known[] = {
        { "FCGI_MAX_CONNS", FRONT_ANNOUNCED_CONNS },
        { "FCGI_MAX_REQS", FRONT_ANNOUNCED_CONNS },
        { "FCGI_MPXS_CONNS", "0" },
    };
    struct buf body = { 0 };
    size_t off = 0;
    int rc = 0;
    while (off < rec->len) {
        struct fcgi_pair p;
        ssize_t n = fcgi_pair_parse(rec->content + off, rec->len - off, FCGI_MAX_CONTENT, &p);
        if (n < 0)
            break;                    /* answer what could be read */
        off += (size_t)n;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
            size_t kl = strlen(known[i].name);
            if (p.name_len == kl && memcmp(p.name, known[i].name, kl) == 0)
                rc |= fcgi_encode_pair(&body, known[i].name, kl, known[i].value,
                                       strlen(known[i].value));
        }
    }
    if (rc == 0 && body.len <= FCGI_MAX_CONTENT)
        rc = fcgi_encode_record(&c->out, FCGI_GET_VALUES_RESULT, 0, body.data, body.len);
    buf_free(&body);
    front_mark_dirty(c);
    return rc < 0 ? -1 : 0;
}

static int front_management(struct front_conn *c, const struct fcgi_record *rec)
{
    if (rec->type == FCGI_GET_VALUES)
        return front_get_values(c, rec);
    uint8_t body[8] = { rec->type };
    front_mark_dirty(c);
    return fcgi_encode_record(&c->out, FCGI_UNKNOWN_TYPE, 0, body, sizeof body) < 0 ? -1 : 0;
}

static void front_stalled(ev_loop_t *loop, struct ev_timer *t)
{
    struct front_conn *c = ev_container_of(t, struct front_conn, stall);
    uint64_t idle = ev_now(loop) - c->last_rx, limit = c->req.limits.stall_ms;
    if (idle < limit) {
        ev_timer_start(loop, t, limit - idle, front_stalled);
        return;
    }
    log_warn("front: request %u received only in part, nothing more for %llu ms: "
             "closing the connection", (unsigned)c->req.id, (unsigned long long)limit);
    front_conn_close(c);
}

static int front_begin(struct front_conn *c, const struct fcgi_record *rec)
{
    struct front_req *r = &c->req;
    uint16_t role;
    uint8_t flags;
    if (fcgi_begin_parse(rec, &role, &flags) < 0)
        return -1;
    if (r->state != FRONT_IDLE)
        return rec->req_id == r->id ? -1 : front_end(c, rec->req_id, FCGI_CANT_MPX_CONN);
    if (role != FCGI_RESPONDER) {
        /* Without FCGI_KEEP_CONN the web server waits for us to close. */
        if (!(flags & FCGI_KEEP_CONN))
            c->closing = 1;
        return front_end(c, rec->req_id, FCGI_UNKNOWN_ROLE);
    }
    r->id = rec->req_id;
    r->keep_conn = (flags & FCGI_KEEP_CONN) != 0;
    r->limits = c->f->limits;
    r->state = FRONT_PARAMS;
    c->f->busy++;
    if (ev_timer_start(c->f->loop, &c->stall, r->limits.stall_ms, front_stalled) < 0)
        return -1;
    return 0;
}

static int front_abort(struct front_conn *c)
{
    struct front_req *r = &c->req;
    front_t *f = c->f;
    if (r->state == FRONT_HANDED && f->h.on_cancel)
        f->h.on_cancel(f->h.ctx, r);
    uint16_t id = r->id;
    front_req_done(c);
    return front_end(c, id, FCGI_REQUEST_COMPLETE);
}

static int front_params(struct front_conn *c, const struct fcgi_record *rec)
{
    struct front_req *r = &c->req;
    if (rec->len == 0) {
        r->state = FRONT_STDIN;
        return front_parse_params(r);
    }
    if (r->truncated || buf_used(&r->raw) + rec->len > r->limits.params) {
        r->truncated = 1;
        return 0;
    }
    return buf_append(&r->raw, rec->content, rec->len) < 0 ? -1 : 0;
}

static int front_stdin(struct front_conn *c, const struct fcgi_record *rec)
{
    struct front_req *r = &c->req;
    if (rec->len == 0) {
        front_dispatch(c);
        return 0;
    }
    size_t limit = r->limits.body;
    r->body_sent += rec->len;
    if (r->body_sent > (size_t)FRONT_BODY_DISCARD_MAX && r->body_sent > limit) {
        log_warn("front: request body over %zu bytes: closing the connection", r->body_sent - rec->len);
        return -1;
    }
    size_t room = limit > r->body.len ? limit - r->body.len : 0;
    size_t keep = rec->len < room ? rec->len : room;
    return keep && buf_append(&r->body, rec->content, keep) < 0 ? -1 : 0;
}

/* One record. Returns 0, or -1 when the connection must close. */
static int front_record(struct front_conn *c, const struct fcgi_record *rec)
{
    struct front_req *r = &c->req;
    if (rec->req_id == 0)
        return front_management(c, rec);
    if (rec->type == FCGI_BEGIN_REQUEST)
        return front_begin(c, rec);
    /* Records of another request, or out of order: nginx and Apache never
     * send them; dropping them keeps the current request intact. */
    if (r->state == FRONT_IDLE || rec->req_id != r->id)
        return 0;
    switch (rec->type) {
    case FCGI_ABORT_REQUEST:
        return front_abort(c);
    case FCGI_PARAMS:
        return r->state == FRONT_PARAMS ? front_params(c, rec) : 0;
    case FCGI_STDIN:
        return r->state == FRONT_STDIN ? front_stdin(c, rec) : 0;
    default:
        return 0;                     /* FCGI_DATA belongs to the filter role */
    }
}

static void front_conn_read(struct front_conn *c)
{
    size_t total = 0;
    while (!c->dead && total < FRONT_READ_PER_PASS) {
        if (buf_reserve(&c->in, FRONT_READ_CHUNK) < 0) {
            front_conn_close(c);
            return;
        }
        size_t room = c->in.cap - c->in.len;
        ssize_t n = recv(c->io.fd, c->in.data + c->in.len, room, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
            front_conn_close(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        c->in.len += (size_t)n;
        total += (size_t)n;
        c->last_rx = ev_now(c->f->loop);
        for (;;) {
            struct fcgi_record rec;
            ssize_t used = fcgi_record_parse(buf_head(&c->in), buf_used(&c->in), &rec);
            if (used == FCGI_NEED_MORE)
                break;
            if (used < 0 || front_record(c, &rec) < 0) {
                if (used < 0)
                    log_warn("front: malformed FastCGI record: closing the connection");
                front_conn_close(c);
                return;
            }
            buf_consume(&c->in, (size_t)used);
            if (c->dead)
                return;
        }
        /* A short read emptied the socket: the loop is level-triggered and
         * reports more (or EOF) on its own, so spare the recv that would
         * only say EAGAIN. */
        if ((size_t)n < room)
            return;
    }
}

static void front_conn_io(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct front_conn *c = ev_container_of(io, struct front_conn, io);
    if (c->dead)
        return;                       /* closed earlier in this pass */
    if (events & EV_WRITE)
        front_conn_send(c);
    if ((events & EV_READ) && !c->dead && buf_used(&c->out) <= FRONT_OUT_PAUSE)
        front_conn_read(c);
}

/* ---- listening --------------------------------------------------------- */

/* The listener hands over each accepted connection. */
static void front_accept(struct listener *l, int fd, void *data)
{
    (void)l;
    front_t *f = data;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on Unix: fine */
    struct front_conn *c = calloc(1, sizeof *c);
    if (!c || ev_io_start(f->loop, &c->io, fd, EV_READ, front_conn_io) < 0) {
        free(c);
        close(fd);
        return;
    }
    c->f = f;
    c->req.conn = c;
    list_push(&f->conns, &c->node);
}

front_t *front_new(ev_loop_t *loop, int listen_fd, const struct front_limits *limits,
                   const struct front_handlers *h)
{
    front_t *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->loop = loop;
    f->h = *h;
    f->limits = *limits;
    list_init(&f->conns);
    list_init(&f->dead);
    int fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        free(f);
        return NULL;
    }
    int rc = listener_start(&f->listener, loop, fd, "front", FRONT_ACCEPT_PER_PASS,
                            front_accept, f);
    if (rc < 0) {
        close(fd);
        free(f);
        errno = -rc;
        return NULL;
    }
    return f;
}

void front_set_limits(front_t *f, const struct front_limits *limits) { f->limits = *limits; }

void front_flush(front_t *f)
{
    while (f->dirty) {
        struct front_conn *c = f->dirty;
        f->dirty = c->next_dirty;
        c->dirty = 0;
        if (!c->dead)
            front_conn_send(c);
    }
    struct list_node *n;
    while ((n = list_first(&f->dead))) {
        list_remove(&f->dead, n);
        front_conn_free(list_entry(n, struct front_conn, node));
    }
}

void front_stop(front_t *f)
{
    if (f->stopping)
        return;
    f->stopping = 1;
    listener_stop(&f->listener);
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &f->conns) {
        struct front_conn *c = list_entry(n, struct front_conn, node);
        c->closing = 1;
        front_mark_dirty(c);          /* idle ones close at the next flush */
    }
}

size_t front_busy(const front_t *f) { return f->busy; }

int front_drained(const front_t *f) { return list_empty(&f->conns); }

void front_free(front_t *f)
{
    if (!f)
        return;
    struct list_node *n;
    while ((n = list_first(&f->conns)))
        front_conn_close(list_entry(n, struct front_conn, node));
    f->dirty = NULL;
    front_flush(f);
    listener_stop(&f->listener);
    free(f);
}
