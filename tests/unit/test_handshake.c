/* handshake: parse + verdict table, every truncated prefix, inputs against
 * a guard page, accept key (RFC 6455 example), responses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard.h"

#include "handshake.h"

#define GUARD_DATA (16 * 1024)


#define RL  "GET /ws?channels=news HTTP/1.1\r\n"
#define H   "Host: example.com\r\n"
#define UP  "Upgrade: websocket\r\n"
#define CO  "Connection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER "Sec-WebSocket-Version: 13\r\n"
#define ORG "Origin: https://example.com\r\n"
#define END "\r\n"
#define WS_HDRS H UP CO KEY VER

enum { PARSED = 1 };   /* hs_parse consumed the whole head */

enum origin_list { ANY_ORIGIN, ONLY_EXAMPLE, STAR, WITH_PORTS };

struct hs_case {
    const char *name;
    const char *req;
    int parse;               /* PARSED or an HS_ code */
    enum hs_verdict verdict; /* when PARSED */
    enum origin_list origins;
};

static const struct hs_case cases[] = {
    { "valid", RL WS_HDRS ORG END, PARSED, HS_UPGRADE, ONLY_EXAMPLE },
    { "valid no origin", RL WS_HDRS END, PARSED, HS_UPGRADE, ONLY_EXAMPLE },
    { "valid bare LF",
      "GET / HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n",
      PARSED, HS_UPGRADE, ANY_ORIGIN },
    { "names and tokens any case",
      RL "HOST: a\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n"
      "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION: 13\r\n" END,
      PARSED, HS_UPGRADE, ANY_ORIGIN },
    { "OWS around values", RL "Host:a\r\nUpgrade: \t websocket \t\r\nConnection:Upgrade\r\n"
      KEY "Sec-WebSocket-Version:13  \r\n" END, PARSED, HS_UPGRADE, ANY_ORIGIN },
    { "Connection repeated", RL H UP "Connection: keep-alive\r\nConnection: upgrade\r\n" KEY VER
      END, PARSED, HS_UPGRADE, ANY_ORIGIN },
    { "other headers ignored", RL "User-Agent: x/1\r\n" WS_HDRS "Cookie: a=b; c=d\r\n" END,
      PARSED, HS_UPGRADE, ANY_ORIGIN },
    { "origin case-insensitive", RL WS_HDRS "Origin: HTTPS://Example.COM\r\n" END,
      PARSED, HS_UPGRADE, ONLY_EXAMPLE },
    { "origin denied", RL WS_HDRS "Origin: https://evil.example\r\n" END,
      PARSED, HS_FORBIDDEN, ONLY_EXAMPLE },
    { "origin other port", RL WS_HDRS "Origin: https://example.com:8443\r\n" END,
      PARSED, HS_FORBIDDEN, ONLY_EXAMPLE },
    { "origin other scheme", RL WS_HDRS "Origin: http://example.com\r\n" END,
      PARSED, HS_FORBIDDEN, ONLY_EXAMPLE },
    { "origin suffix", RL WS_HDRS "Origin: https://example.com.evil\r\n" END,
      PARSED, HS_FORBIDDEN, ONLY_EXAMPLE },
    { "origin null", RL WS_HDRS "Origin: null\r\n" END, PARSED, HS_FORBIDDEN, ONLY_EXAMPLE },
    { "origin default port written", RL WS_HDRS "Origin: https://example.com:443\r\n" END,
      PARSED, HS_UPGRADE, ONLY_EXAMPLE },
    { "origin default port, any case", RL WS_HDRS "Origin: HTTPS://EXAMPLE.com:443\r\n" END,
      PARSED, HS_UPGRADE, ONLY_EXAMPLE },
    { "origin http port 443", RL WS_HDRS "Origin: http://example.com:443\r\n" END,
      PARSED, HS_FORBIDDEN, ONLY_EXAMPLE },
    { "origin entry port 80, header none", RL WS_HDRS "Origin: http://site.example\r\n" END,
      PARSED, HS_UPGRADE, WITH_PORTS },
    { "origin entry port 80, header 80", RL WS_HDRS "Origin: http://site.example:80\r\n" END,
      PARSED, HS_UPGRADE, WITH_PORTS },
    { "origin entry port 80, header 8080", RL WS_HDRS "Origin: http://site.example:8080\r\n" END,
      PARSED, HS_FORBIDDEN, WITH_PORTS },
    { "origin entry port 8443", RL WS_HDRS "Origin: https://app.example:8443\r\n" END,
      PARSED, HS_UPGRADE, WITH_PORTS },
    { "origin entry port 8443, header none", RL WS_HDRS "Origin: https://app.example\r\n" END,
      PARSED, HS_FORBIDDEN, WITH_PORTS },
    { "origin with path", RL WS_HDRS "Origin: https://example.com/\r\n" END,
      PARSED, HS_FORBIDDEN, ONLY_EXAMPLE },
    { "origin with userinfo", RL WS_HDRS "Origin: https://evil.example@example.com\r\n" END,
      PARSED, HS_FORBIDDEN, ONLY_EXAMPLE },
    { "origin empty port", RL WS_HDRS "Origin: https://example.com:\r\n" END,
      PARSED, HS_FORBIDDEN, ONLY_EXAMPLE },
    { "origin star", RL WS_HDRS "Origin: https://evil.example\r\n" END,
      PARSED, HS_UPGRADE, STAR },
    { "origin star admits null", RL WS_HDRS "Origin: null\r\n" END, PARSED, HS_UPGRADE, STAR },
    { "origin empty list", RL WS_HDRS "Origin: https://evil.example\r\n" END,
      PARSED, HS_UPGRADE, ANY_ORIGIN },
    { "POST", "POST /ws HTTP/1.1\r\n" WS_HDRS END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "lowercase get", "get /ws HTTP/1.1\r\n" WS_HDRS END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "HTTP/1.0", "GET /ws HTTP/1.0\r\n" WS_HDRS END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "no Host", RL UP CO KEY VER END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "empty Host", RL "Host:\r\n" UP CO KEY VER END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "dup Host", RL H WS_HDRS END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "dup Upgrade", RL UP WS_HDRS END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "dup Key", RL KEY WS_HDRS END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "dup Version", RL VER WS_HDRS END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "dup Origin", RL ORG WS_HDRS ORG END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "plain GET", RL H END, PARSED, HS_UPGRADE_REQUIRED, ANY_ORIGIN },
    { "Upgrade h2c", RL H "Upgrade: h2c\r\n" CO KEY VER END, PARSED, HS_UPGRADE_REQUIRED,
      ANY_ORIGIN },
    { "no Connection", RL H UP KEY VER END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "Connection keep-alive", RL H UP "Connection: keep-alive\r\n" KEY VER END, PARSED,
      HS_BAD_REQUEST, ANY_ORIGIN },
    { "version 8", RL H UP CO KEY "Sec-WebSocket-Version: 8\r\n" END, PARSED,
      HS_UPGRADE_REQUIRED, ANY_ORIGIN },
    { "version 13, 8", RL H UP CO KEY "Sec-WebSocket-Version: 13, 8\r\n" END, PARSED,
      HS_UPGRADE_REQUIRED, ANY_ORIGIN },
    { "no version", RL H UP CO KEY END, PARSED, HS_UPGRADE_REQUIRED, ANY_ORIGIN },
    { "no key", RL H UP CO VER END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "key 23 chars", RL H UP CO "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n" VER END,
      PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "key 25 chars", RL H UP CO "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n" VER END,
      PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "key 17 bytes", RL H UP CO "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQA=\r\n" VER END,
      PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "key 18 bytes", RL H UP CO "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQAA\r\n" VER END,
      PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "key bad char", RL H UP CO "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q==\r\n" VER END,
      PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "key inner space", RL H UP CO "Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZ==\r\n" VER END,
      PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "healthz", "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", PARSED, HS_HEALTHZ, ANY_ORIGIN },
    { "healthz HTTP/1.0 no Host", "GET /healthz HTTP/1.0\r\n\r\n", PARSED, HS_HEALTHZ,
      ANY_ORIGIN },
    { "healthz query", "GET /healthz?probe=1 HTTP/1.1\r\nHost: a\r\n\r\n", PARSED, HS_HEALTHZ,
      ANY_ORIGIN },
    { "POST healthz", "POST /healthz HTTP/1.1\r\nHost: a\r\n\r\n", PARSED, HS_BAD_REQUEST,
      ANY_ORIGIN },
    { "healthz prefix is a ws path", "GET /healthzz HTTP/1.1\r\n" WS_HDRS END, PARSED,
      HS_UPGRADE, ANY_ORIGIN },
    { "sse", "GET /sse?channels=a HTTP/1.1\r\n" H END, PARSED, HS_SSE, ANY_ORIGIN },
    { "sse allowed origin", "GET /sse HTTP/1.1\r\n" H ORG END, PARSED, HS_SSE, ONLY_EXAMPLE },
    { "sse other origin", "GET /sse HTTP/1.1\r\n" H "Origin: https://evil.example\r\n" END,
      PARSED, HS_FORBIDDEN, ONLY_EXAMPLE },
    { "sse with upgrade headers is sse", "GET /sse HTTP/1.1\r\n" WS_HDRS END, PARSED, HS_SSE,
      ANY_ORIGIN },
    { "sse Last-Event-ID", "GET /sse HTTP/1.1\r\n" H "Last-Event-ID: 1-2\r\n" END, PARSED,
      HS_SSE, ANY_ORIGIN },
    { "sse Last-Event-ID twice", "GET /sse HTTP/1.1\r\n" H "Last-Event-ID: 1-2\r\n"
      "last-event-id: 1-3\r\n" END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "sse HTTP/1.0", "GET /sse HTTP/1.0\r\n" H END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "sse no Host", "GET /sse HTTP/1.1\r\n" END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "POST sse", "POST /sse HTTP/1.1\r\n" H END, PARSED, HS_BAD_REQUEST, ANY_ORIGIN },
    { "sse is case-sensitive", "GET /SSE HTTP/1.1\r\n" H END, PARSED, HS_UPGRADE_REQUIRED,
      ANY_ORIGIN },
    { "sse prefix is a ws path", "GET /sse/ HTTP/1.1\r\n" WS_HDRS END, PARSED, HS_UPGRADE,
      ANY_ORIGIN },
    { "asterisk target", "GET * HTTP/1.1\r\n" WS_HDRS END, PARSED, HS_NOT_FOUND, ANY_ORIGIN },
    { "absolute target", "GET http://example.com/ws HTTP/1.1\r\n" WS_HDRS END, PARSED,
      HS_NOT_FOUND, ANY_ORIGIN },
    { "not HTTP", "HELLO\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "TLS hello", "\x16\x03\x01\x02\x05\x01\xfc\x03\x03\n", HS_E_MALFORMED, 0,
      ANY_ORIGIN },
    { "HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "HTTP/1.", "GET / HTTP/1.\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "HTTP/1.1 trailing", "GET / HTTP/1.1 \r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "double space", "GET  / HTTP/1.1\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "no target", "GET HTTP/1.1\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "leading empty line", "\r\nGET / HTTP/1.1\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "header no colon", RL "Host example.com\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "space before colon", RL "Host : a\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "empty name", RL ": a\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "obs-fold", RL H " folded\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "CR in value", RL "Host: a\rb\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "double CR", RL "Host: a\r\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "control in value", RL "Host: a\x01z\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
    { "CTL in target", "GET /a\x7f HTTP/1.1\r\n\r\n", HS_E_MALFORMED, 0, ANY_ORIGIN },
};

static void origins_for(enum origin_list which, struct cfg_list *l)
{
    static char example[] = "https://example.com";
    static char other[] = "https://other.example";
    static char star[] = "*";
    static char site80[] = "http://site.example:80";
    static char app8443[] = "https://app.example:8443";
    memset(l, 0, sizeof(*l));
    if (which == ONLY_EXAMPLE) {
        l->n = 2;
        l->items[0] = other;
        l->items[1] = example;
    } else if (which == STAR) {
        l->n = 1;
        l->items[0] = star;
    } else if (which == WITH_PORTS) {
        l->n = 2;
        l->items[0] = site80;
        l->items[1] = app8443;
    }
}

static void test_table(void **state)
{
    (void)state;
    struct guard g = guard_new(GUARD_DATA);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct hs_case *c = &cases[i];
        size_t n = strlen(c->req);
        struct hs_request req;
        ssize_t r = hs_parse(guard_put(&g, c->req, n), n, &req);
        ssize_t want = c->parse == PARSED ? (ssize_t)n : c->parse;
        if (r != want)
            fail_msg("%s: parse got %zd want %zd", c->name, r, want);
        if (want < 0)
            continue;
        struct cfg_list l;
        origins_for(c->origins, &l);
        enum hs_verdict v = hs_check(&req, &l);
        if (v != c->verdict)
            fail_msg("%s: verdict %d want %d", c->name, (int)v, (int)c->verdict);
        /* Every strict prefix of a whole head needs more. */
        for (size_t k = 0; k < n; k++) {
            r = hs_parse(guard_put(&g, c->req, k), k, &req);
            if (r != HS_NEED_MORE)
                fail_msg("%s: prefix %zu got %zd", c->name, k, r);
        }
    }
    guard_free(&g);
}

