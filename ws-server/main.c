/* ws-server: the push-only WebSocket server. See README.md.
 *
 * With workers = 1 this process is the server. With workers > 1 (the
 * Redis engine: every worker is a node) it is their supervisor
 * (supervisor.h): it binds every socket once (bound.h), maps the shared
 * counters (tally.h) and forks the workers, each one a whole server on its
 * slot's sockets, its log lines tagged "ws-server worker N".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bound.h"
#include "cfg.h"
#include "ev.h"
#include "log.h"
#include "server.h"
#include "supervisor.h"
#include "tally.h"
#include "tls.h"

/* The supervisor's state, handed to its handlers. */
struct main_sup {
    const char *path;
    struct cfg *cfg;           /* the last configuration accepted; a new worker serves it */
    tally_t    *tally;
};

static void main_cfg_free(struct cfg *cfg)
{
    if (cfg) {
        cfg_free(cfg);
        free(cfg);
    }
}

/* The configuration at path, checked as -t checks it. */
static struct cfg *main_cfg_load(const char *path, char *err, size_t errlen)
{
    struct cfg *cfg = malloc(sizeof(*cfg));
    if (!cfg) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (cfg_load(cfg, path, err, errlen) < 0) {
        main_cfg_free(cfg);
        return NULL;
    }
    /* The certificate pair is part of the configuration: -t and a start
     * refuse one that cannot serve. */
    char why[200];
    if (cfg->tls_certificate[0] && tls_check(cfg, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%.256s: %s", path, why);
        main_cfg_free(cfg);
        return NULL;
    }
    return cfg;
}

static void main_started(void *ctx, int slot, pid_t pid)
{
    struct main_sup *ms = ctx;
    tally_started(ms->tally, slot, pid);
}

static void main_exited(void *ctx, int slot, uint64_t cpu_us)
{
    struct main_sup *ms = ctx;
    tally_retire(ms->tally, slot, cpu_us);
}

/* Kept for the workers started from now on; the running ones reload the
 * file themselves once told. */
static int main_reload(void *ctx)
{
    struct main_sup *ms = ctx;
    char err[512];
    struct cfg *next = main_cfg_load(ms->path, err, sizeof(err));
    if (!next) {
        log_error("reload failed, the workers keep the running config: %s", err);
        return -1;
    }
    /* Workers restarted later start from ms->cfg: one on another store
     * would split the server in two. */
    const char *store = cfg_store_key_changed(ms->cfg, next);
    if (store) {
        log_error("reload failed, the workers keep the running config: %s changed: restart to "
                  "move the node to another store", store);
        main_cfg_free(next);
        return -1;
    }
    if (next->ws_workers != ms->cfg->ws_workers)
        log_warn("reload: workers changes only on a restart (%d running)", ms->cfg->ws_workers);
    log_set_level((enum log_level)next->log_level);
    main_cfg_free(ms->cfg);
    ms->cfg = next;
    log_info("configuration reloaded from %s: telling the workers", ms->path);
    return 0;
}

/* One worker: a whole server on its slot's sockets, until stopped. */
static int main_worker(struct main_sup *ms, bound_t *b, int slot, int n)
{
    static char program[32];
    snprintf(program, sizeof(program), "ws-server worker %d", slot + 1);
    log_init(program, (enum log_level)ms->cfg->log_level);
    bound_keep(b, slot);
    server_fd_limit(ms->cfg);
    char err[512];
    ev_loop_t *loop = ev_loop_new(err, sizeof(err));
    if (!loop) {
        log_error("%s", err);
        return 1;
    }
    const struct server_worker w = { .bound = b, .tally = ms->tally, .slot = slot, .n = n };
    struct cfg *cfg = ms->cfg;
    ms->cfg = NULL;
    server_t *srv = server_new(loop, cfg, ms->path, &w, err, sizeof(err));
    int rc = 1;
    if (!srv)
        log_error("%s", err);
    else if (ev_run(loop) < 0)
        log_error("event loop failed");
    else
        rc = server_failed(srv);
    server_free(srv);
    ev_loop_free(loop);
    return rc;
}

/* The supervisor of cfg->ws_workers workers; its exit status, or in a
 * worker the worker's. */
static int main_supervise(const char *path, struct cfg *cfg)
{
    int n = cfg->ws_workers;
    char err[512];
    struct main_sup ms = { .path = path, .cfg = cfg };
    bound_t *b = bound_open(cfg, n, err, sizeof(err));
    if (!b) {
        log_error("%s", err);
        main_cfg_free(cfg);
        return 1;
    }
    ms.tally = tally_map(n, getpid());
    ev_loop_t *loop = ms.tally ? ev_loop_new(err, sizeof(err)) : NULL;
    if (!loop) {
        log_error("%s", ms.tally ? err : strerror(errno));
        tally_unmap(ms.tally);
        bound_free(b, 1);
        main_cfg_free(cfg);
        return 1;
    }
    log_info("supervising %d worker processes", n);
    const struct sup_handlers h = { main_started, main_exited, main_reload };
    int slot = -1;
    int rc = sup_run(loop, n, &h, &ms, &slot);
    /* In a worker this closes only its copies of the supervisor's loop. */
    ev_loop_free(loop);
    if (rc == SUP_WORKER)
        rc = main_worker(&ms, b, slot, n);
    else
        log_info("exiting");
    bound_free(b, slot < 0);   /* only the supervisor removes socket files */
    tally_unmap(ms.tally);
    main_cfg_free(ms.cfg);
    return rc;
}

int main(int argc, char **argv)
{
    const char *path;
    int check_only;
    int args = cfg_args(argc, argv, "ws-server", NULL, &path, &check_only);
    if (args <= 0)
        return args == 0 ? 0 : 2;
    log_init("ws-server", LOG_INFO);
    char err[512];
    struct cfg *cfg = main_cfg_load(path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "ws-server: %s\n", err);
        return 1;
    }
    if (check_only) {
        printf("ws-server: configuration %s is valid\n", path);
        main_cfg_free(cfg);
        return 0;
    }
    log_set_level((enum log_level)cfg->log_level);
    if (cfg->ws_workers > 1)
        return main_supervise(path, cfg);
    server_fd_limit(cfg);

    ev_loop_t *loop = ev_loop_new(err, sizeof(err));
    if (!loop) {
        log_error("%s", err);
        cfg_free(cfg);
        free(cfg);
        return 1;
    }
    server_t *srv = server_new(loop, cfg, path, NULL, err, sizeof(err));
    int rc = 1;
    if (!srv) {
        log_error("%s", err);
    } else if (ev_run(loop) < 0) {
        log_error("event loop failed");
    } else {
        rc = 0;
        log_info("exiting");
    }
    server_free(srv);
    ev_loop_free(loop);
    return rc;
}
