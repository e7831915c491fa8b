/* listener: a real loopback listening socket on the real loop. Out of file
 * descriptors (a lowered RLIMIT_NOFILE) the listener pauses instead of
 * spinning, logs once per second with a count, and accepts the waiting
 * clients once fds are free again, without a new connect; max_per_pass
 * bounds one wake-up; stop closes the fd, also from inside the callback.
 * Every wait is the loop's own (a stop condition checked after each pass,
 * with a deadline timer as the bound), never a sleep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener.h"

#define TL_CLIENTS  12
#define TL_FREE_FDS 4     /* fds the lowered limit leaves for accepting */

struct tl {
    ev_loop_t       *loop;
    struct listener  l;
    struct ev_hook   hook;
    struct ev_timer  soft, hard;
    int              fds[TL_CLIENTS];   /* accepted, owned by the test */
    int              naccepted;
    int              want;         /* stop once naccepted reaches it (0: never) */
    int              soft_over;    /* the soft deadline passed */
    int              stop_paused;  /* after the soft deadline, stop once paused */
    int              hard_hit;     /* the hard deadline stopped the loop */
    int              passes;
    int              pass_accepts, max_pass_accepts;
    int              stop_in_cb;   /* listener_stop from the first callback */
    int              bad_flags;    /* an accepted fd lacked O_NONBLOCK or FD_CLOEXEC */
};

static void tl_accept(struct listener *l, int fd, void *data)
{
    struct tl *t = data;
    assert_ptr_equal(l, &t->l);
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || !(fl & O_NONBLOCK) || fdfl < 0 || !(fdfl & FD_CLOEXEC))
        t->bad_flags = 1;
    assert_true(t->naccepted < TL_CLIENTS);
    t->fds[t->naccepted++] = fd;
    t->pass_accepts++;
    if (t->stop_in_cb)
        listener_stop(l);
}

static void tl_after(ev_loop_t *loop, void *data)
{
    struct tl *t = data;
    t->passes++;
    if (t->pass_accepts > t->max_pass_accepts)
        t->max_pass_accepts = t->pass_accepts;
    t->pass_accepts = 0;
    if (t->want > 0 && t->naccepted >= t->want)
        ev_stop(loop);
    if (t->stop_paused && t->soft_over && listener_paused(&t->l))
        ev_stop(loop);
}

static void tl_soft(ev_loop_t *loop, struct ev_timer *tm)
{
    (void)loop;
    struct tl *t = ev_container_of(tm, struct tl, soft);
    t->soft_over = 1;
}

static void tl_hard(ev_loop_t *loop, struct ev_timer *tm)
{
    struct tl *t = ev_container_of(tm, struct tl, hard);
    t->hard_hit = 1;
    ev_stop(loop);
}

/* Runs the loop until the stop condition, or hard_ms as the bound. */
static void tl_run(struct tl *t, uint64_t soft_ms, uint64_t hard_ms)
{
    t->soft_over = soft_ms == 0;
    t->hard_hit = 0;
    if (soft_ms)
        assert_int_equal(ev_timer_start(t->loop, &t->soft, soft_ms, tl_soft), 0);
    assert_int_equal(ev_timer_start(t->loop, &t->hard, hard_ms, tl_hard), 0);
    assert_int_equal(ev_run(t->loop), 0);
    ev_timer_stop(t->loop, &t->soft);
    ev_timer_stop(t->loop, &t->hard);
}

/* A listening TCP socket on 127.0.0.1, port chosen by the kernel. */
static int tl_listen(struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof *sa;
    assert_int_equal(bind(fd, (struct sockaddr *)sa, len), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)sa, &len), 0);
    return fd;
}

/* A blocking connect: on loopback it returns once the connection waits in
 * the listener's backlog. */
static int tl_connect(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)sa, sizeof *sa), 0);
    return fd;
}

/* Returns the listening fd (owned by t->l). */
static int tl_init(struct tl *t, int max_per_pass, struct sockaddr_in *sa)
{
    char err[128];
    memset(t, 0, sizeof *t);
    t->loop = ev_loop_new(err, sizeof err);
    assert_non_null(t->loop);
    int lfd = tl_listen(sa);
    assert_int_equal(listener_start(&t->l, t->loop, lfd, "test", max_per_pass, tl_accept, t), 0);
    assert_int_equal(listener_paused(&t->l), 0);
    ev_after_add(t->loop, &t->hook, tl_after, t);
    return lfd;
}

