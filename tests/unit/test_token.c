/* token: tokens are built here by hand (base64url + OpenSSL HMAC) so that
 * every refusal is tested against a token that is otherwise perfect. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "token.h"

#define NOW 1700000000L

static void b64url(const void *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    int j = 0;
    for (int i = 0; i < len; i++) {
        char c = out[i];
        if (c == '=')
            break;
        out[j++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[j] = '\0';
}

/* header.payload.signature; md NULL leaves the signature empty. */
static void make(char *out, const char *header, const char *payload, const char *key,
                 const EVP_MD *md)
{
    char h[1024], p[8192];
    b64url(header, strlen(header), h);
    b64url(payload, strlen(payload), p);
    sprintf(out, "%s.%s", h, p);
    char *end = out + strlen(out);
    *end++ = '.';
    *end = '\0';
    if (md) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen;
        HMAC(md, key, (int)strlen(key), (unsigned char *)out, strlen(out) - 1, mac, &maclen);
        b64url(mac, maclen, end);
    }
}

static struct cfg_secret secret(const char *s)
{
    struct cfg_secret k;
    memset(&k, 0, sizeof(k));
    k.len = strlen(s);
    memcpy(k.key, s, k.len);
    return k;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define CUR "current-secret-0123456789abcdef"
#define PREV "previous-secret-fedcba9876543210"

static int verify(const char *tok, struct tok_claims *c)
{
    struct cfg_secret cur = secret(CUR), prev = secret(PREV);
    return tok_verify(tok, strlen(tok), &cur, &prev, NOW, c);
}

struct tok_case {
    const char *name;
    const char *header;
    const char *payload;
    const char *key;
    int md;          /* 256, 384 or 0 for no signature */
    int want;
};

static const struct tok_case cases[] = {
    { "valid", HS256, "{\"sub\":\"alice\",\"exp\":1700000100,\"channels\":[\"news\"]}",
      CUR, 256, 0 },
    { "valid, no typ", "{\"alg\":\"HS256\"}", "{\"exp\":1700000100}", CUR, 256, 0 },
    { "previous secret", HS256, "{\"sub\":\"a\",\"exp\":1700000100}", PREV, 256, 0 },
    { "unknown secret", HS256, "{\"sub\":\"a\",\"exp\":1700000100}", "other", 256,
      TOK_E_SIGNATURE },
    { "expired", HS256, "{\"sub\":\"a\",\"exp\":1699999999}", CUR, 256, TOK_E_EXPIRED },
    { "exp == now", HS256, "{\"sub\":\"a\",\"exp\":1700000000}", CUR, 256, TOK_E_EXPIRED },
    { "exp real", HS256, "{\"sub\":\"a\",\"exp\":1700000100.5}", CUR, 256, 0 },
    { "missing exp", HS256, "{\"sub\":\"a\"}", CUR, 256, TOK_E_NO_EXP },
    { "exp string", HS256, "{\"sub\":\"a\",\"exp\":\"1700000100\"}", CUR, 256, TOK_E_NO_EXP },
    { "exp null", HS256, "{\"sub\":\"a\",\"exp\":null}", CUR, 256, TOK_E_NO_EXP },
    { "alg none", "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"sub\":\"a\",\"exp\":1700000100}",
      CUR, 0, TOK_E_ALG },
    { "alg none signed", "{\"alg\":\"none\"}", "{\"sub\":\"a\",\"exp\":1700000100}",
      CUR, 256, TOK_E_ALG },
    { "HS384", "{\"alg\":\"HS384\",\"typ\":\"JWT\"}", "{\"sub\":\"a\",\"exp\":1700000100}",
      CUR, 384, TOK_E_ALG },
    { "RS256", "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", "{\"sub\":\"a\",\"exp\":1700000100}",
      CUR, 256, TOK_E_ALG },
    { "alg lowercase", "{\"alg\":\"hs256\"}", "{\"exp\":1700000100}", CUR, 256, TOK_E_ALG },
    { "alg missing", "{\"typ\":\"JWT\"}", "{\"exp\":1700000100}", CUR, 256, TOK_E_MALFORMED },
    { "alg number", "{\"alg\":256}", "{\"exp\":1700000100}", CUR, 256, TOK_E_MALFORMED },
    { "header not JSON", "HS256", "{\"exp\":1700000100}", CUR, 256, TOK_E_MALFORMED },
    { "payload not JSON", HS256, "not json", CUR, 256, TOK_E_MALFORMED },
    { "payload array", HS256, "[1,2]", CUR, 256, TOK_E_MALFORMED },
    { "unsigned HS256", HS256, "{\"exp\":1700000100}", CUR, 0, TOK_E_SIGNATURE },
    { "channels string", HS256, "{\"exp\":1700000100,\"channels\":\"news\"}", CUR, 256,
      TOK_E_MALFORMED },
    { "channels number entry", HS256, "{\"exp\":1700000100,\"channels\":[\"a\",1]}", CUR, 256,
      TOK_E_MALFORMED },
    { "channels empty entry", HS256, "{\"exp\":1700000100,\"channels\":[\"\"]}", CUR, 256,
      TOK_E_MALFORMED },
    { "channels NUL entry", HS256, "{\"exp\":1700000100,\"channels\":[\"a\\u0000b\"]}", CUR,
      256, TOK_E_MALFORMED },
    { "channels 33", HS256, "{\"exp\":1700000100,\"channels\":[\"1\",\"2\",\"3\",\"4\",\"5\","
      "\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\",\"18\","
      "\"19\",\"20\",\"21\",\"22\",\"23\",\"24\",\"25\",\"26\",\"27\",\"28\",\"29\",\"30\","
      "\"31\",\"32\",\"33\"]}", CUR, 256, TOK_E_MALFORMED },
    { "publish object", HS256, "{\"exp\":1700000100,\"publish\":{\"a\":1}}", CUR, 256,
      TOK_E_MALFORMED },
    { "sub number", HS256, "{\"exp\":1700000100,\"sub\":42}", CUR, 256, TOK_E_MALFORMED },
    { "sub too long", HS256, "{\"exp\":1700000100,\"sub\":\""
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
      CUR, 256, TOK_E_NO_SUB },
};

static void test_table(void **state)
{
    (void)state;
    char tok[TOK_MAX_LEN * 2];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct tok_case *c = &cases[i];
        make(tok, c->header, c->payload, c->key,
             c->md == 256 ? EVP_sha256() : c->md == 384 ? EVP_sha384() : NULL);
        struct tok_claims cl;
        int rc = verify(tok, &cl);
        if (rc != c->want)
            fail_msg("%s: got %d (%s) want %d", c->name, rc, tok_strerror(rc), c->want);
        if (rc == 0)
            tok_claims_free(&cl);
        else
            assert_int_equal(cl.nchannels + cl.npublish, 0);
    }
}

