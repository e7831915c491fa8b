/* front — fcgi-publisher's FastCGI side, on the event loop (shared/ev.h).
 *
 * Accepts the web server's connections on a listening socket, reassembles
 * each request from its records (fcgi.h) and hands it, complete (params and
 * body), to the owner's on_request callback. The owner answers then or
 * later with front_reply(); the answer goes out with the other answers of
 * the same loop pass when the owner calls front_flush() from its after-pass
 * hook.
 *
 * One request at a time per connection (FCGI_MPXS_CONNS is 0: nginx and
 * Apache never multiplex); a BEGIN_REQUEST for a second id is refused with
 * FCGI_CANT_MPX_CONN, another role with FCGI_UNKNOWN_ROLE. Connections are
 * kept open when the web server asks (FCGI_KEEP_CONN).
 *
 * Limits (struct front_limits): the params of one request (about the HTTP
 * request head) up to limits.params bytes and FRONT_PARAMS_COUNT_MAX
 * pairs, beyond which the request is still handed out, with
 * front_req_truncated() set; the body up to limits.body bytes is kept and
 * the rest only counted, until it passes FRONT_BODY_DISCARD_MAX (or
 * limits.body if larger): then the connection is closed.
 */
#ifndef WSPUSH_FRONT_H
#define WSPUSH_FRONT_H

#include <stddef.h>

#include "ev.h"

#define FRONT_PARAMS_COUNT_MAX 512
#define FRONT_BODY_DISCARD_MAX (16L * 1024 * 1024)

typedef struct front front_t;
struct front_req;

struct front_limits {
    size_t body;     /* body bytes kept per request */
    size_t params;   /* params bytes kept per request */
    /* A request whose records stop arriving for this long is given up and
     * its connection closed: nginx and Apache send a request whole, so only
     * a stuck web server gets here, and it must not hold memory or a
     * graceful stop forever. */
    unsigned stall_ms;
};

struct front_handlers {
    /* A complete request: answer it with front_reply(), now or later. */
    void (*on_request)(void *ctx, struct front_req *req);
    /* A request handed out and not yet answered is gone (the web server
     * closed the connection or aborted it): forget it, do not reply. */
    void (*on_cancel)(void *ctx, struct front_req *req);
    void *ctx;
};

/* Serves listen_fd (made non-blocking; not closed by front_free or
 * front_stop: front accepts on a duplicate of its own). Accepting goes
 * through a struct listener (listener.h): a bounded number of
 * connections per wake-up, and a pause instead of a spin when fds run
 * out. NULL with errno set when memory or fds run out or the fd cannot be
 * watched. */
front_t *front_new(ev_loop_t *loop, int listen_fd, const struct front_limits *limits,
                   const struct front_handlers *h);
/* Closes every connection, cancelling (on_cancel) unanswered requests. */
void     front_free(front_t *f);
/* For the requests that begin from now on. */
void     front_set_limits(front_t *f, const struct front_limits *limits);

/* Graceful stop: accept nothing more (the duplicate fd is closed, so the
 * caller's socket and its backlog are left to other processes sharing it)
 * and close connections as soon as they are idle. front_busy() then reaches 0 once every request is answered. */
void     front_stop(front_t *f);
/* Requests received and not yet answered. */
size_t   front_busy(const front_t *f);
/* After front_stop(): every connection has had its answers sent and is
 * closed (so no request is left either). */
int      front_drained(const front_t *f);

/* Sends the answers of this loop pass; call once per pass after dispatch
 * (also frees the connections closed during the pass). */
void     front_flush(front_t *f);

/* A request's CGI params: the value, or NULL when absent. A name sent
 * twice gives its first value; front_param_repeated() finds those. */
const char *front_param(const struct front_req *req, const char *name);
/* One of names[0..n-1] (n <= 64) that the request carries more than once
 * (the one whose second copy comes first), as names[k]; NULL when each
 * appears at most once. */
const char *front_param_repeated(const struct front_req *req, const char *const *names, size_t n);
/* The params kept, in the order the web server sent them: count, and the
 * i-th (0 <= i < count) with its exact lengths (the web server's bytes,
 * each also NUL-terminated; a NUL byte of their own is kept, and cuts
 * what front_param() compares). For tests that compare every param. */
int         front_param_count(const struct front_req *req);
void        front_param_at(const struct front_req *req, int i, const char **name, size_t *name_len,
                           const char **value, size_t *value_len);
/* The body kept (NUL-terminated, at most limits.body bytes) and the length
 * the web server actually sent. */
const char *front_body(const struct front_req *req, size_t *kept, size_t *sent);
/* Params beyond limits.params or FRONT_PARAMS_COUNT_MAX were dropped. */
int         front_req_truncated(const struct front_req *req);
/* One pointer of the owner's per request. */
void        front_req_set_data(struct front_req *req, void *data);
void       *front_req_data(const struct front_req *req);

/* Answers req with a CGI response (headers, blank line, body) and ends it;
 * req is invalid afterwards. Returns 0, or -ENOMEM (the connection is then
 * closed: the web server reports a bad gateway). */
int front_reply(struct front_req *req, const void *cgi, size_t len);

#endif
