#include "history.h"

#include "cfg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct hist_entry {
    struct hist_entry *next;        /* global FIFO, oldest first */
    struct hist_entry *chan_next;   /* same channel, oldest first */
    struct channel    *ch;
    uint64_t           seq;
    uint64_t           at_ms;
    rbuf_t            *frame;
};

/* Kept in the channel's userdata slot while the channel has history or
 * has lost some. */
struct hist_chan {
    struct hist_entry *head, *tail;
    uint64_t           evicted_max;  /* highest seq of this channel evicted */
};

struct history {
    chan_registry_t      *reg;
    struct history_limits lim;
    struct hist_entry    *head, *tail;
    size_t                entries;
    size_t                bytes;
    uint64_t              evicted_max;  /* highest seq ever evicted, any channel */
};

history_t *history_new(chan_registry_t *reg, const struct history_limits *lim)
{
    history_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->reg = reg;
    h->lim = *lim;
    return h;
}

static struct hist_chan *history_chan(const struct channel *ch)
{
    return *chan_userdata((struct channel *)ch);
}

static void history_evict_one(history_t *h)
{
    struct hist_entry *e = h->head;
    h->head = e->next;
    if (!h->head)
        h->tail = NULL;
    h->entries--;
    h->bytes -= rbuf_len(e->frame);
    if (e->seq > h->evicted_max)
        h->evicted_max = e->seq;
    struct hist_chan *hc = history_chan(e->ch);
    hc->head = e->chan_next;
    if (!hc->head)
        hc->tail = NULL;
    hc->evicted_max = e->seq;
    if (!hc->head) {
        /* The channel no longer holds history: forget it (the global
         * evicted_max keeps the gap rule safe) and let it go if unused. */
        free(hc);
        *chan_userdata(e->ch) = NULL;
        chan_pin(e->ch, 0);
        chan_release(h->reg, e->ch);
    }
    rbuf_unref(e->frame);
    free(e);
}

static void history_trim(history_t *h, uint64_t now_ms)
{
    while (h->head && ((long)h->entries > h->lim.max_entries ||
                       (long)h->bytes > h->lim.max_bytes ||
                       (h->lim.ttl_ms && h->head->at_ms + h->lim.ttl_ms <= now_ms)))
        history_evict_one(h);
}

void history_expire(history_t *h, uint64_t now_ms) { history_trim(h, now_ms); }

void history_set_limits(history_t *h, const struct history_limits *lim, uint64_t now_ms)
{
    h->lim = *lim;
    history_trim(h, now_ms);
}

void history_free(history_t *h)
{
    if (!h)
        return;
    h->lim.max_entries = 0;
    history_trim(h, 0);
    free(h);
}

int history_append(history_t *h, struct channel *ch, uint64_t seq, rbuf_t *frame, uint64_t now_ms)
{
    if (h->lim.max_entries <= 0 || (long)rbuf_len(frame) > h->lim.max_bytes) {
        /* Not kept: to a resuming client this message is lost. */
        h->evicted_max = seq;
        struct hist_chan *hc = history_chan(ch);
        if (hc)
            hc->evicted_max = seq;
        return 0;
    }
    struct hist_entry *e = calloc(1, sizeof(*e));
    struct hist_chan *hc = history_chan(ch);
    if (!e || (!hc && !(hc = calloc(1, sizeof(*hc))))) {
        free(e);
        h->evicted_max = seq;
        return -ENOMEM;
    }
    *chan_userdata(ch) = hc;
    chan_pin(ch, 1);
    e->ch = ch;
    e->seq = seq;
    e->at_ms = now_ms;
    e->frame = rbuf_ref(frame);
    if (h->tail)
        h->tail->next = e;
    else
        h->head = e;
    h->tail = e;
    if (hc->tail)
        hc->tail->chan_next = e;
    else
        hc->head = e;
    hc->tail = e;
    h->entries++;
    h->bytes += rbuf_len(frame);
    history_trim(h, now_ms);
    return 0;
}

int history_can_resume(const history_t *h, const struct channel *ch, uint64_t since)
{
    const struct hist_chan *hc = ch ? history_chan(ch) : NULL;
    uint64_t lost = hc ? hc->evicted_max : h->evicted_max;
    return lost <= since;
}

size_t history_replay(const history_t *h, struct channel *const *chs, int n, uint64_t since,
                      history_visit_fn *visit, void *arg)
{
    (void)h;
    const struct hist_entry *cur[64];
    if (n > 64)
        n = 64;
    for (int i = 0; i < n; i++) {
        const struct hist_chan *hc = chs[i] ? history_chan(chs[i]) : NULL;
        const struct hist_entry *e = hc ? hc->head : NULL;
        while (e && e->seq <= since)
            e = e->chan_next;
        cur[i] = e;
    }
    /* k-way merge by seq; k <= 32 channels per connection. */
    size_t visited = 0;
    for (;;) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (cur[i] && (best < 0 || cur[i]->seq < cur[best]->seq))
                best = i;
        if (best < 0)
            break;
        visit(cur[best]->frame, arg);
        visited++;
        cur[best] = cur[best]->chan_next;
    }
    return visited;
}

size_t history_entries(const history_t *h) { return h->entries; }

