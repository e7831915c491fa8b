#include "history.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "payload.h"
#include "wspush.h"

struct hist_msg;

/* A message's place in one of its channels. */
struct hist_node {
    struct hist_msg  *hm;
    struct channel   *ch;
};

struct hist_msg {
    struct hist_msg *next;       /* global FIFO, oldest first */
    struct msg      *m;
    uint64_t         seq;
    uint64_t         at_ms;
    int              n;
    struct hist_node nodes[];    /* one per channel of m, same order */
};

/* Kept in the channel's userdata slot while the channel has history: its
 * messages, oldest first, in a ring of node pointers, so that a resume
 * finds where to start by binary search (a slow page resuming in many
 * slices must not walk the channel's history from its start each time). */
struct hist_chan {
    struct hist_node **ring;        /* cap slots, a power of two */
    uint32_t           first, count, cap;
    uint64_t           evicted_max; /* highest seq of this channel evicted */
};

static struct hist_node *hc_at(const struct hist_chan *hc, uint32_t i)
{
    return hc->ring[(hc->first + i) & (hc->cap - 1)];
}

/* Room for one more node. Returns 0 or -ENOMEM (nothing changed). */
static int hc_reserve(struct hist_chan *hc)
{
    if (hc->count < hc->cap)
        return 0;
    uint32_t cap = hc->cap ? hc->cap * 2 : 8;
    struct hist_node **ring = malloc((size_t)cap * sizeof(*ring));
    if (!ring)
        return -ENOMEM;
    for (uint32_t i = 0; i < hc->count; i++)
        ring[i] = hc_at(hc, i);
    free(hc->ring);
    hc->ring = ring;
    hc->cap = cap;
    hc->first = 0;
    return 0;
}

