/* auth: the Cookie header parser, remote_user and jwt authentication
 * (Bearer and cookie, every refusal with its exact code, subscribe tokens
 * by scope or by a channels claim never a login), the round trip
 * of a token issued by tok_issue, and publish/subscribe authorization with
 * {user} patterns and the JWT's publish claim. Test JWTs are minted here
 * with OpenSSL's HMAC, independently of libjwt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth.h"

#define TA_NOW 1700000000L

static void ta_b64url(const void *in, size_t len, char *out)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = al[v >> 18];
        out[o++] = al[(v >> 12) & 63];
        out[o++] = al[(v >> 6) & 63];
        out[o++] = al[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        out[o++] = al[v >> 18];
        out[o++] = al[(v >> 12) & 63];
    } else if (len - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        out[o++] = al[v >> 18];
        out[o++] = al[(v >> 12) & 63];
        out[o++] = al[(v >> 6) & 63];
    }
    out[o] = '\0';
}

/* header and payload are JSON texts; key NULL leaves the signature empty. */
static void ta_jwt(const char *header, const char *payload, const char *key, char *out)
{
    char h[512], p[1024];
    ta_b64url(header, strlen(header), h);
    ta_b64url(payload, strlen(payload), p);
    sprintf(out, "%s.%s", h, p);
    if (!key) {
        strcat(out, ".");
        return;
    }
    unsigned char mac[64];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)out, strlen(out), mac, &maclen);
    char s[128];
    ta_b64url(mac, maclen, s);
    strcat(out, ".");
    strcat(out, s);
}

static const char *HS256 = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static void ta_cfg(struct cfg *c, int auth)
{
    static char *pub[] = { "news", "user/{user}/*", "team/*" };
    static char *sub[] = { "user/{user}/*", "private/{user}" };
    cfg_defaults(c);
    c->auth = auth;
    c->publish.n = 3;
    memcpy(c->publish.items, pub, sizeof pub);
    c->subscribe.n = 2;
    memcpy(c->subscribe.items, sub, sizeof sub);
    strcpy((char *)c->secret.key, "current-secret");
    c->secret.len = strlen("current-secret");
    strcpy((char *)c->previous_secret.key, "old-secret");
    c->previous_secret.len = strlen("old-secret");
}

static void test_cookie(void **state)
{
    (void)state;
    static const struct { const char *hdr, *name; int want; const char *val; } t[] = {
        { "jwt=abc", "jwt", 1, "abc" },
        { "a=1; jwt=abc; b=2", "jwt", 1, "abc" },
        { "a=1;jwt=abc", "jwt", 1, "abc" },
        { "jwt=\"abc\"", "jwt", 1, "abc" },
        { "jwt=abc ", "jwt", 1, "abc" },
        { "jwt=", "jwt", 1, "" },
        { "xjwt=abc; jwtx=def", "jwt", 0, NULL },
        { "jwt", "jwt", 0, NULL },
        { "", "jwt", 0, NULL },
        { NULL, "jwt", 0, NULL },
        { "jwt=a; jwt=b", "jwt", -1, NULL },
        { "jwt=a", "", 0, NULL },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const char *v = NULL;
        size_t vlen = 0;
        int got = auth_cookie_get(t[i].hdr, t[i].name, &v, &vlen);
        if (got != t[i].want)
            fail_msg("'%s': got %d want %d", t[i].hdr ? t[i].hdr : "(null)", got, t[i].want);
        if (got == 1) {
            assert_int_equal(vlen, strlen(t[i].val));
            assert_memory_equal(v, t[i].val, vlen);
        }
    }
}

