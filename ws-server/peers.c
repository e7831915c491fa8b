#include "peers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"

/* Counted addresses live in channel.c's seeded table (it holds any byte
 * string), keyed by a family byte (4 or 6) and 8 bytes: the IPv4 address,
 * or the IPv6 /64 prefix. The entry's userdata is the struct peer. */
#define PEERS_KEY_LEN 9

struct peer {
    struct channel *key;
    uint32_t        count;
    uint32_t        reserved;   /* of count, connections in reserve slots */
};

/* One trusted_proxies item: an IPv4 address is kept as ::ffff:a.b.c.d,
 * so one comparison serves both families. */
struct peers_net {
    unsigned char addr[16];
    unsigned      bits;        /* prefix length over the 16 bytes */
};

struct peers {
    chan_registry_t *table;
    struct peers_net trusted[CFG_MAX_LIST];
    int              ntrusted;
};

static void peers_free_one(struct channel *ch, void *arg)
{
    (void)arg;
    free(*chan_userdata(ch));
}

static const unsigned char peers_v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

peers_t *peers_new(void)
{
    peers_t *ps = calloc(1, sizeof(*ps));
    if (!ps)
        return NULL;
    ps->table = chan_registry_new();
    if (!ps->table) {
        free(ps);
        return NULL;
    }
    return ps;
}

void peers_free(peers_t *ps)
{
    if (!ps)
        return;
    chan_registry_each(ps->table, peers_free_one, NULL);
    chan_registry_free(ps->table);
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

struct peer *peers_hold(peers_t *ps, const struct sockaddr *sa, socklen_t len, uint32_t *count)
{
    unsigned char a[16];
    *count = 0;
    if (peers_addr16(sa, len, a) < 0)
        return NULL;
    for (int i = 0; i < ps->ntrusted; i++)
        if (peers_in_net(a, &ps->trusted[i]))
            return NULL;
    char key[PEERS_KEY_LEN] = { 6 };
    if (memcmp(a, peers_v4mapped, 12) == 0) {
        key[0] = 4;
        memcpy(key + 5, a + 12, 4);
    } else {
        memcpy(key + 1, a, 8);              /* the /64 */
    }
    struct channel *ch = chan_lookup(ps->table, key, sizeof(key), 1);
    if (!ch)
        return NULL;
    struct peer *p = *chan_userdata(ch);
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p) {
            chan_release(ps->table, ch);
            return NULL;
        }
        p->key = ch;
        *chan_userdata(ch) = p;
        chan_pin(ch, 1);
    }
    *count = ++p->count;
    return p;
}

void peers_release(peers_t *ps, struct peer *p)
{
    if (--p->count > 0)
        return;
    struct channel *ch = p->key;
    *chan_userdata(ch) = NULL;
    chan_pin(ch, 0);
    chan_release(ps->table, ch);
    free(p);
}

size_t peers_size(const peers_t *ps) { return chan_registry_size(ps->table); }

uint32_t peers_reserved(struct peer *p, int delta)
{
    p->reserved = (uint32_t)((int64_t)p->reserved + delta);
    return p->reserved;
}
