/* fcgi-publisher: the FastCGI responder mounted in the site's web server.
 *
 * Threads: `workers` threads each loop on FCGX_Accept_r over the one
 * listening socket (its own, or fd 0 when the web server spawned us) with
 * their own persistent publish-socket connection. The main thread only
 * waits for signals: SIGHUP reloads the config, SIGTERM/SIGINT stop.
 *
 * The config is shared read-only; a reload builds a new one and swaps the
 * pointer, and a request keeps a reference to the config it started with,
 * so nothing ever changes under a running request.
 */
#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "cfg.h"
#include "log.h"
#include "responder.h"

#define MAIN_STOP_GRACE_MS 5000

/* A loaded config and the requests still using it. */
struct main_cfgref {
    struct cfg cfg;
    int        refs;
};

struct main_ctx {
    pthread_mutex_t     lock;     /* guards cur and every refs */
    struct main_cfgref *cur;
    int                 listen_fd;
    atomic_int          stopping;
};

struct main_thread {
    struct main_ctx *ctx;
    pthread_t        tid;
    int              id;
    int              started;
    atomic_int       busy;       /* 1 while answering: never interrupt then */
};

static struct main_cfgref *main_cfg_get(struct main_ctx *x)
{
    pthread_mutex_lock(&x->lock);
    struct main_cfgref *r = x->cur;
    r->refs++;
    pthread_mutex_unlock(&x->lock);
    return r;
}

static void main_cfg_put(struct main_ctx *x, struct main_cfgref *r)
{
    pthread_mutex_lock(&x->lock);
    int last = --r->refs == 0;
    pthread_mutex_unlock(&x->lock);
    if (last) {
        cfg_free(&r->cfg);
        free(r);
    }
}

static struct main_cfgref *main_cfg_load(const char *path, char *err, size_t errlen)
{
    struct main_cfgref *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->refs = 1;
    if (cfg_load(&r->cfg, path, err, errlen) < 0)
        goto fail;
    if (r->cfg.secret.len == 0) {
        snprintf(err, errlen, "%s: secret_file is required", path);
        goto fail;
    }
    return r;
fail:
    cfg_free(&r->cfg);
    free(r);
    return NULL;
}

static void *main_worker(void *arg)
{
    struct main_thread *t = arg;
    struct main_ctx *x = t->ctx;
    struct resp_worker w;
    FCGX_Request req;
    struct main_cfgref *r = main_cfg_get(x);
    int rc = resp_worker_init(&w, &r->cfg, t->id);
    main_cfg_put(x, r);
    if (rc < 0)
        log_error("worker %d: publish_socket path too long", t->id);
    FCGX_InitRequest(&req, x->listen_fd, 0);
    while (!atomic_load(&x->stopping)) {
        atomic_store(&t->busy, 0);
        rc = FCGX_Accept_r(&req);
        atomic_store(&t->busy, 1);
        if (rc < 0) {
            if (atomic_load(&x->stopping))
                break;
            log_warn("worker %d: accept failed: %s", t->id, strerror(-rc));
            nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
            continue;
        }
        r = main_cfg_get(x);
        resp_handle(&w, &r->cfg, &req);
        main_cfg_put(x, r);
        FCGX_Finish_r(&req);
    }
    FCGX_Free(&req, 1);
    resp_worker_free(&w);
    return NULL;
}

/* Opens the configured listening socket, or takes over fd 0 from the web
 * server. libfcgi expects a blocking socket. */
