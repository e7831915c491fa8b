/* origin: canonical origins, then the same-origin / CSRF decision as a
 * table of header combinations with the exact code each must get. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "origin.h"

static void test_canon(void **state)
{
    (void)state;
    static const struct { const char *in; const char *want; } t[] = {
        { "https://example.com", "https://example.com:443" },
        { "HTTPS://Example.COM", "https://example.com:443" },
        { "https://example.com:443", "https://example.com:443" },
        { "http://example.com", "http://example.com:80" },
        { "http://example.com:8080", "http://example.com:8080" },
        { "http://example.com:8080/path?q=1#f", "http://example.com:8080" },
        { "http://example.com?q", "http://example.com:80" },
        { "http://user:pw@example.com/", "http://example.com:80" },
        { "http://good.example@evil.example/", "http://evil.example:80" },
        { "http://[::1]:8080", "http://[::1]:8080" },
        { "http://[::1]", "http://[::1]:80" },
        { "http://127.0.0.1:1/", "http://127.0.0.1:1" },
        { "null", NULL },
        { "file:///etc/passwd", NULL },
        { "ftp://example.com", NULL },
        { "http://", NULL },
        { "http:///path", NULL },
        { "http://example.com:", NULL },
        { "http://example.com:0", NULL },
        { "http://example.com:65536", NULL },
        { "http://example.com:8o", NULL },
        { "http://[::1", NULL },
        { "http://[::1]x", NULL },
        { "http://exa mple.com", NULL },
        { "", NULL },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char out[300];
        int n = origin_canon(t[i].in, strlen(t[i].in), out, sizeof out);
        if (!t[i].want) {
            if (n != -1)
                fail_msg("'%s' accepted as '%s'", t[i].in, out);
            continue;
        }
        if (n < 0 || strcmp(out, t[i].want) != 0)
            fail_msg("'%s': got %d '%s' want '%s'", t[i].in, n, n < 0 ? "" : out, t[i].want);
        assert_int_equal(n, strlen(t[i].want));
    }
    char small[10];
    assert_int_equal(origin_canon("http://example.com", 18, small, sizeof small), -1);
}

struct to_case {
    const char *origin, *referer, *fetch_site, *xrw, *scheme, *host;
    int is_json, state_changing;
    int listed;        /* use the configured list instead of the default */
    int want;
};

