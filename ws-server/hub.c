#include "hub.h"

#include <errno.h>
#include <stdlib.h>

struct hub {
    chan_registry_t *reg;
    hub_deliver_fn  *deliver;
    hub_watch_fn    *watch;
    void            *watch_ctx;
    struct stats_hub stats;
};

hub_t *hub_new(hub_deliver_fn *deliver)
{
    hub_t *hub = calloc(1, sizeof(*hub));
    if (!hub)
        return NULL;
    hub->reg = chan_registry_new();
    if (!hub->reg) {
        free(hub);
        return NULL;
    }
    hub->deliver = deliver;
    return hub;
}

void hub_free(hub_t *hub)
{
    if (!hub)
        return;
    chan_registry_free(hub->reg);
    free(hub);
}

int hub_subscribe(hub_t *hub, struct str name, struct chan_member *m)
{
    struct channel *ch = chan_lookup(hub->reg, name.p, name.len, 1);
    if (!ch)
        return -ENOMEM;
    if (chan_subscribe(ch, m) < 0) {
        chan_release(hub->reg, ch);
        return -ENOMEM;
    }
    hub->stats.subscriptions++;
    if (hub->watch && chan_count(ch) == 1)
        hub->watch(hub->watch_ctx, name, 1);
    return 0;
}

void hub_unsubscribe(hub_t *hub, struct chan_member *m)
{
    if (!m->ch)
        return;
    hub->stats.subscriptions--;
    if (hub->watch && chan_count(m->ch) == 1) {
        /* The name dies with the channel: told first. */
        hub->watch(hub->watch_ctx, (struct str){ chan_name(m->ch), chan_name_len(m->ch) }, 0);
    }
    chan_unsubscribe(hub->reg, m);
}

void hub_set_watch(hub_t *hub, hub_watch_fn *watch, void *ctx)
{
    hub->watch = watch;
    hub->watch_ctx = ctx;
}

void hub_each(hub_t *hub, struct str name, void (*fn)(void *owner, struct str channel))
{
    struct channel *ch = chan_lookup(hub->reg, name.p, name.len, 0);
    if (!ch)
        return;
    uint32_t n = chan_count(ch);
    for (uint32_t k = 0; k < n; k++)
        fn(chan_owner(ch, k), name);
}

uint32_t hub_count(hub_t *hub, struct str name)
{
    struct channel *ch = chan_lookup(hub->reg, name.p, name.len, 0);
    return ch ? chan_count(ch) : 0;
}

uint32_t hub_publish(hub_t *hub, struct msg *m)
{
    uint32_t total = 0;
    for (int i = 0; i < msg_nchannels(m); i++) {
        struct str name = msg_channel(m, i);
        struct channel *ch = chan_lookup(hub->reg, name.p, name.len, 0);
        if (!ch)
            continue;
        /* Delivering never unsubscribes (a closing subscriber leaves at
         * the reap, after dispatch), so the member array is stable. */
        uint32_t n = chan_count(ch), queued = 0;
        for (uint32_t k = 0; k < n; k++)
            queued += (uint32_t)hub->deliver(chan_owner(ch, k), m, i);
        /* Every delivery on one channel carries the same envelope. */
        if (queued) {
            hub->stats.deliveries += queued;
            hub->stats.delivery_bytes += (uint64_t)queued * msg_envelope_len(m, i);
        }
        total += queued;
    }
    return total;
}

size_t hub_channels(const hub_t *hub) { return chan_registry_size(hub->reg); }
const struct stats_hub *hub_stats(const hub_t *hub) { return &hub->stats; }
