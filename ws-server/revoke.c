#include "revoke.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "channel.h"
#include "file.h"
#include "list.h"

struct rv_rec {
    struct list_node node;     /* r->fifo, oldest S first */
    struct channel  *key;      /* the user's entry in r->users */
    long             s;
};

struct revoke {
    struct revoke_limits lim;
    long                 not_before;   /* raised by dropped records, reloads, out of memory */
    /* Nothing is known of revocations up to this second: the process
     * start, lowered to what restored records cover (0: a planned stop's
     * file covers everything). */
    long                 start_floor;
    long                 last_s;   /* S never goes back, so the FIFO stays sorted */
    chan_registry_t     *users;    /* channel.c's table keyed by user name;
                                      userdata = struct rv_rec */
    struct list          fifo;
};

long revoke_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long)ts.tv_sec;
}

revoke_t *revoke_new(const struct revoke_limits *lim, long start_s)
{
    revoke_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->users = chan_registry_new();
    if (!r->users) {
        free(r);
        return NULL;
    }
    r->lim = *lim;
    r->start_floor = start_s;
    r->last_s = start_s;
    list_init(&r->fifo);
    return r;
}

static void rv_drop(revoke_t *r, struct rv_rec *rec)
{
    list_remove(&r->fifo, &rec->node);
    *chan_userdata(rec->key) = NULL;
    chan_pin(rec->key, 0);
    chan_release(r->users, rec->key);
    free(rec);
}

static void rv_raise(revoke_t *r, long s)
{
    if (s > r->not_before)
        r->not_before = s;
}

static long rv_floor(const revoke_t *r)
{
    return r->not_before > r->start_floor ? r->not_before : r->start_floor;
}

/* The newest is first, so the oldest is the last. */
static struct rv_rec *rv_oldest(const revoke_t *r)
{
    struct list_node *n = list_last(&r->fifo);
    return n ? list_entry(n, struct rv_rec, node) : NULL;
}

/* Drops records past lifetime, and the oldest while over max_users (those
 * fail closed: not_before rises to their S). */
static void rv_trim(revoke_t *r, long now_s)
{
    struct rv_rec *rec;
    while ((rec = rv_oldest(r)) != NULL) {
        if (rec->s + r->lim.lifetime_s < now_s) {
            rv_drop(r, rec);
        } else if (r->fifo.n > r->lim.max_users) {
            rv_raise(r, rec->s);
            rv_drop(r, rec);
        } else {
            break;
        }
    }
}

void revoke_free(revoke_t *r)
{
    if (!r)
        return;
    struct rv_rec *rec;
    while ((rec = rv_oldest(r)) != NULL)
        rv_drop(r, rec);
    chan_registry_free(r->users);
    free(r);
}

void revoke_set_limits(revoke_t *r, const struct revoke_limits *lim, long now_s)
{
    if (lim->lifetime_s > r->lim.lifetime_s)
        rv_raise(r, now_s);
    r->lim = *lim;
    rv_trim(r, now_s);
}

/* Records (user, s), the FIFO kept sorted by S: a record restored from
 * elsewhere may be older than the newest held. A disconnect's S is the
 * newest, so its place is found at once. Returns 0 or -ENOMEM. */
static int rv_add(revoke_t *r, struct str user, long s)
{
    struct channel *key = chan_lookup(r->users, user.p, user.len, 1);
    struct rv_rec *rec = key ? *chan_userdata(key) : NULL;
    if (key && !rec) {
        rec = calloc(1, sizeof(*rec));
        if (!rec) {
            chan_release(r->users, key);
            return -ENOMEM;
        }
        rec->key = key;
        *chan_userdata(key) = rec;
        chan_pin(key, 1);
        list_node_init(&rec->node);
    }
    if (!rec)
        return -ENOMEM;
    if (list_node_linked(&rec->node))
        list_remove(&r->fifo, &rec->node);
    rec->s = s;
    struct list_node *at = r->fifo.head.next;     /* newest first */
    while (at != &r->fifo.head && list_entry(at, struct rv_rec, node)->s > s)
        at = at->next;
    list_insert_before(&r->fifo, at, &rec->node);
    return 0;
}

int revoke_user(revoke_t *r, struct str user, long now_s)
{
    long s = now_s > r->last_s ? now_s : r->last_s;
    r->last_s = s;
    rv_trim(r, now_s);
    if (rv_add(r, user, s) < 0) {
        rv_raise(r, s);     /* cannot remember U alone: refuse everyone's older tokens */
        return -ENOMEM;
    }
    rv_trim(r, now_s);
    return 0;
}

int revoke_restore_user(revoke_t *r, struct str user, long s, long now_s)
{
    if (s + r->lim.lifetime_s < now_s)
        return 0;
    struct channel *key = chan_lookup(r->users, user.p, user.len, 0);
    const struct rv_rec *held = key ? *chan_userdata(key) : NULL;
    if (held && held->s >= s)
        return 0;
    if (s > r->last_s)
        r->last_s = s;
    if (rv_add(r, user, s) < 0) {
        rv_raise(r, s);
        return -ENOMEM;
    }
    rv_trim(r, now_s);
    return 0;
}

void revoke_refuse_before(revoke_t *r, long s) { rv_raise(r, s); }

int revoke_restored(revoke_t *r, long floor_s, long since_s)
{
    int lowered = since_s < r->start_floor;
    if (lowered)
        r->start_floor = since_s;
    rv_raise(r, floor_s);
    return lowered;
}

int revoke_is_revoked(revoke_t *r, struct str user, long iat)
{
    struct channel *key = chan_lookup(r->users, user.p, user.len, 0);
    const struct rv_rec *rec = key ? *chan_userdata(key) : NULL;
    return rec && (iat == 0 || iat <= rec->s);
}

