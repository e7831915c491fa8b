/* revoke — "disconnect user U at second S" remembered, so that U's tokens
 * issued up to then stop opening channels (wspush disconnect revokes, it
 * does not only close).
 *
 * Rules, for a subscribe token of user U (iat, exp in unix seconds):
 *   - a token with iat whose exp - iat exceeds lifetime_s is refused: that
 *     bound is what lets a record expire after lifetime_s;
 *   - a token with iat <= not_before is refused: not_before is the process
 *     start until records are restored (an unplanned restart forgot them;
 *     the file of a planned stop gives them back, or Redis, from the second
 *     it holds them since), and at least
 *     the S of records dropped because a table was full (fail closed:
 *     everyone refetches rather than U's token coming back);
 *   - a token of U with iat <= S is refused while (U, S) is kept;
 *   - a token with iat more than REVOKE_SKEW_S in the future is refused;
 *   - a token without iat cannot be dated: it is refused while U has a
 *     record, and when exp - now exceeds lifetime_s. It is not subject to
 *     not_before, so revocation across an unplanned restart or a full
 *     table needs iat (fcgi-publisher always sets it).
 * Records are kept lifetime_s after S; at most max_users are kept.
 */
#ifndef WSPUSH_REVOKE_H
#define WSPUSH_REVOKE_H

#include <stddef.h>

#include "str.h"

#define REVOKE_OK        0
#define REVOKE_E_REVOKED (-1)   /* disconnected after the token was issued */
#define REVOKE_E_LIFETIME (-2)  /* exp - iat (or exp - now) over lifetime_s */
#define REVOKE_E_FUTURE  (-3)   /* iat more than REVOKE_SKEW_S ahead of this clock */

/* How far ahead of ws-server's clock a token's iat may be: the site's
 * clock may run a little fast, but a token dated further ahead would
 * outlive a disconnect it was issued before. Keep the hosts' clocks in
 * sync (NTP). */
#define REVOKE_SKEW_S 60

typedef struct revoke revoke_t;

/* The wall clock in seconds, for every time given to this module and to
 * token checks. Not time(2): glibc reads a coarse clock that may still
 * say second T while another process (the site signing a token, a test)
 * already reads T+1, and a disconnect at T would then miss a token dated
 * T+1 that was issued before it. */
long      revoke_clock(void);

struct revoke_limits {
    long   lifetime_s;    /* max_token_lifetime */
    size_t max_users;     /* max_revocations */
};

/* A table whose not_before is start_s. NULL when out of memory. */
revoke_t *revoke_new(const struct revoke_limits *lim, long start_s);
void      revoke_free(revoke_t *r);
/* New limits (reload); a smaller max_users drops the oldest records,
 * raising not_before to their S. A longer lifetime_s raises not_before to
 * now: records already forgotten under the shorter one may concern tokens
 * the longer one lets live. */
void      revoke_set_limits(revoke_t *r, const struct revoke_limits *lim, long now_s);

/* Records (user, now). Out of memory fails closed too (not_before = now).
 * Returns 0 or -ENOMEM. */
int       revoke_user(revoke_t *r, struct str user, long now_s);
/* Raises not_before to s (never lowers it): records dropped elsewhere (a
 * full table in Redis) refuse every token dated up to them here too. */
void      revoke_refuse_before(revoke_t *r, long s);
/* A record (user, s) from a store shared with other processes (Redis),
 * kept at its own S (not moved to the newest like revoke_user's) and
 * never lowering a newer S held for user; an expired one is ignored.
 * Returns 0 or -ENOMEM (then not_before rises to s). */
int       revoke_restore_user(revoke_t *r, struct str user, long s, long now_s);
/* Every record of the store was given to revoke_restore_user, and the
 * store holds every revocation made after since_s: the process start
 * bound is lowered to since_s (never raised: this process heard what was
 * revoked since its start); floor_s, the store's own not_before (records
 * dropped from a full set), raises not_before. Returns 1 when the start
 * bound was lowered. */
int       revoke_restored(revoke_t *r, long floor_s, long since_s);
/* Whether a record of user covers a token dated iat (0: no iat), the
 * floors aside: what a connection opened with that token must be closed
 * for once the record is learned. */
int       revoke_is_revoked(revoke_t *r, struct str user, long iat);
/* REVOKE_OK or a REVOKE_E_ code for a token; iat 0 means "no iat". */
int       revoke_check(revoke_t *r, struct str user, long iat, long exp, long now_s);

/* Persistence across a planned restart, next to history_file. Saving
 * writes PATH.tmp and renames. Loading replaces not_before and the
 * records with the file's (dropping expired ones); on any error returns -1
 * with err set and changes nothing. */
int       revoke_save(const revoke_t *r, const char *path, char *err, size_t errlen);
int       revoke_load(revoke_t *r, const char *path, long now_s, char *err, size_t errlen);

size_t    revoke_count(const revoke_t *r);
long      revoke_not_before(const revoke_t *r);
const char *revoke_strerror(int code);

#endif
