#include "redis_history.h"

#include <stdlib.h>
#include <string.h>

/* "e-s" of a stream entry id (decimal) to the id. */
int redis_history_stream_id(const char *p, size_t n, struct msgid *out)
{
    unsigned long long e = 0, s = 0;
    size_t i = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
        e = e * 10 + (unsigned)(p[i] - '0');
    if (i == 0 || i >= n || p[i] != '-' || e > UINT32_MAX)
        return -1;
    size_t start = ++i;
    for (; i < n && p[i] >= '0' && p[i] <= '9' && i - start < 19; i++)
        s = s * 10 + (unsigned)(p[i] - '0');
    if (i != n || i == start)
        return -1;
    out->epoch = (uint32_t)e;
    out->seq = s;
    return 0;
}

/* Reads one XRANGE answer; -1 when it does not parse. */
int redis_history_entries(const redisReply *rep, struct redis_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (rep->type != REDIS_REPLY_ARRAY)
        return -1;
    if (rep->elements == 0)
        return 0;
    struct redis_entry *e = calloc(rep->elements, sizeof(*e));
    if (!e)
        return -1;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *it = rep->element[i];
        if (it->type != REDIS_REPLY_ARRAY || it->elements != 2 ||
            it->element[0]->type != REDIS_REPLY_STRING || it->element[1]->type != REDIS_REPLY_ARRAY ||
            redis_history_stream_id(it->element[0]->str, it->element[0]->len, &e[i].id) < 0)
            goto bad;
        const redisReply *f = it->element[1];
        for (size_t k = 0; k + 1 < f->elements; k += 2) {
            const redisReply *key = f->element[k], *val = f->element[k + 1];
            if (key->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING)
                goto bad;
            if (key->len == 1 && key->str[0] == 'p' && val->len) {
                if (msgid_parse((struct str){ val->str, val->len }, &e[i].prev) < 0)
                    goto bad;
                e[i].has_prev = 1;
            } else if (key->len == 1 && key->str[0] == 'd') {
                e[i].data = (struct str){ val->str, val->len };
            }
        }
        /* The publish script chains each entry to the one before it, and
         * XRANGE answers in id order: anything else is not our stream. */
        if (!e[i].data.len || e[i].id.seq == 0 ||
            (e[i].has_prev && msgid_cmp(e[i].prev, e[i].id) >= 0) ||
            (i > 0 && msgid_cmp(e[i].id, e[i - 1].id) <= 0))
            goto bad;
    }
    *out = e;
    *n = rep->elements;
    return 0;
bad:
    free(e);
    return -1;
}

/* Can the gap after `after` be filled on a channel whose last id is
 * `last` (none when has_last = 0), from entries e[0..n) after it? An
 * after of seq 0 ("nothing yet", of any epoch) asks for the channel's
 * whole life: its first entry must be the channel's first message. */
int redis_history_continuous(uint32_t epoch, int has_epoch, int young, struct msgid after,
                             int has_last, struct msgid last, const struct redis_entry *e, size_t n)
{
    /* "No previous id" and "no last id" say "nothing before" only while
     * the keys that would say otherwise cannot have expired. */
    if (after.seq == 0)
        return young && (n > 0 ? !e[0].has_prev : !has_last);
    if (!has_epoch || after.epoch != epoch)
        return 0;
    if (n > 0)
        return e[0].has_prev ? msgid_cmp(e[0].prev, after) <= 0 : young;
    return has_last ? msgid_cmp(last, after) <= 0 : young;
}

int redis_history_follows(uint32_t epoch, int has_epoch, struct msgid after, int has_last,
                          struct msgid last, const struct redis_entry *e, size_t n)
{
    if (!has_epoch || epoch != after.epoch)
        return 0;
    if (n > 0)
        return e[0].has_prev && msgid_cmp(e[0].prev, after) <= 0;
    return has_last && msgid_cmp(last, after) <= 0;
}

/* A decimal number of at most 19 digits (it fits 64 bits) at *p (< end),
 * written as Lua's %d writes it: no leading zero, as msgid_parse wants
 * of an id. p moved past it. */
static int rh_decimal(const char **p, const char *end, uint64_t *out)
{
    const char *q = *p;
    uint64_t v = 0;
    while (q < end && *q >= '0' && *q <= '9' && q - *p < 19)
        v = v * 10 + (uint64_t)(*q++ - '0');
    if (q == *p || (q < end && *q >= '0' && *q <= '9') || (q - *p > 1 && **p == '0'))
        return -1;
    *p = q;
    *out = v;
    return 0;
}

/* The common head of a history answer: "<epoch>-<its newest seq>" (both
 * decimal; "" with no epoch), then (last, entries) per channel. */
int redis_history_head(const redisReply *rep, size_t nch, uint32_t *epoch, int *has_epoch,
                       uint64_t *newest_seq)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 1 + 2 * nch ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return -1;
    const char *p = rep->element[0]->str, *end = p + rep->element[0]->len;
    uint64_t e = 0, seq = 0;
    *has_epoch = p < end;
    if (*has_epoch && (rh_decimal(&p, end, &e) < 0 || e > UINT32_MAX || p == end || *p++ != '-' ||
                       rh_decimal(&p, end, &seq) < 0 || p != end))
        return -1;
    *epoch = (uint32_t)e;
    *newest_seq = seq;
    return 0;
}

int redis_history_last(const redisReply *v, struct msgid *last)
{
    if (v->type != REDIS_REPLY_STRING || v->len == 0)
        return 0;
    return msgid_parse((struct str){ v->str, v->len }, last) == 0;
}

