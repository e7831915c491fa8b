/* The benchmark load client's stream parsers (tests/bench/lcproto.h):
 * lcp_dechunk and lcp_sse_event.
 *
 * Byte 0 picks the parser (bit 0), byte 1 a split point; the rest is the
 * stream. Oracles: a chunked body decoded in two reads (cut anywhere, the
 * second read landing after the first's data, as the client does it)
 * gives the same bytes, state and verdict as in one, and never more bytes
 * than it was given; an event's length, data and event spans lie inside
 * the input, it ends at a line feed, parsing exactly its bytes gives the
 * same event, and "need more" never hides a NUL byte. */
#include <string.h>

#include "../bench/lcproto.h"
#include "fuzz.h"

static void flc_dechunk(const uint8_t *in, size_t n, size_t cut)
{
    unsigned char *one = malloc(n + 1), *two = malloc(n + 1);
    FUZZ_CHECK(one && two);
    memcpy(one, in, n);
    memcpy(two, in, n);
    struct lcp_dechunk d1 = { 0 }, d2 = { 0 };
    ssize_t whole = lcp_dechunk(&d1, one, n);
    ssize_t a = lcp_dechunk(&d2, two, cut), split = a;
    if (a >= 0) {
        memmove(two + a, two + cut, n - cut);
        ssize_t b = lcp_dechunk(&d2, two + a, n - cut);
        split = b < 0 ? b : a + b;
    }
    FUZZ_CHECK((whole < 0) == (split < 0));
    if (whole >= 0) {
        FUZZ_CHECK((size_t)whole <= n && whole == split);
        FUZZ_CHECK(memcmp(one, two, (size_t)whole) == 0);
        FUZZ_CHECK(d1.state == d2.state && d1.left == d2.left);
    }
    free(one);
    free(two);
}

static void flc_sse(const uint8_t *in, size_t n)
{
    char *buf = malloc(n ? n : 1);
    FUZZ_CHECK(buf);
    memcpy(buf, in, n);
    struct lcp_sse ev, again;
    ssize_t r = lcp_sse_event(buf, n, &ev);
    if (r > 0) {
        FUZZ_CHECK((size_t)r <= n && buf[r - 1] == '\n');
        FUZZ_CHECK(fuzz_inside(buf + ev.data_off, ev.data_len, buf, (size_t)r));
        FUZZ_CHECK(fuzz_inside(buf + ev.event_off, ev.event_len, buf, (size_t)r));
        FUZZ_CHECK(ev.has_data || ev.data_len == 0);
        FUZZ_CHECK(lcp_sse_event(buf, (size_t)r, &again) == r);
        FUZZ_CHECK(again.data_off == ev.data_off && again.data_len == ev.data_len &&
                   again.event_len == ev.event_len && again.has_data == ev.has_data);
    } else if (r == LCP_NEED_MORE) {
        FUZZ_CHECK(memchr(buf, '\0', n) == NULL);
    } else {
        FUZZ_CHECK(r == LCP_E_BAD);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const uint8_t *in = data + 2;
    size_t n = size - 2;
    if (data[0] & 1)
        flc_sse(in, n);
    else
        flc_dechunk(in, n, data[1] % (n + 1));
    return 0;
}
