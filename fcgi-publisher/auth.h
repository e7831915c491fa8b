/* auth — who is asking, and what they may publish or subscribe to.
 *
 * auth = remote_user: the web server authenticated the request and passed
 *   REMOTE_USER (Basic, LDAP, auth_request, ...). Those credentials are
 *   ambient: the browser resends them by itself, so the caller must run the
 *   origin/CSRF check.
 * auth = jwt: an HS256 JWT signed with the shared secret, from
 *   "Authorization: Bearer <jwt>" (not ambient: a page must add it on
 *   purpose) or else from the cookie named jwt_cookie (ambient). `sub` is
 *   the user, `exp` is required; a `publish` claim (array of patterns)
 *   narrows the channels further than [channels] publish.
 *   A subscribe token is never a login (TOK_E_SCOPE): one from /token
 *   says "scope":"subscribe", one the site signed itself names channels
 *   (a non-empty `channels` claim). Subscribe tokens travel in WebSocket
 *   URLs and end up in proxy logs; they must not become publish
 *   credentials.
 *
 * Authorization: a channel may be published to when it matches a
 * [channels] publish pattern ({user} expanded) and, if the JWT had a
 * publish claim, one of those patterns too; subscribe tokens are issued for
 * channels matching a [channels] subscribe pattern.
 */
#ifndef WSPUSH_AUTH_H
#define WSPUSH_AUTH_H

#include <stddef.h>

#include "cfg.h"
#include "token.h"

#define AUTH_E_NONE      (-1)  /* no credentials at all (401) */
#define AUTH_E_INVALID   (-2)  /* credentials present but refused (401) */
#define AUTH_E_NOMEM     (-3)

/* The request's credential-bearing values; NULL when absent. */
struct auth_req {
    const char *remote_user;     /* REMOTE_USER */
    const char *authorization;   /* HTTP_AUTHORIZATION */
    const char *cookie;          /* HTTP_COOKIE */
};

/* The authenticated user. Filled by auth_identify, released by
 * auth_user_free (which also accepts a zeroed struct). */
struct auth_user {
    char name[TOK_SUB_MAX + 1];
    int  ambient;                /* 1: run the origin/CSRF check */
    int  has_claims;             /* claims below are owned */
    struct tok_claims claims;    /* auth = jwt: the verified token */
    int  token_error;            /* on AUTH_E_INVALID: the TOK_E_ code, else 0 */
    /* On TOK_E_SCOPE: which mark made it a subscribe token (static text,
     * for the answer and the log); name then holds the token's sub. */
    const char *scope_mark;
};

/* Authenticates the request under c->auth at time now. Returns 0 and fills
 * *u, or an AUTH_E_ code (u then holds nothing to free; token_error is
 * set, and for a subscribe token scope_mark and name too). */
int  auth_identify(const struct cfg *c, const struct auth_req *r, long now, struct auth_user *u);
void auth_user_free(struct auth_user *u);

/* 1 if u may publish to / get a subscribe token for [name, name+len). */
int  auth_may_publish(const struct cfg *c, const struct auth_user *u, const char *name, size_t len);
int  auth_may_subscribe(const struct cfg *c, const struct auth_user *u, const char *name, size_t len);

/* Finds the value of cookie `name` in a Cookie header ("a=1; b=2"). Returns
 * 1 and sets *val and *vlen, 0 when absent, -1 when present twice (a cookie
 * planted from a sibling domain must not shadow the real one unnoticed). */
int  auth_cookie_get(const char *cookies, const char *name, const char **val, size_t *vlen);

/* Short stable text for an AUTH_E_ code. */
const char *auth_strerror(int code);

#endif
