#include "metrics_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "buf.h"
#include "listener.h"
#include "log.h"

/* ---- the parser ---- */

static int mhttp_is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* One line ending in CRLF at p (end excluded), or where the input ends.
 * Returns the index of its CR, MHTTP_NEED_MORE, or MHTTP_E_MALFORMED for a
 * bare CR or LF. */
static ssize_t mhttp_line_end(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n')
            return MHTTP_E_MALFORMED;
        if (p[i] == '\r') {
            if (i + 1 == len)
                return MHTTP_NEED_MORE;
            return p[i + 1] == '\n' ? (ssize_t)i : MHTTP_E_MALFORMED;
        }
    }
    return MHTTP_NEED_MORE;
}

/* The request line [p, p+n) (no CRLF); every prefix of a valid line must
 * pass with partial = 1. */
static int mhttp_request_line(const char *p, size_t n, int partial, struct mhttp_request *req)
{
    static const char version[] = "HTTP/1.";
    size_t i = 0;
    while (i < n && p[i] >= 'A' && p[i] <= 'Z' && i < 16)
        i++;
    if (i == n)
        return partial ? 0 : -1;
    if (i == 0 || p[i] != ' ')
        return -1;
    req->method = (struct str){ p, i };
    size_t t = ++i;
    while (i < n && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f)
        i++;
    if (t < n && p[t] != '/')
        return -1;
    if (i == n)
        return partial ? 0 : -1;
    if (i == t || p[i] != ' ')
        return -1;
    size_t q = t;
    while (q < i && p[q] != '?')
        q++;
    req->path = (struct str){ p + t, q - t };
    i++;
    for (size_t k = 0; k < sizeof(version) - 1; k++, i++) {
        if (i == n)
            return partial ? 0 : -1;
        if (p[i] != version[k])
            return -1;
    }
    if (i == n)
        return partial ? 0 : -1;
    if (p[i] != '0' && p[i] != '1')
        return -1;
    return i + 1 == n ? 0 : -1;
}

/* A header line [p, p+n) (no CRLF); prefixes pass with partial = 1. */
static int mhttp_header_line(const char *p, size_t n, int partial)
{
    size_t i = 0;
    while (i < n && mhttp_is_tchar((unsigned char)p[i]))
        i++;
    if (i == n)
        return partial ? 0 : -1;
    if (i == 0 || p[i] != ':')
        return -1;
    for (i++; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!(c == ' ' || c == '\t' || (c > 0x20 && c < 0x7f) || c >= 0x80))
            return -1;
    }
    return 0;
}

ssize_t mhttp_parse(const char *buf, size_t len, struct mhttp_request *req)
{
    size_t off = 0;
    int line = 0;
    for (;;) {
        ssize_t e = mhttp_line_end(buf + off, len - off);
        if (e == MHTTP_E_MALFORMED)
            return MHTTP_E_MALFORMED;
        int partial = e == MHTTP_NEED_MORE;
        size_t n = partial ? len - off : (size_t)e;
        /* A lone CR at the end still belongs to the line before it. */
        if (partial && n > 0 && buf[off + n - 1] == '\r')
            n--;
        if (line == 0) {
            if (mhttp_request_line(buf + off, n, partial, req) < 0)
                return MHTTP_E_MALFORMED;
        } else if (n == 0 && !partial) {
            return (ssize_t)(off + 2);
        } else if (n > 0 && mhttp_header_line(buf + off, n, partial) < 0) {
            return MHTTP_E_MALFORMED;
        }
        if (partial)
            return MHTTP_NEED_MORE;
        off += n + 2;
        line++;
    }
}

enum mhttp_route mhttp_route(const struct mhttp_request *req)
{
    static const struct { const char *path; enum mhttp_route r; } routes[] = {
        { "/metrics", MHTTP_METRICS },
        { "/healthz", MHTTP_HEALTHZ },
        { "/readyz", MHTTP_READYZ },
    };
    if (!str_eq(req->method, (struct str){ "GET", 3 }) && !str_eq(req->method, (struct str){ "HEAD", 4 }))
        return MHTTP_BAD_METHOD;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (str_eq(req->path, (struct str){ routes[i].path, strlen(routes[i].path) }))
            return routes[i].r;
    return MHTTP_NOT_FOUND;
}

/* ---- the responder ---- */

struct mhttp_conn {
    struct ev_io    io;           /* fd -1: the slot is free */
    struct ev_timer timer;
    mhttp_t        *m;
    int             fd;
    int             draining;     /* answered: reading to EOF before close */
    int             answered;     /* an answer is queued or sent */
    size_t          drained;      /* bytes read and dropped while draining */
    uint64_t        since;        /* ms: accepted */
    size_t          in_len;
    char            in[MHTTP_MAX_REQUEST];
    struct buf      out;          /* the answer; its memory is kept for the next */
};

