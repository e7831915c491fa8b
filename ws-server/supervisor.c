#include "supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

/* A fork that failed (out of memory, process limit) is tried again after
 * this long. */
#define SUP_FORK_RETRY_MS 1000

struct sup_slot {
    pid_t            pid;          /* 0: not running */
    int              pending;      /* fork at the end of this pass */
    int              recent;       /* restarts within the window */
    uint64_t         window_start; /* ev_now() of the first of them */
    struct ev_timer  restart;
};

struct sup {
    ev_loop_t              *loop;
    int                     n;
    struct sup_slot        *slots;
    struct sup_handlers     h;
    void                   *ctx;
    struct ev_hook          after;
    struct ev_timer         stop_timer;
    pid_t                   self;
    int                     alive;
    int                     stopping;
    int                     status;
    int                     child_slot;   /* >= 0 in a new worker */
};

static void sup_signal_all(struct sup *s, int signo)
{
    for (int i = 0; i < s->n; i++)
        if (s->slots[i].pid > 0 && kill(s->slots[i].pid, signo) < 0 && errno != ESRCH)
            log_warn("worker %d (pid %d): signal %d: %s", i + 1, (int)s->slots[i].pid, signo,
                     strerror(errno));
}

static void sup_stop_over(ev_loop_t *loop, struct ev_timer *t)
{
    (void)loop;
    struct sup *s = ev_container_of(t, struct sup, stop_timer);
    log_error("%d worker(s) still running %d ms after SIGTERM: killing them", s->alive,
              SUP_STOP_MS);
    s->status = 1;
    sup_signal_all(s, SIGKILL);
}

static void sup_stop(struct sup *s, int status)
{
    if (status)
        s->status = status;
    if (s->stopping)
        return;
    s->stopping = 1;
    for (int i = 0; i < s->n; i++) {
        ev_timer_stop(s->loop, &s->slots[i].restart);
        s->slots[i].pending = 0;
    }
    sup_signal_all(s, SIGTERM);
    if (s->alive == 0)
        ev_stop(s->loop);
    else
        ev_timer_start(s->loop, &s->stop_timer, SUP_STOP_MS, sup_stop_over);
}

static void sup_restart_due(ev_loop_t *loop, struct ev_timer *t)
{
    (void)loop;
    struct sup_slot *sl = ev_container_of(t, struct sup_slot, restart);
    sl->pending = 1;
}

/* A slot's worker is gone while running: start another after a pause
 * that doubles with each restart in the window, or give up. */
static void sup_schedule(struct sup *s, struct sup_slot *sl)
{
    int i = (int)(sl - s->slots);
    uint64_t now = ev_now(s->loop);
    if (sl->recent == 0 || now - sl->window_start > SUP_WINDOW_MS) {
        sl->recent = 0;
        sl->window_start = now;
    }
    if (++sl->recent > SUP_RESTARTS) {
        log_error("worker %d died %d times within %d s: giving up, stopping the server", i + 1,
                  sl->recent, SUP_WINDOW_MS / 1000);
        sup_stop(s, 1);
        return;
    }
    uint64_t delay = (uint64_t)SUP_FIRST_DELAY_MS << (sl->recent - 1);
    log_error("worker %d: starting a new one in %llu ms (restart %d of at most %d within %d s)",
              i + 1, (unsigned long long)delay, sl->recent, SUP_RESTARTS, SUP_WINDOW_MS / 1000);
    if (ev_timer_start(s->loop, &sl->restart, delay, sup_restart_due) < 0)
        sl->pending = 1;
}

