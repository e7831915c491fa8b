/* log: the escaping every line goes through (a table, every byte value,
 * every output capacity), then log_msg itself with fd 2 redirected to a
 * pipe: one line, the prefix, the text escaped, nothing raw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static void test_escape_table(void **state)
{
    (void)state;
    static const struct { const char *in; size_t len; const char *want; } t[] = {
        { "", 0, "" },
        { "plain text", 10, "plain text" },
        { "\x1b[31mred", 8, "\\x1b[31mred" },
        { "a\nb\rc", 5, "a\\x0ab\\x0dc" },
        { "tab\there", 8, "tab\\x09here" },
        { "nul\0x", 5, "nul\\x00x" },
        { "del\x7f", 4, "del\\x7f" },
        { "\x1f", 1, "\\x1f" },
        { " ~", 2, " ~" },
        { "back\\slash", 10, "back\\\\slash" },
        { "\\x1b", 4, "\\\\x1b" },
        { "caf\xc3\xa9 \xe2\x82\xac", 9, "caf\xc3\xa9 \xe2\x82\xac" },
        /* Not UTF-8 (a stray continuation, 0xff, an overlong '/', a
         * surrogate, a cut sequence) and C1 controls (U+009B, the 8-bit
         * CSI) are escaped byte by byte; other UTF-8 passes. */
        { "\x80\xff", 2, "\\x80\\xff" },
        { "\xc0\xaf", 2, "\\xc0\\xaf" },
        { "\xed\xa0\x80", 3, "\\xed\\xa0\\x80" },
        { "\xe2\x82", 2, "\\xe2\\x82" },
        { "\xc2\x9b" "31m", 5, "\\xc2\\x9b31m" },
        { "\xc2\xa0\xc2\x85", 4, "\xc2\xa0\\xc2\\x85" },
        { "\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char out[64];
        size_t used = 99;
        size_t n = log_escape(t[i].in, t[i].len, out, sizeof out, &used);
        if (n != strlen(t[i].want) || memcmp(out, t[i].want, n) != 0)
            fail_msg("case %zu: got '%.*s' want '%s'", i, (int)n, out, t[i].want);
        assert_int_equal(used, t[i].len);
    }
}

/* Every byte value alone: controls, DEL and every byte >= 0x80 (alone it
 * is never well-formed UTF-8) as \xNN, backslash doubled, the rest
 * unchanged. */
static void test_escape_every_byte(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        char in = (char)c, out[8], want[8];
        size_t n = log_escape(&in, 1, out, sizeof out, NULL);
        if (c < 0x20 || c >= 0x7f)
            snprintf(want, sizeof want, "\\x%02x", c);
        else if (c == '\\')
            strcpy(want, "\\\\");
        else
            want[0] = (char)c, want[1] = 0;
        if (n != strlen(want) || memcmp(out, want, n) != 0)
            fail_msg("byte 0x%02x: got '%.*s' want '%s'", c, (int)n, out, want);
    }
}

/* Every capacity from 0 to the full size: the output is a prefix of the
 * full escape that ends on an escape boundary, and `used` counts exactly
 * the input bytes whose escapes are in it. */
static void test_escape_every_capacity(void **state)
{
    (void)state;
    static const char in[] = "a\x1b" "b\\c\n\xc3\xa9\x7f";
    const size_t len = sizeof in - 1;
    char full[64];
    size_t full_n = log_escape(in, len, full, sizeof full, NULL);
    assert_int_equal(full_n, strlen("a\\x1bb\\\\c\\x0a\xc3\xa9\\x7f"));
    for (size_t cap = 0; cap <= full_n; cap++) {
        char out[64];
        size_t used;
        size_t n = log_escape(in, len, out, cap, &used);
        assert_true(n <= cap);
        assert_memory_equal(out, full, n);
        char again[64];
        assert_int_equal(log_escape(in, used, again, sizeof again, NULL), n);
        /* One more byte of input would not have fitted. */
        if (used < len)
            assert_true(log_escape(in, used + 1, again, sizeof again, NULL) > cap);
    }
}

/* Between capture_begin and capture_end fd 2 is the write end of a pipe;
 * capture_end returns what was written to it. */
struct capture { int rd, saved; };

static struct capture capture_begin(void)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stderr);
    struct capture c = { p[0], dup(2) };
    assert_true(c.saved >= 0);
    assert_int_equal(dup2(p[1], 2), 2);
    close(p[1]);
    return c;
}

static size_t capture_end(struct capture c, char *buf, size_t cap)
{
    fflush(stderr);
    assert_int_equal(dup2(c.saved, 2), 2);
    close(c.saved);
    size_t n = 0;
    ssize_t r;
    while (n < cap && (r = read(c.rd, buf + n, cap - n)) > 0)
        n += (size_t)r;
    close(c.rd);
    return n;
}

static void test_log_msg_escapes(void **state)
{
    (void)state;
    log_init("ws-server", LOG_INFO);
    char out[LOG_LINE_MAX * 2];
    struct capture c = capture_begin();
    log_warn("origin '%s' refused", "http://\x1b[31mevil\r\nfake line\\ \xc3\xa9");
    size_t n = capture_end(c, out, sizeof out);
    assert_true(n > 0);
    const char *want = " warn ws-server: origin 'http://\\x1b[31mevil\\x0d\\x0afake line\\\\ "
                       "\xc3\xa9' refused\n";
    assert_true(n > strlen(want));
    assert_memory_equal(out + n - strlen(want), want, strlen(want));
    /* One line, and no control byte but its final newline. */
    for (size_t i = 0; i + 1 < n; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            fail_msg("raw byte 0x%02x at %zu", (unsigned char)out[i], i);
    assert_int_equal(out[n - 1], '\n');
}

/* A text of nothing but control bytes is cut to the line bound, on an
 * escape boundary, still one line. */
static void test_log_msg_long(void **state)
{
    (void)state;
    log_init("ws-server", LOG_INFO);
    char text[1500];
    memset(text, 0x1b, sizeof text - 1);
    text[sizeof text - 1] = 0;
    char out[LOG_LINE_MAX * 2];
    struct capture c = capture_begin();
    log_error("%s", text);
    size_t n = capture_end(c, out, sizeof out);
    assert_true(n <= LOG_LINE_MAX);
    assert_int_equal(out[n - 1], '\n');
    const char *t = strstr(out, "ws-server: ");
    assert_non_null(t);
    t += strlen("ws-server: ");
    size_t tl = (size_t)(out + n - 1 - t);
    assert_true(tl > 0);
    assert_int_equal(tl % 4, 0);
    for (size_t i = 0; i < tl; i += 4)
        assert_memory_equal(t + i, "\\x1b", 4);
}

static void test_log_msg_level_filter(void **state)
{
    (void)state;
    log_init("ws-server", LOG_WARN);
    char out[256];
    struct capture c = capture_begin();
    log_info("%s", "hidden");
    assert_int_equal(capture_end(c, out, sizeof out), 0);
    c = capture_begin();
    log_error("%s", "shown");
    assert_true(capture_end(c, out, sizeof out) > 0);
    log_init("ws-server", LOG_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_table),
        cmocka_unit_test(test_escape_every_byte),
        cmocka_unit_test(test_escape_every_capacity),
        cmocka_unit_test(test_log_msg_escapes),
        cmocka_unit_test(test_log_msg_long),
        cmocka_unit_test(test_log_msg_level_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