struct mhttp {
    ev_loop_t            *loop;
    struct listener       l;
    struct mhttp_handlers h;
    void                 *ctx;
    int                   is_unix;
    struct addr_unix_id   id;
    char                  spec[256];
    struct mhttp_conn     conns[MHTTP_MAX_CONNS];
};

/* Closes the connection and frees its slot (the slot's memory stays: it
 * is part of struct mhttp, so closing inside a callback is safe). */
static void mhttp_on_timeout(ev_loop_t *loop, struct ev_timer *t);

static void mhttp_conn_close(struct mhttp_conn *c)
{
    if (c->fd < 0)
        return;
    ev_io_stop(c->m->loop, &c->io);
    ev_timer_stop(c->m->loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    c->draining = 0;
    c->in_len = 0;
    buf_reset(&c->out);
}

static void mhttp_conn_write(struct mhttp_conn *c)
{
    while (buf_used(&c->out) > 0) {
        ssize_t n = send(c->fd, buf_head(&c->out), buf_used(&c->out), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_set(c->m->loop, &c->io, EV_WRITE);
            return;
        }
        if (n < 0) {
            mhttp_conn_close(c);
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    /* Closing with unread input (a refused head, bytes after it) would
     * send a reset that may destroy the answer in flight: end our side,
     * read to the client's EOF (the timer still bounds it), then close. */
    if (shutdown(c->fd, SHUT_WR) < 0) {
        mhttp_conn_close(c);
        return;
    }
    c->draining = 1;
    ev_io_set(c->m->loop, &c->io, EV_READ);
}

static void mhttp_conn_drain(struct mhttp_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* A client that keeps sending after its answer gets a bounded
         * amount of our reading, then the close. */
        if (n <= 0 || (c->drained += (size_t)n) > MHTTP_DRAIN_MAX) {
            mhttp_conn_close(c);
            return;
        }
    }
}

static void mhttp_answer(struct mhttp_conn *c, int status, const char *reason, const char *type,
                         const char *body, size_t body_len, int head)
{
    /* The head arrived within MHTTP_HEAD_MS: the answer gets the rest. */
    c->answered = 1;
    ev_timer_start(c->m->loop, &c->timer, MHTTP_TIMEOUT_MS, mhttp_on_timeout);
    buf_reset(&c->out);
    int rc = buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "%sCache-Control: no-store\r\nConnection: close\r\n\r\n",
                        status, reason, type, body_len,
                        status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (rc == 0 && !head && body_len)
        rc = buf_append(&c->out, body, body_len);
    if (rc < 0) {
        mhttp_conn_close(c);
        return;
    }
    /* Reading stops: one request per connection. */
    ev_io_set(c->m->loop, &c->io, 0);
    mhttp_conn_write(c);
}

static void mhttp_text(struct mhttp_conn *c, int status, const char *reason, const char *body, int head)
{
    mhttp_answer(c, status, reason, "text/plain; charset=utf-8", body, strlen(body), head);
}

/* The exposition is rendered after the head's place in the buffer, then
 * the head is written in front of it: one buffer, no copy of the body. */
static void mhttp_metrics(struct mhttp_conn *c, int head)
{
    static const char type[] = "text/plain; version=0.0.4; charset=utf-8";
    char hdr[256];
    buf_reset(&c->out);
    if (c->m->h.metrics(c->m->ctx, &c->out) < 0) {
        mhttp_text(c, 500, "Internal Server Error", "scrape failed\n", head);
        return;
    }
    size_t body = buf_used(&c->out);
    int hl = snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\nConnection: close\r\n\r\n", type, body);
    if (head)
        buf_reset(&c->out);
    if (buf_reserve(&c->out, (size_t)hl) < 0) {
        mhttp_conn_close(c);
        return;
    }
    char *start = c->out.data + c->out.off;
    memmove(start + hl, start, buf_used(&c->out));
    memcpy(start, hdr, (size_t)hl);
    c->out.len += (size_t)hl;
    ev_io_set(c->m->loop, &c->io, 0);
    mhttp_conn_write(c);
}

static void mhttp_handle(struct mhttp_conn *c, const struct mhttp_request *req)
{
    int head = str_eq(req->method, (struct str){ "HEAD", 4 });
    switch (mhttp_route(req)) {
    case MHTTP_METRICS:
        mhttp_metrics(c, head);
        break;
    case MHTTP_HEALTHZ:
        mhttp_text(c, 200, "OK", "ok\n", head);
        break;
    case MHTTP_READYZ:
        if (c->m->h.ready(c->m->ctx))
            mhttp_text(c, 200, "OK", "ready\n", head);
        else
            mhttp_text(c, 503, "Service Unavailable", "not ready\n", head);
        break;
    case MHTTP_NOT_FOUND:
        mhttp_text(c, 404, "Not Found", "not found\n", head);
        break;
    case MHTTP_BAD_METHOD:
        mhttp_text(c, 405, "Method Not Allowed", "method not allowed\n", 0);
        break;
    }
}

static void mhttp_conn_read(struct mhttp_conn *c)
{
    for (;;) {
        size_t room = sizeof(c->in) - c->in_len;
        if (room == 0) {
            mhttp_text(c, 431, "Request Header Fields Too Large", "request too large\n", 0);
            return;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            mhttp_conn_close(c);
            return;
        }
        c->in_len += (size_t)n;
        struct mhttp_request req;
        ssize_t r = mhttp_parse(c->in, c->in_len, &req);
        if (r == MHTTP_NEED_MORE)
            continue;
        if (r < 0)
            mhttp_text(c, 400, "Bad Request", "bad request\n", 0);
        else
            mhttp_handle(c, &req);
        return;
    }
}

static void mhttp_on_io(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct mhttp_conn *c = ev_container_of(io, struct mhttp_conn, io);
    if (c->fd < 0)
        return;
    if (c->draining)
        mhttp_conn_drain(c);
    else if ((events & EV_WRITE) && buf_used(&c->out) > 0)
        mhttp_conn_write(c);
    else if (events & EV_READ)
        mhttp_conn_read(c);
}

static void mhttp_on_timeout(ev_loop_t *loop, struct ev_timer *t)
{
    (void)loop;
    mhttp_conn_close(ev_container_of(t, struct mhttp_conn, timer));
}

static void mhttp_on_accept(struct listener *l, int fd, void *data)
{
    (void)l;
    mhttp_t *m = data;
    struct mhttp_conn *c = NULL, *oldest_waiting = NULL;
    for (int i = 0; i < MHTTP_MAX_CONNS && !c; i++) {
        struct mhttp_conn *x = &m->conns[i];
        if (x->fd < 0)
            c = x;
        else if (!x->answered && (!oldest_waiting || x->since < oldest_waiting->since))
            oldest_waiting = x;
    }
    if (!c && oldest_waiting) {
        /* Full of connections still waiting for their request: the
         * oldest gives way, so idle sockets cannot lock scrapes out. */
        mhttp_conn_close(oldest_waiting);
        c = oldest_waiting;
    }
    if (!c) {
        log_debug("metrics: %d connections answering: one more closed", MHTTP_MAX_CONNS);
        close(fd);
        return;
    }
    if (ev_io_start(m->loop, &c->io, fd, EV_READ, mhttp_on_io) < 0) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->in_len = 0;
    c->answered = 0;
    c->drained = 0;
    c->since = ev_now(m->loop);
    ev_timer_start(m->loop, &c->timer, MHTTP_HEAD_MS, mhttp_on_timeout);
}

static mhttp_t *mhttp_new(ev_loop_t *loop, const char *spec, const struct mhttp_handlers *h, void *ctx)
{
    mhttp_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->loop = loop;
    m->h = *h;
    m->ctx = ctx;
    for (int i = 0; i < MHTTP_MAX_CONNS; i++) {
        m->conns[i].fd = -1;
        m->conns[i].m = m;
    }
    snprintf(m->spec, sizeof(m->spec), "%s", spec);
    return m;
}

mhttp_t *mhttp_open(ev_loop_t *loop, const char *spec, const struct mhttp_handlers *h, void *ctx,
                    char *err, size_t errlen)
{
    mhttp_t *m = mhttp_new(loop, spec, h, ctx);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int fd = addr_listen(spec, 64, 0, 0660, NULL, err, errlen);
    if (fd < 0) {
        free(m);
        return NULL;
    }
    m->is_unix = addr_is_unix(spec);
    m->id = addr_unix_identity(spec);
    if (listener_start(&m->l, loop, fd, "metrics", 16, mhttp_on_accept, m) < 0) {
        snprintf(err, errlen, "%s: cannot watch", spec);
        close(fd);
        if (m->is_unix)
            addr_unlink_owned(spec, &m->id);
        free(m);
        return NULL;
    }
    return m;
}

mhttp_t *mhttp_open_fd(ev_loop_t *loop, int fd, const char *spec, const struct mhttp_handlers *h,
                       void *ctx, char *err, size_t errlen)
{
    mhttp_t *m = mhttp_new(loop, spec, h, ctx);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (listener_start(&m->l, loop, fd, "metrics", 16, mhttp_on_accept, m) < 0) {
        snprintf(err, errlen, "%s: cannot watch", spec);
        free(m);
        return NULL;
    }
    return m;
}

void mhttp_free(mhttp_t *m)
{
    if (!m)
        return;
    listener_stop(&m->l);
    if (m->is_unix)
        addr_unlink_owned(m->spec, &m->id);
    for (int i = 0; i < MHTTP_MAX_CONNS; i++) {
        mhttp_conn_close(&m->conns[i]);
        buf_free(&m->conns[i].out);
    }
    free(m);
}
