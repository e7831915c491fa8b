/* sse: the event-stream bytes byte for byte — data lines split at every
 * CR, LF and CRLF (inputs against a guard page, so a read past them
 * crashes), message events made once per (message, channel) through the
 * msg cache, control events named by their type, the close event, the
 * response head and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"

#include "buf.h"
#include "msg.h"
#include "sse.h"

#define TS_PAGE 4096

static void ts_expect(rbuf_t *r, const char *want)
{
    assert_non_null(r);
    if (rbuf_len(r) != strlen(want) || memcmp(rbuf_data(r), want, rbuf_len(r)) != 0)
        fail_msg("got \"%.*s\", want \"%s\"", (int)rbuf_len(r), (const char *)rbuf_data(r), want);
    rbuf_unref(r);
}

static void test_data_lines(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } rows[] = {
        { "", "data: \n" },
        { "1", "data: 1\n" },
        { "{\"a\":1}", "data: {\"a\":1}\n" },
        { "[1,\n2]", "data: [1,\ndata: 2]\n" },
        { "[1,\r\n2]", "data: [1,\ndata: 2]\n" },
        { "[1,\r2]", "data: [1,\ndata: 2]\n" },
        { "[1,\n\r2]", "data: [1,\ndata: \ndata: 2]\n" },       /* LF then a lone CR: two breaks */
        { "[1,\r\n\r\n2]", "data: [1,\ndata: \ndata: 2]\n" },
        { "[\n  1\n]", "data: [\ndata:   1\ndata: ]\n" },      /* the reader strips one space only */
        { "1\n", "data: 1\n" },                                /* a trailing break adds no line */
        { "1\r\n", "data: 1\n" },
        { "\n1", "data: \ndata: 1\n" },
        { "\"\xc3\xa9\"", "data: \"\xc3\xa9\"\n" },
    };
    struct guard g = guard_new(TS_PAGE);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t n = strlen(rows[i].in);
        const char *in = guard_put(&g, rows[i].in, n);
        size_t len = sse_data_len(in, n);
        assert_int_equal(len, strlen(rows[i].out));
        unsigned char out[256];
        memset(out, 0xAA, sizeof(out));
        sse_data(in, n, out);
        assert_memory_equal(out, rows[i].out, len);
        assert_int_equal(out[len], 0xAA);      /* nothing past the length */
    }
    guard_free(&g);
}

static rbuf_t *ts_never(const struct msg *m, int chan)
{
    (void)m;
    (void)chan;
    fail_msg("encoded twice");
    return NULL;
}

static void test_message_event_cached(void **state)
{
    (void)state;
    struct str chans[2] = { { "news", 4 }, { "user/a@b", 8 } };
    const char *data = "{\n \"t\": \"x\"\r\n}";
    struct msg *m = msg_new((struct str){ "6b1-17", 6 }, chans, 2, (struct str){ data, strlen(data) });
    assert_non_null(m);
    size_t before = msg_bytes(m);
    rbuf_t *r0 = msg_encoding(m, MSG_SLOT_SSE, 0, sse_encode);
    rbuf_t *r1 = msg_encoding(m, MSG_SLOT_SSE, 1, sse_encode);
    ts_expect(rbuf_ref(r0), "id: 6b1-17\n"
                            "data: {\"type\":\"message\",\"channel\":\"news\",\"id\":\"6b1-17\",\"data\":{\n"
                            "data:  \"t\": \"x\"\n"
                            "data: }}\n\n");
    ts_expect(rbuf_ref(r1), "id: 6b1-17\n"
                            "data: {\"type\":\"message\",\"channel\":\"user/a@b\",\"id\":\"6b1-17\",\"data\":{\n"
                            "data:  \"t\": \"x\"\n"
                            "data: }}\n\n");
    /* Made once: later calls return the cached buffer. */
    assert_ptr_equal(msg_encoding(m, MSG_SLOT_SSE, 0, ts_never), r0);
    assert_ptr_equal(msg_encoding(m, MSG_SLOT_SSE, 1, ts_never), r1);
    assert_true(msg_bytes(m) >= before + rbuf_len(r0) + rbuf_len(r1));
    msg_unref(m);
}

