/* listener — accepting connections on a listening socket, for every
 * listener of both programs (ws-server's TCP and Unix listeners, its publish
 * socket, fcgi-publisher's FastCGI socket).
 *
 * Running out of file descriptors (EMFILE, ENFILE) or kernel memory
 * (ENOBUFS, ENOMEM) must not spin: the pending connection stays in the
 * backlog and the socket stays readable, so a loop that retries at once
 * burns a core and floods the log. On those errors the listener stops
 * watching the socket for LISTENER_BACKOFF_MS and tries again; connections
 * already open keep being served. The error is logged at most once per
 * second, with the number of failures since the last line.
 */
#ifndef WSPUSH_LISTENER_H
#define WSPUSH_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#include "ev.h"

#define LISTENER_BACKOFF_MS 100

struct listener;

/* Called with each accepted fd (non-blocking, close-on-exec); the callee
 * owns it. */
typedef void listener_accept_cb(struct listener *l, int fd, void *data);

/* Embedded by its owner; fields are private to listener.c. */
struct listener {
    struct ev_io        io;
    struct ev_timer     backoff;
    ev_loop_t          *loop;
    listener_accept_cb *cb;
    void               *data;
    char                name[64];      /* for log lines, e.g. "127.0.0.1:8081" */
    uint64_t            last_log_ms;
    unsigned long       failures;      /* since the last log line */
    int                 max_per_pass;  /* accepts per readiness, 0 = until EAGAIN */
};

/* Starts accepting on fd (made non-blocking here). max_per_pass bounds the
 * accepts of one wake-up so a flood cannot starve the loop (0 = no bound).
 * Returns 0 or -errno (fd left open for the caller). */
int  listener_start(struct listener *l, ev_loop_t *loop, int fd, const char *name,
                    int max_per_pass, listener_accept_cb *cb, void *data);
/* Stops accepting and closes the fd. Safe to call twice. */
void listener_stop(struct listener *l);
/* 1 while accepting is paused by a back-off. */
int  listener_paused(const struct listener *l);

#endif