static void test_remote_user(void **state)
{
    (void)state;
    struct cfg c;
    struct auth_user u;
    ta_cfg(&c, CFG_AUTH_REMOTE_USER);
    struct auth_req r = { .remote_user = "alice", .authorization = "Bearer x" };
    assert_int_equal(auth_identify(&c, &r, TA_NOW, &u), 0);
    assert_string_equal(u.name, "alice");
    assert_int_equal(u.ambient, 1);  /* web-server auth is always ambient */
    auth_user_free(&u);

    struct auth_req none = { 0 }, empty = { .remote_user = "" };
    assert_int_equal(auth_identify(&c, &none, TA_NOW, &u), AUTH_E_NONE);
    assert_int_equal(auth_identify(&c, &empty, TA_NOW, &u), AUTH_E_NONE);
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    struct auth_req lng = { .remote_user = longname };
    assert_int_equal(auth_identify(&c, &lng, TA_NOW, &u), AUTH_E_INVALID);
}

struct ta_case {
    const char *header, *payload, *key;
    int bearer;        /* else cookie "jwt" */
    int want, token_error;
    const char *user;
};

static void test_jwt(void **state)
{
    (void)state;
    static const struct ta_case t[] = {
        { NULL, "{\"sub\":\"alice\",\"exp\":1700000100}", "current-secret", 1, 0, 0, "alice" },
        { NULL, "{\"sub\":\"alice\",\"exp\":1700000100}", "current-secret", 0, 0, 0, "alice" },
        { NULL, "{\"sub\":\"bob\",\"exp\":1700000100}", "old-secret", 1, 0, 0, "bob" },
        { NULL, "{\"sub\":\"alice\",\"exp\":1700000100}", "forged", 1, AUTH_E_INVALID, TOK_E_SIGNATURE, NULL },
        { NULL, "{\"sub\":\"alice\",\"exp\":1699999999}", "current-secret", 1, AUTH_E_INVALID, TOK_E_EXPIRED, NULL },
        { NULL, "{\"sub\":\"alice\"}", "current-secret", 1, AUTH_E_INVALID, TOK_E_NO_EXP, NULL },
        { NULL, "{\"exp\":1700000100}", "current-secret", 1, AUTH_E_INVALID, TOK_E_NO_SUB, NULL },
        { NULL, "{\"sub\":\"\",\"exp\":1700000100}", "current-secret", 1, AUTH_E_INVALID, TOK_E_NO_SUB, NULL },
        { "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"sub\":\"alice\",\"exp\":1700000100}", NULL, 1,
          AUTH_E_INVALID, 0, NULL },
        { "{\"alg\":\"HS384\",\"typ\":\"JWT\"}", "{\"sub\":\"alice\",\"exp\":1700000100}",
          "current-secret", 1, AUTH_E_INVALID, 0, NULL },
        /* Subscribe tokens, by either mark, are never a login; an empty
         * channels array marks nothing (it opens no channel). */
        { NULL, "{\"sub\":\"alice\",\"exp\":1700000100,\"channels\":[\"user/alice/*\"]}",
          "current-secret", 1, AUTH_E_INVALID, TOK_E_SCOPE, "alice" },
        { NULL, "{\"sub\":\"alice\",\"iat\":1699999999,\"exp\":1700000100,\"channels\":[\"news\"]}",
          "current-secret", 0, AUTH_E_INVALID, TOK_E_SCOPE, "alice" },
        { NULL, "{\"sub\":\"alice\",\"exp\":1700000100,\"scope\":\"subscribe\"}",
          "current-secret", 1, AUTH_E_INVALID, TOK_E_SCOPE, "alice" },
        { NULL, "{\"sub\":\"alice\",\"exp\":1700000100,\"channels\":[],\"publish\":[\"news\"]}",
          "current-secret", 1, 0, 0, "alice" },
        { NULL, "{\"sub\":\"alice\",\"exp\":1700000100,\"scope\":\"publish\"}",
          "current-secret", 1, 0, 0, "alice" },
    };
    struct cfg c;
    ta_cfg(&c, CFG_AUTH_JWT);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char tok[2048], hdr[2100];
        struct auth_user u;
        ta_jwt(t[i].header ? t[i].header : HS256, t[i].payload, t[i].key, tok);
        struct auth_req r = { 0 };
        if (t[i].bearer) {
            snprintf(hdr, sizeof hdr, "Bearer %s", tok);
            r.authorization = hdr;
        } else {
            snprintf(hdr, sizeof hdr, "sid=1; jwt=%s", tok);
            r.cookie = hdr;
        }
        int got = auth_identify(&c, &r, TA_NOW, &u);
        if (got != t[i].want)
            fail_msg("case %zu: got %d want %d", i, got, t[i].want);
        /* alg refusals may surface as TOK_E_ALG or TOK_E_SIGNATURE,
         * depending on where the library notices; both are refusals. */
        if (t[i].token_error)
            assert_int_equal(u.token_error, t[i].token_error);
        if (t[i].token_error == TOK_E_SCOPE) {
            assert_string_equal(u.name, t[i].user);
            assert_non_null(u.scope_mark);
            assert_int_equal(u.has_claims, 0);
        }
        if (got == 0) {
            assert_string_equal(u.name, t[i].user);
            assert_int_equal(u.ambient, !t[i].bearer);
        }
        auth_user_free(&u);
    }

    struct auth_user u;
    struct auth_req none = { 0 };
    assert_int_equal(auth_identify(&c, &none, TA_NOW, &u), AUTH_E_NONE);
    struct auth_req basic = { .authorization = "Basic YTpi" };
    assert_int_equal(auth_identify(&c, &basic, TA_NOW, &u), AUTH_E_NONE);
    struct auth_req empty = { .authorization = "Bearer " };
    assert_int_equal(auth_identify(&c, &empty, TA_NOW, &u), AUTH_E_NONE);
    struct auth_req junk = { .authorization = "Bearer not.a.jwt" };
    assert_int_equal(auth_identify(&c, &junk, TA_NOW, &u), AUTH_E_INVALID);
    struct auth_req twice = { .cookie = "jwt=a; jwt=b" };
    assert_int_equal(auth_identify(&c, &twice, TA_NOW, &u), AUTH_E_INVALID);
    struct auth_req other = { .cookie = "session=abc" };
    assert_int_equal(auth_identify(&c, &other, TA_NOW, &u), AUTH_E_NONE);
}