static void tl_done(struct tl *t, const int *clients, int nclients)
{
    listener_stop(&t->l);
    for (int i = 0; i < t->naccepted; i++)
        if (t->fds[i] >= 0)
            close(t->fds[i]);
    for (int i = 0; i < nclients; i++)
        close(clients[i]);
    ev_loop_free(t->loop);
}

static int tl_fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* Counts lines of f holding needle; copies the first such line. */
static int tl_count_lines(FILE *f, const char *needle, char *first, size_t firstlen,
                          char *last, size_t lastlen)
{
    char line[1024];
    int n = 0;
    rewind(f);
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, needle))
            continue;
        if (n++ == 0)
            snprintf(first, firstlen, "%s", line);
        snprintf(last, lastlen, "%s", line);
    }
    return n;
}

static struct rlimit tl_saved_limit;

static int tl_save_limit(void **state)
{
    (void)state;
    return getrlimit(RLIMIT_NOFILE, &tl_saved_limit);
}

/* A failed assertion must not leave the later tests without fds. */
static int tl_restore_limit(void **state)
{
    (void)state;
    return setrlimit(RLIMIT_NOFILE, &tl_saved_limit);
}

static void test_emfile_backs_off(void **state)
{
    (void)state;
    struct tl t;
    struct sockaddr_in sa;
    int clients[TL_CLIENTS];
    tl_init(&t, 0, &sa);
    for (int i = 0; i < TL_CLIENTS; i++)
        clients[i] = tl_connect(&sa);

    /* The log goes to a file for the EMFILE phase (opened before the limit
     * is lowered). */
    FILE *logf = tmpfile();
    assert_non_null(logf);
    int saved_stderr = dup(2);
    assert_true(saved_stderr >= 0);

    /* Leave exactly TL_FREE_FDS fd numbers free below the limit: the limit
     * sits just above the TL_FREE_FDS-th free number (fds open above it,
     * inherited ones too, keep working; only new ones must fit below). */
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int room = 0, fd = 0;
    for (; room < TL_FREE_FDS; fd++)
        room += !tl_fd_open(fd);
    low = old;
    low.rlim_cur = (rlim_t)fd;

    fflush(stderr);
    assert_true(dup2(fileno(logf), 2) == 2);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

    /* Phase 1: more clients wait than fds allow. Run 1.25 s (then until
     * the listener is paused): long enough for a second log line. */
    uint64_t t0 = ev_now(t.loop);
    t.stop_paused = 1;
    tl_run(&t, 1250, 3000);
    uint64_t elapsed = ev_now(t.loop) - t0;
    t.stop_paused = 0;
    int phase1_passes = t.passes;

    /* saved_stderr and logf stay open until the limit is back up: closing
     * them would free fds below it. */
    fflush(stderr);
    dup2(saved_stderr, 2);

    assert_false(t.hard_hit);
    assert_int_equal(t.naccepted, room);
    assert_int_equal(listener_paused(&t.l), 1);
    assert_int_equal(t.bad_flags, 0);
    /* Paused, the loop wakes about twice per LISTENER_BACKOFF_MS (the timer,
     * then the failed accept); a spin would make hundreds of thousands. */
    int bound = (int)(elapsed / LISTENER_BACKOFF_MS) * 2 + 10;
    if (phase1_passes > bound)
        fail_msg("%d loop passes in %llu ms: the listener spins (bound %d)", phase1_passes,
                 (unsigned long long)elapsed, bound);
    assert_true(elapsed >= 1250);

    /* One line at the first failure, one a second later with the count. */
    char first[1024] = "", last[1024] = "";
    int lines = tl_count_lines(logf, "test: accept: ", first, sizeof first, last, sizeof last);
    if (lines != 2)
        fail_msg("%d log lines, want 2; first: %s", lines, first);
    assert_non_null(strstr(first, "test: accept: Too many open files (1 times since last "
                                  "report); pausing 100 ms\n"));
    unsigned long n = 0;
    const char *p = strstr(last, "Too many open files (");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "Too many open files (%lu times since last report)", &n), 1);
    assert_true(n >= 5 && n <= 14);
    assert_non_null(strstr(last, "); pausing 100 ms\n"));

    /* Phase 2: two fds come free, the limit stays; the waiting clients get
     * them with no new connect, at the next try. */
    int before = t.naccepted;
    close(t.fds[0]);
    close(t.fds[1]);
    t.fds[0] = t.fds[1] = -1;
    t.want = before + 2;
    tl_run(&t, 0, 1000);
    assert_false(t.hard_hit);
    assert_int_equal(t.naccepted, before + 2);

    /* Phase 3: the limit back up: everyone left is accepted, and with the
     * backlog empty the listener is watching again, not paused. */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    close(saved_stderr);
    fclose(logf);
    t.want = TL_CLIENTS;
    tl_run(&t, 0, 1000);
    assert_false(t.hard_hit);
    assert_int_equal(t.naccepted, TL_CLIENTS);
    assert_int_equal(listener_paused(&t.l), 0);

    /* Each accepted fd still open is a client's peer: a byte crosses. */
    for (int i = 0; i < TL_CLIENTS; i++)
        assert_int_equal(send(clients[i], "x", 1, MSG_NOSIGNAL), 1);
    int got = 0;
    for (int i = 0; i < t.naccepted; i++) {
        char c;
        struct pollfd pfd = { .fd = t.fds[i], .events = POLLIN };
        if (t.fds[i] >= 0 && poll(&pfd, 1, 1000) == 1 && recv(t.fds[i], &c, 1, 0) == 1 &&
            c == 'x')
            got++;
    }
    assert_int_equal(got, TL_CLIENTS - 2);
    tl_done(&t, clients, TL_CLIENTS);
}

