/* broker — the one path a message takes once accepted:
 *     accepted message -> id -> (history) -> fan-out
 * Any source (the publish socket today; a Redis link between nodes later)
 * feeds messages through broker_publish(), and the broker alone assigns
 * ids. Each channel's WebSocket frame is encoded once into one rbuf that
 * every subscriber's queue shares.
 *
 * Ids are "<epoch>-<seq>": epoch is fixed per server run (hex), seq grows by
 * one per message, so ids strictly increase within a run and a client can
 * tell a restarted server from a gap.
 */
#ifndef WSPUSH_BROKER_H
#define WSPUSH_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "channel.h"
#include "ipc.h"

#define BROKER_ID_MAX 40

typedef struct broker broker_t;

/* Called once per subscriber per message with the shared frame; the
 * callee takes its own reference if it keeps the frame. */
typedef void broker_deliver_fn(void *owner, rbuf_t *frame, void *ctx);

broker_t *broker_new(chan_registry_t *reg, broker_deliver_fn *deliver, void *ctx);
void      broker_free(broker_t *b);

struct broker_result {
    char     id[BROKER_ID_MAX];
    uint32_t subscribers;   /* deliveries queued, summed over channels */
};

/* Publishes data (one JSON value, already validated) to the channels.
 * Returns 0, or -ENOMEM (nothing was delivered, no id consumed). */
int broker_publish(broker_t *b, const struct ipc_str *channels, int nchannels,
                   const char *data, size_t len, struct broker_result *res);

/* The id of the last message published in this run ("<epoch>-0" before the
 * first), for the "subscribed" greeting. */
const char *broker_last_id(const broker_t *b);

#endif
