/* hs_parse + hs_check + hs_response over arbitrary request heads.
 *
 * Oracles beyond the sanitizers: a parsed head is consumed within the
 * input, every field points inside it, one byte less is "need more", every
 * verdict has an answer that fits the documented 512 bytes, and an answer
 * into a too-small buffer is refused rather than overflowed (the buffer is
 * heap-allocated to its exact size so ASan sees a one-byte overrun). */
#include <string.h>

#include "fuzz.h"
#include "handshake.h"

#define FHS_OUT 512

static void fhs_field(const struct str *s, const uint8_t *buf, size_t n)
{
    FUZZ_CHECK(fuzz_inside(s->p, s->len, buf, n));
}

static void fhs_answer(enum hs_verdict v, const struct hs_request *req)
{
    char out[FHS_OUT];
    int n = hs_response(v, req, out, sizeof(out));
    if (v == HS_SSE) {
        /* A stream's answers are sse.c's (fuzz_sse); only /sse gets one. */
        FUZZ_CHECK(n == -1 && req->sse);
        return;
    }
    /* An upgrade answer needs a key hs_check accepted, so it never fails. */
    FUZZ_CHECK(n > 0 && n < FHS_OUT);
    FUZZ_CHECK(memcmp(out, "HTTP/1.1 ", 9) == 0);
    FUZZ_CHECK(memcmp(out + n - 4, "\r\n\r\n", 4) == 0 || v != HS_UPGRADE);

    /* Too small by one: refused, and nothing written past the end. */
    char *tight = malloc((size_t)n);
    FUZZ_CHECK(tight != NULL);
    FUZZ_CHECK(hs_response(v, req, tight, (size_t)n) == -1);
    free(tight);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char good[] = "http://good.example";
    static char other[] = "https://other.example:8443";
    const struct cfg_list none = { 0, { NULL } };
    const struct cfg_list some = { 2, { good, other } };
    struct hs_request req;
    const char *buf = (const char *)data;

    ssize_t n = hs_parse(buf, size, &req);
    FUZZ_CHECK(n == HS_NEED_MORE || n == HS_E_MALFORMED || (n > 0 && (size_t)n <= size));
    if (n <= 0) {
        /* The answers the connection code gives without a parsed head. */
        if (size == 0) {
            fhs_answer(HS_SERVICE_UNAVAILABLE, NULL);
            fhs_answer(HS_HEADERS_TOO_LARGE, NULL);
            fhs_answer(HS_BAD_REQUEST, NULL);
        }
        return 0;
    }

    /* The head ends at its last byte: any shorter prefix is incomplete. */
    struct hs_request again;
    FUZZ_CHECK(hs_parse(buf, (size_t)n - 1, &again) == HS_NEED_MORE);
    /* Bytes after the head (pipelined frames) are not part of it. */
    FUZZ_CHECK(hs_parse(buf, (size_t)n, &again) == n);

    fhs_field(&req.method, data, (size_t)n);
    fhs_field(&req.target, data, (size_t)n);
    fhs_field(&req.path, data, (size_t)n);
    fhs_field(&req.query, data, (size_t)n);
    fhs_field(&req.host, data, (size_t)n);
    fhs_field(&req.origin, data, (size_t)n);
    fhs_field(&req.key, data, (size_t)n);
    fhs_field(&req.version, data, (size_t)n);
    fhs_field(&req.last_event_id, data, (size_t)n);

    char accept[29];
    if (hs_accept_key(req.key.p, req.key.len, accept) == 0)
        FUZZ_CHECK(strlen(accept) == 28);

    enum hs_verdict v1 = hs_check(&req, &none);
    enum hs_verdict v2 = hs_check(&req, &some);
    FUZZ_CHECK(v1 != HS_SERVICE_UNAVAILABLE && v1 != HS_HEADERS_TOO_LARGE);
    /* An allow-list can only turn an accepted upgrade or stream into a 403. */
    FUZZ_CHECK(v1 == v2 || ((v1 == HS_UPGRADE || v1 == HS_SSE) && v2 == HS_FORBIDDEN));
    if (v1 == HS_UPGRADE)
        FUZZ_CHECK(hs_accept_key(req.key.p, req.key.len, accept) == 0);
    fhs_answer(v1, &req);
    fhs_answer(v2, &req);
    return 0;
}
