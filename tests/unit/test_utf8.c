/* utf8: a table of valid and invalid sequences (RFC 3629, Markus Kuhn's
 * stress-test categories), each checked against a guard page so a read
 * past the end crashes, plus every prefix of multi-byte sequences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "utf8.h"

struct utf8_case {
    const char *name;
    const char *s;
    size_t len;
    int valid;
};

#define C(name, lit, v) { name, lit, sizeof(lit) - 1, v }

static const struct utf8_case cases[] = {
    C("empty", "", 1),
    C("ascii", "hello, world", 1),
    C("NUL byte", "a\0b", 1),
    C("DEL", "\x7F", 1),
    C("2-byte min U+0080", "\xC2\x80", 1),
    C("2-byte max U+07FF", "\xDF\xBF", 1),
    C("3-byte min U+0800", "\xE0\xA0\x80", 1),
    C("U+D7FF", "\xED\x9F\xBF", 1),
    C("U+E000", "\xEE\x80\x80", 1),
    C("U+FFFD", "\xEF\xBF\xBD", 1),
    C("U+FFFF", "\xEF\xBF\xBF", 1),
    C("4-byte min U+10000", "\xF0\x90\x80\x80", 1),
    C("U+10FFFF", "\xF4\x8F\xBF\xBF", 1),
    C("mixed", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80!", 1),
    C("lone continuation 80", "\x80", 0),
    C("lone continuation BF", "\xBF", 0),
    C("continuation after ascii", "a\x80", 0),
    C("overlong C0 80 (NUL)", "\xC0\x80", 0),
    C("overlong C1 BF", "\xC1\xBF", 0),
    C("overlong E0 80 80", "\xE0\x80\x80", 0),
    C("overlong E0 9F BF", "\xE0\x9F\xBF", 0),
    C("overlong F0 80 80 80", "\xF0\x80\x80\x80", 0),
    C("overlong F0 8F BF BF", "\xF0\x8F\xBF\xBF", 0),
    C("overlong slash C0 AF", "\xC0\xAF", 0),
    C("surrogate U+D800", "\xED\xA0\x80", 0),
    C("surrogate U+DBFF", "\xED\xAF\xBF", 0),
    C("surrogate U+DC00", "\xED\xB0\x80", 0),
    C("surrogate U+DFFF", "\xED\xBF\xBF", 0),
    C("surrogate pair", "\xED\xA0\xBD\xED\xB8\x80", 0),
    C("U+110000", "\xF4\x90\x80\x80", 0),
    C("F5 lead", "\xF5\x80\x80\x80", 0),
    C("F7 BF BF BF", "\xF7\xBF\xBF\xBF", 0),
    C("5-byte F8", "\xF8\x88\x80\x80\x80", 0),
    C("6-byte FC", "\xFC\x84\x80\x80\x80\x80", 0),
    C("FE", "\xFE", 0),
    C("FF", "\xFF", 0),
    C("truncated 2-byte", "\xC3", 0),
    C("truncated 3-byte (1)", "\xE2", 0),
    C("truncated 3-byte (2)", "\xE2\x82", 0),
    C("truncated 4-byte (3)", "\xF0\x9F\x98", 0),
    C("truncated then ascii", "\xE2\x82" "a", 0),
    C("bad second byte", "\xC3\x28", 0),
    C("bad third byte", "\xE2\x82\x28", 0),
    C("bad fourth byte", "\xF0\x9F\x98\x28", 0),
    C("valid then invalid", "ok \xC3\xA9 \xFF", 0),
};

static void test_table(void **state)
{
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *base = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(base != MAP_FAILED);
    assert_int_equal(mprotect(base + page, page, PROT_NONE), 0);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct utf8_case *c = &cases[i];
        unsigned char *p = base + page - c->len;
        memcpy(p, c->s, c->len);
        if (utf8_valid(p, c->len) != c->valid)
            fail_msg("%s: expected %s", c->name, c->valid ? "valid" : "invalid");
    }
    munmap(base, 2 * page);
}

/* Every strict prefix of a multi-byte character is invalid; the prefix
 * ending on a character boundary is valid. */
static void test_prefixes(void **state)
{
    (void)state;
    const char *s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
    static const int boundary[] = { 1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1 };
    for (size_t k = 0; k <= strlen(s); k++)
        if (utf8_valid((const unsigned char *)s, k) != boundary[k])
            fail_msg("prefix %zu", k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_prefixes),
    };
    return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
