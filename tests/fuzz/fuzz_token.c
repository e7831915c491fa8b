/* tok_verify with a fixed current and previous secret.
 *
 * A random token almost never carries a right HMAC, so half the inputs are
 * signed here first to reach the claim checks behind the signature:
 *   byte 0 even: the rest is the token, as a client would send it;
 *   byte 0 odd:  the rest is "<header JSON>\n<claims JSON>", encoded and
 *                signed with the current (bit 1 clear) or previous secret.
 * Oracles: a verified token obeys token.h (exp after now, bounded sub and
 * lists, strings without NUL), and re-issuing its claims with tok_issue()
 * verifies again to the same claims. Leaks are caught by libFuzzer's LSan. */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz.h"
#include "token.h"

#define FTOK_NOW 1700000000L

static const struct cfg_secret ftok_cur = { 22, "fuzz-current-secret-01" };
static const struct cfg_secret ftok_prev = { 23, "fuzz-previous-secret-02" };

/* Unpadded base64url of [in, in+n) appended at out; returns chars written. */
static size_t ftok_b64url(const unsigned char *in, size_t n, char *out)
{
    int w = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (w > 0 && out[w - 1] == '=')
        w--;
    for (int i = 0; i < w; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return (size_t)w;
}

/* Builds a signed token into tok (TOK_MAX_LEN + 64 bytes); 0 if too long. */
static size_t ftok_sign(const uint8_t *in, size_t n, const struct cfg_secret *key, char *tok)
{
    const uint8_t *nl = memchr(in, '\n', n);
    size_t hlen = nl ? (size_t)(nl - in) : n;
    const uint8_t *claims = nl ? nl + 1 : in + n;
    size_t clen = nl ? n - hlen - 1 : 0;
    if ((hlen + clen) / 3 * 4 + 64 > TOK_MAX_LEN)
        return 0;
    size_t w = ftok_b64url(in, hlen, tok);
    tok[w++] = '.';
    w += ftok_b64url(claims, clen, tok + w);
    unsigned char mac[32];
    unsigned int maclen = 0;
    FUZZ_CHECK(HMAC(EVP_sha256(), key->key, (int)key->len, (const unsigned char *)tok, w, mac,
                    &maclen) != NULL);
    tok[w++] = '.';
    w += ftok_b64url(mac, maclen, tok + w);
    return w;
}

static void ftok_check_claims(const struct tok_claims *c)
{
    FUZZ_CHECK(c->exp > FTOK_NOW);
    FUZZ_CHECK(strlen(c->sub) <= TOK_SUB_MAX);
    FUZZ_CHECK(c->nchannels >= 0 && c->nchannels <= WSPUSH_MAX_CHANNELS);
    FUZZ_CHECK(c->npublish >= 0 && c->npublish <= WSPUSH_MAX_CHANNELS);
    FUZZ_CHECK(c->has_publish || c->npublish == 0);
    for (int i = 0; i < c->nchannels; i++)
        FUZZ_CHECK(c->channels[i] && c->channels[i][0]);
    for (int i = 0; i < c->npublish; i++)
        FUZZ_CHECK(c->publish[i] && c->publish[i][0]);
}

/* Issues the claims again and checks they survive the trip. */
static void ftok_reissue(const struct tok_claims *c)
{
    char tok[TOK_MAX_LEN + 1];
    if (!c->sub[0])
        return;
    long iat = c->iat ? c->iat : FTOK_NOW;
    int n = tok_issue(&ftok_cur, c->sub, iat, c->exp, (const char *const *)c->channels,
                      c->nchannels, tok, sizeof(tok));
    if (n < 0)
        return;   /* over TOK_MAX_LEN once encoded: refused, not truncated */
    FUZZ_CHECK((size_t)n == strlen(tok));
    struct tok_claims again;
    int rc = tok_verify(tok, (size_t)n, &ftok_cur, NULL, FTOK_NOW, &again);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(strcmp(again.sub, c->sub) == 0);
    FUZZ_CHECK(again.exp == c->exp);
    FUZZ_CHECK(again.iat == iat);
    FUZZ_CHECK(again.nchannels == c->nchannels);
    for (int i = 0; i < c->nchannels; i++)
        FUZZ_CHECK(strcmp(again.channels[i], c->channels[i]) == 0);
    FUZZ_CHECK(!again.has_publish);
    tok_claims_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char signed_tok[TOK_MAX_LEN + 64];
    const char *tok;
    size_t len;
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        len = ftok_sign(data + 1, size - 1, (data[0] & 2) ? &ftok_prev : &ftok_cur, signed_tok);
        if (len == 0)
            return 0;
        tok = signed_tok;
    } else {
        tok = (const char *)data + 1;
        len = size - 1;
    }

    struct tok_claims c;
    int rc = tok_verify(tok, len, &ftok_cur, (data[0] & 4) ? NULL : &ftok_prev, FTOK_NOW, &c);
    FUZZ_CHECK(rc == 0 || rc == TOK_E_MALFORMED || rc == TOK_E_SIGNATURE || rc == TOK_E_ALG ||
               rc == TOK_E_EXPIRED || rc == TOK_E_NO_EXP || rc == TOK_E_NO_SUB ||
               rc == TOK_E_NOMEM);
    FUZZ_CHECK(tok_strerror(rc) != NULL);
    if (rc < 0) {
        /* "*out holds nothing to free" */
        FUZZ_CHECK(c.nchannels == 0 && c.npublish == 0);
        return 0;
    }
    /* Only the secret it was signed with (or one we hold) verifies it. */
    if ((data[0] & 1) && (data[0] & 2))
        FUZZ_CHECK(!(data[0] & 4));
    ftok_check_claims(&c);
    ftok_reissue(&c);
    tok_claims_free(&c);
    return 0;
}