int revoke_check(revoke_t *r, struct str user, long iat, long exp, long now_s)
{
    rv_trim(r, now_s);
    struct channel *key = chan_lookup(r->users, user.p, user.len, 0);
    const struct rv_rec *rec = key ? *chan_userdata(key) : NULL;
    if (iat == 0) {
        if (exp - now_s > r->lim.lifetime_s)
            return REVOKE_E_LIFETIME;
        return rec ? REVOKE_E_REVOKED : REVOKE_OK;
    }
    if (iat > now_s + REVOKE_SKEW_S)
        return REVOKE_E_FUTURE;
    if (exp - iat > r->lim.lifetime_s)
        return REVOKE_E_LIFETIME;
    if (iat <= rv_floor(r) || (rec && iat <= rec->s))
        return REVOKE_E_REVOKED;
    return REVOKE_OK;
}

size_t revoke_count(const revoke_t *r) { return r->fifo.n; }
long revoke_not_before(const revoke_t *r) { return rv_floor(r); }

const char *revoke_strerror(int code)
{
    switch (code) {
    case REVOKE_E_REVOKED:  return "token revoked (user disconnected after it was issued)";
    case REVOKE_E_LIFETIME: return "token lifetime over max_token_lifetime";
    case REVOKE_E_FUTURE:   return "token issued in the future (are the clocks in sync?)";
    default:                return "ok";
    }
}

/* ---- persistence ----
 * "WSPUSHR1" u64 not_before, u64 last_s, u32 count,
 * count x { u64 s, u8 len, user } oldest first, u32 FNV-1a of the rest. */

#define RV_MAGIC "WSPUSHR1"

int revoke_save(const revoke_t *r, const char *path, char *err, size_t errlen)
{
    struct buf out = { 0 };
    unsigned char hdr[8 + 8 + 8 + 4];
    memcpy(hdr, RV_MAGIC, 8);
    buf_put_u64(hdr + 8, (uint64_t)rv_floor(r));
    buf_put_u64(hdr + 16, (uint64_t)r->last_s);
    buf_put_u32(hdr + 24, (uint32_t)r->fifo.n);
    int rc = buf_append(&out, hdr, sizeof(hdr));
    /* Oldest first: walk from the tail. */
    for (struct list_node *n = r->fifo.head.prev; n != &r->fifo.head && rc == 0; n = n->prev) {
        const struct rv_rec *rec = list_entry(n, struct rv_rec, node);
        unsigned char eh[9];
        buf_put_u64(eh, (uint64_t)rec->s);
        eh[8] = (unsigned char)chan_name_len(rec->key);
        rc = buf_append(&out, eh, sizeof(eh));
        rc |= buf_append(&out, chan_name(rec->key), chan_name_len(rec->key));
    }
    unsigned char sum[4];
    buf_put_u32(sum, buf_fnv1a(buf_head(&out), buf_used(&out)));
    rc |= buf_append(&out, sum, 4);
    if (rc == 0)
        rc = file_write_atomic(path, buf_head(&out), buf_used(&out), err, errlen);
    else
        snprintf(err, errlen, "out of memory");
    buf_free(&out);
    return rc < 0 ? -1 : 0;
}

static const char *rv_parse(revoke_t *into, const unsigned char *p, size_t len)
{
    if (len < 28 + 4 || memcmp(p, RV_MAGIC, 8) != 0)
        return "not a wspush revocation file";
    if (buf_fnv1a(p, len - 4) != buf_get_u32(p + len - 4))
        return "checksum mismatch (truncated or corrupt)";
    into->not_before = (long)buf_get_u64(p + 8);
    into->last_s = (long)buf_get_u64(p + 16);
    uint32_t count = buf_get_u32(p + 24);
    size_t off = 28, end = len - 4;
    long prev = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (end - off < 9 || end - off - 9 < p[off + 8] || p[off + 8] == 0)
            return "truncated record";
        long s = (long)buf_get_u64(p + off);
        struct str user = { (const char *)p + off + 9, p[off + 8] };
        if (s < prev || s > into->last_s)
            return "records out of order";
        prev = s;
        if (rv_add(into, user, s) < 0)
            return "out of memory";
        off += 9 + user.len;
    }
    return off == end ? NULL : "trailing bytes";
}

int revoke_load(revoke_t *r, const char *path, long now_s, char *err, size_t errlen)
{
    struct buf in = { 0 };
    if (file_read_all(path, 64u << 20, &in, err, errlen) < 0) {
        buf_free(&in);
        return -1;
    }
    revoke_t *fresh = revoke_new(&r->lim, 0);
    const char *why = fresh ? rv_parse(fresh, (const unsigned char *)buf_head(&in), buf_used(&in))
                            : "out of memory";
    buf_free(&in);
    if (why) {
        snprintf(err, errlen, "%s: %s", path, why);
        revoke_free(fresh);
        return -1;
    }
    /* Take fresh's records over; the caller's handle stays valid. */
    struct rv_rec *rec;
    while ((rec = rv_oldest(r)) != NULL)
        rv_drop(r, rec);
    chan_registry_t *swap = r->users;
    r->users = fresh->users;
    fresh->users = swap;
    while ((rec = rv_oldest(fresh)) != NULL) {
        list_remove(&fresh->fifo, &rec->node);
        list_push(&r->fifo, &rec->node);
    }
    r->not_before = fresh->not_before;
    r->start_floor = 0;
    r->last_s = fresh->last_s;
    revoke_free(fresh);
    rv_trim(r, now_s);
    return 0;
}
