#include "broker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frame.h"

struct broker {
    chan_registry_t   *reg;
    broker_deliver_fn *deliver;
    void              *ctx;
    history_t         *history;
    uint32_t           epoch;
    uint64_t           seq;
    char               last_id[BROKER_ID_MAX];
};

static void broker_format_id(const broker_t *b, uint64_t seq, char *out)
{
    snprintf(out, BROKER_ID_MAX, "%x-%llu", (unsigned)b->epoch, (unsigned long long)seq);
}

broker_t *broker_new(chan_registry_t *reg, broker_deliver_fn *deliver, void *ctx,
                     const struct history_limits *lim)
{
    broker_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->history = history_new(reg, lim);
    if (!b->history) {
        free(b);
        return NULL;
    }
    b->reg = reg;
    b->deliver = deliver;
    b->ctx = ctx;
    /* Seconds since the epoch: a restarted server gets a larger epoch. */
    b->epoch = (uint32_t)time(NULL);
    broker_format_id(b, 0, b->last_id);
    return b;
}

void broker_free(broker_t *b)
{
    if (!b)
        return;
    history_free(b->history);
    free(b);
}

void broker_set_limits(broker_t *b, const struct history_limits *lim, uint64_t now_ms)
{
    history_set_limits(b->history, lim, now_ms);
}

const char *broker_last_id(const broker_t *b) { return b->last_id; }

/* One text frame carrying the JSON envelope. Channel names and ids hold no
 * character that needs JSON escaping (see pattern.h), and data is one valid
 * JSON value, so the envelope is assembled by concatenation. */
static rbuf_t *broker_encode(const char *chan, size_t chanlen, const char *id,
                             const char *data, size_t len)
{
    static const char p1[] = "{\"type\":\"message\",\"channel\":\"";
    static const char p2[] = "\",\"id\":\"";
    static const char p3[] = "\",\"data\":";
    size_t idlen = strlen(id);
    size_t payload = sizeof(p1) - 1 + chanlen + sizeof(p2) - 1 + idlen + sizeof(p3) - 1 + len + 1;
    unsigned char hdr[10];
    size_t hl = frame_header(hdr, FRAME_TEXT, payload);
    rbuf_t *r = rbuf_new(hl + payload);
    if (!r)
        return NULL;
    unsigned char *w = rbuf_wdata(r);
    memcpy(w, hdr, hl); w += hl;
    memcpy(w, p1, sizeof(p1) - 1); w += sizeof(p1) - 1;
    memcpy(w, chan, chanlen); w += chanlen;
    memcpy(w, p2, sizeof(p2) - 1); w += sizeof(p2) - 1;
    memcpy(w, id, idlen); w += idlen;
    memcpy(w, p3, sizeof(p3) - 1); w += sizeof(p3) - 1;
    memcpy(w, data, len); w += len;
    *w = '}';
    return r;
}

int broker_publish(broker_t *b, const struct str *channels, int nchannels,
                   const char *data, size_t len, uint64_t now_ms, struct broker_result *res)
{
    rbuf_t *frames[WSPUSH_MAX_CHANNELS] = { 0 };
    char id[BROKER_ID_MAX];
    broker_format_id(b, b->seq + 1, id);

    /* Encode every frame before delivering any, so that running out of
     * memory means "not published" rather than "published to some". */
    for (int i = 0; i < nchannels; i++) {
        frames[i] = broker_encode(channels[i].p, channels[i].len, id, data, len);
        if (!frames[i]) {
            for (int j = 0; j < i; j++)
                rbuf_unref(frames[j]);
            return -ENOMEM;
        }
    }
    b->seq++;
    memcpy(b->last_id, id, sizeof(id));
    uint32_t total = 0;
    history_expire(b->history, now_ms);
    for (int i = 0; i < nchannels; i++) {
        /* Created even without subscribers: its history must be kept for
         * pages about to resume. history_append pins it, or it is released
         * right away. */
        struct channel *ch = chan_lookup(b->reg, channels[i].p, channels[i].len, 1);
        if (ch) {
            uint32_t n = chan_count(ch);
            for (uint32_t k = 0; k < n; k++)
                b->deliver(chan_owner(ch, k), frames[i], b->ctx);
            total += n;
            history_append(b->history, ch, b->seq, frames[i], now_ms);
            chan_release(b->reg, ch);
        }
        rbuf_unref(frames[i]);
    }
    memcpy(res->id, id, sizeof(id));
    res->subscribers = total;
    return 0;
}

/* "<hex epoch>-<decimal seq>", strictly. */
static int broker_parse_id(const char *p, size_t len, uint32_t *epoch, uint64_t *seq)
{
    size_t i = 0;
    uint64_t e = 0, q = 0;
    for (; i < len && i < 9 && p[i] != '-'; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return -1;
        e = e * 16 + (uint64_t)d;
    }
    if (i == 0 || i >= len || p[i] != '-' || e > UINT32_MAX)
        return -1;
    size_t start = ++i;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9' || i - start >= 19)
            return -1;
        q = q * 10 + (uint64_t)(p[i] - '0');
    }
    if (i == start)
        return -1;
    *epoch = (uint32_t)e;
    *seq = q;
    return 0;
}

/* Parses id; returns the seq to resume after, or -1 when the id is not
 * one of this run's. */
static int broker_since(const broker_t *b, const char *id, size_t idlen, uint64_t *since)
{
    uint32_t epoch;
    if (broker_parse_id(id, idlen, &epoch, since) < 0 || epoch != b->epoch || *since > b->seq)
        return -1;
    return 0;
}

void broker_gaps(broker_t *b, struct channel *const *chs, int n, const char *id, size_t idlen,
                 uint64_t now_ms, int *reset)
{
    uint64_t since = 0;
    history_expire(b->history, now_ms);
    int foreign = broker_since(b, id, idlen, &since) < 0;
    for (int i = 0; i < n; i++)
        reset[i] = foreign || !history_can_resume(b->history, chs[i], since);
}

size_t broker_replay(broker_t *b, struct channel *const *chs, int n, const char *id, size_t idlen,
                     const int *reset, history_visit_fn *visit, void *arg)
{
    uint64_t since;
    if (broker_since(b, id, idlen, &since) < 0)
        return 0;
    struct channel *ok[WSPUSH_MAX_CHANNELS];
    int nok = 0;
    for (int i = 0; i < n && nok < WSPUSH_MAX_CHANNELS; i++)
        if (!reset[i] && chs[i])
            ok[nok++] = chs[i];
    return nok ? history_replay(b->history, ok, nok, since, visit, arg) : 0;
}

int broker_save(const broker_t *b, const char *path, uint64_t now_ms, char *err, size_t errlen)
{
    return history_save(b->history, path, b->epoch, b->seq, now_ms, err, errlen);
}

int broker_restore(broker_t *b, const char *path, uint64_t now_ms, char *err, size_t errlen)
{
    uint32_t epoch;
    uint64_t seq;
    if (history_load(b->history, path, &epoch, &seq, now_ms, err, errlen) < 0)
        return -1;
    b->epoch = epoch;
    b->seq = seq;
    broker_format_id(b, seq, b->last_id);
    return 0;
}
