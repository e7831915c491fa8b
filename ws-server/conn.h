/* conn — the subscriber transports, WebSocket and Server-Sent Events: one
 * client connection from the first byte of its HTTP request head to the
 * end of the close handshake (or of the event stream), over an io table
 * (io.h) so that TLS can slide in underneath.
 *
 * Both kinds share everything up to the request head (limits, deadline,
 * error pages) and after it the send queue, the flush, the timers and
 * the limits; they differ in the bytes they write (frames or sse.h's
 * events) and in what they read after the head (frames, or nothing).
 * GET /sse is answered with an event stream: its subscription is opened
 * before the 200 head leaves, so a refusal is an HTTP status.
 *
 *   HANDSHAKE --101--> OPEN --close sent--> CLOSING --> (reaped)
 *       |                |                      ^
 *       +--error page----+--peer close / error--+
 *
 * What the page subscribes to is not decided here: once the upgrade is
 * accepted the handler table's open() gets the query string and returns a
 * session (session.c), which from then on sends through conn_transport.
 * Messages are queued by reference (the encoded frame cached on the msg is
 * shared by every connection) and flushed once per loop pass, every frame
 * of the pass in one writev. A connection is never freed inside its own
 * callback: killing moves it to the dead list and the after-pass hook frees
 * it (calling the handlers' closed() for its session first).
 */
#ifndef WSPUSH_CONN_H
#define WSPUSH_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "ev.h"
#include "io.h"
#include "stats.h"
#include "str.h"
#include "transport.h"

typedef struct conns conns_t;
struct conn;

struct conn_handlers {
    /* The upgrade of c was accepted (its 101 is queued), or its event
     * stream's 200 head is queued. resume is the Last-Event-ID header of
     * a stream (len 0 when none), which wins over the query's last_id.
     * Returns the session to attach, or NULL with *close_code set: a
     * WebSocket is then closed with that code right after the 101; a
     * stream's head is dropped and an HTTP status sent instead (sse.h). */
    void *(*open)(void *ctx, struct str query, struct str resume, struct conn *c, int *close_code);
    /* c is being freed; session is what open() returned (maybe NULL). */
    void  (*closed)(void *ctx, void *session);
    /* Optional: called every few hundred connections flushed in one pass,
     * so publishers are read during a long fan-out (pubsock_pump). */
    void  (*pump)(void *ctx);
    /* Optional: the queue of an open connection is empty, after its
     * session asked with conn_transport.want_drained (once per ask).
     * Called from the flush (after the pass's dispatch, or when the socket
     * became writable), never from inside a conn_transport call; it may
     * queue and close. session is what open() returned. */
    void  (*drained)(void *ctx, void *session);
    /* Optional: c is being freed (right after closed()); peer is what
     * conn_accept() was given, called only when it was not NULL; limited
     * says whether it held a reserve slot (CONN_ACCEPT_LIMITED). */
    void  (*released)(void *ctx, void *peer, int limited);
};

/* The set of every subscriber connection of the process. cfg points at the
 * live config pointer (a reload swaps it). Registers its own after-pass
 * hook on loop. NULL when out of memory. */
conns_t *conns_new(ev_loop_t *loop, struct cfg *const *cfg, const struct conn_handlers *h, void *ctx);
/* Frees every connection at once (process exit) and the set. */
void     conns_free(conns_t *cs);
/* How long a fan-out runs between two pump() calls, in microseconds
 * (default 50); 0 pumps at every look, every 16 connections (unit tests:
 * a count, not a clock). */
void     conns_set_pump_interval(conns_t *cs, unsigned us);

/* conn_accept() flags. LIMITED: a slot of the reserve past the connection
 * limits: the request head is read as usual, GET /healthz is answered 200
 * and every other request (an upgrade included) gets its error page or
 * 503; such a connection never opens a session. */
#define CONN_ACCEPT_LIMITED 1u
/* With LIMITED: the slot was taken for max_connections_per_ip (not
 * max_connections), which is what the refusal is counted as. */
#define CONN_ACCEPT_PER_IP  2u

/* Takes ownership of an accepted, non-blocking fd, to be read and written
 * through ops with the layer's state (io_plain_ops and NULL for a plain
 * socket; io_tls_ops and what io_tls_new() made for TLS, whose handshake
 * then runs inside the first reads, under handshake_timeout like the
 * request head). peer (may be NULL) is handed to the handlers' released()
 * when the connection is freed.
 * Returns 0, or -ENOMEM / -errno (fd closed and state released through
 * ops->close; released() is not called, the caller still owns peer). */
int      conn_accept(conns_t *cs, int fd, const struct io_ops *ops, void *state, unsigned flags,
                     void *peer);

/* Starts the close handshake on every connection (shutdown: 1001). */
void     conns_close_all(conns_t *cs, uint16_t code);
/* Connections open or closing (not yet freed), LIMITED ones included. */
size_t   conns_count(const conns_t *cs);
/* LIMITED connections not yet freed. */
size_t   conns_limited(const conns_t *cs);
/* The transport's counters (stats.h): upgrades and streams, open
 * connections, closes by code, refusals before the upgrade. Valid while cs
 * lives. */
const struct stats_conn *conns_stats(const conns_t *cs);

/* The table a session uses to send over a connection (the handle is the
 * struct conn * given to open()). */
extern const struct transport_ops conn_transport;

#endif
