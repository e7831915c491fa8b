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

struct server;
struct pubsock;

/* Binds cfg->publish_socket. Returns NULL with err filled on failure. */
struct pubsock *pubsock_open(struct server *srv, char *err, size_t errlen);
/* Reads and answers whatever the publish peers have already sent, without
 * waiting. Called every few hundred writes during a long fan-out: a
 * publisher gets its ack at once and sends the next message, which then
 * joins the same writes to the subscribers not yet flushed, so a stream of
 * back-to-back publishes turns into batched writes. */
void pubsock_pump(struct pubsock *ps);
/* Frees peers that closed during this pass (after-dispatch hook). */
void pubsock_reap(struct pubsock *ps);
/* Stops accepting and removes the socket file; peers stay until closed. */
void pubsock_stop(struct pubsock *ps);
void pubsock_free(struct pubsock *ps);

#endif
