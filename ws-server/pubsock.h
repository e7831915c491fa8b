/* pubsock — the publish socket: ws-server's Unix stream socket where
 * fcgi-publisher, the wspush CLI and the site's backend publish messages
 * and revoke users (protocol: shared/ipc.h).
 *
 * Who may connect is decided by the socket file's mode and group and then
 * by an SO_PEERCRED allow-list (publish_allow_uids / publish_allow_gids;
 * both empty = any peer that can open the file; ws-server's own uid is
 * always allowed). A peer outside the list gets IPC_ERR_NOT_ALLOWED for
 * every request.
 *
 * Answers go out in request order, one per request, whenever the engine
 * gives each its outcome (a Redis engine answers later than it is asked):
 * a request's answer waits for those before it. A peer with
 * PUBSOCK_PENDING_HIGH requests unanswered is not read until some are.
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

/* The outcome of a DISCONNECT: status 0, or ENGINE_E_UNAVAILABLE when
 * only this node's connections were closed (the other nodes were not
 * reached); connections = how many this node closed. */
typedef void pubsock_disconnected_fn(void *arg, int status, uint32_t connections);

struct pubsock_handlers {
    /* DISCONNECT: close every connection of user, here and (cluster) on
     * every node; ends in exactly one done(arg, ...), perhaps before
     * returning. user is valid for the call only. */
    void (*disconnect_user)(void *ctx, struct str user, pubsock_disconnected_fn *done, void *arg);
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