static void test_claims(void **state)
{
    (void)state;
    char tok[TOK_MAX_LEN];
    make(tok, HS256, "{\"sub\":\"alice\",\"exp\":1700000100,\"channels\":[\"news\","
         "\"user/alice/*\"],\"publish\":[\"chat/*\"],\"iat\":1}", CUR, EVP_sha256());
    struct tok_claims c;
    assert_int_equal(verify(tok, &c), 0);
    assert_string_equal(c.sub, "alice");
    assert_int_equal(c.exp, 1700000100L);
    assert_int_equal(c.iat, 1);
    assert_int_equal(c.nchannels, 2);
    assert_string_equal(c.channels[0], "news");
    assert_string_equal(c.channels[1], "user/alice/*");
    assert_int_equal(c.has_publish, 1);
    assert_int_equal(c.npublish, 1);
    assert_string_equal(c.publish[0], "chat/*");
    tok_claims_free(&c);
    assert_int_equal(c.nchannels, 0);

    make(tok, HS256, "{\"exp\":1700000100}", CUR, EVP_sha256());
    assert_int_equal(verify(tok, &c), 0);
    assert_int_equal(c.iat, 0);
    assert_string_equal(c.sub, "");
    assert_int_equal(c.nchannels, 0);
    assert_int_equal(c.has_publish, 0);
    tok_claims_free(&c);

    make(tok, HS256, "{\"exp\":1700000100,\"publish\":[]}", CUR, EVP_sha256());
    assert_int_equal(verify(tok, &c), 0);
    assert_int_equal(c.has_publish, 1);
    assert_int_equal(c.npublish, 0);
    tok_claims_free(&c);
}