static void test_control_and_close(void **state)
{
    (void)state;
    static const char sub[] = "{\"type\":\"subscribed\",\"channels\":[\"a\"],\"last_id\":\"1-0\"}";
    ts_expect(sse_control(sub, strlen(sub)), "event: subscribed\ndata: {\"type\":\"subscribed\",\"channels\":[\"a\"],\"last_id\":\"1-0\"}\n\n");
    static const char reset[] = "{\"type\":\"reset\",\"channels\":[\"a\"]}";
    ts_expect(sse_control(reset, strlen(reset)),
              "event: reset\ndata: {\"type\":\"reset\",\"channels\":[\"a\"]}\n\n");
    /* No usable type: a plain message event, the data still whole. */
    ts_expect(sse_control("{\"a\":1}", 7), "data: {\"a\":1}\n\n");
    ts_expect(sse_control("{\"type\":\"x y\"}", 14), "data: {\"type\":\"x y\"}\n\n");
    ts_expect(sse_control("{\"type\":\"", 9), "data: {\"type\":\"\n\n");
    ts_expect(sse_close_event(4401), "event: close\ndata: {\"type\":\"close\",\"code\":4401}\n\n");
    ts_expect(sse_close_event(1001), "event: close\ndata: {\"type\":\"close\",\"code\":1001}\n\n");
}

static void test_head_and_refusals(void **state)
{
    (void)state;
    struct buf b = { 0 };
    assert_int_equal(sse_head(&b, (struct str){ 0 }), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    assert_string_equal(buf_head(&b), "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                      "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
                                      "Connection: close\r\n\r\n");
    buf_free(&b);
    assert_int_equal(sse_head(&b, (struct str){ "https://a.example:8443", 22 }), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    assert_non_null(strstr(buf_head(&b), "Connection: close\r\nAccess-Control-Allow-Origin: "
                                         "https://a.example:8443\r\nVary: Origin\r\n\r\n"));
    buf_free(&b);

    static const struct {
        enum sse_refusal why;
        int close_code;
        const char *status, *error;
    } rows[] = {
        { SSE_BAD_CHANNELS, 4400, "400 Bad Request", "bad_channels" },
        { SSE_TOKEN, 4401, "401 Unauthorized", "token" },
        { SSE_NOT_COVERED, 4403, "403 Forbidden", "not_covered" },
        { SSE_INTERNAL, 1011, "500 Internal Server Error", "internal" },
        { SSE_ORIGIN, -1, "403 Forbidden", "origin" },
        { SSE_UNAVAILABLE, -1, "503 Service Unavailable", "unavailable" },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (rows[i].close_code > 0)
            assert_int_equal(sse_refusal_of(rows[i].close_code), rows[i].why);
        assert_int_equal(sse_refuse(&b, rows[i].why, (struct str){ "http://o", 8 }), 0);
        assert_int_equal(buf_append(&b, "", 1), 0);
        const char *page = buf_head(&b);
        char line[64];
        snprintf(line, sizeof(line), "HTTP/1.1 %s\r\n", rows[i].status);
        assert_memory_equal(page, line, strlen(line));
        const char *body = strstr(page, "\r\n\r\n");
        assert_non_null(body);
        body += 4;
        snprintf(line, sizeof(line), "{\"error\":\"%s\",\"message\":\"", rows[i].error);
        assert_memory_equal(body, line, strlen(line));
        char cl[48];
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", strlen(body));
        assert_non_null(strstr(page, cl));
        assert_non_null(strstr(page, "Content-Type: application/json\r\n"));
        assert_non_null(strstr(page, "Access-Control-Allow-Origin: http://o\r\n"));
        assert_true((strstr(page, "Retry-After: 5\r\n") != NULL) == (rows[i].why == SSE_UNAVAILABLE));
        buf_free(&b);
    }
    assert_int_equal(sse_refusal_of(1000), SSE_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_lines),
        cmocka_unit_test(test_message_event_cached),
        cmocka_unit_test(test_control_and_close),
        cmocka_unit_test(test_head_and_refusals),
    };
    return cmocka_run_group_tests_name("sse", tests, NULL, NULL);
}
