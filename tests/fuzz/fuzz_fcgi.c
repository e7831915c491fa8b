/* fcgi_record_parse over a stream of FastCGI records, as the responder reads
 * a connection from the web server, with the body of each record decoded
 * by its type:
 *  - BEGIN_REQUEST: fcgi_begin_parse;
 *  - PARAMS: content appended to a reassembly buffer, from which pairs are
 *    decoded with fcgi_pair_parse (max 65536) as they complete; an empty
 *    PARAMS record ends the stream and drops what is left; a malformed pair
 *    ignores the PARAMS that follow, as the responder drops the request;
 *  - GET_VALUES: its content is a whole pair stream on its own.
 * Every record and pair decoded is encoded again and must decode to the same
 * fields (and, where the input used the shortest form, the same bytes).
 * Decoders run on exact-size heap copies, so a read one byte past (buf, len)
 * is an ASan report even in the middle of the input.
 *
 * The input is the byte stream itself, no selector byte. */
#include <string.h>

#include "buf.h"
#include "fcgi.h"
#include "fuzz.h"

#define FFCGI_MAX_PAIR 65536

static uint8_t *ffcgi_copy(const void *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    FUZZ_CHECK(c != NULL);
    if (n)
        memcpy(c, p, n);
    return c;
}

/* A pair decoded from [buf, buf+k): within it, and encoded again it comes
 * back the same. */
static void ffcgi_pair_check(const uint8_t *buf, size_t k, const struct fcgi_pair *pr)
{
    FUZZ_CHECK(pr->name_len >= 1 && pr->name_len <= FFCGI_MAX_PAIR);
    FUZZ_CHECK(pr->value_len <= FFCGI_MAX_PAIR);
    FUZZ_CHECK(fuzz_inside(pr->name, pr->name_len, buf, k));
    FUZZ_CHECK(fuzz_inside(pr->value, pr->value_len, buf, k));
    FUZZ_CHECK(k > pr->name_len + pr->value_len);
    size_t hb = k - pr->name_len - pr->value_len;   /* the two lengths' bytes */
    FUZZ_CHECK(hb == 2 || hb == 5 || hb == 8);
    FUZZ_CHECK((const uint8_t *)pr->name == buf + hb);
    FUZZ_CHECK(pr->value == pr->name + pr->name_len);
    size_t shortest = (pr->name_len < 128 ? 1 : 4) + (pr->value_len < 128 ? 1 : 4);
    FUZZ_CHECK(hb >= shortest);

    /* Each shorter prefix of a good pair is incomplete, not corrupt. */
    struct fcgi_pair g;
    uint8_t *pre = ffcgi_copy(buf, k - 1);
    FUZZ_CHECK(fcgi_pair_parse(pre, k - 1, FFCGI_MAX_PAIR, &g) == FCGI_NEED_MORE);
    free(pre);

    struct buf out = { 0 };
    FUZZ_CHECK(fcgi_encode_pair(&out, pr->name, pr->name_len, pr->value, pr->value_len) == 0);
    FUZZ_CHECK(buf_used(&out) == k - hb + shortest);
    if (hb == shortest)
        FUZZ_CHECK(memcmp(buf_head(&out), buf, k) == 0);
    uint8_t *enc = ffcgi_copy(buf_head(&out), buf_used(&out));
    struct fcgi_pair again;
    FUZZ_CHECK(fcgi_pair_parse(enc, buf_used(&out), FFCGI_MAX_PAIR, &again) ==
               (ssize_t)buf_used(&out));
    FUZZ_CHECK(again.name_len == pr->name_len && again.value_len == pr->value_len);
    FUZZ_CHECK(memcmp(again.name, pr->name, pr->name_len) == 0);
    FUZZ_CHECK(pr->value_len == 0 || memcmp(again.value, pr->value, pr->value_len) == 0);
    free(enc);
    buf_free(&out);
}

/* Decodes the pairs at the front of [p, p+len). Returns the bytes they
 * took, or -1 when the stream is corrupt. */
static ssize_t ffcgi_pairs(const uint8_t *p, size_t len)
{
    uint8_t *c = ffcgi_copy(p, len);
    size_t off = 0;
    ssize_t ret;
    for (;;) {
        struct fcgi_pair pr;
        ssize_t k = fcgi_pair_parse(c + off, len - off, FFCGI_MAX_PAIR, &pr);
        FUZZ_CHECK(k == FCGI_NEED_MORE || k == FCGI_E_MALFORMED ||
                   (k >= 3 && (size_t)k <= len - off));
        if (k == FCGI_NEED_MORE) {
            ret = (ssize_t)off;
            break;
        }
        if (k == FCGI_E_MALFORMED) {
            ret = -1;
            break;
        }
        ffcgi_pair_check(c + off, (size_t)k, &pr);
        off += (size_t)k;
    }
    free(c);
    return ret;
}

