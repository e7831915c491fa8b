/* redis_history — what the history script answers (engine_redis.c), read
 * and judged: the entries of a channel's stream, and whether they fill
 * the gap after an id. Pure: over hiredis replies already parsed, no I/O;
 * entries point into the reply.
 *
 * The script's answer: { "<epoch>-<its newest seq>" (decimal) or "", then
 * per channel: its last id or "", its entries after the id asked } with
 * an entry
 * [ "<epoch>-<seq>" (decimal), [ "p", prev id or "", "d", data ] ].
 */
#ifndef WSPUSH_REDIS_HISTORY_H
#define WSPUSH_REDIS_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "msgid.h"
#include "str.h"

struct redis_entry {
    struct msgid id;
    int          has_prev;
    struct msgid prev;       /* the channel's message before it */
    struct str   data;       /* into the reply */
};

/* A stream entry id "<epoch>-<seq>" in decimal. 0 or -1. */
int redis_history_stream_id(const char *p, size_t n, struct msgid *out);

/* The entries of one XRANGE answer, in *out (calloc'ed, the caller frees;
 * NULL when none). 0, or -1 when it does not parse (ids not increasing, a
 * seq 0, a previous id not before its entry's, no data) or out of memory. */
int redis_history_entries(const redisReply *rep, struct redis_entry **out, size_t *n);

/* Can the gap after `after` be filled, on a channel whose last id is
 * `last` (has_last = 0: none on record) in epoch `epoch` (has_epoch = 0:
 * no epoch in Redis), from the entries e[0..n) after it? After an id of
 * seq 0 ("nothing yet", any epoch) the channel's whole life is needed:
 * its first entry must have no previous message. young: the epoch is
 * younger than the channels' last-id keys live (ER_META_TTL_S); in an
 * older one a missing last id, or an entry without a previous id, may be
 * an expired key, not "nothing before", and proves nothing. 1 or 0. */
int redis_history_continuous(uint32_t epoch, int has_epoch, int young, struct msgid after,
                             int has_last, struct msgid last, const struct redis_entry *e, size_t n);

/* The same question from the last copy this node delivered itself
 * (`after`), where the chain of previous ids can prove more than for a
 * page resuming: the first entry's previous id, or with no entry the
 * channel's last id, at or before `after`. Only within after's epoch: a
 * new epoch means the server may have lost writes (a restart, a
 * failover), among them a copy this node missed and the new server never
 * had, which its chain cannot show. An entry without a previous id or no
 * last id on record proves nothing either (Redis lost them, or the last
 * id expired). 0: the caller resets. */
int redis_history_follows(uint32_t epoch, int has_epoch, struct msgid after, int has_last,
                          struct msgid last, const struct redis_entry *e, size_t n);

/* The answer's head for nch channels: 0 with the epoch and the newest
 * seq given in it so far (an id past it was never given), or -1. */
int redis_history_head(const redisReply *rep, size_t nch, uint32_t *epoch, int *has_epoch,
                       uint64_t *newest_seq);

/* A channel's last id from the answer: 1 when there is one. */
int redis_history_last(const redisReply *v, struct msgid *last);

#endif
