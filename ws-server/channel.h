/* channel — the registry of live channels and their subscriber sets.
 *
 * Lookup is a hash table keyed with a per-process random seed (client input
 * chooses channel names, so the hash must not be predictable). Subscribing
 * and unsubscribing are O(1): each subscription is a struct chan_member that
 * the subscriber owns (at a fixed address while subscribed); the channel
 * keeps an array of member pointers and the member remembers its index, so
 * removal swaps the last entry into the hole.
 *
 * A channel with no subscribers and nothing pinning it (history) is freed
 * by chan_release(), so client-chosen names cannot accumulate.
 *
 * The table holds any byte string as a name; two other modules use it as
 * their seeded hash map rather than write a second one: revoke.c (user
 * names) and peers.c (addresses), through the pin and the userdata slot.
 */
#ifndef WSPUSH_CHANNEL_H
#define WSPUSH_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct chan_registry chan_registry_t;
struct channel;

struct chan_member {
    struct channel *ch;     /* NULL when not subscribed */
    uint32_t        idx;    /* position in the channel's member array */
    void           *owner;  /* the subscriber (a connection) */
};

chan_registry_t *chan_registry_new(void);
/* Frees every channel; members must have been removed first. */
void chan_registry_free(chan_registry_t *reg);

/* The channel called [name, name+len); created when create is set. NULL if
 * absent (or on allocation failure when creating). */
struct channel *chan_lookup(chan_registry_t *reg, const char *name, size_t len, int create);

/* Adds m (m->owner set by the caller) to ch. Returns 0 or -ENOMEM. */
int  chan_subscribe(struct channel *ch, struct chan_member *m);
/* Removes m from its channel, if any, and frees the channel when nothing
 * holds it any more. */
void chan_unsubscribe(chan_registry_t *reg, struct chan_member *m);

const char *chan_name(const struct channel *ch);
size_t      chan_name_len(const struct channel *ch);
uint32_t    chan_count(const struct channel *ch);
/* The i-th subscriber's owner, i < chan_count. */
void       *chan_owner(const struct channel *ch, uint32_t i);

/* Pins keep a channel alive without subscribers (its history lives in it).
 * Returns the opaque per-channel slot for such data. */
void      **chan_userdata(struct channel *ch);
void        chan_pin(struct channel *ch, int pinned);
/* Frees ch if it has no subscribers and is not pinned. */
void        chan_release(chan_registry_t *reg, struct channel *ch);

size_t      chan_registry_size(const chan_registry_t *reg);
/* Calls fn for every entry (teardown: freeing what userdata points to). */
void        chan_registry_each(chan_registry_t *reg, void (*fn)(struct channel *ch, void *arg),
                               void *arg);

#endif
