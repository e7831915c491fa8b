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
#include "history.h"
#include "ipc.h"

#define BROKER_ID_MAX 40

typedef struct broker broker_t;

/* Called once per subscriber per message with the shared frame; the
 * callee takes its own reference if it keeps the frame. */
typedef void broker_deliver_fn(void *owner, rbuf_t *frame, void *ctx);

broker_t *broker_new(chan_registry_t *reg, broker_deliver_fn *deliver, void *ctx,
                     const struct history_limits *lim);
/* New history limits (reload). */
void      broker_set_limits(broker_t *b, const struct history_limits *lim, uint64_t now_ms);
void      broker_free(broker_t *b);

struct broker_result {
    char     id[BROKER_ID_MAX];
    uint32_t subscribers;   /* deliveries queued, summed over channels */
};

/* Publishes data (one JSON value, already validated) to the channels.
 * Returns 0, or -ENOMEM (nothing was delivered, no id consumed). */
int broker_publish(broker_t *b, const struct str *channels, int nchannels,
                   const char *data, size_t len, uint64_t now_ms, struct broker_result *res);

/* Resuming after last_id ([id, id+idlen), as the client sent it) on the
 * channels chs[0..n) (NULL entries for channels that do not exist yet).
 * broker_gaps() sets reset[i] = 1 for each channel whose gap cannot be
 * filled (messages evicted, an id from another server run, an id that does
 * not parse): the client must reload that channel's state. broker_replay()
 * then passes every held message after last_id on the other channels to
 * visit, in id order, and returns how many. */
void   broker_gaps(broker_t *b, struct channel *const *chs, int n, const char *id, size_t idlen,
                   uint64_t now_ms, int *reset);
size_t broker_replay(broker_t *b, struct channel *const *chs, int n, const char *id, size_t idlen,
                     const int *reset, history_visit_fn *visit, void *arg);

/* Saves history, epoch and last id to path (planned restart). */
int  broker_save(const broker_t *b, const char *path, uint64_t now_ms, char *err, size_t errlen);
/* Restores a saved file so ids continue the saved run. On failure the
 * broker keeps its fresh epoch and empty history; err says why. */
int  broker_restore(broker_t *b, const char *path, uint64_t now_ms, char *err, size_t errlen);

/* The id of the last message published in this run ("<epoch>-0" before the
 * first), for the "subscribed" greeting. */
const char *broker_last_id(const broker_t *b);

#endif