/* ---- persistence ----
 * File layout (big-endian):
 *   "WSPUSHH1" u32 epoch, u64 seq, u64 evicted_max, u32 count,
 *   count x { u64 seq, u64 age_ms, u8 chanlen, chan, u32 framelen, frame }
 *   u32 checksum (FNV-1a of everything before it)
 * Written to PATH.tmp and renamed, so a crash mid-save leaves the old file. */

#define HIST_MAGIC "WSPUSHH1"

static void hist_put64(unsigned char *p, uint64_t v)
{
    buf_put_u32(p, (uint32_t)(v >> 32));
    buf_put_u32(p + 4, (uint32_t)v);
}

static uint64_t hist_get64(const unsigned char *p)
{
    return (uint64_t)buf_get_u32(p) << 32 | buf_get_u32(p + 4);
}

static uint32_t hist_checksum(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

int history_save(const history_t *h, const char *path, uint32_t epoch, uint64_t seq,
                 uint64_t now_ms, char *err, size_t errlen)
{
    struct buf out = { 0 };
    unsigned char hdr[8 + 4 + 8 + 8 + 4];
    memcpy(hdr, HIST_MAGIC, 8);
    buf_put_u32(hdr + 8, epoch);
    hist_put64(hdr + 12, seq);
    hist_put64(hdr + 20, h->evicted_max);
    buf_put_u32(hdr + 28, (uint32_t)h->entries);
    int rc = buf_append(&out, hdr, sizeof(hdr));
    for (const struct hist_entry *e = h->head; e && rc == 0; e = e->next) {
        unsigned char eh[8 + 8 + 1];
        hist_put64(eh, e->seq);
        hist_put64(eh + 8, now_ms - e->at_ms);
        eh[16] = (unsigned char)chan_name_len(e->ch);
        unsigned char fl[4];
        buf_put_u32(fl, (uint32_t)rbuf_len(e->frame));
        rc |= buf_append(&out, eh, sizeof(eh));
        rc |= buf_append(&out, chan_name(e->ch), chan_name_len(e->ch));
        rc |= buf_append(&out, fl, 4);
        rc |= buf_append(&out, rbuf_data(e->frame), rbuf_len(e->frame));
    }
    unsigned char sum[4];
    buf_put_u32(sum, hist_checksum((const unsigned char *)buf_head(&out), buf_used(&out)));
    rc |= buf_append(&out, sum, 4);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        buf_free(&out);
        return -1;
    }
    char tmp[CFG_PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(buf_head(&out), 1, buf_used(&out), f) == buf_used(&out);
    if (f && fclose(f) != 0)
        ok = 0;
    buf_free(&out);
    if (!ok || rename(tmp, path) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int history_load(history_t *h, const char *path, uint32_t *epoch, uint64_t *seq,
                 uint64_t now_ms, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct buf in = { 0 };
    char chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && rc == 0)
        rc = buf_append(&in, chunk, n);
    fclose(f);
    const unsigned char *p = (const unsigned char *)buf_head(&in);
    size_t len = buf_used(&in);
    const char *why = NULL;
    if (rc < 0)
        why = "out of memory";
    else if (len < 32 + 4 || memcmp(p, HIST_MAGIC, 8) != 0)
        why = "not a wspush history file";
    else if (hist_checksum(p, len - 4) != buf_get_u32(p + len - 4))
        why = "checksum mismatch (truncated or corrupt)";
    if (why)
        goto fail;
    uint32_t ep = buf_get_u32(p + 8);
    uint64_t last = hist_get64(p + 12);
    uint64_t evicted = hist_get64(p + 20);
    uint32_t count = buf_get_u32(p + 28);
    size_t off = 32, end = len - 4;
    uint64_t prev = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (end - off < 17) { why = "truncated entry"; goto fail; }
        uint64_t s = hist_get64(p + off);
        uint64_t age = hist_get64(p + off + 8);
        size_t cl = p[off + 16];
        off += 17;
        if (cl == 0 || end - off < cl + 4) { why = "truncated entry"; goto fail; }
        const char *name = (const char *)p + off;
        off += cl;
        size_t fl = buf_get_u32(p + off);
        off += 4;
        if (end - off < fl || fl == 0) { why = "truncated frame"; goto fail; }
        if (s <= prev || s > last) { why = "sequence out of order"; goto fail; }
        prev = s;
        struct channel *ch = chan_lookup(h->reg, name, cl, 1);
        rbuf_t *r = ch ? rbuf_from(p + off, fl) : NULL;
        if (!r) { why = "out of memory"; goto fail; }
        off += fl;
        uint64_t at = age > now_ms ? 0 : now_ms - age;
        int arc = history_append(h, ch, s, r, at);
        rbuf_unref(r);
        if (arc < 0) { why = "out of memory"; goto fail; }
    }
    if (off != end) { why = "trailing bytes"; goto fail; }
    if (evicted > h->evicted_max)
        h->evicted_max = evicted;
    *epoch = ep;
    *seq = last;
    buf_free(&in);
    history_trim(h, now_ms);
    return 0;
fail:
    snprintf(err, errlen, "%s: %s", path, why);
    buf_free(&in);
    /* Leave nothing half-loaded behind. */
    long keep = h->lim.max_entries;
    h->lim.max_entries = 0;
    history_trim(h, now_ms);
    h->lim.max_entries = keep;
    h->evicted_max = 0;
    return -1;
}
