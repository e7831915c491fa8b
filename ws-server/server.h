/* server — ws-server's composition root: builds every layer, wires each
 * one's callbacks to the next, owns the listeners, the signals (SIGHUP
 * reload, SIGTERM/SIGINT graceful stop) and the live config. Nothing else
 * includes this header but main.c; the arrows all leave from here.
 *
 *   listeners -> conn (WebSocket and SSE transports) -> session -> hub
 *   publish socket -> engine -> hub -> session -> conn -> io
 */
#ifndef WSPUSH_SERVER_H
#define WSPUSH_SERVER_H

#include <stddef.h>

#include "bound.h"
#include "cfg.h"
#include "ev.h"
#include "tally.h"

typedef struct server server_t;

/* One worker process of several (workers > 1, supervisor.h): the sockets
 * its supervisor bound (it takes those of its slot) and the shared
 * counters. Borrowed: they outlive the server. */
struct server_worker {
    bound_t *bound;
    tally_t *tally;
    int      slot;          /* 0..n-1 */
    int      n;
};

/* Takes ownership of cfg (heap-allocated, loaded from cfg_path). Starts
 * listening, opens the publish socket, restores history_file and installs
 * signal handling. As one of several workers (w not NULL) it serves the
 * supervisor's sockets instead of binding its own, counts max_connections
 * over every worker, enforces max_connections_per_ip / n (rounded up) on
 * its own, answers scrapes with the sum over the workers, and opens its
 * sockets only once its link to Redis is up (or [redis] connect_timeout
 * passed). Returns NULL with err filled (cfg is freed then
 * too). */
server_t *server_new(ev_loop_t *loop, struct cfg *cfg, const char *cfg_path,
                     const struct server_worker *w, char *err, size_t errlen);
/* 1 when a worker stopped because its sockets could not be served (its
 * exit status is then 1). */
int       server_failed(const server_t *srv);
/* Raises the open-file limit for cfg's max_connections (listener.h's
 * rule); main calls it at start, the server again on every reload. */
void      server_fd_limit(const struct cfg *cfg);
/* Frees everything, the config included. */
void      server_free(server_t *srv);

#endif