/* Index of the first message with seq > since (count when none). */
static uint32_t hc_after(const struct hist_chan *hc, uint64_t since)
{
    uint32_t lo = 0, hi = hc->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (hc_at(hc, mid)->hm->seq <= since)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void hc_free(struct hist_chan *hc)
{
    free(hc->ring);
    free(hc);
}

static void history_clear(history_t *h);

struct history {
    chan_registry_t      *reg;
    struct history_limits lim;
    struct hist_msg      *head, *tail;
    size_t                entries;
    size_t                bytes;        /* msg_bytes of every kept message */
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

/* What history itself allocates to keep a message on n channels: counted
 * in history_bytes with the message, so the limit bounds every byte. */
static size_t hist_overhead(int n)
{
    return sizeof(struct hist_msg) + (size_t)n * (sizeof(struct hist_node) + sizeof(void *));
}

static struct hist_chan *history_chan(const struct channel *ch)
{
    return *chan_userdata((struct channel *)ch);
}

static void history_evict_one(history_t *h)
{
    struct hist_msg *hm = h->head;
    h->head = hm->next;
    if (!h->head)
        h->tail = NULL;
    h->entries--;
    h->bytes -= msg_bytes(hm->m) + hist_overhead(hm->n);
    if (hm->seq > h->evicted_max)
        h->evicted_max = hm->seq;
    for (int i = 0; i < hm->n; i++) {
        struct hist_node *node = &hm->nodes[i];
        struct hist_chan *hc = history_chan(node->ch);
        hc->first = (hc->first + 1) & (hc->cap - 1);
        hc->count--;
        hc->evicted_max = hm->seq;
        if (hc->count == 0) {
            /* The channel no longer holds history: forget it (the global
             * evicted_max keeps the gap rule safe) and let it go. */
            hc_free(hc);
            *chan_userdata(node->ch) = NULL;
            chan_pin(node->ch, 0);
            chan_release(h->reg, node->ch);
        }
    }
    msg_account(hm->m, NULL);
    msg_unref(hm->m);
    free(hm);
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

void history_reset(history_t *h)
{
    history_clear(h);
    h->evicted_max = 0;
}

static void history_clear(history_t *h)
{
    long keep = h->lim.max_entries;
    h->lim.max_entries = 0;
    history_trim(h, 0);
    h->lim.max_entries = keep;
}

void history_free(history_t *h)
{
    if (!h)
        return;
    history_clear(h);
    free(h);
}

/* The message is lost to resuming pages: remember it for the gap rule. */
static void history_lose(history_t *h, struct msg *m, uint64_t seq)
{
    h->evicted_max = seq;
    for (int i = 0; i < msg_nchannels(m); i++) {
        struct str name = msg_channel(m, i);
        struct channel *ch = chan_lookup(h->reg, name.p, name.len, 0);
        struct hist_chan *hc = ch ? history_chan(ch) : NULL;
        if (hc)
            hc->evicted_max = seq;
    }
}

int history_append(history_t *h, struct msg *m, uint64_t seq, uint64_t now_ms)
{
    if (h->lim.max_entries <= 0 ||
        (long)(msg_bytes(m) + hist_overhead(msg_nchannels(m))) > h->lim.max_bytes) {
        history_lose(h, m, seq);
        history_trim(h, now_ms);
        return 0;
    }
    int n = msg_nchannels(m);
    struct hist_msg *hm = calloc(1, sizeof(*hm) + (size_t)n * sizeof(hm->nodes[0]));
    if (!hm) {
        history_lose(h, m, seq);
        return -ENOMEM;
    }
    /* Every channel and its per-channel record first, so that running out
     * of memory leaves nothing half-linked. */
    for (int i = 0; i < n; i++) {
        struct str name = msg_channel(m, i);
        struct channel *ch = chan_lookup(h->reg, name.p, name.len, 1);
        struct hist_chan *hc = ch ? history_chan(ch) : NULL;
        if (ch && !hc && (hc = calloc(1, sizeof(*hc))) != NULL) {
            /* A channel whose history was all evicted forgot what it
             * lost: start from what any channel lost (conservative). */
            hc->evicted_max = h->evicted_max;
            *chan_userdata(ch) = hc;
            chan_pin(ch, 1);
        }
        if (!hc || hc_reserve(hc) < 0) {
            /* Undo the records made above for channels that had none. */
            for (int k = 0; k <= i; k++) {
                struct channel *kch = k < i ? hm->nodes[k].ch : ch;
                struct hist_chan *pc = kch ? history_chan(kch) : NULL;
                if (pc && pc->count == 0) {
                    hc_free(pc);
                    *chan_userdata(kch) = NULL;
                    chan_pin(kch, 0);
                    chan_release(h->reg, kch);
                } else if (kch && kch == ch && !pc) {
                    chan_release(h->reg, ch);
                }
            }
            free(hm);
            history_lose(h, m, seq);
            return -ENOMEM;
        }
        hm->nodes[i].ch = ch;
        hm->nodes[i].hm = hm;
    }
    hm->m = msg_ref(m);
    hm->seq = seq;
    hm->at_ms = now_ms;
    hm->n = n;
    for (int i = 0; i < n; i++) {
        struct hist_chan *hc = history_chan(hm->nodes[i].ch);
        hc->ring[(hc->first + hc->count) & (hc->cap - 1)] = &hm->nodes[i];
        hc->count++;
    }
    if (h->tail)
        h->tail->next = hm;
    else
        h->head = hm;
    h->tail = hm;
    h->entries++;
    h->bytes += msg_bytes(m) + hist_overhead(n);
    msg_account(m, &h->bytes);
    history_trim(h, now_ms);
    return 0;
}

int history_can_resume(const history_t *h, struct str name, uint64_t since)
{
    struct channel *ch = chan_lookup(h->reg, name.p, name.len, 0);
    const struct hist_chan *hc = ch ? history_chan(ch) : NULL;
    uint64_t lost = hc ? hc->evicted_max : h->evicted_max;
    return lost <= since;
}

int history_replay(const history_t *h, const struct str *names, int n, uint64_t since,
                   size_t max_bytes, history_visit_fn *visit, void *arg, uint64_t *next_since)
{
    /* One cursor per channel: its ring and the index of its next node. */
    const struct hist_chan *chs[WSPUSH_MAX_CHANNELS];
    uint32_t pos[WSPUSH_MAX_CHANNELS];
    const struct hist_node *cur[WSPUSH_MAX_CHANNELS];
    if (n > WSPUSH_MAX_CHANNELS)
        n = WSPUSH_MAX_CHANNELS;
    for (int i = 0; i < n; i++) {
        struct channel *ch = chan_lookup(h->reg, names[i].p, names[i].len, 0);
        chs[i] = ch ? history_chan(ch) : NULL;
        pos[i] = chs[i] ? hc_after(chs[i], since) : 0;
        cur[i] = chs[i] && pos[i] < chs[i]->count ? hc_at(chs[i], pos[i]) : NULL;
    }
    /* k-way merge by seq; k <= WSPUSH_MAX_CHANNELS. */
    size_t sent = 0;
    int visited = 0;
    *next_since = since;
    for (;;) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (cur[i] && (best < 0 || cur[i]->hm->seq < cur[best]->hm->seq))
                best = i;
        if (best < 0)
            return 0;
        const struct hist_msg *hm = cur[best]->hm;
        /* A message on k of the channels is visited k times, all in one
         * slice, so a continuation never repeats or skips one; the budget
         * is charged for every visit. */
        if (max_bytes && hm->seq != *next_since) {
            size_t k = 0;
            for (int i = 0; i < n; i++)
                k += cur[i] && cur[i]->hm == hm;
            if (visited && sent + k * msg_bytes(hm->m) > max_bytes)
                return 1;
        }
        visit(arg, hm->m, (int)(cur[best] - hm->nodes));
        sent += msg_bytes(hm->m);
        visited = 1;
        *next_since = hm->seq;
        pos[best]++;
        cur[best] = pos[best] < chs[best]->count ? hc_at(chs[best], pos[best]) : NULL;
    }
}

size_t history_kept_bytes(const struct msg *m)
{
    return msg_bytes(m) + hist_overhead(msg_nchannels(m));
}

size_t history_entries(const history_t *h) { return h->entries; }
size_t history_bytes(const history_t *h) { return h->bytes; }

/* ---- persistence ----
 * File layout (big-endian):
 *   "WSPUSHH2" u32 epoch, u64 seq, u64 evicted_max, u32 count,
 *   count x { u64 seq, u64 age_ms, u8 nchannels, nchannels x (u8 len, name),
 *             u32 datalen, data }
 *   u32 checksum (FNV-1a of everything before it)
 * Written to PATH.tmp and renamed, so a crash mid-save leaves the old file.
 * "WSPUSHH1" files (before messages were transport-neutral) held WebSocket
 * frames; they are refused with a message, and pages resuming get a reset. */

#define HIST_MAGIC    "WSPUSHH2"
#define HIST_MAGIC_V1 "WSPUSHH1"

static int hist_save_entry(struct buf *out, const struct hist_msg *hm, uint64_t now_ms)
{
    unsigned char eh[8 + 8 + 1];
    buf_put_u64(eh, hm->seq);
    buf_put_u64(eh + 8, now_ms - hm->at_ms);
    eh[16] = (unsigned char)hm->n;
    int rc = buf_append(out, eh, sizeof(eh));
    for (int i = 0; i < hm->n; i++) {
        struct str name = msg_channel(hm->m, i);
        unsigned char l = (unsigned char)name.len;
        rc |= buf_append(out, &l, 1);
        rc |= buf_append(out, name.p, name.len);
    }
    struct str data = msg_data(hm->m);
    unsigned char dl[4];
    buf_put_u32(dl, (uint32_t)data.len);
    rc |= buf_append(out, dl, 4);
    rc |= buf_append(out, data.p, data.len);
    return rc;
}

int history_save(const history_t *h, const char *path, uint32_t epoch, uint64_t seq,
                 uint64_t now_ms, char *err, size_t errlen)
{
    struct buf out = { 0 };
    unsigned char hdr[8 + 4 + 8 + 8 + 4];
    memcpy(hdr, HIST_MAGIC, 8);
    buf_put_u32(hdr + 8, epoch);
    buf_put_u64(hdr + 12, seq);
    buf_put_u64(hdr + 20, h->evicted_max);
    buf_put_u32(hdr + 28, (uint32_t)h->entries);
    int rc = buf_append(&out, hdr, sizeof(hdr));
    for (const struct hist_msg *hm = h->head; hm && rc == 0; hm = hm->next)
        rc = hist_save_entry(&out, hm, now_ms);
    unsigned char sum[4];
    buf_put_u32(sum, buf_fnv1a((const unsigned char *)buf_head(&out), buf_used(&out)));
    rc |= buf_append(&out, sum, 4);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        buf_free(&out);
        return -1;
    }
    rc = file_write_atomic(path, buf_head(&out), buf_used(&out), err, errlen);
    buf_free(&out);
    return rc;
}

/* Parses and appends one entry at p[*off..end). Returns NULL or why not. */
static const char *hist_load_entry(history_t *h, const unsigned char *p, size_t *off, size_t end,
                                   uint32_t epoch, uint64_t last, uint64_t *prev,
                                   history_id_fn *make_id, uint64_t now_ms)
{
    size_t o = *off;
    if (end - o < 17)
        return "truncated entry";
    uint64_t s = buf_get_u64(p + o);
    uint64_t age = buf_get_u64(p + o + 8);
    int n = p[o + 16];
    o += 17;
    if (s <= *prev || s > last)
        return "sequence out of order";
    if (n < 1 || n > WSPUSH_MAX_CHANNELS)
        return "bad channel count";
    struct str names[WSPUSH_MAX_CHANNELS];
    for (int i = 0; i < n; i++) {
        if (end - o < 1 || end - o - 1 < p[o])
            return "truncated entry";
        names[i] = (struct str){ (const char *)p + o + 1, p[o] };
        o += 1 + (size_t)p[o];
    }
    /* The rules of the publish socket: what it took, a restart gives back. */
    int bad = payload_check_channels(names, n);
    if (bad < 0)
        return payload_strerror(bad);
    if (end - o < 4)
        return "truncated entry";
    size_t dl = buf_get_u32(p + o);
    o += 4;
    if (dl == 0 || end - o < dl)
        return "truncated payload";
    struct str data = { (const char *)p + o, dl };
    bad = payload_check_data(data.p, data.len);
    if (bad < 0)
        return bad == PAYLOAD_E_JSON ? "payload is not one JSON value"
             : bad == PAYLOAD_E_UTF8 ? "payload is not valid UTF-8" : payload_strerror(bad);
    o += dl;
    char id[MSG_ID_MAX];
    make_id(epoch, s, id);
    struct msg *m = msg_new((struct str){ id, strlen(id) }, names, n, data);
    if (!m)
        return "out of memory";
    int rc = history_append(h, m, s, age > now_ms ? 0 : now_ms - age);
    msg_unref(m);
    if (rc < 0)
        return "out of memory";
    *prev = s;
    *off = o;
    return NULL;
}

int history_load(history_t *h, const char *path, history_id_fn *make_id, uint32_t *epoch,
                 uint64_t *seq, uint64_t now_ms, char *err, size_t errlen)
{
    struct buf in = { 0 };
    /* A history over 4 GiB cannot have been saved by us (u32 counts). */
    if (file_read_all(path, (size_t)UINT32_MAX, &in, err, errlen) < 0) {
        buf_free(&in);
        return -1;
    }
    const unsigned char *p = (const unsigned char *)buf_head(&in);
    size_t len = buf_used(&in);
    const char *why = NULL;
    if (len >= 8 && memcmp(p, HIST_MAGIC_V1, 8) == 0)
        why = "written by an older wspush (WebSocket frames, format 1): not restored, "
              "pages resuming get a reset";
    else if (len < 32 + 4 || memcmp(p, HIST_MAGIC, 8) != 0)
        why = "not a wspush history file";
    else if (buf_fnv1a(p, len - 4) != buf_get_u32(p + len - 4))
        why = "checksum mismatch (truncated or corrupt)";
    if (!why) {
        uint32_t ep = buf_get_u32(p + 8);
        uint64_t last = buf_get_u64(p + 12);
        uint64_t evicted = buf_get_u64(p + 20);
        uint32_t count = buf_get_u32(p + 28);
        size_t off = 32, end = len - 4;
        uint64_t prev = 0;
        /* Before the entries: each restored channel starts from it. */
        if (evicted > h->evicted_max)
            h->evicted_max = evicted;
        for (uint32_t i = 0; i < count && !why; i++)
            why = hist_load_entry(h, p, &off, end, ep, last, &prev, make_id, now_ms);
        if (!why && off != end)
            why = "trailing bytes";
        if (!why) {
            *epoch = ep;
            *seq = last;
        }
    }
    buf_free(&in);
    if (why) {
        snprintf(err, errlen, "%s: %s", path, why);
        /* Leave nothing half-loaded behind. */
        history_reset(h);
        return -1;
    }
    history_trim(h, now_ms);
    return 0;
}
