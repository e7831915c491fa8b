/* bound — the sockets a supervisor binds once for its worker processes
 * (workers > 1): every listening socket ws-server serves, opened before
 * the first fork and inherited by each worker.
 *
 * A TCP address (listen, tls_listen) gets one SO_REUSEPORT socket per
 * worker slot: worker i accepts only on its own socket, and the kernel
 * spreads new connections over the slots by a hash of the client's
 * address and port, each worker waking only for its own (an inherited
 * shared socket would wake every worker for each connection and let the
 * quickest take most). A slot's socket stays open in the supervisor while
 * its worker is restarted, so connections hashed to it wait in its
 * backlog for the new worker instead of being reset. Before the group is
 * bound the address is probed without SO_REUSEPORT: a second ws-server
 * (or anything else) already there is refused, never joined.
 *
 * unix_listen, the publish socket and metrics_listen are one socket each,
 * shared: every worker accepts on it (Unix sockets have no SO_REUSEPORT
 * spreading; a publish is taken by whichever worker is free, and with the
 * Redis engine any node may take any publish). Their socket files belong
 * to the supervisor, which removes them at exit; a worker never does.
 */
#ifndef WSPUSH_BOUND_H
#define WSPUSH_BOUND_H

#include <stddef.h>

#include "cfg.h"

typedef struct bound bound_t;

/* Binds every socket of cfg for nworkers (>= 2) slots. Returns the set,
 * or NULL with err filled (nothing left bound, no socket file left). */
bound_t *bound_open(const struct cfg *cfg, int nworkers, char *err, size_t errlen);

/* In worker slot i, after fork: closes every other slot's TCP sockets
 * (the inherited copies: the supervisor keeps its own). */
void bound_keep(bound_t *b, int slot);

/* The socket for the listen address spec (as written in cfg's listen,
 * tls_listen or unix_listen) in slot, or -1 when the set has none. The
 * caller takes it (bound_free will not close it again in this process). */
int bound_take(bound_t *b, const char *spec, int slot);
/* The publish socket and the metrics socket (-1 when metrics_listen is
 * off), taken the same way. */
int bound_take_publish(bound_t *b);
int bound_take_metrics(bound_t *b);

/* Closes what this process still holds; with unlink, also removes the
 * Unix socket files the set made (if still ours: addr.h). NULL ignored. */
void bound_free(bound_t *b, int unlink);

#endif
