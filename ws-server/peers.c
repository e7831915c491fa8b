#include "peers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define PEERS_MIN_BUCKETS 64

/* A key: family 4 with the address in the low 32 bits of bits, or family
 * 6 with the /64 prefix. */
struct peer_key {
    uint64_t bits;
    uint8_t  family;
};

struct peer {
    struct peer    *next;      /* hash chain */
    uint64_t        hash;
    struct peer_key key;
    uint32_t        count;
};

/* One trusted_proxies item: an IPv4 address is kept as ::ffff:a.b.c.d,
 * so one comparison serves both families. */
struct peers_net {
    unsigned char addr[16];
    unsigned      bits;        /* prefix length over the 16 bytes */
};

struct peers {
    struct peer    **buckets;
    size_t           nbuckets;  /* power of two */
    size_t           size;
    uint64_t         seed;
    struct peers_net trusted[CFG_MAX_LIST];
    int              ntrusted;
};

static const unsigned char peers_v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

peers_t *peers_new(void)
{
    peers_t *ps = calloc(1, sizeof(*ps));
    if (!ps)
        return NULL;
    ps->nbuckets = PEERS_MIN_BUCKETS;
    ps->buckets = calloc(ps->nbuckets, sizeof(*ps->buckets));
    if (!ps->buckets) {
        free(ps);
        return NULL;
    }
    if (getrandom(&ps->seed, sizeof(ps->seed), 0) != sizeof(ps->seed))
        ps->seed = (uint64_t)(uintptr_t)ps ^ 0x9e3779b97f4a7c15ull;
    return ps;
}

void peers_free(peers_t *ps)
{
    if (!ps)
        return;
    for (size_t i = 0; i < ps->nbuckets; i++) {
        struct peer *p = ps->buckets[i];
        while (p) {
            struct peer *next = p->next;
            free(p);
            p = next;
        }
    }
    free(ps->buckets);
    free(ps);
}

/* "ADDR" or "ADDR/BITS" into an IPv6-shaped prefix. */
static int peers_parse_net(const char *s, struct peers_net *net)
{
    char addr[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(addr))
        return -EINVAL;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    unsigned max, base;
    struct in_addr v4;
    if (inet_pton(AF_INET, addr, &v4) == 1) {
        memcpy(net->addr, peers_v4mapped, 12);
        memcpy(net->addr + 12, &v4, 4);
        max = 32;
        base = 96;
    } else if (inet_pton(AF_INET6, addr, net->addr) == 1) {
        max = 128;
        base = 0;
    } else {
        return -EINVAL;
    }
    unsigned bits = max;
    if (slash) {
        const char *d = slash + 1;
        if (!*d || strlen(d) > 3 || strspn(d, "0123456789") != strlen(d))
            return -EINVAL;
        bits = (unsigned)atoi(d);
        if (bits > max)
            return -EINVAL;
    }
    net->bits = base + bits;
    return 0;
}

int peers_set_trusted(peers_t *ps, const struct cfg_list *list)
{
    int rc = 0;
    ps->ntrusted = 0;
    for (int i = 0; i < list->n && ps->ntrusted < CFG_MAX_LIST; i++) {
        if (peers_parse_net(list->items[i], &ps->trusted[ps->ntrusted]) < 0)
            rc = -EINVAL;
        else
            ps->ntrusted++;
    }
    return rc;
}

static int peers_in_net(const unsigned char a[16], const struct peers_net *net)
{
    unsigned full = net->bits / 8, rest = net->bits % 8;
    if (memcmp(a, net->addr, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (net->addr[full] & mask);
}

/* The address as 16 bytes (IPv4 mapped). -1 for other families. */
static int peers_addr16(const struct sockaddr *sa, socklen_t len, unsigned char out[16])
{
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        memcpy(out, peers_v4mapped, 12);
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

static uint64_t peers_hash(uint64_t seed, const struct peer_key *k)
{
    uint64_t h = (k->bits ^ seed) + k->family * 0x9e3779b97f4a7c15ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* Doubles the table once it holds more entries than buckets. */
static void peers_grow(peers_t *ps)
{
    size_t n = ps->nbuckets * 2;
    struct peer **b = calloc(n, sizeof(*b));
    if (!b)
        return;     /* longer chains, still correct */
    for (size_t i = 0; i < ps->nbuckets; i++) {
        struct peer *p = ps->buckets[i];
        while (p) {
            struct peer *next = p->next;
            size_t k = p->hash & (n - 1);
            p->next = b[k];
            b[k] = p;
            p = next;
        }
    }
    free(ps->buckets);
    ps->buckets = b;
    ps->nbuckets = n;
}

struct peer *peers_hold(peers_t *ps, const struct sockaddr *sa, socklen_t len, uint32_t *count)
{
    unsigned char a[16];
    *count = 0;
    if (peers_addr16(sa, len, a) < 0)
        return NULL;
    for (int i = 0; i < ps->ntrusted; i++)
        if (peers_in_net(a, &ps->trusted[i]))
            return NULL;
    struct peer_key key = { 0, 6 };
    if (memcmp(a, peers_v4mapped, 12) == 0) {
        key.family = 4;
        key.bits = (uint64_t)a[12] << 24 | (uint64_t)a[13] << 16 | (uint64_t)a[14] << 8 | a[15];
    } else {
        for (int i = 0; i < 8; i++)
            key.bits = key.bits << 8 | a[i];
    }
    uint64_t h = peers_hash(ps->seed, &key);
    struct peer **slot = &ps->buckets[h & (ps->nbuckets - 1)];
    for (struct peer *p = *slot; p; p = p->next)
        if (p->hash == h && p->key.bits == key.bits && p->key.family == key.family) {
            *count = ++p->count;
            return p;
        }
    struct peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->hash = h;
    p->key = key;
    p->count = 1;
    p->next = *slot;
    *slot = p;
    *count = 1;
    if (++ps->size > ps->nbuckets)
        peers_grow(ps);
    return p;
}

void peers_release(peers_t *ps, struct peer *p)
{
    if (--p->count > 0)
        return;
    struct peer **pp = &ps->buckets[p->hash & (ps->nbuckets - 1)];
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    ps->size--;
    free(p);
}

size_t peers_size(const peers_t *ps) { return ps->size; }
