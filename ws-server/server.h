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

#include "cfg.h"
#include "ev.h"

typedef struct server server_t;

/* Takes ownership of cfg (heap-allocated, loaded from cfg_path). Starts
 * listening, opens the publish socket, restores history_file and installs
 * signal handling. Returns NULL with err filled (cfg is freed then too). */
server_t *server_new(ev_loop_t *loop, struct cfg *cfg, const char *cfg_path, char *err, size_t errlen);
/* Raises the open-file limit for cfg's max_connections (listener.h's
 * rule); main calls it at start, the server again on every reload. */
void      server_fd_limit(const struct cfg *cfg);
/* Frees everything, the config included. */
void      server_free(server_t *srv);

#endif
