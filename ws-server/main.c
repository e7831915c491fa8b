/* ws-server: the push-only WebSocket server. See README.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "ev.h"
#include "log.h"
#include "server.h"
#include "tls.h"

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
    /* The certificate pair is part of the configuration: -t and a start
     * refuse one that cannot serve. */
    if (cfg->tls_certificate[0] && tls_check(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "ws-server: %s: %s\n", path, err);
        cfg_free(cfg);
        free(cfg);
        return 1;
    }
    if (check_only) {
        printf("ws-server: configuration %s is valid\n", path);
        cfg_free(cfg);
        free(cfg);
        return 0;
    }
    log_set_level((enum log_level)cfg->log_level);
    server_fd_limit(cfg);

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
