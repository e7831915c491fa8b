/* token — HS256 JWTs through libjwt: subscribe tokens (issued by
 * fcgi-publisher, checked by ws-server) and the site's own auth JWTs
 * (checked by fcgi-publisher with auth = jwt).
 *
 * Verification is strict whatever libjwt's version does: the key is always
 * passed (Debian 12's libjwt 1.10 treats an empty key as "unsigned"), the
 * algorithm is checked to be HS256 after decoding, and `exp` is required and
 * checked here (libjwt 1.10 does not). The current secret is tried first,
 * then the previous one (rotation).
 */
#ifndef WSPUSH_TOKEN_H
#define WSPUSH_TOKEN_H

#include <stddef.h>

#include "cfg.h"
#include "wspush.h"

#define TOK_MAX_LEN       4096   /* longest token accepted */
#define TOK_SUB_MAX       255

#define TOK_E_MALFORMED (-1)   /* not a JWT, or claims of the wrong type */
#define TOK_E_SIGNATURE (-2)   /* no secret verifies it */
#define TOK_E_ALG       (-3)   /* alg is not HS256 */
#define TOK_E_EXPIRED   (-4)   /* exp <= now */
#define TOK_E_NO_EXP    (-5)   /* exp missing or not a number */
#define TOK_E_NO_SUB    (-6)   /* sub missing, empty or too long (only when required) */
#define TOK_E_NOMEM     (-7)
#define TOK_E_SCOPE     (-8)   /* a subscribe token offered as a login (set by callers) */

struct tok_claims {
    char  sub[TOK_SUB_MAX + 1];   /* "" when absent */
    long  exp;
    long  iat;                    /* issued-at, unix seconds; 0 when absent */
    int   nchannels;              /* "channels" claim: names or patterns */
    char *channels[WSPUSH_MAX_CHANNELS];
    int   subscribe_only;         /* "scope":"subscribe": issued by tok_issue, so
                                     it opens channels and is never a login */
    int   has_publish;            /* "publish" claim present */
    int   npublish;
    char *publish[WSPUSH_MAX_CHANNELS];
};

/* Verifies token [p, p+len) at time now (unix seconds). On 0 fills *out,
 * which the caller releases with tok_claims_free(); on a TOK_E_ code *out
 * holds nothing to free. prev may be NULL or empty. */
int  tok_verify(const char *p, size_t len, const struct cfg_secret *cur,
                const struct cfg_secret *prev, long now, struct tok_claims *out);
void tok_claims_free(struct tok_claims *c);

/* Issues an HS256 subscribe token {sub, iat, exp, channels[], scope:"subscribe"}
 * into out (NUL-terminated). The scope claim keeps a subscribe token, which
 * travels in WebSocket URLs and may end up in proxy logs, from being
 * accepted as a publish login by fcgi-publisher's auth = jwt.
 * Returns the token length, or -1 (bad argument, out too small, libjwt
 * failure). */
int  tok_issue(const struct cfg_secret *key, const char *sub, long iat, long exp,
               const char *const *channels, int nchannels, char *out, size_t outlen);

/* Short reason for logs. */
const char *tok_strerror(int code);

#endif
