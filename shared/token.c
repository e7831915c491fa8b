#include "token.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define TOK_SIG_B64_LEN 43   /* base64url of a 32-byte HMAC-SHA256, no padding */

static int tok_is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

/* Decodes unpadded base64url [in, in+n) into out (TOK_MAX_LEN bytes).
 * Returns the decoded length or -1. */
static int tok_b64url_decode(const char *in, size_t n, unsigned char *out)
{
    char tmp[TOK_MAX_LEN + 4];
    if (n % 4 == 1 || n > TOK_MAX_LEN)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (!tok_is_b64url(c))
            return -1;
        tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    size_t pad = (4 - n % 4) % 4;
    for (size_t i = 0; i < pad; i++)
        tmp[n + i] = '=';
    int r = EVP_DecodeBlock(out, (const unsigned char *)tmp, (int)(n + pad));
    if (r < 0)
        return -1;
    return r - (int)pad;
}

/* Encodes a 32-byte HMAC as unpadded base64url into out[TOK_SIG_B64_LEN + 2]. */
static void tok_b64url_sig(const unsigned char mac[32], char *out)
{
    EVP_EncodeBlock((unsigned char *)out, mac, 32);   /* 44 chars, one '=' */
    for (int i = 0; i < TOK_SIG_B64_LEN; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[TOK_SIG_B64_LEN] = '\0';
}

/* 1 if sig (the token's third part) is the HS256 signature of signed_part
 * under key.
 *
 * Why not leave this to jwt_decode(): upstream libjwt 1.10.2 compares the
 * signature with strcmp(), leaking through timing how many leading bytes
 * of a forged signature are right (CVE-2024-25189). Debian's
 * 1.10.2-1+deb12u1 patches that with a constant-time jwt_strcmp, but a
 * build against an unpatched library would silently lose the property, so
 * the signature is checked here first with CRYPTO_memcmp over equal-length
 * buffers, whatever libjwt does afterwards. */
static int tok_sig_ok(const struct cfg_secret *key, const char *signed_part, size_t signed_len,
                      const char *sig, size_t sig_len)
{
    unsigned char mac[32];
    unsigned int mac_len = 0;
    char expect[TOK_SIG_B64_LEN + 2];

    if (!key || key->len == 0 || sig_len != TOK_SIG_B64_LEN)
        return 0;
    if (!HMAC(EVP_sha256(), key->key, (int)key->len, (const unsigned char *)signed_part,
              signed_len, mac, &mac_len) || mac_len != sizeof(mac))
        return 0;
    tok_b64url_sig(mac, expect);
    return CRYPTO_memcmp(expect, sig, TOK_SIG_B64_LEN) == 0;
}

/* Reads the JOSE header's alg before any signature work: an "alg":"none"
 * or HS384 token is refused as such, never "verified" by another path. */
static int tok_check_header(const char *h, size_t n)
{
    unsigned char raw[TOK_MAX_LEN];
    int rlen = tok_b64url_decode(h, n, raw);
    if (rlen <= 0)
        return TOK_E_MALFORMED;
    json_t *js = json_loadb((const char *)raw, (size_t)rlen, 0, NULL);
    if (!json_is_object(js)) {
        json_decref(js);
        return TOK_E_MALFORMED;
    }
    json_t *alg = json_object_get(js, "alg");
    int rc = 0;
    if (!json_is_string(alg))
        rc = TOK_E_MALFORMED;
    else if (strcmp(json_string_value(alg), "HS256") != 0)
        rc = TOK_E_ALG;
    json_decref(js);
    return rc;
}

static void tok_free_list(char **v, int *n)
{
    for (int i = 0; i < *n; i++) {
        free(v[i]);
        v[i] = NULL;
    }
    *n = 0;
}

/* Copies an array-of-strings claim. Absent is fine (*present = 0). */
static int tok_get_list(json_t *claims, const char *name, char **v, int *n, int *present)
{
    json_t *arr = json_object_get(claims, name);
    size_t i;
    json_t *item;

    *n = 0;
    if (present)
        *present = arr != NULL;
    if (!arr)
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > WSPUSH_MAX_CHANNELS)
        return TOK_E_MALFORMED;
    json_array_foreach(arr, i, item) {
        /* A NUL inside a name would make the C string say less than the
         * token does. */
        if (!json_is_string(item) || json_string_length(item) == 0 ||
            strlen(json_string_value(item)) != json_string_length(item))
            return TOK_E_MALFORMED;
        v[*n] = strdup(json_string_value(item));
        if (!v[*n])
            return TOK_E_NOMEM;
        (*n)++;
    }
    return 0;
}

static int tok_get_claims(json_t *claims, long now, struct tok_claims *out)
{
    json_t *exp = json_object_get(claims, "exp");
    if (!json_is_number(exp))
        return TOK_E_NO_EXP;
    double e = json_number_value(exp);
    if (e <= (double)now)
        return TOK_E_EXPIRED;
    out->exp = e >= (double)LONG_MAX ? LONG_MAX : (long)e;

    /* iat dates the token for revocation (ws-server's revoke.h); one
     * that is not a positive number is malformed rather than ignored. */
    json_t *iat = json_object_get(claims, "iat");
    out->iat = 0;
    if (iat) {
        double i = json_is_number(iat) ? json_number_value(iat) : -1;
        if (i < 1 || i >= (double)LONG_MAX)
            return TOK_E_MALFORMED;
        out->iat = (long)i;
    }

    json_t *sub = json_object_get(claims, "sub");
    if (sub) {
        if (!json_is_string(sub) ||
            strlen(json_string_value(sub)) != json_string_length(sub))
            return TOK_E_MALFORMED;
        if (json_string_length(sub) > TOK_SUB_MAX)
            return TOK_E_NO_SUB;
        memcpy(out->sub, json_string_value(sub), json_string_length(sub) + 1);
    }

    json_t *scope = json_object_get(claims, "scope");
    if (scope && !json_is_string(scope))
        return TOK_E_MALFORMED;
    out->subscribe_only = scope && strcmp(json_string_value(scope), "subscribe") == 0;

    int rc = tok_get_list(claims, "channels", out->channels, &out->nchannels, NULL);
    if (rc < 0)
        return rc;
    return tok_get_list(claims, "publish", out->publish, &out->npublish, &out->has_publish);
}

