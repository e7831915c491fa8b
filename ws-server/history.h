/* history — the recent messages the memory engine keeps for pages that
 * reconnect with last_id, and the rule that decides whether a gap can be
 * filled.
 *
 * Each message is kept once (a reference to the msg, shared with whatever
 * is still sending it) and sits in one global FIFO (oldest first) and in
 * the ring of each of its channels (binary-searched by seq on resume).
 * Messages are evicted oldest-first by history_size (messages),
 * history_bytes (history_kept_bytes of every kept message: the message,
 * its cached encodings and history's own records; encodings made after
 * the append are counted when made and trimmed at the next append or
 * expiry) and history_ttl. Eviction is O(channels of the message) because
 * the globally oldest message is also the oldest of each of its channels.
 *
 * Channels are looked up in the engine's own registry (channel.h), pinned
 * while they hold history.
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

#include "channel.h"
#include "msg.h"

typedef struct history history_t;

struct history_limits {
    long     max_entries;   /* messages; 0 disables history */
    long     max_bytes;
    uint64_t ttl_ms;        /* 0 = no age limit */
};

history_t *history_new(chan_registry_t *reg, const struct history_limits *lim);
/* Applies new limits (reload); evicts what no longer fits. */
void history_set_limits(history_t *h, const struct history_limits *lim, uint64_t now_ms);
void history_free(history_t *h);

/* Records m (taking a reference) as message seq on every channel of m.
 * seq must grow. Returns 0 or -ENOMEM (then the message counts as
 * evicted: a page resuming across it gets a reset). */
int  history_append(history_t *h, struct msg *m, uint64_t seq, uint64_t now_ms);
/* Forgets everything, the gap rule's memory included (a new run of ids
 * begins: nothing before it can be resumed anyway). */
void history_reset(history_t *h);
/* Drops what is past its ttl or over the limits. */
void history_expire(history_t *h, uint64_t now_ms);

/* 1 if every message on the channel named name after `since` is still
 * held. */
int  history_can_resume(const history_t *h, struct str name, uint64_t since);

/* Called for each replayed message with the index of the replayed channel
 * among m's channels. */
typedef void history_visit_fn(void *arg, struct msg *m, int chan);
/* Visits every held message on the channels names[0..n) with seq > since,
 * in seq order (a message on two of the channels is visited for each).
 * Stops before the message that would take the visited msg_bytes past
 * max_bytes (0 = no bound), but always visits at least one; *next_since is
 * then the seq to continue after and the return is 1 ("more"), else 0. */
int  history_replay(const history_t *h, const struct str *names, int n, uint64_t since,
                    size_t max_bytes, history_visit_fn *visit, void *arg, uint64_t *next_since);

/* Persistence across a planned restart (history_file). The file holds the
 * run's epoch and last seq plus every message with its channels, payload
 * and age. */
int  history_save(const history_t *h, const char *path, uint32_t epoch, uint64_t seq,
                  uint64_t now_ms, char *err, size_t errlen);
/* Loads a saved file into an empty history. make_id writes the id of
 * message seq of run epoch into out[MSG_ID_MAX]. Every entry is validated
 * (channel names, one JSON value as payload, ascending seqs); on any
 * problem (truncated, corrupt, older format) returns -1 with err set and
 * leaves the history empty. On success fills *epoch and *seq. */
typedef void history_id_fn(uint32_t epoch, uint64_t seq, char out[MSG_ID_MAX]);
int  history_load(history_t *h, const char *path, history_id_fn *make_id, uint32_t *epoch,
                  uint64_t *seq, uint64_t now_ms, char *err, size_t errlen);

/* What keeping m costs history_bytes: msg_bytes(m) plus history's own
 * records for it (so history_bytes bounds every byte history holds). */
size_t history_kept_bytes(const struct msg *m);

size_t history_entries(const history_t *h);
size_t history_bytes(const history_t *h);

#endif