static void test_forged(void **state)
{
    (void)state;
    char tok[TOK_MAX_LEN];
    struct tok_claims c;
    make(tok, HS256, "{\"sub\":\"a\",\"exp\":1700000100}", CUR, EVP_sha256());
    size_t n = strlen(tok);
    /* Flip the last signature char; also a truncated and an extended one. */
    tok[n - 1] = tok[n - 1] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(tok, &c), TOK_E_SIGNATURE);
    tok[n - 1] = '\0';
    assert_int_equal(verify(tok, &c), TOK_E_SIGNATURE);
    make(tok, HS256, "{\"sub\":\"a\",\"exp\":1700000100}", CUR, EVP_sha256());
    strcat(tok, "A");
    assert_int_equal(verify(tok, &c), TOK_E_SIGNATURE);

    /* Payload swapped under a valid signature. */
    char other[TOK_MAX_LEN];
    make(tok, HS256, "{\"sub\":\"a\",\"exp\":1700000100}", CUR, EVP_sha256());
    make(other, HS256, "{\"sub\":\"root\",\"exp\":1700000100}", CUR, EVP_sha256());
    char *sig = strrchr(tok, '.');
    char *osig = strrchr(other, '.');
    strcpy(osig, sig);
    assert_int_equal(verify(other, &c), TOK_E_SIGNATURE);
}

static void test_secrets(void **state)
{
    (void)state;
    char tok[TOK_MAX_LEN];
    struct tok_claims c;
    struct cfg_secret cur = secret(CUR), prev = secret(PREV), empty = secret("");

    make(tok, HS256, "{\"exp\":1700000100}", PREV, EVP_sha256());
    assert_int_equal(tok_verify(tok, strlen(tok), &cur, NULL, NOW, &c), TOK_E_SIGNATURE);
    assert_int_equal(tok_verify(tok, strlen(tok), &cur, &empty, NOW, &c), TOK_E_SIGNATURE);
    assert_int_equal(tok_verify(tok, strlen(tok), &cur, &prev, NOW, &c), 0);
    tok_claims_free(&c);

    /* An empty secret verifies nothing, even a token "signed" with it. */
    make(tok, HS256, "{\"exp\":1700000100}", "", EVP_sha256());
    assert_int_equal(tok_verify(tok, strlen(tok), &empty, &empty, NOW, &c), TOK_E_SIGNATURE);
    assert_int_equal(tok_verify(tok, strlen(tok), &empty, NULL, NOW, &c), TOK_E_SIGNATURE);
    assert_int_equal(tok_verify(tok, strlen(tok), NULL, NULL, NOW, &c), TOK_E_SIGNATURE);
}