/* A record decoded from [p, p+n): its fields are the header's, and encoded
 * again (without padding) it comes back the same. */
static void ffcgi_record_check(const uint8_t *p, size_t n, const struct fcgi_record *r)
{
    FUZZ_CHECK(n == (size_t)FCGI_HEADER_LEN + r->len + p[6]);
    FUZZ_CHECK(r->type == p[1]);
    FUZZ_CHECK(r->req_id == buf_get_u16(p + 2));
    FUZZ_CHECK(r->len == buf_get_u16(p + 4));
    FUZZ_CHECK(r->content == p + FCGI_HEADER_LEN);
    FUZZ_CHECK(fuzz_inside(r->content, r->len, p, n));

    struct fcgi_record g;
    uint8_t *pre = ffcgi_copy(p, n - 1);
    FUZZ_CHECK(fcgi_record_parse(pre, n - 1, &g) == FCGI_NEED_MORE);
    free(pre);

    struct buf out = { 0 };
    FUZZ_CHECK(fcgi_encode_record(&out, r->type, r->req_id, r->content, r->len) == 0);
    FUZZ_CHECK(buf_used(&out) == (size_t)FCGI_HEADER_LEN + r->len);
    FUZZ_CHECK(memcmp(buf_head(&out), p, 6) == 0);
    FUZZ_CHECK(buf_head(&out)[6] == 0 && buf_head(&out)[7] == 0);
    FUZZ_CHECK(r->len == 0 || memcmp(buf_head(&out) + FCGI_HEADER_LEN, r->content, r->len) == 0);
    buf_free(&out);
}

static void ffcgi_begin(const struct fcgi_record *r)
{
    uint16_t role;
    uint8_t flags;
    int rc = fcgi_begin_parse(r, &role, &flags);
    FUZZ_CHECK(rc == 0 || rc == FCGI_E_MALFORMED);
    FUZZ_CHECK((rc == 0) == (r->len == 8));
    if (rc != 0)
        return;
    FUZZ_CHECK(role == buf_get_u16(r->content) && flags == r->content[2]);

    struct buf out = { 0 };
    FUZZ_CHECK(fcgi_encode_begin(&out, r->req_id, role, flags) == 0);
    uint8_t *enc = ffcgi_copy(buf_head(&out), buf_used(&out));
    struct fcgi_record again;
    uint16_t role2;
    uint8_t flags2;
    FUZZ_CHECK(fcgi_record_parse(enc, buf_used(&out), &again) == 16);
    FUZZ_CHECK(again.type == FCGI_BEGIN_REQUEST && again.req_id == r->req_id);
    FUZZ_CHECK(fcgi_begin_parse(&again, &role2, &flags2) == 0);
    FUZZ_CHECK(role2 == role && flags2 == flags);
    free(enc);
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t len = size;
    struct buf params = { 0 };
    int params_bad = 0;

    while (len > 0) {
        struct fcgi_record r;
        ssize_t n = fcgi_record_parse(p, len, &r);
        FUZZ_CHECK(n == FCGI_NEED_MORE || n == FCGI_E_MALFORMED ||
                   (n >= FCGI_HEADER_LEN && (size_t)n <= len));
        if (n < 0)
            break;
        ffcgi_record_check(p, (size_t)n, &r);

        switch (r.type) {
        case FCGI_BEGIN_REQUEST:
            ffcgi_begin(&r);
            buf_reset(&params);
            params_bad = 0;
            break;
        case FCGI_PARAMS: {
            if (r.len == 0) {             /* end of the stream */
                buf_reset(&params);
                break;
            }
            if (params_bad)
                break;
            FUZZ_CHECK(buf_append(&params, r.content, r.len) == 0);
            ssize_t used = ffcgi_pairs((const uint8_t *)buf_head(&params), buf_used(&params));
            if (used < 0) {
                params_bad = 1;
                buf_reset(&params);
            } else {
                FUZZ_CHECK((size_t)used <= buf_used(&params));
                buf_consume(&params, (size_t)used);
            }
            break;
        }
        case FCGI_GET_VALUES: {
            ssize_t used = ffcgi_pairs(r.content, r.len);
            FUZZ_CHECK(used < 0 || (size_t)used <= r.len);
            break;
        }
        default:
            break;
        }
        p += n;
        len -= (size_t)n;
    }
    buf_free(&params);
    return 0;
}
