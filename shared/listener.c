#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

/* At most one log line per this many ms, whatever the failure rate. */
#define LISTENER_LOG_EVERY_MS 1000

/* Counts a failed accept and logs it unless a line went out less than
 * LISTENER_LOG_EVERY_MS ago; the next line reports the failures skipped. */
static void listener_log(struct listener *l, int err, int pausing)
{
    uint64_t now = ev_now(l->loop);
    l->failures++;
    if (l->last_log_ms != 0 && now - l->last_log_ms < LISTENER_LOG_EVERY_MS)
        return;
    if (pausing)
        log_warn("%s: accept: %s (%lu times since last report); pausing %d ms", l->name,
                 strerror(err), l->failures, LISTENER_BACKOFF_MS);
    else
        log_warn("%s: accept: %s (%lu times since last report)", l->name, strerror(err),
                 l->failures);
    l->last_log_ms = now ? now : 1;   /* 0 means "never logged" */
    l->failures = 0;
}

static void listener_resume(ev_loop_t *loop, struct ev_timer *t)
{
    struct listener *l = ev_container_of(t, struct listener, backoff);
    if (l->held)
        return;                  /* listener_hold(l, 0) watches it again */
    /* Level-triggered: a backlog still waiting makes the next wait report
     * the socket readable at once. */
    int rc = ev_io_set(loop, &l->io, EV_READ);
    if (rc < 0)
        log_error("%s: cannot watch the listening socket again: %s", l->name, strerror(-rc));
}

/* Out of fds or memory: the connection stays in the backlog and the socket
 * readable. Stop watching it for a while instead of failing in a loop. */
static void listener_pause(struct listener *l, int err)
{
    listener_log(l, err, 1);
    /* Without the timer the socket must stay watched, or nothing would
     * ever resume it: then the next pass tries again. */
    if (ev_timer_start(l->loop, &l->backoff, LISTENER_BACKOFF_MS, listener_resume) < 0)
        return;
    ev_io_set(l->loop, &l->io, 0);
}

static void listener_ready(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    struct listener *l = ev_container_of(io, struct listener, io);
    /* A connection that died in the backlog (ECONNABORTED) counts toward
     * the bound too: it cost an accept4 all the same. */
    for (int n = 0; l->max_per_pass == 0 || n < l->max_per_pass; n++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            l->cb(l, fd, l->data);
            /* The callback may have stopped the listener. */
            if (!(l->io.events & EV_READ))
                return;
            continue;
        }
        switch (errno) {
        case EINTR:
            n--;
            /* fall through */
        case ECONNABORTED:
            continue;
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            listener_pause(l, errno);
            return;
        default:
            /* EPERM (a firewall), EPROTO and the like cost that one
             * connection; anything else would repeat, so the pass ends. */
            listener_log(l, errno, 0);
            return;
        }
    }
}

int listener_start(struct listener *l, ev_loop_t *loop, int fd, const char *name,
                   int max_per_pass, listener_accept_cb *cb, void *data)
{
    memset(l, 0, sizeof *l);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
        return -errno;
    int rc = ev_io_start(loop, &l->io, fd, EV_READ, listener_ready);
    if (rc < 0) {
        memset(l, 0, sizeof *l);
        return rc;
    }
    l->loop = loop;
    l->cb = cb;
    l->data = data;
    l->max_per_pass = max_per_pass > 0 ? max_per_pass : 0;
    snprintf(l->name, sizeof l->name, "%s", name ? name : "listener");
    return 0;
}

void listener_stop(struct listener *l)
{
    if (!l->loop)
        return;
    ev_io_stop(l->loop, &l->io);
    ev_timer_stop(l->loop, &l->backoff);
    close(l->io.fd);
    l->io.fd = -1;
    l->loop = NULL;
}

void listener_hold(struct listener *l, int hold)
{
    if (!l->loop || l->held == !!hold)
        return;
    l->held = !!hold;
    if (hold)
        ev_io_set(l->loop, &l->io, 0);
    else if (!ev_timer_armed(&l->backoff))
        listener_resume(l->loop, &l->backoff);
}

int listener_paused(const struct listener *l) { return ev_timer_armed(&l->backoff); }

long listener_fd_limit(long want, const char *what)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want) {
        struct rlimit up = rl;
        up.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)want ? rl.rlim_max
                                                                                  : (rlim_t)want;
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want)
        log_warn("open-file limit %lu (hard %lu) is below the %ld that %s needs: past it, "
                 "new connections wait in the backlog (accepting pauses %d ms at a time)",
                 (unsigned long)rl.rlim_cur, (unsigned long)rl.rlim_max, want, what,
                 LISTENER_BACKOFF_MS);
    return rl.rlim_cur == RLIM_INFINITY ? (long)(~0ul >> 1) : (long)rl.rlim_cur;
}
