/* fcgi-publisher: the FastCGI responder mounted in the site's web server.
 *
 * Processes: on its own socket ([publisher] listen), the first process
 * only supervises `workers` worker processes that share the listening
 * socket; each worker is one event loop (shared/ev.h) serving many web
 * server connections at once (front.h) and publishing over one pipelined
 * connection to ws-server (pubclient.h). Started by the web server on
 * fd 0 (mod_fcgid, spawn-fcgi), it is one worker: the web server spawns
 * and supervises as many as it wants.
 *
 * Metrics ([publisher] metrics_listen, pubstats.h): the supervisor maps
 * the shared counters and opens the metrics socket before forking; every
 * worker counts into its own slot and serves /metrics on that shared
 * socket, so whichever worker accepts a scrape answers it with the sum
 * over all of them. On fd 0 the one process maps a region of its own and
 * a scrape shows that process only.
 *
 * Signals, through the loop: SIGHUP reloads the config (a request keeps
 * the answer it was being given; the next ones see the new config);
 * SIGTERM/SIGINT stop gracefully: accept nothing more, answer what is in
 * flight for up to MAIN_STOP_GRACE_MS, exit.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "buf.h"
#include "cfg.h"
#include "ev.h"
#include "front.h"
#include "log.h"
#include "metrics_http.h"
#include "pubclient.h"
#include "pubstats.h"
#include "responder.h"

#define MAIN_STOP_GRACE_MS 5000
/* A worker that dies at once must not turn the supervisor into a fork loop. */
#define MAIN_RESTART_DELAY_MS 200
/* A worker whose link to ws-server is down tries to open it this often. */
#define MAIN_LINK_RETRY_MS 1000

/* What the supervisor sets up for its workers: the shared counters and the
 * metrics socket (-1 when metrics_listen is off, or on fd 0 where the one
 * process opens it itself). */
struct main_shared {
    pubstats_t *stats;
    int         metrics_fd;
};

/* One worker process's state. */
struct main_worker {
    struct ev_hook after;
    const char      *cfg_path;
    struct cfg      *cfg;
    ev_loop_t       *loop;
    front_t         *front;
    resp_t          *resp;
    pubstats_t      *stats;
    mhttp_t         *metrics;
    struct ev_timer  grace;
    struct ev_timer  link;
    int              stopping;
};

static struct cfg *main_cfg_load(const char *path, char *err, size_t errlen)
{
    struct cfg *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (cfg_load(c, path, err, errlen) < 0)
        goto fail;
    if (c->secret.len == 0) {
        snprintf(err, errlen, "%s: secret_file is required", path);
        goto fail;
    }
    if (strlen(c->publish_socket) >= PUBC_PATH_MAX) {
        snprintf(err, errlen, "%s: publish_socket longer than a Unix socket path (%d bytes)",
                 path, PUBC_PATH_MAX - 1);
        goto fail;
    }
    return c;
fail:
    cfg_free(c);
    free(c);
    return NULL;
}

static void main_cfg_free(struct cfg *c)
{
    if (c) {
        cfg_free(c);
        free(c);
    }
}

/* Opens the configured listening socket, or takes over fd 0 from the web
 * server. */
static int main_listen(const struct cfg *c, char *err, size_t errlen)
{
    if (c->pub_listen[0])
        return addr_listen(c->pub_listen, 1024, 0, 0660, "", err, errlen);
    int acc = 0;
    socklen_t len = sizeof acc;
    if (getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc) {
        snprintf(err, errlen, "no [publisher] listen configured and fd 0 is not a "
                              "listening socket (not started by a FastCGI web server)");
        return -1;
    }
    return 0;
}

static struct front_limits main_front_limits(const struct cfg *c)
{
    return (struct front_limits){ .body = (size_t)c->max_body, .params = (size_t)c->max_params,
                                  .stall_ms = (unsigned)c->request_timeout_ms };
}

/* Requests are answered from the responder's config, which a reload swaps;
 * nothing in flight points into the old one, so it is freed at once. */
static void main_reload(struct main_worker *w)
{
    char err[512];
    struct cfg *c = main_cfg_load(w->cfg_path, err, sizeof err);
    if (!c) {
        log_error("reload failed, keeping the running config: %s", err);
        return;
    }
    if (resp_set_cfg(w->resp, c) < 0) {
        log_error("reload failed, keeping the running config: publish_socket path too long");
        main_cfg_free(c);
        return;
    }
    if (strcmp(w->cfg->pub_listen, c->pub_listen) != 0 || w->cfg->pub_workers != c->pub_workers ||
        strcmp(w->cfg->pub_metrics_listen, c->pub_metrics_listen) != 0)
        log_warn("reload: [publisher] listen, workers and metrics_listen change only on restart");
    struct front_limits lim = main_front_limits(c);
    front_set_limits(w->front, &lim);
    log_set_level((enum log_level)c->log_level);
    main_cfg_free(w->cfg);
    w->cfg = c;
    log_info("configuration reloaded from %s", w->cfg_path);
}

