/* origin — Web origins ("scheme://host[:port]") for both programs: the one
 * canonical form, the allowed_origins match built on it, and
 * fcgi-publisher's same-origin / CSRF decision for credentials the browser
 * sends by itself (cookies, web-server auth). Pure: works on header values
 * only, no I/O, no allocation.
 *
 * Origins compare case-blind on scheme and host, with default ports (80,
 * 443) made explicit, so "https://A.example" equals "https://a.example:443".
 * Only http and https origins exist here: "null" (sandboxed frames, file:)
 * and any other scheme match no entry.
 *
 * ws-server's handshake asks origin_allowed(); fcgi-publisher asks
 * origin_check() and origin_is_listed(). A request carrying ambient
 * credentials is accepted by origin_check() when, in this order:
 *   1. Sec-Fetch-Site is not "cross-site" (a browser says so itself);
 *   2. Origin, or the scheme://host[:port] of Referer when Origin is absent,
 *      is in allowed_origins, or (list empty) equals the request's own
 *      scheme and Host; neither header present is refused: every browser
 *      sends Origin on a POST, so its absence means a non-browser client,
 *      which should use a Bearer token or the publish socket instead;
 *   3. for state-changing requests (publish): X-Requested-With is present
 *      or the body is application/json. Both force a CORS preflight on a
 *      cross-origin request, which a "simple" HTML form post never gets.
 */
#ifndef WSPUSH_ORIGIN_H
#define WSPUSH_ORIGIN_H

#include <stddef.h>

#include "cfg.h"

/* The longest canonical origin: "https://" + a 255-byte host + ":65535". */
#define ORIGIN_MAX 300

/* ---- matching (both programs) ----------------------------------------- */

/* Writes the canonical "scheme://host:port" of an origin or URL (path,
 * query and userinfo dropped; scheme and host lower-cased; the default
 * port written out) into out. Returns its length, or -1 when [s, s+len)
 * is not an http(s) origin or out is too small (ORIGIN_MAX always
 * suffices). */
int origin_canon(const char *s, size_t len, char *out, size_t outlen);

/* 1 when the Origin header value [origin, origin+len) (not NUL-terminated)
 * equals an entry of allowed after canonicalisation, or allowed holds the
 * entry "*" (any origin, even one that is not http(s)); 0 otherwise, and
 * always 0 for an empty list: what an empty list or an absent Origin
 * means is the caller's policy (ws-server accepts both). The value must be
 * a bare origin, as browsers send it: one with a path, query or userinfo
 * matches nothing (origin_check refuses such an Origin too). An entry
 * that is not an origin matches nothing. */
int origin_allowed(const char *origin, size_t len, const struct cfg_list *allowed);

/* 1 when the request's Origin (not Referer) is in allowed_origins, i.e. a
 * configured cross-origin site whose requests need CORS headers. origin
 * may be NULL (0). "*" is not an entry here: CORS with credentials must
 * echo one origin (and cfg refuses "*" in the ini anyway). */
int origin_is_listed(const char *origin, const struct cfg_list *allowed);

/* ---- same-origin / CSRF rule (fcgi-publisher) ------------------------- */

#define ORIGIN_E_CROSS_SITE (-1)  /* Sec-Fetch-Site: cross-site */
#define ORIGIN_E_MISSING    (-2)  /* neither Origin nor a usable Referer */
#define ORIGIN_E_FOREIGN    (-3)  /* origin not allowed */
#define ORIGIN_E_NO_MARKER  (-4)  /* no X-Requested-With and not JSON */

/* Header values as the web server passed them; NULL when absent. */
struct origin_req {
    const char *origin;            /* HTTP_ORIGIN */
    const char *referer;           /* HTTP_REFERER */
    const char *sec_fetch_site;    /* HTTP_SEC_FETCH_SITE */
    const char *x_requested_with;  /* HTTP_X_REQUESTED_WITH */
    const char *scheme;            /* "http"/"https": REQUEST_SCHEME, or from HTTPS=on */
    const char *host;              /* HTTP_HOST */
    int is_json;                   /* body is application/json */
    int state_changing;            /* 1 for publish: rule 3 applies */
};

/* Returns 0 when the request may proceed, else an ORIGIN_E_ code (403). */
int origin_check(const struct origin_req *r, const struct cfg_list *allowed);

/* Short stable text for an ORIGIN_E_ code. */
const char *origin_strerror(int code);

#endif