static int main_listen(const struct cfg *c, char *err, size_t errlen)
{
    int fd;
    if (c->pub_listen[0]) {
        fd = addr_listen(c->pub_listen, 128, 0, 0660, "", err, errlen);
        if (fd < 0)
            return -1;
    } else {
        int acc = 0;
        socklen_t len = sizeof acc;
        if (getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc) {
            snprintf(err, errlen, "no [publisher] listen configured and fd 0 is not a "
                                  "listening socket (not started by a FastCGI web server)");
            return -1;
        }
        fd = 0;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        snprintf(err, errlen, "listen socket: %s", strerror(errno));
        if (fd != 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void main_reload(struct main_ctx *x, const char *path)
{
    char err[512];
    struct main_cfgref *r = main_cfg_load(path, err, sizeof err);
    if (!r) {
        log_error("reload failed, keeping the running config: %s", err);
        return;
    }
    pthread_mutex_lock(&x->lock);
    struct main_cfgref *old = x->cur;
    x->cur = r;
    pthread_mutex_unlock(&x->lock);
    if (strcmp(old->cfg.pub_listen, r->cfg.pub_listen) != 0 ||
        old->cfg.pub_workers != r->cfg.pub_workers)
        log_warn("reload: [publisher] listen and workers change only on restart");
    log_set_level((enum log_level)r->cfg.log_level);
    log_info("configuration reloaded from %s", path);
    main_cfg_put(x, old);
}

/* Interrupts a worker's blocking accept(): installed without SA_RESTART,
 * so accept() fails with EINTR and libfcgi, seeing FCGX_ShutdownPending,
 * returns instead of retrying. */
static void main_wake(int sig) { (void)sig; }

/* Wakes and joins the workers for up to the grace period. The wake-up is
 * repeated because a signal that lands just before a worker enters
 * accept() is lost. A worker stuck on a web server's idle keep-alive
 * connection must not hold up the exit: it is counted and abandoned. */
static int main_join(struct main_thread *th, int n)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++) {
            if (!th[i].started)
                continue;
            if (pthread_tryjoin_np(th[i].tid, NULL) == 0) {
                th[i].started = 0;
                continue;
            }
            /* Only a worker waiting in accept(): a signal in the middle of
             * a request would fail its reads from the web server. */
            if (!atomic_load(&th[i].busy))
                pthread_kill(th[i].tid, SIGUSR2);
            left++;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - start.tv_sec) * 1000L + (now.tv_nsec - start.tv_nsec) / 1000000L;
        if (left == 0 || ms >= MAIN_STOP_GRACE_MS)
            return left;
        nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
    }
}

/* On its own socket, fcgi-publisher runs its workers in a child process
 * and the first process only supervises: a worker process that crashes or
 * is killed costs the requests it had in flight, never the service — a
 * new one is started at once on the same listening socket, and requests
 * arriving meanwhile wait in its backlog. (Under mod_fcgid or spawn-fcgi
 * the web server is the supervisor.) Returns -1 in the child, which goes on
 * to serve; in the supervisor, the exit status once stopped. */
static int main_supervise(const sigset_t *set)
{
    sigset_t with_chld = *set;
    sigaddset(&with_chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &with_chld, NULL);
    int stopping = 0;
    for (;;) {
        pid_t pid = fork();
        if (pid < 0) {
            log_error("fork: %s", strerror(errno));
            return 1;
        }
        if (pid == 0)
            return -1;
        for (;;) {
            int sig, st;
            if (sigwait(&with_chld, &sig) != 0)
                continue;
            if (sig == SIGHUP) {
                kill(pid, SIGHUP);
                continue;
            }
            if (sig != SIGCHLD) {
                stopping = 1;
                kill(pid, SIGTERM);
                continue;
            }
            if (waitpid(pid, &st, WNOHANG) != pid)
                continue;
            if (stopping)
                return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
            if (WIFSIGNALED(st))
                log_error("worker process %d killed by signal %d: starting a new one", (int)pid,
                          WTERMSIG(st));
            else
                log_error("worker process %d exited with %d: starting a new one", (int)pid,
                          WEXITSTATUS(st));
            /* A worker that dies at once must not turn this into a fork loop. */
            nanosleep(&(struct timespec){ .tv_nsec = 200 * 1000 * 1000 }, NULL);
            break;
        }
    }
}

