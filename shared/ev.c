#include "ev.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define EV_BATCH 256

struct ev_loop {
    int       epfd;
    int       running;
    int       poll_now;
    uint64_t  now;
    struct ev_timer **heap;    /* min-heap on when */
    uint32_t  nheap, capheap;
    struct ev_io sigio;
    ev_signal_cb *sigcb;
    void     *sigdata;
    struct ev_hook *hooks;     /* in the order added */
};

static uint64_t ev_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

ev_loop_t *ev_loop_new(char *err, size_t errlen)
{
    ev_loop_t *loop = calloc(1, sizeof(*loop));
    if (!loop) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
        free(loop);
        return NULL;
    }
    loop->sigio.fd = -1;
    loop->now = ev_clock_ms();
    return loop;
}

void ev_loop_free(ev_loop_t *loop)
{
    if (!loop)
        return;
    if (loop->sigio.fd >= 0)
        close(loop->sigio.fd);
    close(loop->epfd);
    free(loop->heap);
    free(loop);
}

uint64_t ev_now(const ev_loop_t *loop) { return loop->now; }

static uint32_t ev_epoll_mask(unsigned events)
{
    return (events & EV_READ ? EPOLLIN | EPOLLRDHUP : 0) | (events & EV_WRITE ? EPOLLOUT : 0);
}

int ev_io_start(ev_loop_t *loop, struct ev_io *io, int fd, unsigned events, ev_io_cb *cb)
{
    struct epoll_event ee = { .events = ev_epoll_mask(events), .data.ptr = io };
    io->fd = fd;
    io->cb = cb;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ee) < 0)
        return -errno;
    /* Stored with a marker bit so that "added with no events" differs from
     * "not added". */
    io->events = events | 0x100u;
    return 0;
}

int ev_io_set(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    if ((io->events & 0xffu) == events)
        return 0;
    struct epoll_event ee = { .events = ev_epoll_mask(events), .data.ptr = io };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ee) < 0)
        return -errno;
    io->events = events | 0x100u;
    return 0;
}

void ev_io_stop(ev_loop_t *loop, struct ev_io *io)
{
    if (io->events) {
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
        io->events = 0;
    }
}

/* Heap helpers: slot is index + 1 so a zeroed timer reads as disarmed. */
static void ev_heap_place(ev_loop_t *loop, uint32_t i, struct ev_timer *t)
{
    loop->heap[i] = t;
    t->slot = i + 1;
}

static void ev_heap_up(ev_loop_t *loop, uint32_t i)
{
    struct ev_timer *t = loop->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (loop->heap[parent]->when <= t->when)
            break;
        ev_heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    ev_heap_place(loop, i, t);
}

static void ev_heap_down(ev_loop_t *loop, uint32_t i)
{
    struct ev_timer *t = loop->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= loop->nheap)
            break;
        if (child + 1 < loop->nheap && loop->heap[child + 1]->when < loop->heap[child]->when)
            child++;
        if (t->when <= loop->heap[child]->when)
            break;
        ev_heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    ev_heap_place(loop, i, t);
}

void ev_timer_stop(ev_loop_t *loop, struct ev_timer *t)
{
    if (!t->slot)
        return;
    uint32_t i = t->slot - 1;
    t->slot = 0;
    loop->nheap--;
    if (i == loop->nheap)
        return;
    struct ev_timer *last = loop->heap[loop->nheap];
    ev_heap_place(loop, i, last);
    if (i > 0 && loop->heap[(i - 1) / 2]->when > last->when)
        ev_heap_up(loop, i);
    else
        ev_heap_down(loop, i);
}

int ev_timer_start(ev_loop_t *loop, struct ev_timer *t, uint64_t after_ms, ev_timer_cb *cb)
{
    t->cb = cb;
    if (t->slot) {
        uint64_t old = t->when;
        t->when = loop->now + after_ms;
        uint32_t i = t->slot - 1;
        if (t->when < old)
            ev_heap_up(loop, i);
        else
            ev_heap_down(loop, i);
        return 0;
    }
    if (loop->nheap == loop->capheap) {
        uint32_t cap = loop->capheap ? loop->capheap * 2 : 64;
        struct ev_timer **h = realloc(loop->heap, cap * sizeof(*h));
        if (!h)
            return -ENOMEM;
        loop->heap = h;
        loop->capheap = cap;
    }
    t->when = loop->now + after_ms;
    loop->heap[loop->nheap] = t;
    ev_heap_up(loop, loop->nheap++);
    return 0;
}

static void ev_signal_ready(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)events;
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        loop->sigcb(loop, (int)si.ssi_signo, loop->sigdata);
}

int ev_signals(ev_loop_t *loop, const sigset_t *set, ev_signal_cb *cb, void *data)
{
    if (sigprocmask(SIG_BLOCK, set, NULL) < 0)
        return -errno;
    int fd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    loop->sigcb = cb;
    loop->sigdata = data;
    int rc = ev_io_start(loop, &loop->sigio, fd, EV_READ, ev_signal_ready);
    if (rc < 0) {
        close(fd);
        loop->sigio.fd = -1;
    }
    return rc;
}

void ev_after_add(ev_loop_t *loop, struct ev_hook *hook, ev_after_cb *cb, void *data)
{
    struct ev_hook **pp = &loop->hooks;
    while (*pp)
        pp = &(*pp)->next;
    hook->cb = cb;
    hook->data = data;
    hook->next = NULL;
    *pp = hook;
}

void ev_after_remove(ev_loop_t *loop, struct ev_hook *hook)
{
    for (struct ev_hook **pp = &loop->hooks; *pp; pp = &(*pp)->next)
        if (*pp == hook) {
            *pp = hook->next;
            return;
        }
}

void ev_stop(ev_loop_t *loop) { loop->running = 0; }

void ev_poll_now(ev_loop_t *loop) { loop->poll_now = 1; }

static void ev_run_timers(ev_loop_t *loop)
{
    while (loop->nheap > 0 && loop->heap[0]->when <= loop->now) {
        struct ev_timer *t = loop->heap[0];
        ev_timer_stop(loop, t);
        t->cb(loop, t);
    }
}

int ev_run(ev_loop_t *loop)
{
    struct epoll_event events[EV_BATCH];
    loop->running = 1;
    while (loop->running) {
        int timeout = -1;
        if (loop->poll_now) {
            timeout = 0;
            loop->poll_now = 0;
        } else if (loop->nheap > 0) {
            uint64_t when = loop->heap[0]->when;
            timeout = when <= loop->now ? 0 : (int)(when - loop->now > 60000 ? 60000 : when - loop->now);
        }
        int n = epoll_wait(loop->epfd, events, EV_BATCH, timeout);
        if (n < 0 && errno != EINTR)
            return -errno;
        loop->now = ev_clock_ms();
        for (int i = 0; i < n; i++) {
            struct ev_io *io = events[i].data.ptr;
            uint32_t e = events[i].events;
            unsigned mask = 0;
            if (e & (EPOLLIN | EPOLLRDHUP))
                mask |= EV_READ;
            if (e & EPOLLOUT)
                mask |= EV_WRITE;
            if (e & (EPOLLERR | EPOLLHUP))
                mask |= EV_READ | EV_WRITE;
            /* A handle stopped earlier in this pass has events == 0; one
             * paused for reading must not be read. The object stays
             * allocated until the after-pass hooks, so io is valid. */
            mask &= io->events;
            if (mask)
                io->cb(loop, io, mask);
        }
        ev_run_timers(loop);
        for (struct ev_hook *h = loop->hooks; h; h = h->next)
            h->cb(loop, h->data);
    }
    return 0;
}