static void test_malformed(void **state)
{
    (void)state;
    struct tok_claims c;
    static const char *bad[] = { "", "abc", "a.b", "a.b.c.d", "..", "!!!.e30.x",
                                 "eyJhbGciOiJIUzI1NiJ9.e30", "eyJhbGciOiJIUzI1NiJ9..." };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (verify(bad[i], &c) != TOK_E_MALFORMED)
            fail_msg("'%s' not malformed", bad[i]);

    /* iat dates a token for revocation: it must be a positive number. */
    static const char *bad_iat[] = { "\"1\"", "0", "-5", "null", "[1]", "1e300" };
    char tok0[TOK_MAX_LEN], body[128];
    for (size_t i = 0; i < sizeof(bad_iat) / sizeof(bad_iat[0]); i++) {
        snprintf(body, sizeof(body), "{\"exp\":1700000100,\"iat\":%s}", bad_iat[i]);
        make(tok0, HS256, body, CUR, EVP_sha256());
        if (verify(tok0, &c) != TOK_E_MALFORMED)
            fail_msg("iat %s not malformed", bad_iat[i]);
    }

    /* The length is bounded before anything else, and the length given is
     * what counts (no NUL terminator needed, an embedded NUL refused). */
    char tok[TOK_MAX_LEN + 2];
    make(tok, HS256, "{\"exp\":1700000100}", CUR, EVP_sha256());
    size_t n = strlen(tok);
    struct cfg_secret cur = secret(CUR);
    char copy[TOK_MAX_LEN + 2];
    memcpy(copy, tok, n);
    copy[n] = 'Z';
    assert_int_equal(tok_verify(copy, n, &cur, NULL, NOW, &c), 0);
    tok_claims_free(&c);
    copy[5] = '\0';
    assert_int_equal(tok_verify(copy, n, &cur, NULL, NOW, &c), TOK_E_MALFORMED);

    memset(tok, 'a', TOK_MAX_LEN + 1);
    tok[10] = '.';
    tok[20] = '.';
    tok[TOK_MAX_LEN + 1] = '\0';
    assert_int_equal(tok_verify(tok, TOK_MAX_LEN + 1, &cur, NULL, NOW, &c), TOK_E_MALFORMED);
}

static void test_issue_round_trip(void **state)
{
    (void)state;
    struct cfg_secret cur = secret(CUR), prev = secret(PREV);
    const char *chans[] = { "news", "user/bob/inbox", "room:1" };
    char out[TOK_MAX_LEN + 1];
    int n = tok_issue(&cur, "bob", NOW, NOW + 3600, chans, 3, out, sizeof(out));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(out));

    struct tok_claims c;
    assert_int_equal(tok_verify(out, (size_t)n, &cur, NULL, NOW, &c), 0);
    assert_string_equal(c.sub, "bob");
    assert_int_equal(c.exp, NOW + 3600);
    assert_int_equal(c.iat, NOW);
    assert_int_equal(c.nchannels, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(c.channels[i], chans[i]);
    assert_int_equal(c.has_publish, 0);
    tok_claims_free(&c);

    /* After rotation the old token is still good through prev. */
    assert_int_equal(tok_verify(out, (size_t)n, &prev, &cur, NOW, &c), 0);
    tok_claims_free(&c);
    assert_int_equal(tok_verify(out, (size_t)n, &cur, NULL, NOW + 3600, &c), TOK_E_EXPIRED);

    /* No channels is a valid token with an empty list. */
    n = tok_issue(&cur, "bob", NOW, NOW + 10, NULL, 0, out, sizeof(out));
    assert_true(n > 0);
    assert_int_equal(tok_verify(out, (size_t)n, &cur, NULL, NOW, &c), 0);
    assert_int_equal(c.nchannels, 0);
    tok_claims_free(&c);

    struct cfg_secret empty = secret("");
    assert_int_equal(tok_issue(&empty, "bob", NOW, NOW + 10, chans, 3, out, sizeof(out)), -1);
    assert_int_equal(tok_issue(&cur, "", NOW, NOW + 10, chans, 3, out, sizeof(out)), -1);
    assert_int_equal(tok_issue(&cur, "bob", NOW, NOW + 10, chans, 33, out, sizeof(out)), -1);
    assert_int_equal(tok_issue(&cur, "bob", NOW, NOW + 10, chans, 3, out, 20), -1);
    const char *withempty[] = { "a", "" };
    assert_int_equal(tok_issue(&cur, "bob", NOW, NOW + 10, withempty, 2, out, sizeof(out)), -1);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(tok_strerror(TOK_E_EXPIRED), "token expired");
    assert_string_equal(tok_strerror(-99), "unknown token error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_forged),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_issue_round_trip),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests_name("token", tests, NULL, NULL);
}