static void assert_hs_str(struct str s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.p, want, s.len);
}

static void test_fields(void **state)
{
    (void)state;
    const char *r = RL WS_HDRS ORG END "trailing body bytes";
    struct hs_request req;
    size_t head = strlen(RL WS_HDRS ORG END);
    assert_int_equal(hs_parse(r, strlen(r), &req), (ssize_t)head);
    assert_hs_str(req.method, "GET");
    assert_hs_str(req.target, "/ws?channels=news");
    assert_hs_str(req.path, "/ws");
    assert_hs_str(req.query, "channels=news");
    assert_int_equal(req.minor_version, 1);
    assert_hs_str(req.host, "example.com");
    assert_hs_str(req.origin, "https://example.com");
    assert_hs_str(req.key, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_hs_str(req.version, "13");
    assert_int_equal(req.upgrade_websocket, 1);
    assert_int_equal(req.connection_upgrade, 1);
    assert_int_equal(req.nheaders, 6);
    assert_int_equal(req.duplicate, 0);

    const char *noq = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(hs_parse(noq, strlen(noq), &req), (ssize_t)strlen(noq));
    assert_hs_str(req.path, "/x");
    assert_int_equal(req.query.len, 0);
    assert_int_equal(req.origin.len, 0);
    assert_int_equal(req.upgrade_websocket, 0);
    assert_int_equal(req.sse, 0);
    assert_int_equal(req.last_event_id.len, 0);

    const char *sse = "GET /sse?channels=a HTTP/1.1\r\nHost: a\r\nLast-Event-ID:  6b-9 \r\n\r\n";
    assert_int_equal(hs_parse(sse, strlen(sse), &req), (ssize_t)strlen(sse));
    assert_int_equal(req.sse, 1);
    assert_hs_str(req.query, "channels=a");
    assert_hs_str(req.last_event_id, "6b-9");
}

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    assert_int_equal(hs_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(hs_accept_key("dGhlIHNhbXBsZSBub25jZQ=", 23, out), -1);
    assert_int_equal(hs_accept_key("dGhlIHNhbXBsZSBub25jZQ===", 25, out), -1);
    assert_int_equal(hs_accept_key(" dGhlIHNhbXBsZSBub25jZQ=", 24, out), -1);
    assert_int_equal(hs_accept_key("dGhlIHNhbXBsZSBub25jZQAA", 24, out), -1);
    assert_int_equal(hs_accept_key("", 0, out), -1);
    assert_int_equal(hs_accept_key(NULL, 0, out), -1);
}

/* Checks "Content-Length: N" against the bytes after the blank line. */
static void assert_body(const char *resp, const char *body)
{
    const char *cl = strstr(resp, "Content-Length: ");
    assert_non_null(cl);
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    b += 4;
    assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(b));
    if (body)
        assert_string_equal(b, body);
    assert_non_null(strstr(resp, "\r\nConnection: close\r\n"));
}