/* A subscribe token from tok_issue round-trips through tok_verify with its
 * claims, and is refused as a login: it travels in WebSocket URLs, so it
 * must never become a publish credential. */
static void test_round_trip(void **state)
{
    (void)state;
    struct cfg c;
    ta_cfg(&c, CFG_AUTH_JWT);
    const char *chans[] = { "user/alice/inbox", "news" };
    char tok[TOK_MAX_LEN], hdr[TOK_MAX_LEN + 16];
    long now = (long)time(NULL);
    int n = tok_issue(&c.secret, "alice", now, now + 60, chans, 2, tok, sizeof tok);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(tok));
    struct tok_claims tc;
    assert_int_equal(tok_verify(tok, (size_t)n, &c.secret, NULL, now, &tc), 0);
    assert_string_equal(tc.sub, "alice");
    assert_int_equal(tc.exp, now + 60);
    assert_int_equal(tc.nchannels, 2);
    assert_string_equal(tc.channels[0], "user/alice/inbox");
    assert_string_equal(tc.channels[1], "news");
    assert_int_equal(tc.has_publish, 0);
    assert_int_equal(tc.subscribe_only, 1);
    tok_claims_free(&tc);

    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    struct auth_req r = { .authorization = hdr };
    struct auth_user u;
    assert_int_equal(auth_identify(&c, &r, now, &u), AUTH_E_INVALID);
    assert_int_equal(u.token_error, TOK_E_SCOPE);
    assert_string_equal(u.scope_mark, "scope \"subscribe\"");

    /* expired by the time it is used */
    assert_int_equal(auth_identify(&c, &r, now + 60, &u), AUTH_E_INVALID);
    assert_int_equal(u.token_error, TOK_E_EXPIRED);

    /* one flipped signature byte */
    hdr[strlen(hdr) - 2] ^= 1;
    assert_int_equal(auth_identify(&c, &r, now, &u), AUTH_E_INVALID);

    /* signed by another site's secret */
    struct cfg_secret other = { 5, "other" };
    n = tok_issue(&other, "alice", now, now + 60, chans, 2, tok, sizeof tok);
    assert_true(n > 0);
    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    assert_int_equal(auth_identify(&c, &r, now, &u), AUTH_E_INVALID);
    assert_int_equal(u.token_error, TOK_E_SIGNATURE);
}