static void main_grace_over(ev_loop_t *loop, struct ev_timer *t)
{
    struct main_worker *w = ev_container_of(t, struct main_worker, grace);
    log_warn("stopping with %zu request(s) unanswered", front_busy(w->front));
    ev_stop(loop);
}

static void main_signal(ev_loop_t *loop, int signo, void *data)
{
    struct main_worker *w = data;
    if (signo == SIGHUP) {
        main_reload(w);
        return;
    }
    if (w->stopping)
        return;
    log_info("signal %d: stopping", signo);
    w->stopping = 1;
    front_stop(w->front);
    ev_timer_stop(loop, &w->link);
    ev_timer_start(loop, &w->grace, MAIN_STOP_GRACE_MS, main_grace_over);
    ev_poll_now(loop);
}

/* Once per loop pass: the publishes and answers of the pass go out
 * together, one send per connection. */
static void main_after(ev_loop_t *loop, void *data)
{
    struct main_worker *w = data;
    resp_flush(w->resp);
    front_flush(w->front);
    if (w->stopping && front_drained(w->front))
        ev_stop(loop);
}

/* Keeps the link to ws-server up, so /readyz reflects it before the first
 * publish and after ws-server restarts. */
static void main_link(ev_loop_t *loop, struct ev_timer *t)
{
    struct main_worker *w = ev_container_of(t, struct main_worker, link);
    (void)resp_link(w->resp);
    ev_timer_start(loop, &w->link, MAIN_LINK_RETRY_MS, main_link);
}

static int main_metrics(void *ctx, struct buf *out)
{
    struct main_worker *w = ctx;
    return pubstats_write(out, w->stats);
}

static int main_ready(void *ctx)
{
    struct main_worker *w = ctx;
    return pubstats_links_up(w->stats) > 0;
}

/* Serves metrics_listen (returns 0, or -1 logged): on the supervisor's socket (this process's
 * inherited copy of it, which the responder then owns), or on fd 0 on a
 * socket of its own. */
static int main_metrics_open(struct main_worker *w, const struct main_shared *sh)
{
    const struct mhttp_handlers mh = { main_metrics, main_ready };
    char why[256];
    if (sh->metrics_fd >= 0) {
        w->metrics = mhttp_open_fd(w->loop, sh->metrics_fd, w->cfg->pub_metrics_listen, &mh, w,
                                   why, sizeof why);
    } else {
        w->metrics = mhttp_open(w->loop, w->cfg->pub_metrics_listen, &mh, w, why, sizeof why);
    }
    if (!w->metrics) {
        log_error("metrics_listen: %s", why);
        return -1;
    }
    return 0;
}

/* Runs one worker on listen_fd until stopped, counting into slot of
 * sh->stats. Takes ownership of c. Returns the exit status. */
static int main_serve(const char *cfg_path, struct cfg *c, int listen_fd,
                      const struct main_shared *sh, int slot)
{
    struct main_worker w = { .cfg_path = cfg_path, .cfg = c, .stats = sh->stats };
    int rc = 1;
    char err[256];
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    w.loop = ev_loop_new(err, sizeof err);
    if (!w.loop) {
        log_error("%s", err);
        goto out;
    }
    int src = ev_signals(w.loop, &set, main_signal, &w);
    if (src < 0) {
        log_error("signalfd: %s", strerror(-src));
        goto out;
    }
    w.resp = resp_new(w.loop, c, pubstats_slot(sh->stats, slot));
    if (!w.resp) {
        log_error("cannot start the responder: publish_socket path too long or out of memory");
        goto out;
    }
    struct front_handlers h = { .on_request = resp_handle, .on_cancel = resp_cancel,
                                .ctx = w.resp };
    struct front_limits lim = main_front_limits(c);
    w.front = front_new(w.loop, listen_fd, &lim, &h);
    if (!w.front) {
        log_error("cannot serve the listening socket: %s", strerror(errno));
        goto out;
    }
    /* Publishing matters more than being watched: a metrics listener that
     * cannot open (on fd 0, another process of the web server's holds the
     * address) is logged and the worker serves on without it. */
    if (c->pub_metrics_listen[0])
        (void)main_metrics_open(&w, sh);
    main_link(w.loop, &w.link);
    ev_after_add(w.loop, &w.after, main_after, &w);
    int erc = ev_run(w.loop);
    rc = erc < 0 ? 1 : 0;
    if (erc < 0)
        log_error("event loop: %s", strerror(-erc));
out:
    if (w.loop)
        ev_timer_stop(w.loop, &w.link);
    mhttp_free(w.metrics);
    front_free(w.front);
    resp_free(w.resp);
    if (w.loop)
        ev_loop_free(w.loop);
    main_cfg_free(w.cfg);
    return rc;
}

