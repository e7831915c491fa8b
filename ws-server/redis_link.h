/* redis_link — this node's two connections to Redis, on the project's
 * event loop (ev.h): one for commands, one for PUB/SUB (a subscribed
 * connection accepts nothing but (P)(UN)SUBSCRIBE). hiredis 0.14 async
 * contexts do the protocol; this module adds what hiredis 0.14 lacks:
 *
 * - every timeout on ev timers: connect_timeout for a connection and its
 *   handshake (AUTH, SELECT, INFO run_id + master_replid, PING, ROLE), command_timeout for each
 *   command. A command not answered in time fails with REDIS_LINK_E_TIMEOUT
 *   with every command sent after it, and the connection is rebuilt: a late
 *   answer could not be told from the next one.
 * - reconnection with a growing delay (50 ms doubling to 2 s), both
 *   connections, forever; each state change logged once.
 * - Sentinel: with sentinels configured the master is asked of them
 *   (SENTINEL get-master-addr-by-name, the first that answers), and a
 *   master that does not say ROLE master, or refuses PING (LOADING,
 *   MASTERDOWN), is left for the next lookup. A server that stops serving
 *   on a live connection (READONLY after a demotion, LOADING) has the
 *   connection rebuilt the same way (redis_link_not_serving).
 * - the liveness probe: every probe_interval a PUBLISH, on the command
 *   connection, to a channel only this node subscribes to; not seen back
 *   on the PUB/SUB connection within command_timeout, the PUB/SUB
 *   connection is rebuilt (a PING there would be dropped silently).
 * - reads: hiredis reads at most 16 KiB per call; a readable connection is
 *   read while bytes wait, at most RL_READS_PER_EVENT times per event, so
 *   a flood on one connection cannot starve the loop.
 *
 * "Writes may have been lost": whenever the command connection comes up on
 * a server whose run_id or master_replid differs from the last one seen (a
 * restart, a promoted replica, data replaced by a resync), or Sentinel
 * names another master, up() says so; the engine then starts a new epoch
 * (engine_redis.c).
 */
#ifndef WSPUSH_REDIS_LINK_H
#define WSPUSH_REDIS_LINK_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "cfg.h"
#include "ev.h"
#include "stats.h"

typedef struct redis_link redis_link_t;

#define REDIS_LINK_E_DOWN    (-ENOTCONN)   /* not connected: the command was not sent */
#define REDIS_LINK_E_TIMEOUT (-ETIMEDOUT)  /* sent, not answered in time (or the
                                              connection broke first): may have run */

/* A command's outcome: status 0 with the reply (an error reply included:
 * check r->type), or REDIS_LINK_E_* with r NULL. r lives for the call. */
typedef void redis_link_reply_fn(void *arg, int status, const redisReply *r);

struct redis_link_handlers {
    /* The command connection is ready. writes_lost: the server is not the
     * one of the last connection (run_id or replid changed, a failover). */
    void (*up)(void *ctx, int writes_lost);
    /* The command connection is gone (commands fail until up again). */
    void (*down)(void *ctx);
    /* The PUB/SUB connection is (re)built and subscribed to nothing but
     * the probe: subscribe again and catch up on what passed meanwhile. */
    void (*sub_up)(void *ctx);
    /* A PUB/SUB event: kind 's' subscribed, 'u' unsubscribed, 'm' a
     * message (payload set). Pointers live for the call. */
    void (*sub_event)(void *ctx, char kind, const char *chan, size_t clen, const char *payload,
                      size_t plen);
    /* "m<n>" came on the probe channel (redis_link_probe_channel): a
     * script published it there. Every message published before that
     * script ran has come before it on this connection. */
    void (*marker)(void *ctx, unsigned long long n);
};

/* Starts connecting at once (the first connection outlives this call).
 * cfg must outlive the link. NULL when out of memory. */
redis_link_t *redis_link_new(ev_loop_t *loop, const struct cfg *cfg,
                             const struct redis_link_handlers *h, void *ctx);
/* Fails every pending command (REDIS_LINK_E_DOWN) and closes both
 * connections; no handler runs afterwards. */
void redis_link_free(redis_link_t *l);

/* Sends a command (argv[i] of argvlen[i] bytes, copied). cb runs exactly
 * once: later with the reply or a timeout, or before returning with
 * REDIS_LINK_E_DOWN when not connected. */
void redis_link_command(redis_link_t *l, int argc, const char **argv, const size_t *argvlen,
                        redis_link_reply_fn *cb, void *arg);

/* The same for a command the server may hold up to block_ms before it
 * answers (WAIT): its deadline is block_ms + command_timeout, and every
 * command sent after it while it waits gets at least that deadline (they
 * are answered after it), the liveness probe too; once it is answered,
 * those still waiting get command_timeout from then. */
void redis_link_command_blocking(redis_link_t *l, int argc, const char **argv,
                                 const size_t *argvlen, int block_ms, redis_link_reply_fn *cb,
                                 void *arg);

/* Why a reply means the server no longer takes commands from this node
 * (READONLY, MASTERDOWN: a replica; LOADING: loading its data), or NULL.
 * A command answered so gets REDIS_LINK_E_DOWN (it did not run); the
 * command connection takes no new command (redis_link_is_up() says 0),
 * and once those sent before have their answers it is dropped and made
 * again (with Sentinel, asking them again) with the usual back-off. */
const char *redis_link_not_serving(const redisReply *r);

/* SUBSCRIBE (subscribe = 1) or UNSUBSCRIBE the n channels on the PUB/SUB
 * connection; the confirmations come as sub_event 's' / 'u'. Never have a
 * SUBSCRIBE and an UNSUBSCRIBE of one channel in flight at once (hiredis
 * 0.14 loses the callback). Returns 0, or -ENOTCONN (then sub_up will
 * come). */
int  redis_link_subscribe(redis_link_t *l, int subscribe, int n, const char **names,
                          const size_t *lens);

/* Sends what waits to be sent and reads what waits to be read, on both
 * connections: called between connections of a long fan-out (as the
 * publish socket is) so that messages published meanwhile join it. */
void redis_link_pump(redis_link_t *l);

int  redis_link_is_up(const redis_link_t *l);      /* command connection ready */
int  redis_link_sub_is_up(const redis_link_t *l);  /* PUB/SUB connection ready */
/* The link's numbers (the catch-ups aside: they are the engine's) into out. */
void redis_link_stats(const redis_link_t *l, struct stats_redis *out);
/* "<run_id>:<master_replid>" of the server of the current command
 * connection ("" when down): a new one when it restarted, became a
 * master or had its data replaced by a full resync. */
const char *redis_link_server_id(const redis_link_t *l);
/* The channel only this node subscribes to (the probe's); a script that
 * publishes "m<n>" there is seen by the marker handler, in order with the
 * channels' messages. */
const char *redis_link_probe_channel(const redis_link_t *l);

#endif
