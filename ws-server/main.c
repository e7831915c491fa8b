/* ws-server: the push-only WebSocket server. See README.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cfg.h"
#include "ev.h"
#include "log.h"
#include "server.h"

/* One descriptor per connection plus listeners and publishers: lift the
 * soft limit toward max_connections (never past the hard limit). */
static void main_raise_fd_limit(const struct cfg *cfg)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg->max_connections + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want)
        log_warn("open-file limit %lu is below max_connections %d", (unsigned long)rl.rlim_cur,
                 cfg->max_connections);
}

int main(int argc, char **argv)
{
    const char *path;
    int check_only;
    int args = cfg_args(argc, argv, "ws-server", NULL, &path, &check_only);
    if (args <= 0)
        return args == 0 ? 0 : 2;
    log_init("ws-server", LOG_INFO);
    struct cfg *cfg = malloc(sizeof(*cfg));
    char err[512];
    if (!cfg || cfg_load(cfg, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "ws-server: %s\n", cfg ? err : "out of memory");
        if (cfg) {
            cfg_free(cfg);
            free(cfg);
        }
        return 1;
    }
    if (check_only) {
        printf("ws-server: configuration %s is valid\n", path);
        cfg_free(cfg);
        free(cfg);
        return 0;
    }
    log_set_level((enum log_level)cfg->log_level);
    main_raise_fd_limit(cfg);

    ev_loop_t *loop = ev_loop_new(err, sizeof(err));
    if (!loop) {
        log_error("%s", err);
        cfg_free(cfg);
        free(cfg);
        return 1;
    }
    server_t *srv = server_new(loop, cfg, path, err, sizeof(err));
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
