/* metrics_http: the request-head parser as a table, every truncated prefix
 * (a valid head's prefixes all need more; a malformed one stays malformed
 * once refused), inputs against a guard page, bytes after the head left
 * alone, and the routes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"

#include "metrics_http.h"

#define GUARD_DATA (16 * 1024)

enum { HEAD = 1 };   /* the whole input is one complete head */

struct mh_case {
    const char *name;
    const char *req;
    int want;                /* HEAD, MHTTP_NEED_MORE or MHTTP_E_MALFORMED */
    enum mhttp_route route;  /* when HEAD */
    const char *path;        /* when HEAD */
};

static const struct mh_case cases[] = {
    { "scrape", "GET /metrics HTTP/1.1\r\nHost: a:9\r\nAccept: text/plain\r\n\r\n", HEAD,
      MHTTP_METRICS, "/metrics" },
    { "no headers, HTTP/1.0", "GET /metrics HTTP/1.0\r\n\r\n", HEAD, MHTTP_METRICS, "/metrics" },
    { "query ignored", "GET /metrics?name[]=x HTTP/1.1\r\n\r\n", HEAD, MHTTP_METRICS, "/metrics" },
    { "healthz", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", HEAD, MHTTP_HEALTHZ, "/healthz" },
    { "readyz HEAD", "HEAD /readyz HTTP/1.1\r\n\r\n", HEAD, MHTTP_READYZ, "/readyz" },
    { "other path", "GET /metricsx HTTP/1.1\r\n\r\n", HEAD, MHTTP_NOT_FOUND, "/metricsx" },
    { "root", "GET / HTTP/1.1\r\n\r\n", HEAD, MHTTP_NOT_FOUND, "/" },
    { "POST", "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", HEAD, MHTTP_BAD_METHOD,
      "/metrics" },
    { "method 16 letters", "ABCDEFGHIJKLMNOP /metrics HTTP/1.1\r\n\r\n", HEAD, MHTTP_BAD_METHOD,
      "/metrics" },
    { "empty value, tab, UTF-8", "GET /metrics HTTP/1.1\r\nX-A:\r\nX-B: \tv\xc3\xa9\r\n\r\n", HEAD,
      MHTTP_METRICS, "/metrics" },

    { "empty line first", "\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "lower-case method", "get /metrics HTTP/1.1\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "method 17 letters", "ABCDEFGHIJKLMNOPQ /metrics HTTP/1.1\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "two spaces", "GET  /metrics HTTP/1.1\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "target not a path", "GET metrics HTTP/1.1\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "absolute URI", "GET http://a/metrics HTTP/1.1\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "no version", "GET /metrics\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "HTTP/2.0", "GET /metrics HTTP/2.0\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "HTTP/1.2", "GET /metrics HTTP/1.2\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "version lower case", "GET /metrics http/1.1\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "space after version", "GET /metrics HTTP/1.1 \r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "bare LF", "GET /metrics HTTP/1.1\nHost: a\n\n", MHTTP_E_MALFORMED, 0, NULL },
    { "bare CR", "GET /metrics HTTP/1.1\rHost: a\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "control in target", "GET /met\x01rics HTTP/1.1\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "header without colon", "GET /metrics HTTP/1.1\r\nHost a\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "space before colon", "GET /metrics HTTP/1.1\r\nHost : a\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "folded header", "GET /metrics HTTP/1.1\r\nA: b\r\n c\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "control in value", "GET /metrics HTTP/1.1\r\nA: b\x7f\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },
    { "NUL in value", "GET /metrics HTTP/1.1\r\nA: b\0c\r\n\r\n", MHTTP_E_MALFORMED, 0, NULL },

    { "empty", "", MHTTP_NEED_MORE, 0, NULL },
    { "head not ended", "GET /metrics HTTP/1.1\r\nHost: a\r\n", MHTTP_NEED_MORE, 0, NULL },
    { "CR of the end", "GET /metrics HTTP/1.1\r\n\r", MHTTP_NEED_MORE, 0, NULL },
};

/* Lengths: the NUL case has one inside. */
static size_t mh_len(const struct mh_case *c)
{
    if (strcmp(c->name, "NUL in value") == 0)
        return strlen(c->req) + 1 + strlen(c->req + strlen(c->req) + 1);
    return strlen(c->req);
}

static void test_table(void **state)
{
    (void)state;
    struct guard g = guard_new(GUARD_DATA);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct mh_case *c = &cases[i];
        size_t len = mh_len(c);
        struct mhttp_request req;
        const char *p = guard_put(&g, c->req, len);
        ssize_t n = mhttp_parse(p, len, &req);
        if (c->want == HEAD) {
            if (n != (ssize_t)len)
                fail_msg("%s: %zd, want %zu", c->name, n, len);
            if (mhttp_route(&req) != c->route)
                fail_msg("%s: route %d, want %d", c->name, mhttp_route(&req), c->route);
            if (req.path.len != strlen(c->path) || memcmp(req.path.p, c->path, req.path.len) != 0)
                fail_msg("%s: path '%.*s'", c->name, (int)req.path.len, req.path.p);
        } else if (n != c->want) {
            fail_msg("%s: %zd, want %d", c->name, n, c->want);
        }
        /* Every prefix: a valid head needs more until its last byte; a
         * malformed one needs more, then is malformed from some byte on. */
        int refused = 0;
        for (size_t k = 0; k < len; k++) {
            p = guard_put(&g, c->req, k);
            n = mhttp_parse(p, k, &req);
            if (c->want != MHTTP_E_MALFORMED && n != MHTTP_NEED_MORE)
                fail_msg("%s: prefix %zu: %zd, want need-more", c->name, k, n);
            if (c->want == MHTTP_E_MALFORMED) {
                if (n != MHTTP_NEED_MORE && n != MHTTP_E_MALFORMED)
                    fail_msg("%s: prefix %zu: %zd", c->name, k, n);
                if (refused && n != MHTTP_E_MALFORMED)
                    fail_msg("%s: prefix %zu accepted after a shorter one was refused", c->name, k);
                refused |= n == MHTTP_E_MALFORMED;
            }
        }
    }
    guard_free(&g);
}

/* Bytes after the head (a body, a second request) are not the head's. */
static void test_bytes_after_head(void **state)
{
    (void)state;
    static const char in[] = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\n";
    struct mhttp_request req;
    ssize_t n = mhttp_parse(in, sizeof(in) - 1, &req);
    assert_int_equal(n, (ssize_t)strlen("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_int_equal(mhttp_route(&req), MHTTP_HEALTHZ);
    assert_int_equal(req.method.len, 3);
    assert_memory_equal(req.method.p, "GET", 3);
}

/* A head as long as the responder takes, made of many header lines. */
static void test_long_head(void **state)
{
    (void)state;
    static char in[MHTTP_MAX_REQUEST];
    size_t len = (size_t)snprintf(in, sizeof(in), "GET /metrics HTTP/1.1\r\n");
    while (len + 12 + 2 < sizeof(in))
        len += (size_t)snprintf(in + len, sizeof(in) - len, "X-Pad: abc\r\n");
    memcpy(in + len, "\r\n", 2);
    len += 2;
    struct guard g = guard_new(GUARD_DATA);
    struct mhttp_request req;
    assert_int_equal(mhttp_parse(guard_put(&g, in, len), len, &req), (ssize_t)len);
    assert_int_equal(mhttp_parse(guard_put(&g, in, len - 1), len - 1, &req), MHTTP_NEED_MORE);
    guard_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_bytes_after_head),
        cmocka_unit_test(test_long_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
