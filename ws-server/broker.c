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
    uint32_t           epoch;
    uint64_t           seq;
    char               last_id[BROKER_ID_MAX];
};

static void broker_format_id(const broker_t *b, uint64_t seq, char *out)
{
    snprintf(out, BROKER_ID_MAX, "%x-%llu", (unsigned)b->epoch, (unsigned long long)seq);
}

broker_t *broker_new(chan_registry_t *reg, broker_deliver_fn *deliver, void *ctx)
{
    broker_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->reg = reg;
    b->deliver = deliver;
    b->ctx = ctx;
    /* Seconds since the epoch: a restarted server gets a larger epoch. */
    b->epoch = (uint32_t)time(NULL);
    broker_format_id(b, 0, b->last_id);
    return b;
}

void broker_free(broker_t *b) { free(b); }

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

int broker_publish(broker_t *b, const struct ipc_str *channels, int nchannels,
                   const char *data, size_t len, struct broker_result *res)
{
    rbuf_t *frames[IPC_MAX_CHANNELS] = { 0 };
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
    for (int i = 0; i < nchannels; i++) {
        struct channel *ch = chan_lookup(b->reg, channels[i].p, channels[i].len, 0);
        if (ch) {
            uint32_t n = chan_count(ch);
            for (uint32_t k = 0; k < n; k++)
                b->deliver(chan_owner(ch, k), frames[i], b->ctx);
            total += n;
        }
        rbuf_unref(frames[i]);
    }
    memcpy(res->id, id, sizeof(id));
    res->subscribers = total;
    return 0;
}
