/* conn — one client connection, from the first byte of the HTTP upgrade to
 * the end of the close handshake.
 *
 *   HANDSHAKE --101--> OPEN --close sent--> CLOSING --> (reaped)
 *       |                |                      ^
 *       +--error page----+--peer close / error--+
 *
 * Frames from other modules (broadcasts) reach a connection only through
 * conn_deliver(); they are queued by reference and flushed once per loop
 * pass (all frames of the pass in one writev). A connection is never freed
 * inside its own callback: conn_kill() moves it to the server's dead list
 * and conn_reap_dead() frees it after dispatch.
 */
#ifndef WSPUSH_CONN_H
#define WSPUSH_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "server.h"

/* Takes ownership of an accepted, non-blocking fd. Returns 0, or -ENOMEM
 * (fd closed). */
int  conn_accept(struct server *srv, int fd);

/* Queues a shared broadcast frame (broker_deliver_fn). A connection whose
 * queue would pass send_buffer_bytes is closed with 1013 instead. */
void conn_deliver(void *conn, rbuf_t *frame, void *srv);

/* Starts the close handshake with code (1000-4999); a connection still in
 * the HTTP handshake is dropped. */
void conn_close(struct conn *c, uint16_t code);

/* The `sub` of the connection's token, or NULL. */
const char *conn_user(const struct conn *c, size_t *len);

/* Next connection in srv->conns (iteration that may close connections is
 * safe: closing never unlinks before the reap). */
struct conn *conn_next(const struct conn *c);

/* After-dispatch work, called once per loop pass by the server: flush every
 * connection that got frames, then free the dead ones. */
void conn_flush_dirty(struct server *srv);
void conn_reap_dead(struct server *srv);

/* Frees every connection immediately (process exit). */
void conn_free_all(struct server *srv);

#endif