/* Forks a worker into every empty slot of pids, recording its pid in the
 * same slot of stats. Returns 1 in a new worker (which goes on to serve
 * slot *slot), 0 in the supervisor. */
static int main_spawn_workers(int n, pid_t *pids, int *alive, pid_t self, pubstats_t *stats,
                              int *slot)
{
    for (int i = 0; i < n; i++) {
        if (pids[i] > 0)
            continue;
        pid_t pid = fork();
        if (pid < 0) {
            log_error("fork: %s", strerror(errno));
            continue;
        }
        if (pid == 0) {
            /* SIGTERM/SIGHUP stay blocked: one sent before the worker's
             * signalfd exists waits for it instead of killing it. */
            sigset_t chld;
            sigemptyset(&chld);
            sigaddset(&chld, SIGCHLD);
            sigprocmask(SIG_UNBLOCK, &chld, NULL);
            /* A supervisor killed outright takes its workers along. */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != self)
                _exit(0);
            *slot = i;
            return 1;
        }
        pids[i] = pid;
        pubstats_slot(stats, i)->pid = pid;
        (*alive)++;
    }
    return 0;
}

/* Collects exited workers (SIGCHLD). While running, each one lost is
 * logged and its slot emptied for a restart; while stopping, an unclean
 * exit sets *status. Returns 1 when a worker must be restarted. */
static int main_reap_workers(int n, pid_t *pids, int *alive, int stopping, int *status,
                             pubstats_t *stats)
{
    int st, restart = 0;
    pid_t pid;
    struct rusage ru;
    while ((pid = wait4(-1, &st, WNOHANG, &ru)) > 0) {
        for (int i = 0; i < n; i++) {
            if (pids[i] != pid)
                continue;
            pids[i] = 0;
            (*alive)--;
            /* Its counts stay for the next worker of the slot; its link
             * went with it. */
            struct pubstats_slot *sl = pubstats_slot(stats, i);
            sl->pid = 0;
            pubstats_set(&sl->link_up, 0);
            pubstats_add(&sl->gone_cpu_us,
                         (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
                         (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec));
            if (stopping) {
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                    *status = 1;
            } else if (WIFSIGNALED(st)) {
                log_error("worker process %d killed by signal %d: starting a new one",
                          (int)pid, WTERMSIG(st));
                restart = 1;
            } else {
                log_error("worker process %d exited with %d: starting a new one", (int)pid,
                          WEXITSTATUS(st));
                restart = 1;
            }
        }
    }
    return restart;
}

/* The supervisor: keeps n worker processes serving the socket. A worker
 * that crashes or is killed costs the requests it had in flight, never the
 * service; requests arriving meanwhile wait in the backlog or go to the
 * other workers. SIGHUP reloads *cfg (from path) here too, for the workers
 * started later. Returns -1 in a new worker (which goes on to serve *cfg
 * in slot *slot of stats), and in the supervisor the exit status once
 * stopped. */
static int main_supervise(int n, const char *path, struct cfg **cfg, pubstats_t *stats, int *slot)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    pid_t self = getpid();
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    if (!pids) {
        log_error("out of memory");
        return 1;
    }
    int stopping = 0, alive = 0, status = 0;
    for (;;) {
        if (!stopping && main_spawn_workers(n, pids, &alive, self, stats, slot)) {
            free(pids);
            return -1;
        }
        if (stopping && alive == 0)
            break;
        /* A slot left empty by a failed fork is tried again after a pause. */
        int sig;
        if (alive < n && !stopping)
            sig = sigtimedwait(&set, NULL,
                               &(struct timespec){ .tv_nsec = MAIN_RESTART_DELAY_MS * 1000000L });
        else if (sigwait(&set, &sig) != 0)
            sig = -1;
        if (sig < 0)
            continue;
        if (sig == SIGHUP) {
            /* Kept for the workers started from now on (one replacing a
             * crashed worker serves what its siblings serve). */
            char err[512];
            struct cfg *c = main_cfg_load(path, err, sizeof err);
            if (c) {
                main_cfg_free(*cfg);
                *cfg = c;
            }
        }
        if (sig == SIGHUP || (sig != SIGCHLD && !stopping)) {
            if (sig != SIGHUP) {
                log_info("signal %d: stopping the workers", sig);
                stopping = 1;
            }
            for (int i = 0; i < n; i++)
                if (pids[i] > 0)
                    kill(pids[i], sig == SIGHUP ? SIGHUP : SIGTERM);
            continue;
        }
        if (sig == SIGCHLD && main_reap_workers(n, pids, &alive, stopping, &status, stats))
            nanosleep(&(struct timespec){ .tv_nsec = MAIN_RESTART_DELAY_MS * 1000000L }, NULL);
    }
    free(pids);
    return status;
}

