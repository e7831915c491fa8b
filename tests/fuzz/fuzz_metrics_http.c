/* mhttp_parse + mhttp_route over arbitrary request heads.
 *
 * Oracles beyond the sanitizers: a parsed head is consumed within the
 * input and ends in CRLF CRLF, its method and path point inside it, one
 * byte less is "need more", bytes after the head change nothing, and a
 * refused input stays refused whatever follows it (the parser decides on
 * what it has read, so a responder may answer 400 at once). */
#include <string.h>

#include "fuzz.h"
#include "metrics_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct mhttp_request req, again;
    ssize_t n = mhttp_parse(buf, size, &req);
    FUZZ_CHECK(n == MHTTP_NEED_MORE || n == MHTTP_E_MALFORMED || (n >= 4 && (size_t)n <= size));
    if (n == MHTTP_E_MALFORMED) {
        /* Every longer prefix of a refused one is refused too: try the
         * input's prefixes from the first refused length on. */
        size_t k = 0;
        while (k < size && mhttp_parse(buf, k, &again) != MHTTP_E_MALFORMED)
            k++;
        for (size_t j = k; j <= size; j++)
            FUZZ_CHECK(mhttp_parse(buf, j, &again) == MHTTP_E_MALFORMED);
        return 0;
    }
    if (n < 0)
        return 0;
    FUZZ_CHECK(memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
    FUZZ_CHECK(mhttp_parse(buf, (size_t)n - 1, &again) == MHTTP_NEED_MORE);
    FUZZ_CHECK(mhttp_parse(buf, (size_t)n, &again) == n);
    FUZZ_CHECK(fuzz_inside(req.method.p, req.method.len, data, (size_t)n));
    FUZZ_CHECK(fuzz_inside(req.path.p, req.path.len, data, (size_t)n));
    FUZZ_CHECK(req.method.len >= 1 && req.method.len <= 16);
    FUZZ_CHECK(req.path.len >= 1 && req.path.p[0] == '/');
    enum mhttp_route r = mhttp_route(&req);
    FUZZ_CHECK(r >= MHTTP_METRICS && r <= MHTTP_BAD_METHOD);
    return 0;
}