static void test_responses(void **state)
{
    (void)state;
    char out[512];
    struct hs_request req;
    const char *r = RL WS_HDRS END;
    assert_true(hs_parse(r, strlen(r), &req) > 0);

    int n = hs_response(HS_UPGRADE, &req, out, sizeof(out));
    const char *want = "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                       "\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(out, want);
    /* A stream's answers are sse.h's. */
    assert_int_equal(hs_response(HS_SSE, &req, out, sizeof(out)), -1);

    static const struct { enum hs_verdict v; const char *status; } errs[] = {
        { HS_BAD_REQUEST, "HTTP/1.1 400 " },
        { HS_NOT_FOUND, "HTTP/1.1 404 " },
        { HS_UPGRADE_REQUIRED, "HTTP/1.1 426 " },
        { HS_FORBIDDEN, "HTTP/1.1 403 " },
        { HS_SERVICE_UNAVAILABLE, "HTTP/1.1 503 " },
        { HS_HEALTHZ, "HTTP/1.1 200 " },
    };
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        /* Error pages need no request: 503 is answered before parsing. */
        n = hs_response(errs[i].v, NULL, out, sizeof(out));
        assert_true(n > 0);
        assert_int_equal((size_t)n, strlen(out));
        assert_memory_equal(out, errs[i].status, strlen(errs[i].status));
        assert_body(out, errs[i].v == HS_HEALTHZ ? "ok\n" : NULL);
    }
    n = hs_response(HS_UPGRADE_REQUIRED, NULL, out, sizeof(out));
    assert_non_null(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n"));

    /* Too small a buffer is refused, never truncated. */
    assert_int_equal(hs_response(HS_UPGRADE, &req, out, 50), -1);
    assert_int_equal(hs_response(HS_BAD_REQUEST, NULL, out, 20), -1);
    /* An upgrade answer needs a valid key. */
    assert_int_equal(hs_response(HS_UPGRADE, NULL, out, sizeof(out)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_responses),
    };
    return cmocka_run_group_tests_name("handshake", tests, NULL, NULL);
}