static void test_authorize(void **state)
{
    (void)state;
    struct cfg c;
    struct auth_user u;
    ta_cfg(&c, CFG_AUTH_REMOTE_USER);
    struct auth_req r = { .remote_user = "alice" };
    assert_int_equal(auth_identify(&c, &r, TA_NOW, &u), 0);
    static const struct { const char *ch; int pub, sub; } t[] = {
        { "news", 1, 0 },
        { "user/alice/inbox", 1, 1 },
        { "user/bob/inbox", 0, 0 },
        { "user/alice/a/b", 0, 0 },     /* '*' does not cross '/' */
        { "team/x", 1, 0 },
        { "private/alice", 0, 1 },
        { "private/bob", 0, 0 },
        { "other", 0, 0 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        size_t len = strlen(t[i].ch);
        if (auth_may_publish(&c, &u, t[i].ch, len) != t[i].pub ||
            auth_may_subscribe(&c, &u, t[i].ch, len) != t[i].sub)
            fail_msg("'%s': publish %d subscribe %d", t[i].ch,
                     auth_may_publish(&c, &u, t[i].ch, len), auth_may_subscribe(&c, &u, t[i].ch, len));
    }
    auth_user_free(&u);

    /* a user name holding glob characters matches no {user} pattern */
    struct auth_req glob = { .remote_user = "*" };
    assert_int_equal(auth_identify(&c, &glob, TA_NOW, &u), 0);
    assert_int_equal(auth_may_publish(&c, &u, "user/bob/inbox", 14), 0);
    assert_int_equal(auth_may_subscribe(&c, &u, "private/bob", 11), 0);
    auth_user_free(&u);

    /* the JWT's publish claim narrows [channels] publish, never widens it */
    ta_cfg(&c, CFG_AUTH_JWT);
    char tok[2048], hdr[2100];
    ta_jwt(HS256, "{\"sub\":\"alice\",\"exp\":1700000100,"
                  "\"publish\":[\"user/{user}/inbox\",\"team/*\",\"secret\"]}",
           "current-secret", tok);
    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    struct auth_req jr = { .authorization = hdr };
    assert_int_equal(auth_identify(&c, &jr, TA_NOW, &u), 0);
    assert_int_equal(u.claims.has_publish, 1);
    assert_int_equal(auth_may_publish(&c, &u, "user/alice/inbox", 16), 1);
    assert_int_equal(auth_may_publish(&c, &u, "user/alice/outbox", 17), 0);
    assert_int_equal(auth_may_publish(&c, &u, "team/a", 6), 1);
    assert_int_equal(auth_may_publish(&c, &u, "news", 4), 0);
    assert_int_equal(auth_may_publish(&c, &u, "secret", 6), 0);
    auth_user_free(&u);

    /* an empty publish claim allows nothing */
    ta_jwt(HS256, "{\"sub\":\"alice\",\"exp\":1700000100,\"publish\":[]}", "current-secret", tok);
    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    assert_int_equal(auth_identify(&c, &jr, TA_NOW, &u), 0);
    assert_int_equal(auth_may_publish(&c, &u, "news", 4), 0);
    auth_user_free(&u);

    for (int e = AUTH_E_NOMEM; e <= AUTH_E_NONE; e++)
        assert_true(strlen(auth_strerror(e)) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie),
        cmocka_unit_test(test_remote_user),
        cmocka_unit_test(test_jwt),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_authorize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
