#include "msg.h"

#include <stdlib.h>
#include <string.h>

#include "wspush.h"

struct msg_chan {
    uint16_t off;    /* name offset in text[] */
    uint8_t  len;
};

struct msg {
    uint32_t        refs;
    uint8_t         nchannels;
    uint8_t         idlen;
    uint32_t        datalen;
    uint32_t        dataoff;        /* data offset in text[] */
    size_t          bytes;          /* msg_bytes() */
    size_t         *account;        /* msg_account() */
    rbuf_t        **enc;            /* MSG_SLOTS x nchannels, NULL until the first encoding */
    struct msg_chan chans[];        /* nchannels, then the text: id, channel names, data */
};

static char *msg_text(const struct msg *m) { return (char *)&m->chans[m->nchannels]; }

struct msg *msg_new(struct str id, const struct str *channels, int nchannels, struct str data)
{
    if (id.len == 0 || id.len >= MSG_ID_MAX || nchannels < 1 || nchannels > WSPUSH_MAX_CHANNELS ||
        data.len == 0 || data.len > UINT32_MAX)
        return NULL;
    size_t names = 0;
    for (int i = 0; i < nchannels; i++) {
        if (channels[i].len == 0 || channels[i].len > UINT8_MAX)
            return NULL;
        names += channels[i].len;
    }
    size_t size = sizeof(struct msg) + (size_t)nchannels * sizeof(struct msg_chan) + id.len +
                  names + data.len;
    struct msg *m = malloc(size);
    if (!m)
        return NULL;
    m->refs = 1;
    m->nchannels = (uint8_t)nchannels;
    m->idlen = (uint8_t)id.len;
    m->datalen = (uint32_t)data.len;
    m->bytes = size;
    m->account = NULL;
    m->enc = NULL;
    char *text = msg_text(m), *w = text;
    memcpy(w, id.p, id.len);
    w += id.len;
    for (int i = 0; i < nchannels; i++) {
        m->chans[i].off = (uint16_t)(w - text);
        m->chans[i].len = (uint8_t)channels[i].len;
        memcpy(w, channels[i].p, channels[i].len);
        w += channels[i].len;
    }
    m->dataoff = (uint32_t)(w - text);
    memcpy(w, data.p, data.len);
    return m;
}

struct msg *msg_ref(struct msg *m)
{
    m->refs++;
    return m;
}

void msg_unref(struct msg *m)
{
    if (!m || --m->refs > 0)
        return;
    if (m->enc) {
        for (int i = 0; i < MSG_SLOTS * m->nchannels; i++)
            rbuf_unref(m->enc[i]);
        free(m->enc);
    }
    free(m);
}

struct str msg_id(const struct msg *m) { return (struct str){ msg_text(m), m->idlen }; }
int msg_nchannels(const struct msg *m) { return m->nchannels; }

struct str msg_channel(const struct msg *m, int i)
{
    return (struct str){ msg_text(m) + m->chans[i].off, m->chans[i].len };
}

struct str msg_data(const struct msg *m)
{
    return (struct str){ msg_text(m) + m->dataoff, m->datalen };
}

static void msg_grow(struct msg *m, size_t n)
{
    m->bytes += n;
    if (m->account)
        *m->account += n;
}

/* The cache cell of (slot, chan), the cache allocated on first use. */
static rbuf_t **msg_cell(struct msg *m, enum msg_slot slot, int chan)
{
    if (!m->enc) {
        m->enc = calloc((size_t)MSG_SLOTS * m->nchannels, sizeof(*m->enc));
        if (!m->enc)
            return NULL;
        msg_grow(m, (size_t)MSG_SLOTS * m->nchannels * sizeof(*m->enc));
    }
    return &m->enc[(size_t)slot * m->nchannels + (size_t)chan];
}

/* Counts a new encoding, unless another slot of the channel holds the
 * same rbuf. */
static void msg_store(struct msg *m, enum msg_slot slot, int chan, rbuf_t *r)
{
    for (int s = 0; s < MSG_SLOTS; s++)
        if (s != (int)slot && m->enc[(size_t)s * m->nchannels + (size_t)chan] == r)
            return;
    msg_grow(m, rbuf_len(r));
}

rbuf_t *msg_encoding_with(struct msg *m, enum msg_slot slot, int chan,
                          msg_encode_with_fn *enc, void *ctx)
{
    rbuf_t **cell = msg_cell(m, slot, chan);
    if (!cell)
        return NULL;
    if (!*cell) {
        *cell = enc(ctx, m, chan);
        if (*cell)
            msg_store(m, slot, chan, *cell);
    }
    return *cell;
}

struct msg_plain_enc {
    msg_encode_fn *enc;
};

static rbuf_t *msg_call_plain(void *ctx, const struct msg *m, int chan)
{
    return ((struct msg_plain_enc *)ctx)->enc(m, chan);
}

rbuf_t *msg_encoding(struct msg *m, enum msg_slot slot, int chan, msg_encode_fn *enc)
{
    struct msg_plain_enc p = { enc };
    return msg_encoding_with(m, slot, chan, msg_call_plain, &p);
}

/* Channel names and ids hold no character that needs JSON escaping (see
 * pattern.h and the id rule above), and data is one valid JSON value, so
 * the envelope is assembled by concatenation. */
static const char msg_p1[] = "{\"type\":\"message\",\"channel\":\"";
static const char msg_p2[] = "\",\"id\":\"";
static const char msg_p3[] = "\",\"data\":";

size_t msg_envelope_len(const struct msg *m, int chan)
{
    return sizeof(msg_p1) - 1 + m->chans[chan].len + sizeof(msg_p2) - 1 + m->idlen +
           sizeof(msg_p3) - 1 + m->datalen + 1;
}

void msg_envelope(const struct msg *m, int chan, unsigned char *w)
{
    struct str ch = msg_channel(m, chan), data = msg_data(m);
    memcpy(w, msg_p1, sizeof(msg_p1) - 1); w += sizeof(msg_p1) - 1;
    memcpy(w, ch.p, ch.len); w += ch.len;
    memcpy(w, msg_p2, sizeof(msg_p2) - 1); w += sizeof(msg_p2) - 1;
    memcpy(w, msg_text(m), m->idlen); w += m->idlen;
    memcpy(w, msg_p3, sizeof(msg_p3) - 1); w += sizeof(msg_p3) - 1;
    memcpy(w, data.p, data.len); w += data.len;
    *w = '}';
}

size_t msg_bytes(const struct msg *m) { return m->bytes; }
void msg_account(struct msg *m, size_t *counter) { m->account = counter; }