int main(int argc, char **argv)
{
    const char *path;
    int check_only;
    char err[512];
    int args = cfg_args(argc, argv, "fcgi-publisher",
                        "Listens on [publisher] listen (Unix path or host:port), or on fd 0\n"
                        "when started by the web server (mod_fcgid, spawn-fcgi).\n",
                        &path, &check_only);
    if (args <= 0)
        return args == 0 ? 0 : 2;
    log_init("fcgi-publisher", LOG_INFO);
    /* Blocked from the start: a SIGHUP (logrotate) during start-up waits
     * for the loop's signalfd or the supervisor's sigwait instead of
     * killing the process. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    struct cfg *c = main_cfg_load(path, err, sizeof err);
    if (!c) {
        fprintf(stderr, "fcgi-publisher: %s\n", err);
        return 1;
    }
    if (check_only) {
        printf("fcgi-publisher: configuration %s is valid\n", path);
        main_cfg_free(c);
        return 0;
    }
    log_set_level((enum log_level)c->log_level);
    /* A write to a closed socket is an error return, never a signal. */
    signal(SIGPIPE, SIG_IGN);
    int listen_fd = main_listen(c, err, sizeof err);
    if (listen_fd < 0) {
        log_error("%s", err);
        main_cfg_free(c);
        return 1;
    }
    int own = c->pub_listen[0] != 0;
    /* Kept from now: a reload may change pub_listen, and only the socket
     * file this process made may be removed at exit. */
    char listen_path[CFG_PATH_MAX];
    snprintf(listen_path, sizeof listen_path, "%s", c->pub_listen);
    struct addr_unix_id listen_id = addr_unix_identity(listen_path);
    log_info("listening on %s with %d worker process(es), publishing to %s",
             own ? c->pub_listen : "fd 0", own ? c->pub_workers : 1, c->publish_socket);
    struct main_shared sh = { .metrics_fd = -1 };
    sh.stats = pubstats_map(own ? c->pub_workers : 1, own ? getpid() : 0);
    if (!sh.stats) {
        log_error("cannot map the shared counters: %s", strerror(errno));
        main_cfg_free(c);
        return 1;
    }
    char metrics_path[CFG_PATH_MAX];
    snprintf(metrics_path, sizeof metrics_path, "%s", c->pub_metrics_listen);
    struct addr_unix_id metrics_id = { 0 };
    if (own && metrics_path[0]) {
        sh.metrics_fd = addr_listen(metrics_path, 64, 0, 0660, NULL, err, sizeof err);
        if (sh.metrics_fd < 0) {
            log_error("metrics_listen: %s", err);
            if (addr_is_unix(listen_path))
                addr_unlink_owned(listen_path, &listen_id);
            main_cfg_free(c);
            return 1;
        }
        metrics_id = addr_unix_identity(metrics_path);
        log_info("metrics on %s", metrics_path);
    }
    int slot = 0;
    if (own) {
        int status = main_supervise(c->pub_workers, path, &c, sh.stats, &slot);
        if (status >= 0) {
            if (addr_is_unix(listen_path))
                addr_unlink_owned(listen_path, &listen_id);
            if (sh.metrics_fd >= 0 && addr_is_unix(metrics_path))
                addr_unlink_owned(metrics_path, &metrics_id);
            if (sh.metrics_fd >= 0)
                close(sh.metrics_fd);
            close(listen_fd);
            main_cfg_free(c);
            pubstats_unmap(sh.stats);
            return status;
        }
        log_set_level((enum log_level)c->log_level);
    } else if (metrics_path[0]) {
        log_info("metrics on %s (this process only: on fd 0 each process the web server "
                 "starts serves its own)", metrics_path);
    }
    int rc = main_serve(path, c, listen_fd, &sh, slot);
    if (listen_fd > 0)
        close(listen_fd);
    pubstats_unmap(sh.stats);
    return rc;
}
