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
 * second, with the number of failures since the last line:
 *   "<name>: accept: Too many open files (N times since last report); pausing 100 ms"
 * Other accept errors (EPERM from a firewall, EPROTO) cost one connection:
 * they are logged the same way and end the pass, without a pause.
 * EINTR and ECONNABORTED (a client gone while in the backlog) are retried.
 */
#ifndef WSPUSH_LISTENER_H
#define WSPUSH_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#include "ev.h"

#define LISTENER_BACKOFF_MS 100

struct listener;

/* Called with each accepted fd (non-blocking, close-on-exec); the callee
 * owns it. It may call listener_stop(l) (no further accepts follow) but
 * must not free the object embedding l (ev.h: free after the pass). */
typedef void listener_accept_cb(struct listener *l, int fd, void *data);

/* Embedded by its owner; fields are private to listener.c. */
struct listener {
    struct ev_io        io;
    struct ev_timer     backoff;
    ev_loop_t          *loop;          /* NULL while not started / stopped */
    listener_accept_cb *cb;
    void               *data;
    char                name[64];      /* for log lines, e.g. "127.0.0.1:8081" */
    uint64_t            last_log_ms;   /* ev_now() of the last log line, 0 = none */
    unsigned long       failures;      /* failed accepts since the last log line */
    int                 max_per_pass;  /* accepts per readiness, 0 = until EAGAIN */
    int                 held;          /* listener_hold(): not accepting */
};

/* Starts accepting on fd (made non-blocking here); from now on l owns fd.
 * name is copied (truncated to fit). max_per_pass bounds the accepts of one
 * wake-up so a flood cannot starve the loop (0 = no bound); the rest wait
 * for the next pass. l must stay at a fixed address until listener_stop().
 * Returns 0 or -errno (then fd is left open for the caller and l is as if
 * zeroed, so listener_stop(l) is a no-op). */
int  listener_start(struct listener *l, ev_loop_t *loop, int fd, const char *name,
                    int max_per_pass, listener_accept_cb *cb, void *data);
/* Stops accepting (and any back-off) and closes the fd. Safe to call twice,
 * and on a zeroed struct listener that was never started. */
void listener_stop(struct listener *l);
/* The one rule for the open-file limit, at start and on reload: raise the
 * soft RLIMIT_NOFILE toward want (never past the hard limit); if it stays
 * short, warn once with the numbers (what for: e.g. "max_connections
 * 10000") and rely on the back-off above. Returns the soft limit now in
 * force. */
long listener_fd_limit(long want, const char *what);

/* hold = 1: bound but not accepting (connections wait in the backlog,
 * e.g. until what a server needs to answer them is ready); hold = 0:
 * accepting again. */
void listener_hold(struct listener *l, int hold);
/* 1 while accepting is paused by a back-off (0 once stopped). */
int  listener_paused(const struct listener *l);

#endif
