#include "auth.h"

#include <string.h>
#include <strings.h>

#include "pattern.h"

static int auth_is_space(char c) { return c == ' ' || c == '\t'; }

int auth_cookie_get(const char *cookies, const char *name, const char **val, size_t *vlen)
{
    size_t nlen = strlen(name);
    int found = 0;
    if (!cookies || nlen == 0)
        return 0;
    const char *p = cookies;
    while (*p) {
        while (auth_is_space(*p) || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        if (!end)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (eq && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
            if (found)
                return -1;
            found = 1;
            const char *v = eq + 1, *ve = end;
            while (ve > v && auth_is_space(ve[-1]))
                ve--;
            if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
                v++;
                ve--;
            }
            *val = v;
            *vlen = (size_t)(ve - v);
        }
        p = end;
    }
    return found;
}

static int auth_jwt(const struct cfg *c, const struct auth_req *r, long now, struct auth_user *u)
{
    const char *tok = NULL;
    size_t tlen = 0;
    const char *a = r->authorization;
    while (a && auth_is_space(*a))
        a++;
    /* Another scheme (Basic for the web server's own auth) is not ours:
     * fall through to the cookie. */
    if (a && strncasecmp(a, "Bearer", 6) == 0 && auth_is_space(a[6])) {
        tok = a + 7;
        while (auth_is_space(*tok))
            tok++;
        tlen = strlen(tok);
        while (tlen > 0 && auth_is_space(tok[tlen - 1]))
            tlen--;
        u->ambient = 0;
    } else {
        int rc = auth_cookie_get(r->cookie, c->jwt_cookie, &tok, &tlen);
        if (rc < 0)
            return AUTH_E_INVALID;
        if (rc == 0)
            return AUTH_E_NONE;
        u->ambient = 1;
    }
    if (tlen == 0)
        return AUTH_E_NONE;
    int rc = tok_verify(tok, tlen, &c->secret, &c->previous_secret, now, &u->claims);
    if (rc == TOK_E_NOMEM)
        return AUTH_E_NOMEM;
    if (rc < 0) {
        u->token_error = rc;
        return AUTH_E_INVALID;
    }
    if (!u->claims.sub[0]) {
        u->token_error = TOK_E_NO_SUB;
        tok_claims_free(&u->claims);
        return AUTH_E_INVALID;
    }
    /* A subscribe token is never a login, whoever signed it: ours say so
     * with scope, the site's own (docs/php.md) by naming channels. An
     * empty channels array names none and opens nothing on ws-server. */
    if (u->claims.subscribe_only || u->claims.nchannels > 0) {
        u->token_error = TOK_E_SCOPE;
        u->scope_mark = u->claims.subscribe_only ? "scope \"subscribe\"" : "a channels claim";
        memcpy(u->name, u->claims.sub, sizeof u->name);
        tok_claims_free(&u->claims);
        return AUTH_E_INVALID;
    }
    u->has_claims = 1;
    memcpy(u->name, u->claims.sub, sizeof u->name);
    return 0;
}

int auth_identify(const struct cfg *c, const struct auth_req *r, long now, struct auth_user *u)
{
    memset(u, 0, sizeof *u);
    if (c->auth == CFG_AUTH_JWT)
        return auth_jwt(c, r, now, u);
    if (!r->remote_user || !*r->remote_user)
        return AUTH_E_NONE;
    if (strlen(r->remote_user) > TOK_SUB_MAX)
        return AUTH_E_INVALID;
    strcpy(u->name, r->remote_user);
    u->ambient = 1;
    return 0;
}

void auth_user_free(struct auth_user *u)
{
    if (u->has_claims)
        tok_claims_free(&u->claims);
    u->has_claims = 0;
}

int auth_may_publish(const struct cfg *c, const struct auth_user *u, const char *name, size_t len)
{
    if (!pat_match_any(&c->publish, u->name, name, len))
        return 0;
    if (!u->has_claims || !u->claims.has_publish)
        return 1;
    for (int i = 0; i < u->claims.npublish; i++)
        if (pat_match(u->claims.publish[i], u->name, name, len))
            return 1;
    return 0;
}

int auth_may_subscribe(const struct cfg *c, const struct auth_user *u, const char *name, size_t len)
{
    return pat_match_any(&c->subscribe, u->name, name, len);
}

const char *auth_strerror(int code)
{
    switch (code) {
    case AUTH_E_NONE:    return "authentication required";
    case AUTH_E_INVALID: return "credentials refused";
    case AUTH_E_NOMEM:   return "out of memory";
    default:             return "authentication failed";
    }
}