int tok_verify(const char *p, size_t len, const struct cfg_secret *cur,
               const struct cfg_secret *prev, long now, struct tok_claims *out)
{
    char tok[TOK_MAX_LEN + 1];
    const struct cfg_secret *key = NULL;
    jwt_t *jwt = NULL;
    char *grants = NULL;
    json_t *claims = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!p || len == 0 || len > TOK_MAX_LEN || memchr(p, '\0', len))
        return TOK_E_MALFORMED;
    memcpy(tok, p, len);
    tok[len] = '\0';

    const char *dot1 = memchr(tok, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - tok)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - tok)))
        return TOK_E_MALFORMED;
    rc = tok_check_header(tok, (size_t)(dot1 - tok));
    if (rc < 0)
        return rc;

    size_t signed_len = (size_t)(dot2 - tok);
    const char *sig = dot2 + 1;
    size_t sig_len = len - signed_len - 1;
    if (tok_sig_ok(cur, tok, signed_len, sig, sig_len))
        key = cur;
    else if (tok_sig_ok(prev, tok, signed_len, sig, sig_len))
        key = prev;
    else
        return TOK_E_SIGNATURE;

    /* The key is always passed: libjwt 1.10 treats a missing or empty key
     * as "do not verify". tok_sig_ok() refused an empty one above. */
    rc = jwt_decode(&jwt, tok, key->key, (int)key->len);
    if (rc != 0) {
        rc = rc == ENOMEM ? TOK_E_NOMEM : TOK_E_MALFORMED;
        goto out;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        rc = TOK_E_ALG;
        goto out;
    }
    grants = jwt_get_grants_json(jwt, NULL);
    if (!grants) {
        rc = TOK_E_MALFORMED;
        goto out;
    }
    claims = json_loads(grants, 0, NULL);
    if (!json_is_object(claims)) {
        rc = TOK_E_MALFORMED;
        goto out;
    }
    rc = tok_get_claims(claims, now, out);

out:
    if (rc < 0)
        tok_claims_free(out);
    json_decref(claims);
    free(grants);
    jwt_free(jwt);
    return rc;
}

void tok_claims_free(struct tok_claims *c)
{
    tok_free_list(c->channels, &c->nchannels);
    tok_free_list(c->publish, &c->npublish);
    c->has_publish = 0;
    c->sub[0] = '\0';
}

int tok_issue(const struct cfg_secret *key, const char *sub, long iat, long exp,
              const char *const *channels, int nchannels, char *out, size_t outlen)
{
    jwt_t *jwt = NULL;
    json_t *obj = NULL, *arr = NULL;
    char *json = NULL, *tok = NULL;
    int rc = -1;

    if (!key || key->len == 0 || !sub || !*sub || strlen(sub) > TOK_SUB_MAX ||
        nchannels < 0 || nchannels > WSPUSH_MAX_CHANNELS || (nchannels && !channels) || !out)
        return -1;

    obj = json_object();
    arr = json_array();
    if (!obj || !arr)
        goto out;
    for (int i = 0; i < nchannels; i++)
        if (!channels[i] || !*channels[i] || json_array_append_new(arr, json_string(channels[i])) < 0)
            goto out;
    if (json_object_set(obj, "channels", arr) < 0 ||
        json_object_set_new(obj, "scope", json_string("subscribe")) < 0)
        goto out;
    json = json_dumps(obj, JSON_COMPACT);
    if (!json)
        goto out;

    if (jwt_new(&jwt) != 0 ||
        jwt_set_alg(jwt, JWT_ALG_HS256, key->key, (int)key->len) != 0 ||
        jwt_add_grant(jwt, "sub", sub) != 0 ||
        jwt_add_grant_int(jwt, "iat", iat) != 0 ||
        jwt_add_grant_int(jwt, "exp", exp) != 0 ||
        jwt_add_grants_json(jwt, json) != 0)
        goto out;
    tok = jwt_encode_str(jwt);
    if (!tok)
        goto out;
    size_t n = strlen(tok);
    if (n >= outlen || n > TOK_MAX_LEN)
        goto out;
    memcpy(out, tok, n + 1);
    rc = (int)n;

out:
    free(tok);
    jwt_free(jwt);
    free(json);
    json_decref(arr);
    json_decref(obj);
    return rc;
}

const char *tok_strerror(int code)
{
    switch (code) {
    case 0:               return "ok";
    case TOK_E_MALFORMED: return "malformed token";
    case TOK_E_SIGNATURE: return "bad signature";
    case TOK_E_ALG:       return "algorithm is not HS256";
    case TOK_E_EXPIRED:   return "token expired";
    case TOK_E_NO_EXP:    return "no exp claim";
    case TOK_E_NO_SUB:    return "no usable sub claim";
    case TOK_E_NOMEM:     return "out of memory";
    case TOK_E_SCOPE:     return "a subscribe token is not a login";
    default:              return "unknown token error";
    }
}