static void sup_reap(struct sup *s)
{
    int st;
    struct rusage ru;
    pid_t pid;
    while ((pid = wait4(-1, &st, WNOHANG, &ru)) > 0) {
        int i = 0;
        while (i < s->n && s->slots[i].pid != pid)
            i++;
        if (i == s->n)
            continue;
        struct sup_slot *sl = &s->slots[i];
        sl->pid = 0;
        s->alive--;
        uint64_t cpu_us = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
                          (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
        s->h.exited(s->ctx, i, cpu_us);
        int clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (s->stopping) {
            if (!clean) {
                s->status = 1;
                log_error("worker %d (pid %d) did not stop cleanly (%s %d)", i + 1, (int)pid,
                          WIFSIGNALED(st) ? "signal" : "status",
                          WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            }
            continue;
        }
        if (WIFSIGNALED(st))
            log_error("worker %d (pid %d) killed by signal %d", i + 1, (int)pid, WTERMSIG(st));
        else
            log_error("worker %d (pid %d) exited with status %d", i + 1, (int)pid,
                      WEXITSTATUS(st));
        sup_schedule(s, sl);
    }
    if (s->stopping && s->alive == 0)
        ev_stop(s->loop);
}

static void sup_on_signal(ev_loop_t *loop, int signo, void *data)
{
    (void)loop;
    struct sup *s = data;
    switch (signo) {
    case SIGCHLD:
        sup_reap(s);
        break;
    case SIGHUP:
        if (s->stopping)
            break;
        if (s->h.reload(s->ctx) == 0)
            sup_signal_all(s, SIGHUP);
        break;
    default:
        if (!s->stopping)
            log_info("signal %d: stopping %d worker(s)", signo, s->alive);
        sup_stop(s, 0);
        break;
    }
}

/* In the new worker: leave the supervisor's loop without dispatching
 * anything more of it (this is its last hook of the pass). */
static void sup_become_worker(struct sup *s, int i)
{
    s->child_slot = i;
    ev_stop(s->loop);
    /* The worker's own loop takes SIGTERM, SIGINT and SIGHUP (still
     * blocked, so one sent already waits for its signalfd); SIGCHLD is
     * the supervisor's business only. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &chld, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    /* The supervisor died before the line above: nothing would stop us. */
    if (getppid() != s->self)
        _exit(0);
}

static void sup_after(ev_loop_t *loop, void *data)
{
    struct sup *s = data;
    for (int i = 0; i < s->n && !s->stopping; i++) {
        struct sup_slot *sl = &s->slots[i];
        if (!sl->pending)
            continue;
        sl->pending = 0;
        pid_t pid = fork();
        if (pid == 0) {
            sup_become_worker(s, i);
            return;
        }
        if (pid < 0) {
            log_error("worker %d: fork: %s; trying again in %d ms", i + 1, strerror(errno),
                      SUP_FORK_RETRY_MS);
            if (ev_timer_start(loop, &sl->restart, SUP_FORK_RETRY_MS, sup_restart_due) < 0)
                sl->pending = 1;
            continue;
        }
        sl->pid = pid;
        s->alive++;
        s->h.started(s->ctx, i, pid);
        log_info("worker %d started (pid %d)", i + 1, (int)pid);
    }
    for (int i = 0; i < s->n; i++)
        if (s->slots[i].pending)
            ev_poll_now(loop);
}

int sup_run(ev_loop_t *loop, int n, const struct sup_handlers *h, void *ctx, int *slot)
{
    struct sup s = { .loop = loop, .n = n, .h = *h, .ctx = ctx, .self = getpid(),
                     .child_slot = -1 };
    s.slots = calloc((size_t)n, sizeof(*s.slots));
    if (!s.slots) {
        log_error("out of memory");
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    int rc = ev_signals(loop, &set, sup_on_signal, &s);
    if (rc < 0) {
        log_error("signalfd: %s", strerror(-rc));
        free(s.slots);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        s.slots[i].pending = 1;
    }
    ev_after_add(loop, &s.after, sup_after, &s);
    ev_poll_now(loop);
    if (ev_run(loop) < 0) {
        log_error("event loop failed: stopping the workers");
        sup_signal_all(&s, SIGTERM);
        s.status = 1;
    }
    ev_after_remove(loop, &s.after);
    ev_timer_stop(loop, &s.stop_timer);
    for (int i = 0; i < n; i++)
        ev_timer_stop(loop, &s.slots[i].restart);
    free(s.slots);
    if (s.child_slot >= 0) {
        *slot = s.child_slot;
        return SUP_WORKER;
    }
    return s.status;
}
