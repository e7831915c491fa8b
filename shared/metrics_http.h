/* metrics_http — the small HTTP responder of metrics_listen: GET /metrics
 * (Prometheus text format 0.0.4), /healthz (200), /readyz (200 when ready,
 * else 503), 404 for any other path, 405 for a method other than GET and
 * HEAD. One request per connection (the answer says Connection: close).
 *
 * It never listens on a public listener and serves few clients (a scraper,
 * a probe), so it is bounded rather than fast: at most MHTTP_MAX_CONNS
 * connections (more are closed at accept), a request head of at most
 * MHTTP_MAX_REQUEST bytes (past it: 431), MHTTP_TIMEOUT_MS for a
 * connection from accept to the client's EOF (after the answer the
 * responder shuts its side down and reads to EOF, so unread input never
 * turns into a reset that destroys the answer). Connection slots
 * and their request buffers are allocated once at open; a scrape allocates
 * at most its slot's output buffer, which is kept for the next one.
 *
 * The parser (mhttp_parse) is a pure function over (buf, len), like every
 * parser of the project: no I/O, no allocation.
 */
#ifndef WSPUSH_METRICS_HTTP_H
#define WSPUSH_METRICS_HTTP_H

#include <stddef.h>
#include <sys/types.h>

#include "ev.h"
#include "str.h"

struct buf;

#define MHTTP_MAX_CONNS   16
#define MHTTP_MAX_REQUEST 4096
#define MHTTP_TIMEOUT_MS  5000
#define MHTTP_HEAD_MS     1000    /* for the request head; the oldest waiting
                                     connection gives way when all are taken */
#define MHTTP_DRAIN_MAX   65536   /* bytes read after the answer before closing */

#define MHTTP_NEED_MORE   (-2)
#define MHTTP_E_MALFORMED (-1)

/* A parsed request head: pointers into the caller's buffer. */
struct mhttp_request {
    struct str method;    /* 1..16 upper-case letters */
    struct str path;      /* the target up to '?', starts with '/' */
};

/* Parses a request head in [buf, buf+len): a request line
 * "METHOD SP /target SP HTTP/1.x CRLF", header lines "name: value CRLF"
 * (a name of token characters, a value of visible characters, spaces and
 * tabs) and the empty line. Returns the bytes of the head, MHTTP_NEED_MORE
 * when every byte so far is valid but the head is not complete, or
 * MHTTP_E_MALFORMED. Never reads past buf + len. */
ssize_t mhttp_parse(const char *buf, size_t len, struct mhttp_request *req);

enum mhttp_route {
    MHTTP_METRICS = 0,
    MHTTP_HEALTHZ,
    MHTTP_READYZ,
    MHTTP_NOT_FOUND,
    MHTTP_BAD_METHOD,
};

/* Which answer a parsed request gets. */
enum mhttp_route mhttp_route(const struct mhttp_request *req);

struct mhttp_handlers {
    /* Appends the exposition to out. Returns 0, or < 0 (the scrape gets a
     * 500). */
    int (*metrics)(void *ctx, struct buf *out);
    /* 1 when ready (/readyz 200), 0 when not (503). */
    int (*ready)(void *ctx);
};

typedef struct mhttp mhttp_t;

/* Listens on spec (host:port or a Unix socket path, addr.h) and answers
 * on loop. Returns the responder, or NULL with err filled. */
mhttp_t *mhttp_open(ev_loop_t *loop, const char *spec, const struct mhttp_handlers *h, void *ctx,
                    char *err, size_t errlen);
/* Answers on fd, a listening socket the caller made (spec only names it
 * in logs): several processes sharing one socket each open their own
 * responder on it. From success on m owns fd (closed by mhttp_free, which
 * removes no socket file: the caller made it); on failure fd is left
 * open. Returns the responder, or NULL with err filled. */
mhttp_t *mhttp_open_fd(ev_loop_t *loop, int fd, const char *spec, const struct mhttp_handlers *h,
                       void *ctx, char *err, size_t errlen);
/* Closes the listener and every connection, removes a Unix socket file
 * it made. NULL is ignored. Not from inside one of its own callbacks. */
void     mhttp_free(mhttp_t *m);

#endif