static void test_max_per_pass(void **state)
{
    (void)state;
    struct tl t;
    struct sockaddr_in sa;
    int clients[10];
    tl_init(&t, 3, &sa);
    for (int i = 0; i < 10; i++)
        clients[i] = tl_connect(&sa);
    t.want = 10;
    tl_run(&t, 0, 2000);
    assert_false(t.hard_hit);
    assert_int_equal(t.naccepted, 10);
    assert_int_equal(t.max_pass_accepts, 3);
    assert_true(t.passes >= 4);
    assert_int_equal(t.bad_flags, 0);
    assert_int_equal(listener_paused(&t.l), 0);
    tl_done(&t, clients, 10);
}

/* Held: clients wait in the backlog, none is accepted; released: all are,
 * without a new connect. */
static void test_hold(void **state)
{
    (void)state;
    struct tl t;
    struct sockaddr_in sa;
    int clients[3];
    tl_init(&t, 0, &sa);
    listener_hold(&t.l, 1);
    for (int i = 0; i < 3; i++)
        clients[i] = tl_connect(&sa);
    t.want = 3;
    tl_run(&t, 0, 100);
    assert_true(t.hard_hit);
    assert_int_equal(t.naccepted, 0);
    listener_hold(&t.l, 0);
    tl_run(&t, 0, 2000);
    assert_false(t.hard_hit);
    assert_int_equal(t.naccepted, 3);
    tl_done(&t, clients, 3);
}

static void test_stop(void **state)
{
    (void)state;
    struct tl t;
    struct sockaddr_in sa;
    int clients[3];
    int lfd = tl_init(&t, 0, &sa);
    for (int i = 0; i < 3; i++)
        clients[i] = tl_connect(&sa);
    /* Stopped from its own callback: no second accept in that pass, none
     * after, and the listening fd is closed. */
    t.stop_in_cb = 1;
    tl_run(&t, 0, 100);
    assert_true(t.hard_hit);
    assert_int_equal(t.naccepted, 1);
    assert_false(tl_fd_open(lfd));
    assert_int_equal(listener_paused(&t.l), 0);
    listener_stop(&t.l);                  /* twice: a no-op */
    tl_done(&t, clients, 3);

    /* Never started, or failed to start: stop is a no-op, the fd stays. */
    struct listener z;
    memset(&z, 0, sizeof z);
    listener_stop(&z);
    assert_true(tl_fd_open(0));
    char err[128];
    ev_loop_t *loop = ev_loop_new(err, sizeof err);
    assert_non_null(loop);
    assert_int_equal(listener_start(&z, loop, -1, "bad", 0, tl_accept, NULL), -EBADF);
    listener_stop(&z);
    assert_true(tl_fd_open(0));
    /* A regular file cannot be watched by epoll: -EPERM, fd left open. */
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(listener_start(&z, loop, fileno(f), "file", 0, tl_accept, NULL), -EPERM);
    listener_stop(&z);
    assert_true(tl_fd_open(fileno(f)));
    fclose(f);
    ev_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_emfile_backs_off, tl_save_limit, tl_restore_limit),
        cmocka_unit_test(test_max_per_pass),
        cmocka_unit_test(test_hold),
        cmocka_unit_test(test_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
