/* hub — this node's channels and who is subscribed to each: where an
 * accepted message fans out to local subscribers.
 *
 * A subscriber owns one struct chan_member per channel (channel.h), at a
 * fixed address while subscribed; subscribing and unsubscribing are O(1).
 * hub_publish() calls the hub's deliver function once per subscriber per
 * channel of the message, with the index of that channel among the
 * message's channels (a transport encodes per channel: the envelope names
 * it). Channels without subscribers are freed at once.
 */
#ifndef WSPUSH_HUB_H
#define WSPUSH_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "msg.h"
#include "stats.h"
#include "str.h"

typedef struct hub hub_t;

/* Returns 1 when the message was queued for owner, 0 when not (closing,
 * over its send budget). */
typedef int hub_deliver_fn(void *owner, struct msg *m, int chan);

hub_t *hub_new(hub_deliver_fn *deliver);

/* Told when a channel gets its first (on = 1) or loses its last (on = 0)
 * subscriber here; server.c wires it to the engine (a Redis engine
 * subscribes this node to the channels it has subscribers for). */
typedef void hub_watch_fn(void *ctx, struct str channel, int on);
void   hub_set_watch(hub_t *hub, hub_watch_fn *watch, void *ctx);

/* Calls fn(owner, channel) for every subscriber of channel here (a reset:
 * messages they cannot get any more). */
void   hub_each(hub_t *hub, struct str channel, void (*fn)(void *owner, struct str channel));
/* Subscribers of channel here. */
uint32_t hub_count(hub_t *hub, struct str channel);
/* Every member must have left. */
void   hub_free(hub_t *hub);

/* Adds m (m->owner set by the caller) to the channel called name. Returns
 * 0 or -ENOMEM. */
int    hub_subscribe(hub_t *hub, struct str name, struct chan_member *m);
/* Removes m from its channel, if any. */
void   hub_unsubscribe(hub_t *hub, struct chan_member *m);

/* Fans m out. Returns how many deliveries were queued. */
uint32_t hub_publish(hub_t *hub, struct msg *m);

size_t hub_channels(const hub_t *hub);
/* Deliveries, their bytes and the subscriptions gauge (stats.h). Valid
 * while hub lives. */
const struct stats_hub *hub_stats(const hub_t *hub);

#endif
