/* pubsock — the publish socket: ws-server's Unix stream socket where
 * fcgi-publisher, the wspush CLI and the site's backend publish messages
 * and revoke users (protocol: shared/ipc.h).
 *
 * Who may connect is decided by the socket file's mode and group and then
 * by an SO_PEERCRED allow-list (publish_allow_uids / publish_allow_gids;
 * both empty = any peer that can open the file; ws-server's own uid is
 * always allowed). A peer outside the list gets IPC_ERR_NOT_ALLOWED for
 * every request.
 */
#ifndef WSPUSH_PUBSOCK_H
#define WSPUSH_PUBSOCK_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "engine.h"
#include "ev.h"
#include "stats.h"
#include "str.h"

struct pubsock;

struct pubsock_handlers {
    /* DISCONNECT: close every connection of user; returns how many. */
    uint32_t (*disconnect_user)(void *ctx, struct str user);
};

/* Binds (*cfg)->publish_socket; publishes go to engine. cfg points at the
 * live config pointer (a reload swaps it). Registers its own after-pass
 * hook on loop. Returns NULL with err filled on failure. */
struct pubsock *pubsock_open(ev_loop_t *loop, struct cfg *const *cfg, engine_t *engine,
                             const struct pubsock_handlers *h, void *ctx, char *err, size_t errlen);
/* The same on fd, a publish socket bound by someone else (the supervisor
 * of several workers, bound.h): owned from success on (closed by
 * pubsock_free; left open on failure); its socket file is never removed
 * here. */
struct pubsock *pubsock_open_fd(ev_loop_t *loop, struct cfg *const *cfg, engine_t *engine,
                                const struct pubsock_handlers *h, void *ctx, int fd, char *err,
                                size_t errlen);
/* Reads and answers whatever the publish peers have already sent, without
 * waiting. Called every few hundred writes during a long fan-out: a
 * publisher gets its ack at once and sends the next message, which then
 * joins the same writes to the subscribers not yet flushed, so a stream of
 * back-to-back publishes turns into batched writes. */
void pubsock_pump(struct pubsock *ps);
/* Stops accepting and removes the socket file; peers stay until closed. */
void pubsock_stop(struct pubsock *ps);
void pubsock_free(struct pubsock *ps);

/* 1 while the socket accepts (readiness). */
int  pubsock_listening(const struct pubsock *ps);
/* Requests by answer and the fan-out histogram (stats.h). Valid while ps
 * lives. */
const struct stats_pubsock *pubsock_stats(const struct pubsock *ps);

#endif
