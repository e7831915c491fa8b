/* peers — connections per client address, for max_connections_per_ip.
 *
 * An address is counted under a key: an IPv4 address whole; an IPv6
 * address by its /64 prefix (one subscriber line or one cloud VM gets a
 * whole /64, so counting full IPv6 addresses would hand every client 2^64
 * of them); an IPv4-mapped IPv6 address (::ffff:a.b.c.d, from a dual-stack
 * listener) as the IPv4 address. Addresses matching the trusted list
 * (trusted_proxies: addresses or CIDR prefixes) are never counted: behind a
 * reverse proxy every page comes from the proxy's address.
 *
 * Counts live in a hash table keyed with a per-process random seed (a
 * client picks its address within its own prefix), one entry per address
 * that holds connections, freed when its last one goes: peers_hold() and
 * peers_release() are O(1) on average, whatever the number of
 * connections. The trusted list is at most CFG_MAX_LIST entries, scanned.
 */
#ifndef WSPUSH_PEERS_H
#define WSPUSH_PEERS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cfg.h"

typedef struct peers peers_t;
/* One counted address; valid from peers_hold() until the matching
 * peers_release() that drops its count to 0. */
struct peer;

/* NULL when out of memory. */
peers_t    *peers_new(void);
/* Every held peer must have been released. NULL is ignored. */
void        peers_free(peers_t *ps);

/* Replaces the trusted list by the items of list (cfg's trusted_proxies,
 * already checked by cfg: "ADDR" or "ADDR/PREFIX", IPv4 or IPv6). Returns
 * 0, or -EINVAL when an item does not parse (it is left out, the others
 * apply). Peers already held stay counted until released. */
int         peers_set_trusted(peers_t *ps, const struct cfg_list *list);

/* Counts one more connection from sa. Returns its peer, with *count set
 * to the connections of that address including this one; NULL when sa is
 * not counted (trusted, not IPv4/IPv6) or out of memory (then *count is 0:
 * the connection is simply not counted). */
struct peer *peers_hold(peers_t *ps, const struct sockaddr *sa, socklen_t len, uint32_t *count);
/* Counts one connection of p less; frees p with its last one. */
void        peers_release(peers_t *ps, struct peer *p);
/* Adds delta to the address's count of reserve slots (server.c's /healthz
 * reserve) and returns it; delta 0 only reads it. */
uint32_t    peers_reserved(struct peer *p, int delta);

/* Addresses holding connections (entries in the table). */
size_t      peers_size(const peers_t *ps);

#endif