static const struct to_case to_cases[] = {
    /* same origin by default: the request's own scheme + Host */
    { "http://site.example", NULL, NULL, NULL, "http", "site.example", 1, 1, 0, 0 },
    { "http://site.example:80", NULL, NULL, NULL, "http", "SITE.example", 1, 1, 0, 0 },
    { "https://site.example", NULL, NULL, NULL, "https", "site.example:443", 1, 1, 0, 0 },
    { "http://site.example:8080", NULL, "same-origin", "XMLHttpRequest", "http", "site.example:8080", 0, 1, 0, 0 },
    { "http://site.example", NULL, NULL, NULL, "https", "site.example", 1, 1, 0, ORIGIN_E_FOREIGN },
    { "http://site.example:8080", NULL, NULL, NULL, "http", "site.example", 1, 1, 0, ORIGIN_E_FOREIGN },
    { "http://evil.example", NULL, NULL, NULL, "http", "site.example", 1, 1, 0, ORIGIN_E_FOREIGN },
    { "null", NULL, NULL, NULL, "http", "site.example", 1, 1, 0, ORIGIN_E_FOREIGN },
    { "http://site.example", NULL, NULL, NULL, "http", NULL, 1, 1, 0, ORIGIN_E_FOREIGN },
    { "http://site.example", NULL, NULL, NULL, "http", "site.example/x", 1, 1, 0, ORIGIN_E_FOREIGN },
    { "http://evil.example", NULL, NULL, NULL, "http", "x@evil.example", 1, 1, 0, ORIGIN_E_FOREIGN },
    /* an Origin is bare: a path, query or userinfo is no browser's */
    { "http://site.example/", NULL, NULL, NULL, "http", "site.example", 1, 1, 0, ORIGIN_E_FOREIGN },
    { "http://site.example?x", NULL, NULL, NULL, "http", "site.example", 1, 1, 0, ORIGIN_E_FOREIGN },
    { "http://u@site.example", NULL, NULL, NULL, "http", "site.example", 1, 1, 0, ORIGIN_E_FOREIGN },
    { "https://app.example/x", NULL, NULL, NULL, "http", "site.example", 1, 1, 1, ORIGIN_E_FOREIGN },
    /* Referer when Origin is absent; Origin wins when both are there */
    { NULL, "http://site.example/page?x", NULL, NULL, "http", "site.example", 1, 1, 0, 0 },
    { "", "http://site.example/page", NULL, NULL, "http", "site.example", 1, 1, 0, 0 },
    { NULL, "http://evil.example/site.example", NULL, NULL, "http", "site.example", 1, 1, 0, ORIGIN_E_FOREIGN },
    { "http://evil.example", "http://site.example/", NULL, NULL, "http", "site.example", 1, 1, 0, ORIGIN_E_FOREIGN },
    { NULL, NULL, NULL, NULL, "http", "site.example", 1, 1, 0, ORIGIN_E_MISSING },
    { "", "", NULL, NULL, "http", "site.example", 1, 1, 0, ORIGIN_E_MISSING },
    /* Sec-Fetch-Site: cross-site is refused before anything else */
    { "http://site.example", NULL, "cross-site", "x", "http", "site.example", 1, 1, 0, ORIGIN_E_CROSS_SITE },
    { "http://site.example", NULL, "Cross-Site", NULL, "http", "site.example", 1, 0, 0, ORIGIN_E_CROSS_SITE },
    { NULL, NULL, "cross-site", NULL, "http", "site.example", 1, 1, 0, ORIGIN_E_CROSS_SITE },
    { "http://site.example", NULL, "same-site", NULL, "http", "site.example", 1, 1, 0, 0 },
    { "http://site.example", NULL, "none", NULL, "http", "site.example", 1, 1, 0, 0 },
    /* the CSRF marker: X-Requested-With or a JSON body, for state changes */
    { "http://site.example", NULL, NULL, NULL, "http", "site.example", 0, 1, 0, ORIGIN_E_NO_MARKER },
    { "http://site.example", NULL, NULL, "", "http", "site.example", 0, 1, 0, ORIGIN_E_NO_MARKER },
    { "http://site.example", NULL, NULL, "XMLHttpRequest", "http", "site.example", 0, 1, 0, 0 },
    { "http://site.example", NULL, NULL, NULL, "http", "site.example", 0, 0, 0, 0 },
    { "http://evil.example", NULL, NULL, "x", "http", "site.example", 0, 1, 0, ORIGIN_E_FOREIGN },
    /* a configured list replaces the default */
    { "https://app.example", NULL, NULL, NULL, "http", "site.example", 1, 1, 1, 0 },
    { "https://APP.example:443", NULL, NULL, NULL, "http", "site.example", 1, 1, 1, 0 },
    { "http://localhost:3000", NULL, NULL, NULL, "http", "site.example", 1, 1, 1, 0 },
    { "http://site.example", NULL, NULL, NULL, "http", "site.example", 1, 1, 1, ORIGIN_E_FOREIGN },
    { "http://app.example", NULL, NULL, NULL, "http", "site.example", 1, 1, 1, ORIGIN_E_FOREIGN },
    { NULL, "https://app.example/x", NULL, NULL, "http", "site.example", 1, 1, 1, 0 },
};

static void test_check(void **state)
{
    (void)state;
    char *items[] = { "https://app.example", "http://localhost:3000" };
    struct cfg_list none = { 0 }, list = { 2, { items[0], items[1] } };
    for (size_t i = 0; i < sizeof to_cases / sizeof to_cases[0]; i++) {
        const struct to_case *t = &to_cases[i];
        struct origin_req r = {
            .origin = t->origin, .referer = t->referer, .sec_fetch_site = t->fetch_site,
            .x_requested_with = t->xrw, .scheme = t->scheme, .host = t->host,
            .is_json = t->is_json, .state_changing = t->state_changing,
        };
        int got = origin_check(&r, t->listed ? &list : &none);
        if (got != t->want)
            fail_msg("case %zu (origin %s referer %s): got %d want %d", i,
                     t->origin ? t->origin : "-", t->referer ? t->referer : "-", got, t->want);
    }
}

