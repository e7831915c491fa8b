/* history — the recent messages kept for clients that reconnect with
 * last_id, and the rule that decides whether a gap can be filled.
 *
 * Entries hold a reference to the channel's broadcast frame (no copy) and
 * sit in one global FIFO (oldest first) and in their channel's list. They
 * are evicted oldest-first by history_size (entries), history_bytes (frame
 * bytes) and history_ttl; eviction is O(1) per entry because the globally
 * oldest entry is always the oldest of its channel.
 *
 * Gap rule: resuming channel C after seq S is exact when no message of C
 * with seq > S was evicted. Each channel with history remembers the highest
 * seq it lost; a channel without history falls back to the highest seq
 * ever evicted (conservative: it may ask for a reset that was not needed,
 * never skip a message silently).
 */
#ifndef WSPUSH_HISTORY_H
#define WSPUSH_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "channel.h"

typedef struct history history_t;

struct history_limits {
    long     max_entries;   /* 0 disables history */
    long     max_bytes;
    uint64_t ttl_ms;        /* 0 = no age limit */
};

history_t *history_new(chan_registry_t *reg, const struct history_limits *lim);
/* Applies new limits (reload); evicts what no longer fits. */
void history_set_limits(history_t *h, const struct history_limits *lim, uint64_t now_ms);
void history_free(history_t *h);

/* Records frame (taking a reference) as message seq on ch. seq must grow.
 * Returns 0 or -ENOMEM (then the message is treated as evicted). */
int  history_append(history_t *h, struct channel *ch, uint64_t seq, rbuf_t *frame, uint64_t now_ms);
/* Drops entries past their ttl. */
void history_expire(history_t *h, uint64_t now_ms);

/* 1 if every message on the channel named name after `since` is still
 * held (ch may be NULL when the channel does not exist). */
int  history_can_resume(const history_t *h, const struct channel *ch, uint64_t since);

typedef void history_visit_fn(rbuf_t *frame, void *arg);
/* Calls visit for every held message on chs[0..n) with seq > since, in seq
 * order (a message published to two of the channels is visited for each).
 * Returns the number visited. */
size_t history_replay(const history_t *h, struct channel *const *chs, int n, uint64_t since,
                      history_visit_fn *visit, void *arg);

/* Persistence across a planned restart (history_file). The file holds the
 * run's epoch and last seq plus every entry with its channel and age. */
int  history_save(const history_t *h, const char *path, uint32_t epoch, uint64_t seq,
                  uint64_t now_ms, char *err, size_t errlen);
/* Loads a saved file into an empty history, creating channels. On any
 * inconsistency (truncated, corrupt, wrong magic) returns -1 with err set
 * and leaves the history empty. On success fills *epoch and *seq. */
int  history_load(history_t *h, const char *path, uint32_t *epoch, uint64_t *seq,
                  uint64_t now_ms, char *err, size_t errlen);

size_t history_entries(const history_t *h);

#endif
