#include "channel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct channel {
    struct channel      *next;     /* hash chain */
    uint64_t             hash;
    struct chan_member **members;
    uint32_t             count, cap;
    int                  pinned;
    void                *userdata;
    size_t               len;
    char                 name[];   /* NUL-terminated */
};

struct chan_registry {
    struct channel **buckets;
    size_t           nbuckets;     /* power of two */
    size_t           size;
    uint64_t         seed;
};

/* Seeded 64-bit FNV-1a with a final avalanche: cheap, and the random seed
 * keeps collisions from being precomputed by a client choosing names. */
static uint64_t chan_hash(uint64_t seed, const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

chan_registry_t *chan_registry_new(void)
{
    chan_registry_t *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return NULL;
    reg->nbuckets = 64;
    reg->buckets = calloc(reg->nbuckets, sizeof(*reg->buckets));
    if (!reg->buckets) {
        free(reg);
        return NULL;
    }
    if (getrandom(&reg->seed, sizeof(reg->seed), 0) != sizeof(reg->seed))
        reg->seed = (uint64_t)(uintptr_t)reg ^ 0x9e3779b97f4a7c15ull;
    return reg;
}

static void chan_free(struct channel *ch)
{
    free(ch->members);
    free(ch);
}

void chan_registry_free(chan_registry_t *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->nbuckets; i++) {
        struct channel *ch = reg->buckets[i];
        while (ch) {
            struct channel *next = ch->next;
            chan_free(ch);
            ch = next;
        }
    }
    free(reg->buckets);
    free(reg);
}

static void chan_rehash(chan_registry_t *reg)
{
    size_t n = reg->nbuckets * 2;
    struct channel **b = calloc(n, sizeof(*b));
    if (!b)
        return;     /* keep the longer chains; still correct */
    for (size_t i = 0; i < reg->nbuckets; i++) {
        struct channel *ch = reg->buckets[i];
        while (ch) {
            struct channel *next = ch->next;
            size_t j = ch->hash & (n - 1);
            ch->next = b[j];
            b[j] = ch;
            ch = next;
        }
    }
    free(reg->buckets);
    reg->buckets = b;
    reg->nbuckets = n;
}

struct channel *chan_lookup(chan_registry_t *reg, const char *name, size_t len, int create)
{
    uint64_t h = chan_hash(reg->seed, name, len);
    for (struct channel *ch = reg->buckets[h & (reg->nbuckets - 1)]; ch; ch = ch->next)
        if (ch->hash == h && ch->len == len && memcmp(ch->name, name, len) == 0)
            return ch;
    if (!create)
        return NULL;
    struct channel *ch = calloc(1, sizeof(*ch) + len + 1);
    if (!ch)
        return NULL;
    ch->hash = h;
    ch->len = len;
    memcpy(ch->name, name, len);
    if (reg->size >= reg->nbuckets)
        chan_rehash(reg);
    size_t j = h & (reg->nbuckets - 1);
    ch->next = reg->buckets[j];
    reg->buckets[j] = ch;
    reg->size++;
    return ch;
}

int chan_subscribe(struct channel *ch, struct chan_member *m)
{
    if (ch->count == ch->cap) {
        uint32_t cap = ch->cap ? ch->cap * 2 : 4;
        struct chan_member **p = realloc(ch->members, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        ch->members = p;
        ch->cap = cap;
    }
    m->ch = ch;
    m->idx = ch->count;
    ch->members[ch->count++] = m;
    return 0;
}

static void chan_unlink(chan_registry_t *reg, struct channel *ch)
{
    struct channel **pp = &reg->buckets[ch->hash & (reg->nbuckets - 1)];
    while (*pp != ch)
        pp = &(*pp)->next;
    *pp = ch->next;
    reg->size--;
    chan_free(ch);
}

void chan_release(chan_registry_t *reg, struct channel *ch)
{
    if (ch->count == 0 && !ch->pinned)
        chan_unlink(reg, ch);
}

void chan_unsubscribe(chan_registry_t *reg, struct chan_member *m)
{
    struct channel *ch = m->ch;
    if (!ch)
        return;
    struct chan_member *last = ch->members[--ch->count];
    ch->members[m->idx] = last;
    last->idx = m->idx;
    m->ch = NULL;
    /* Give back a large array once the crowd has left. */
    if (ch->count == 0) {
        free(ch->members);
        ch->members = NULL;
        ch->cap = 0;
    }
    chan_release(reg, ch);
}

const char *chan_name(const struct channel *ch) { return ch->name; }
size_t chan_name_len(const struct channel *ch) { return ch->len; }
uint32_t chan_count(const struct channel *ch) { return ch->count; }
void *chan_owner(const struct channel *ch, uint32_t i) { return ch->members[i]->owner; }
void **chan_userdata(struct channel *ch) { return &ch->userdata; }
void chan_pin(struct channel *ch, int pinned) { ch->pinned = pinned; }
size_t chan_registry_size(const chan_registry_t *reg) { return reg->size; }

void chan_registry_each(chan_registry_t *reg, void (*fn)(struct channel *ch, void *arg), void *arg)
{
    for (size_t i = 0; i < reg->nbuckets; i++)
        for (struct channel *ch = reg->buckets[i]; ch; ch = ch->next)
            fn(ch, arg);
}