static void test_listed(void **state)
{
    (void)state;
    char *items[] = { "https://app.example" };
    struct cfg_list list = { 1, { items[0] } }, none = { 0 };
    assert_int_equal(origin_is_listed("https://app.example", &list), 1);
    assert_int_equal(origin_is_listed("https://app.example:443", &list), 1);
    assert_int_equal(origin_is_listed("http://app.example", &list), 0);
    assert_int_equal(origin_is_listed("null", &list), 0);
    assert_int_equal(origin_is_listed("https://app.example/", &list), 0);
    assert_int_equal(origin_is_listed("https://x@app.example", &list), 0);
    assert_int_equal(origin_is_listed(NULL, &list), 0);
    assert_int_equal(origin_is_listed("https://app.example", &none), 0);
    for (int c = ORIGIN_E_NO_MARKER; c <= ORIGIN_E_CROSS_SITE; c++)
        assert_true(strlen(origin_strerror(c)) > 0);
}

/* origin_allowed: the header value is (pointer, length), compared against
 * every entry canonicalised; "*" admits anything; an empty list nothing. */
static void test_allowed(void **state)
{
    (void)state;
    char *items[] = { "https://a.example", "http://site.example:80", "http://b.example:8080" };
    char *star_items[] = { "https://a.example", "*" };
    struct cfg_list list = { 3, { items[0], items[1], items[2] } };
    struct cfg_list star = { 2, { star_items[0], star_items[1] } }, none = { 0 };
    static const struct { const char *origin; int want; } t[] = {
        { "https://a.example", 1 },
        { "https://a.example:443", 1 },
        { "HTTPS://A.EXAMPLE:443", 1 },
        { "http://site.example", 1 },
        { "http://site.example:80", 1 },
        { "http://Site.Example", 1 },
        { "http://b.example:8080", 1 },
        { "http://b.example", 0 },
        { "http://b.example:80", 0 },
        { "http://site.example:8080", 0 },
        { "https://site.example", 0 },
        { "http://a.example", 0 },
        { "https://a.example:8443", 0 },
        { "https://a.example.evil", 0 },
        { "https://evil.a.example", 0 },
        { "https://a.example/", 0 },
        { "https://a.example/x", 0 },
        { "https://a.example?x", 0 },
        { "https://a.example#x", 0 },
        { "https://evil@a.example", 0 },
        { "https://a.example:", 0 },
        { "https://a.example:0443x", 0 },
        { "null", 0 },
        { "", 0 },
        { "a.example", 0 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        size_t n = strlen(t[i].origin);
        /* Not NUL-terminated: the value sits in a larger header buffer. */
        char buf[128];
        memcpy(buf, t[i].origin, n);
        memcpy(buf + n, ":1/x", 5);
        if (origin_allowed(buf, n, &list) != t[i].want)
            fail_msg("'%s': want %d", t[i].origin, t[i].want);
        assert_int_equal(origin_allowed(buf, n, &star), 1);
        assert_int_equal(origin_allowed(buf, n, &none), 0);
    }
    /* Every strict prefix of an allowed origin is refused or another origin. */
    const char *full = "https://a.example:443";
    for (size_t k = 0; k < strlen(full); k++)
        if (origin_allowed(full, k, &list) && k != strlen("https://a.example"))
            fail_msg("prefix %zu of '%s' allowed", k, full);
    assert_int_equal(origin_allowed(NULL, 0, &list), 0);
    assert_int_equal(origin_allowed(NULL, 0, &star), 1);
    /* A list entry that is no origin matches nothing, even itself. */
    char *bad_items[] = { "a.example" };
    struct cfg_list bad = { 1, { bad_items[0] } };
    assert_int_equal(origin_allowed("a.example", 9, &bad), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canon),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_listed),
        cmocka_unit_test(test_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
