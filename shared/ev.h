/* ev — the one event loop: epoll for fds, a binary heap for timers,
 * signalfd for signals. No other file calls epoll_*.
 *
 * Handles are intrusive: the caller embeds struct ev_io / struct ev_timer in
 * its own object and gets the pointer back in the callback (container_of),
 * so a connection costs no allocation here. A handle must stay at a fixed
 * address while registered.
 *
 * EPOLLERR/EPOLLHUP are reported as EV_READ|EV_WRITE so the handler meets
 * the error in its next read() or write(). An event is only delivered for
 * what the handle still watches at dispatch time: a handle stopped (or set
 * to other events) by an earlier callback of the same pass gets nothing, so
 * callbacks need not re-check "already closed" flags.
 *
 * Callbacks must not free the object that embeds a handle: stop the handle,
 * and free the object from an after-pass hook (ev_after_add), which runs
 * once per loop pass after all dispatch. Any number of modules may hook in.
 */
#ifndef WSPUSH_EV_H
#define WSPUSH_EV_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define EV_READ  1u
#define EV_WRITE 2u

#define ev_container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))

typedef struct ev_loop ev_loop_t;
struct ev_io;
struct ev_timer;

typedef void ev_io_cb(ev_loop_t *loop, struct ev_io *io, unsigned events);
typedef void ev_timer_cb(ev_loop_t *loop, struct ev_timer *t);
typedef void ev_signal_cb(ev_loop_t *loop, int signo, void *data);
typedef void ev_after_cb(ev_loop_t *loop, void *data);

struct ev_io {
    int       fd;
    unsigned  events;     /* EV_READ|EV_WRITE currently watched; 0 = not added */
    ev_io_cb *cb;
};

struct ev_timer {
    uint64_t     when;    /* ms on the loop's monotonic clock */
    uint32_t     slot;    /* heap index + 1; 0 = not armed */
    ev_timer_cb *cb;
};

/* An after-pass hook, embedded by its owner (fixed address while added). */
struct ev_hook {
    ev_after_cb    *cb;
    void           *data;
    struct ev_hook *next;
};

/* A new loop; NULL with err filled on failure. */
ev_loop_t *ev_loop_new(char *err, size_t errlen);
/* Frees the loop (registered fds are not closed). */
void ev_loop_free(ev_loop_t *loop);

/* Monotonic milliseconds, cached at the start of each pass. */
uint64_t ev_now(const ev_loop_t *loop);

/* Starts watching io->fd for events (EV_READ|EV_WRITE). Returns 0 or -errno. */
int  ev_io_start(ev_loop_t *loop, struct ev_io *io, int fd, unsigned events, ev_io_cb *cb);
/* Changes the watched events; a no-op when unchanged. Returns 0 or -errno. */
int  ev_io_set(ev_loop_t *loop, struct ev_io *io, unsigned events);
/* Stops watching (call before close(fd)). */
void ev_io_stop(ev_loop_t *loop, struct ev_io *io);

/* Arms t to fire once after_ms from now (re-arms if armed). -ENOMEM on
 * failure to grow the heap. */
int  ev_timer_start(ev_loop_t *loop, struct ev_timer *t, uint64_t after_ms, ev_timer_cb *cb);
void ev_timer_stop(ev_loop_t *loop, struct ev_timer *t);
static inline int ev_timer_armed(const struct ev_timer *t) { return t->slot != 0; }

/* Blocks the signals in set and delivers them through one signalfd to cb.
 * Call once. Returns 0 or -errno. */
int  ev_signals(ev_loop_t *loop, const sigset_t *set, ev_signal_cb *cb, void *data);

/* Adds a hook run after each pass's dispatch (deferred frees, per-pass
 * write flushing). Hooks run in the order they were added, which is how a
 * module that queues writes runs before one that frees what was written. */
void ev_after_add(ev_loop_t *loop, struct ev_hook *hook, ev_after_cb *cb, void *data);
/* Removes a hook (a no-op when not added). Not from inside a hook. */
void ev_after_remove(ev_loop_t *loop, struct ev_hook *hook);

/* Makes the next wait return at once: work is pending that no fd or timer
 * will announce. */
void ev_poll_now(ev_loop_t *loop);

/* Runs until ev_stop(). Returns 0, or -errno if epoll_wait fails. */
int  ev_run(ev_loop_t *loop);
void ev_stop(ev_loop_t *loop);

#endif
