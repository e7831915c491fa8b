/* body_content_type and body_parse (fcgi-publisher/body.h).
 *
 * Byte 0 picks the encoding (bit 0: JSON or form) and whether the first
 * line is a Content-Type header to classify (bit 1); the rest is the body.
 * Oracles: on success every channel is a valid, distinct name, at most
 * WSPUSH_MAX_CHANNELS of them, and data is one JSON value that ws-server will
 * take (any RFC 8259 value, UTF-8); for a JSON body that value
 * equals the body's own "data" member as jansson reads it, for a form it is
 * the string the form carried, NUL bytes included (decoded here by a
 * decoder of the oracle's own, not url_decode, which refuses NUL); a
 * refusal is one of the documented codes. Scratch is heap-allocated to exactly
 * BODY_SCRATCH(len), so writing past it is an ASan report. */
#include <string.h>

#include <jansson.h>

#include "body.h"
#include "fuzz.h"
#include "pattern.h"
#include "urlenc.h"

/* One JSON value as RFC 8259 has it: an integer past 64 bits is valid JSON
 * (body.c keeps its text as sent), so it is read as a real here. */
#define FBODY_JSON_FLAGS (JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL)

static void fbody_check_channels(const struct body_msg *m, const char *scratch, size_t sclen)
{
    FUZZ_CHECK(m->nchannels >= 1 && m->nchannels <= WSPUSH_MAX_CHANNELS);
    for (int i = 0; i < m->nchannels; i++) {
        FUZZ_CHECK(fuzz_inside(m->channels[i].p, m->channels[i].len, scratch, sclen));
        FUZZ_CHECK(pat_channel_valid(m->channels[i].p, m->channels[i].len));
        for (int j = 0; j < i; j++)
            FUZZ_CHECK(m->channels[i].len != m->channels[j].len ||
                       memcmp(m->channels[i].p, m->channels[j].p, m->channels[i].len) != 0);
    }
    FUZZ_CHECK(m->listed || m->nchannels == 1);
}

/* The "data" member of the JSON body, as jansson reads the whole body. */
static json_t *fbody_json_member(const char *buf, size_t len)
{
    json_t *root = json_loadb(buf, len, FBODY_JSON_FLAGS | JSON_REJECT_DUPLICATES, NULL);
    json_t *v = json_incref(json_object_get(root, "data"));
    json_decref(root);
    return v;
}

static int fbody_hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decoding with '+' as space that, unlike url_decode, keeps a
 * decoded NUL: a form's data may carry one. -1 on a bad escape. */
static ssize_t fbody_decode(const char *in, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '%') {
            int hi = i + 2 < len ? fbody_hex(in[i + 1]) : -1;
            int lo = hi >= 0 ? fbody_hex(in[i + 2]) : -1;
            if (lo < 0)
                return -1;
            out[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[n++] = in[i] == '+' ? ' ' : in[i];
        }
    }
    return (ssize_t)n;
}

/* The decoded "data" value of a form body, into a malloc'd string. */
static char *fbody_form_data(const char *buf, size_t len, size_t *outlen)
{
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        if (eq) {
            char key[17];
            size_t klen = (size_t)(eq - p);
            ssize_t kn = klen < sizeof(key) ? url_decode(p, klen, key, 1) : -1;
            if (kn == 4 && memcmp(key, "data", 4) == 0) {
                char *out = malloc((size_t)(pe - eq));
                FUZZ_CHECK(out != NULL);
                ssize_t n = fbody_decode(eq + 1, (size_t)(pe - eq - 1), out);
                FUZZ_CHECK(n >= 0);
                *outlen = (size_t)n;
                return out;
            }
        }
        p = pe + 1;
    }
    FUZZ_CHECK(!"form accepted without data");
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int type = (data[0] & 1) ? BODY_FORM : BODY_JSON;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    if (data[0] & 2) {
        const char *nl = memchr(buf, '\n', len);
        size_t hl = nl ? (size_t)(nl - buf) : len;
        char *ct = malloc(hl + 1);
        FUZZ_CHECK(ct != NULL);
        memcpy(ct, buf, hl);
        ct[hl] = '\0';
        int t = body_content_type(ct);
        FUZZ_CHECK(t == BODY_JSON || t == BODY_FORM || t == BODY_E_CTYPE);
        free(ct);
        if (t < 0)
            return 0;
        type = t;
        buf += nl ? hl + 1 : hl;
        len -= nl ? hl + 1 : hl;
    }

    size_t sclen = BODY_SCRATCH(len);
    char *scratch = malloc(sclen);
    FUZZ_CHECK(scratch != NULL);
    struct body_msg m;
    int rc = body_parse(type, buf, len, &m, scratch, sclen);
    FUZZ_CHECK(rc == 0 || rc == BODY_E_SYNTAX || rc == BODY_E_FIELD || rc == BODY_E_CHANNEL ||
               rc == BODY_E_RANGE);
    FUZZ_CHECK(body_strerror(rc) != NULL);
    if (rc < 0)
        goto out;

    fbody_check_channels(&m, scratch, sclen);
    FUZZ_CHECK(m.data_len > 0);
    if (type == BODY_JSON)
        FUZZ_CHECK(fuzz_inside(m.data, m.data_len, buf, len));
    else
        FUZZ_CHECK(fuzz_inside(m.data, m.data_len, scratch, sclen));

    json_error_t jerr;
    json_t *got = json_loadb(m.data, m.data_len, FBODY_JSON_FLAGS | JSON_DECODE_ANY, &jerr);
    if (!got)
        fprintf(stderr, "data not one JSON value: %s: [%.*s]\n", jerr.text,
                (int)(m.data_len > 200 ? 200 : m.data_len), m.data);
    FUZZ_CHECK(got != NULL);
    if (type == BODY_JSON) {
        json_t *want = fbody_json_member(buf, len);
        FUZZ_CHECK(want != NULL);
        FUZZ_CHECK(json_equal(got, want));
        json_decref(want);
    } else {
        size_t slen = 0;
        char *s = fbody_form_data(buf, len, &slen);
        FUZZ_CHECK(json_is_string(got));
        FUZZ_CHECK(json_string_length(got) == slen);
        FUZZ_CHECK(memcmp(json_string_value(got), s, slen) == 0);
        free(s);
    }
    json_decref(got);
out:
    free(scratch);
    return 0;
}