static void main_usage(FILE *f)
{
    fprintf(f, "usage: fcgi-publisher [-c FILE] [-t]\n"
               "  -c FILE  configuration (default /etc/wspush/wspush.ini)\n"
               "  -t       check the configuration and exit\n"
               "Listens on [publisher] listen (Unix path or host:port), or on fd 0\n"
               "when started by the web server (mod_fcgid, spawn-fcgi).\n");
}

int main(int argc, char **argv)
{
    const char *path = "/etc/wspush/wspush.ini";
    int check_only = 0, opt, rc = 1, nthreads = 0, failed = 0;
    struct main_thread *th = NULL;
    struct main_ctx x = { .listen_fd = -1 };
    char err[512];
    while ((opt = getopt(argc, argv, "c:th")) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': check_only = 1; break;
        case 'h': main_usage(stdout); return 0;
        default: main_usage(stderr); return 2;
        }
    }
    log_init("fcgi-publisher", LOG_INFO);
    pthread_mutex_init(&x.lock, NULL);
    x.cur = main_cfg_load(path, err, sizeof err);
    if (!x.cur) {
        fprintf(stderr, "fcgi-publisher: %s\n", err);
        goto out;
    }
    if (check_only) {
        printf("fcgi-publisher: configuration %s is valid\n", path);
        rc = 0;
        goto out;
    }
    log_set_level((enum log_level)x.cur->cfg.log_level);

    /* Signals go to the main thread's sigwait only; a write to a closed
     * socket is an error return, never a signal. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct sigaction sa = { .sa_handler = main_wake };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);

    if (FCGX_Init() != 0) {
        log_error("FCGX_Init failed");
        goto out;
    }
    x.listen_fd = main_listen(&x.cur->cfg, err, sizeof err);
    if (x.listen_fd < 0) {
        log_error("%s", err);
        goto out;
    }
    if (x.cur->cfg.pub_listen[0]) {
        int status = main_supervise(&set);
        if (status >= 0) {
            if (addr_is_unix(x.cur->cfg.pub_listen))
                unlink(x.cur->cfg.pub_listen);
            rc = status;
            goto out;
        }
    }
    nthreads = x.cur->cfg.pub_workers;
    th = calloc((size_t)nthreads, sizeof *th);
    if (!th) {
        log_error("out of memory");
        goto out;
    }
    for (int i = 0; i < nthreads; i++) {
        th[i].ctx = &x;
        th[i].id = i;
        if (pthread_create(&th[i].tid, NULL, main_worker, &th[i]) != 0) {
            log_error("cannot start worker %d", i);
            atomic_store(&x.stopping, 1);
            failed = 1;
            break;
        }
        th[i].started = 1;
    }
    if (!atomic_load(&x.stopping))
        log_info("listening on %s with %d workers, publishing to %s",
                 x.cur->cfg.pub_listen[0] ? x.cur->cfg.pub_listen : "fd 0", nthreads,
                 x.cur->cfg.publish_socket);
    while (!atomic_load(&x.stopping)) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            main_reload(&x, path);
            continue;
        }
        log_info("signal %d: stopping", sig);
        atomic_store(&x.stopping, 1);
    }
    FCGX_ShutdownPending();
    /* A socket of our own can also be shut down, which wakes accept() too;
     * fd 0 may be shared with sibling processes (spawn-fcgi -F), so it is
     * left alone. */
    if (x.listen_fd > 0)
        shutdown(x.listen_fd, SHUT_RDWR);
    int stuck = main_join(th, nthreads);
    if (x.cur->cfg.pub_listen[0] && addr_is_unix(x.cur->cfg.pub_listen))
        unlink(x.cur->cfg.pub_listen);
    if (stuck) {
        /* A straggler still uses the config and libfcgi: leave it all to
         * the kernel rather than free it under the thread. */
        log_warn("%d worker(s) still busy at exit", stuck);
        _exit(failed);
    }
    rc = failed;
out:
    if (x.listen_fd > 0)
        close(x.listen_fd);
    if (x.cur)
        main_cfg_put(&x, x.cur);
    free(th);
    return rc;
}
