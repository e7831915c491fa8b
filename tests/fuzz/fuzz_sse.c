/* The SSE encoder (sse.c) over arbitrary bytes: what it writes must read
 * back, by the event-stream rules, as what it was given.
 *
 * Input: the whole input is the data of one event (any bytes: the
 * encoder never sees invalid JSON from ws-server, but it must not care).
 * Oracles beyond the sanitizers: sse_data() writes exactly sse_data_len()
 * bytes (into a buffer of that size, so ASan sees an overrun); every line
 * is "data: " + a piece without CR or LF; joining the pieces with LF gives
 * the input with its CRLF and CR turned to LF and one trailing line end
 * dropped; sse_control() of the input is one event ending in a blank line
 * whose event line, if any, is letters only; the head and every refusal
 * with the input as the CORS origin end in one blank line after the
 * status line (a CR or LF in an origin is never reached: the request
 * parser refuses it, so only inputs without them are tried). */
#include <string.h>

#include "fuzz.h"
#include "sse.h"

/* The reference: the input as a reader gets it back. */
static size_t fsse_expected(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\r') {
            out[w++] = '\n';
            if (i + 1 < n && in[i + 1] == '\n')
                i++;
        } else {
            out[w++] = in[i];
        }
    }
    if (w > 0 && out[w - 1] == '\n')
        w--;
    return w;
}

static void fsse_data(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    size_t len = sse_data_len(in, size);
    unsigned char *out = malloc(len ? len : 1);
    uint8_t *want = malloc(size ? size : 1);
    uint8_t *got = malloc(len ? len : 1);
    FUZZ_CHECK(out && want && got);
    sse_data(in, size, out);
    size_t g = 0;
    for (size_t i = 0; i < len;) {
        FUZZ_CHECK(len - i >= 7 && memcmp(out + i, "data: ", 6) == 0);
        i += 6;
        const unsigned char *nl = memchr(out + i, '\n', len - i);
        FUZZ_CHECK(nl != NULL);
        size_t k = (size_t)(nl - (out + i));
        FUZZ_CHECK(memchr(out + i, '\r', k) == NULL);
        memcpy(got + g, out + i, k);
        g += k;
        i += k + 1;
        if (i < len)
            got[g++] = '\n';       /* the LF that joins two data lines */
    }
    size_t w = fsse_expected(data, size, want);
    FUZZ_CHECK(g == w && (w == 0 || memcmp(got, want, w) == 0));
    free(out);
    free(want);
    free(got);
}

static void fsse_control(const uint8_t *data, size_t size)
{
    rbuf_t *r = sse_control((const char *)data, size);
    FUZZ_CHECK(r != NULL);
    const unsigned char *p = rbuf_data(r);
    size_t n = rbuf_len(r);
    FUZZ_CHECK(n >= 8 && p[n - 1] == '\n' && p[n - 2] == '\n');
    if (memcmp(p, "event: ", 7) == 0) {
        size_t i = 7;
        while (i < n && p[i] != '\n') {
            FUZZ_CHECK((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z'));
            i++;
        }
        FUZZ_CHECK(i > 7 && i + 7 <= n && memcmp(p + i + 1, "data: ", 6) == 0);
    } else {
        FUZZ_CHECK(memcmp(p, "data: ", 6) == 0);
    }
    rbuf_unref(r);
}

static void fsse_pages(const uint8_t *data, size_t size)
{
    if (memchr(data, '\r', size) || memchr(data, '\n', size))
        return;
    struct str cors = { (const char *)data, size };
    struct buf b = { 0 };
    FUZZ_CHECK(sse_head(&b, cors) == 0);
    FUZZ_CHECK(buf_used(&b) > 4 && memcmp(buf_head(&b) + buf_used(&b) - 4, "\r\n\r\n", 4) == 0);
    FUZZ_CHECK(memmem(buf_head(&b), buf_used(&b), "\r\n\r\n", 4) == buf_head(&b) + buf_used(&b) - 4);
    buf_free(&b);
    for (int why = SSE_BAD_CHANNELS; why <= SSE_UNAVAILABLE; why++) {
        FUZZ_CHECK(sse_refuse(&b, (enum sse_refusal)why, cors) == 0);
        const char *end = memmem(buf_head(&b), buf_used(&b), "\r\n\r\n", 4);
        FUZZ_CHECK(end != NULL && memcmp(buf_head(&b), "HTTP/1.1 ", 9) == 0);
        FUZZ_CHECK(end[4] == '{' && buf_head(&b)[buf_used(&b) - 1] == '\n');
        buf_free(&b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fsse_data(data, size);
    fsse_control(data, size);
    fsse_pages(data, size);
    return 0;
}
