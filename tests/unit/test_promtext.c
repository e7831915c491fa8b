/* promtext: the line parser as a table (samples, comments, refusals),
 * every truncated prefix needs more, inputs against a guard page, and
 * label look-up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"

#include "promtext.h"

#define GUARD_DATA (16 * 1024)

enum { SAMPLE = 1, COMMENT = 2 };

struct pt_case {
    const char *line;
    int         want;        /* SAMPLE, COMMENT or PROM_E_MALFORMED */
    const char *name;
    const char *labels;
    double      value;
};

static const struct pt_case cases[] = {
    { "wspush_channels 3\n", SAMPLE, "wspush_channels", "", 3 },
    { "a{code=\"1013\"} 2\n", SAMPLE, "a", "code=\"1013\"", 2 },
    { "a_bucket{le=\"+Inf\",x=\"y\",} 7 1700000000000\n", SAMPLE, "a_bucket", "le=\"+Inf\",x=\"y\",", 7 },
    { "a{v=\"q\\\"}\"} 1.5e3\n", SAMPLE, "a", "v=\"q\\\"}\"", 1500 },
    { "ns:sub_total\t+Inf\n", SAMPLE, "ns:sub_total", "", 1.0 / 0.0 },
    { "a 0.000004304\r\n", SAMPLE, "a", "", 0.000004304 },
    { "# HELP a b\n", COMMENT, NULL, NULL, 0 },
    { "# TYPE a counter\n", COMMENT, NULL, NULL, 0 },
    { "\n", COMMENT, NULL, NULL, 0 },
    { "   \n", COMMENT, NULL, NULL, 0 },
    { "1a 3\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a \n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a x\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a 3x\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a 3 4 5\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a{b=\"c\" 3\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a{b=c} 3\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a{=\"c\"} 3\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a{b=\"c} 3\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a{b=\"c\"d=\"e\"} 3\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a{b=\"c\"}3\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a-b 3\n", PROM_E_MALFORMED, NULL, NULL, 0 },
    { "a 12345678901234567890123456789012345678901234567890123456789012345\n", PROM_E_MALFORMED,
      NULL, NULL, 0 },
};

static void test_table(void **state)
{
    (void)state;
    struct guard g = guard_new(GUARD_DATA);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pt_case *c = &cases[i];
        size_t len = strlen(c->line);
        struct prom_sample s;
        ssize_t n = prom_parse_line(guard_put(&g, c->line, len), len, &s);
        if (c->want == PROM_E_MALFORMED) {
            if (n != PROM_E_MALFORMED)
                fail_msg("'%s': %zd, want malformed", c->line, n);
        } else {
            if (n != (ssize_t)len)
                fail_msg("'%s': %zd, want %zu", c->line, n, len);
            if (c->want == COMMENT) {
                assert_int_equal(s.name.len, 0);
            } else {
                assert_int_equal(s.name.len, strlen(c->name));
                assert_memory_equal(s.name.p, c->name, s.name.len);
                assert_int_equal(s.labels.len, strlen(c->labels));
                assert_memory_equal(s.labels.p, c->labels, s.labels.len);
                assert_true(s.value == c->value);
            }
        }
        /* Without its '\n' a line is not complete, whatever it holds. */
        for (size_t k = 0; k < len; k++) {
            const char *p = guard_put(&g, c->line, k);
            if (memchr(p, '\n', k))
                continue;
            if (prom_parse_line(p, k, &s) != PROM_NEED_MORE)
                fail_msg("'%s': prefix %zu not need-more", c->line, k);
        }
    }
    guard_free(&g);
}

/* Lines in sequence, as cli_stats reads a scrape. */
static void test_sequence(void **state)
{
    (void)state;
    static const char text[] = "# HELP x y\n# TYPE x gauge\nx 1\n\ny{a=\"b\"} 2\nz 3";
    const char *p = text;
    size_t len = sizeof(text) - 1;
    double sum = 0;
    int samples = 0;
    for (;;) {
        struct prom_sample s;
        ssize_t n = prom_parse_line(p, len, &s);
        if (n == PROM_NEED_MORE)
            break;
        assert_true(n > 0);
        if (s.name.len) {
            samples++;
            sum += s.value;
        }
        p += n;
        len -= (size_t)n;
    }
    assert_int_equal(samples, 2);
    assert_true(sum == 3);
    assert_string_equal(p, "z 3");   /* the unterminated last line is left */
}

static void test_label(void **state)
{
    (void)state;
    struct str labels = { "reason=\"origin\",code=\"10\\\"13\",le=\"+Inf\"", 0 };
    labels.len = strlen(labels.p);
    struct str v;
    assert_int_equal(prom_label(labels, "reason", &v), 1);
    assert_int_equal(v.len, 6);
    assert_memory_equal(v.p, "origin", 6);
    assert_int_equal(prom_label(labels, "code", &v), 1);
    assert_int_equal(v.len, 6);
    assert_memory_equal(v.p, "10\\\"13", 6);
    assert_int_equal(prom_label(labels, "le", &v), 1);
    assert_memory_equal(v.p, "+Inf", 4);
    assert_int_equal(prom_label(labels, "reaso", &v), 0);
    assert_int_equal(prom_label(labels, "transport", &v), 0);
    assert_int_equal(prom_label((struct str){ "", 0 }, "a", &v), 0);
    assert_int_equal(prom_label((struct str){ "a=b", 3 }, "a", &v), PROM_E_MALFORMED);
    assert_int_equal(prom_label((struct str){ "a=\"b\"c=\"d\"", 10 }, "c", &v), PROM_E_MALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_sequence),
        cmocka_unit_test(test_label),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
