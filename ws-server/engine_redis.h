/* engine_redis — the engine shared by several ws-server nodes through
 * Redis (engine = redis): ids, per-channel history and revocations live
 * in Redis, messages reach the other nodes by PUB/SUB. Fills engine_ops
 * over redis_link.h.
 *
 * Keys (prefix = [redis] prefix):
 *   <prefix>epoch       hash e (epoch), s (last seq), r (run_id of the
 *                       master that made the epoch)
 *   <prefix>s:<channel> stream of the channel's messages (MAXLEN
 *                       channel_history_size, EXPIRE channel_history_ttl);
 *                       entry id <epoch>-<seq> (decimal), fields p (the
 *                       channel's previous id), d (data)
 *   <prefix>l:<channel> the channel's last id (expires after a day of
 *                       silence: ER_META_TTL_S)
 *   <prefix>revoked     sorted set user -> second of the last `disconnect`
 *   <prefix>revoked_floor  the second of the newest record dropped (full)
 *   <prefix>revoked_since  hash s (the second from which this server holds
 *                       every revocation), r (the run_id that set it: a
 *                       restart or failover may have lost older ones)
 * PUB/SUB channels: <prefix>m:<channel> (message copies, redis_msg.h),
 * <prefix>control (revocations), <prefix>probe:... (redis_link's probe).
 *
 * One Lua script per publish (EVALSHA, EVAL on NOSCRIPT) takes the next
 * seq, starts a new epoch when the epoch key is gone or was made on
 * another master (run_id: a restart or a failover may have lost writes),
 * appends to each channel's stream and publishes one copy per channel.
 * The ack comes when the script (and WAIT, with wait_replicas) answered;
 * every node, the publishing one included, delivers from PUB/SUB, once,
 * in id order; a copy whose prev is not the channel's last delivered id
 * is recovered from the stream, or the channel's subscribers are reset.
 * docs/design.md, "The Redis engine", says why.
 */
#ifndef WSPUSH_ENGINE_REDIS_H
#define WSPUSH_ENGINE_REDIS_H

#include <stdint.h>

#include "cfg.h"
#include "engine.h"
#include "ev.h"
#include "stats.h"

/* A channel's last id is forgotten after this long without a publish;
 * a page subscribed that long without a message may then get a reset. */
#define ER_META_TTL_S 86400

/* Starts connecting at once; publishes fail with ENGINE_E_UNAVAILABLE
 * until Redis answers. The engine keeps its own copy of cfg's scalar
 * keys. NULL when out of memory. */
engine_t *engine_redis_new(ev_loop_t *loop, const struct cfg *cfg, const struct engine_hooks *h);

/* A reload (SIGHUP) with the same store (cfg_store_key_changed() NULL):
 * the password (read again from password_file), connect_timeout,
 * command_timeout, probe_interval, channel_history_size,
 * channel_history_ttl, wait_replicas (for publishes from now on) and the
 * revocation limits apply from the next command, probe or connection on. */
void engine_redis_reload(engine_t *e, const struct cfg *next);

/* Publishes Redis acknowledged through this node (wspush_published_total). */
uint64_t engine_redis_published(const engine_t *e);

/* 1 while the command connection to Redis is up (readiness). */
int engine_redis_up(const engine_t *e);
/* redis_link_pump() of the engine's link. */
void engine_redis_pump(engine_t *e);

/* The link's numbers and the engine's catch-ups, for the metrics. */
void engine_redis_stats(const engine_t *e, struct stats_redis *out);

#endif
