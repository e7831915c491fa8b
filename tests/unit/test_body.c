/* body: content types, JSON and form publish bodies (a table of inputs with
 * exact results), every truncated prefix of each input against a guard page
 * (an over-read crashes), and scratch sizing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "body.h"

/* Copies [s, s+len) so that it ends exactly at a PROT_NONE page. */
struct tb_guard {
    char  *map;
    size_t maplen;
    char  *p;
};

static void tb_guard_put(struct tb_guard *g, const char *s, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;
    g->maplen = (pages + 1) * page;
    g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->map != MAP_FAILED);
    assert_int_equal(mprotect(g->map + pages * page, page, PROT_NONE), 0);
    g->p = g->map + pages * page - len;
    memcpy(g->p, s, len);
}

static void tb_guard_free(struct tb_guard *g) { munmap(g->map, g->maplen); }

static void test_content_type(void **state)
{
    (void)state;
    static const struct { const char *ct; int want; } t[] = {
        { "application/json", BODY_JSON },
        { "Application/JSON", BODY_JSON },
        { "application/json; charset=utf-8", BODY_JSON },
        { "application/json;charset=\"UTF-8\"", BODY_JSON },
        { "application/json; charset=utf8 ", BODY_JSON },
        { "  application/json", BODY_JSON },
        { "application/x-www-form-urlencoded", BODY_FORM },
        { "application/x-www-form-urlencoded; charset=UTF-8", BODY_FORM },
        { "application/json; boundary=x", BODY_JSON },
        { "application/json; charset=iso-8859-1", BODY_E_CTYPE },
        { "application/jsonx", BODY_E_CTYPE },
        { "application/jso", BODY_E_CTYPE },
        { "text/plain", BODY_E_CTYPE },
        { "multipart/form-data; boundary=x", BODY_E_CTYPE },
        { "", BODY_E_CTYPE },
        { NULL, BODY_E_CTYPE },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int got = body_content_type(t[i].ct);
        if (got != t[i].want)
            fail_msg("'%s': got %d want %d", t[i].ct ? t[i].ct : "(null)", got, t[i].want);
    }
}

struct tb_case {
    int         type;
    const char *in;
    int         want;       /* 0 or a BODY_E_ code */
    const char *channels;   /* on success: names joined by ',' */
    int         listed;
    const char *data;       /* on success */
};

static const struct tb_case tb_cases[] = {
    /* JSON */
    { BODY_JSON, "{\"channel\":\"news\",\"data\":{\"a\":1}}", 0, "news", 0, "{\"a\":1}" },
    { BODY_JSON, "{\"data\":\"hi\",\"channel\":\"news\"}", 0, "news", 0, "\"hi\"" },
    { BODY_JSON, " { \"channel\" : \"a/b\" , \"data\" : [1, 2 , 3] } ", 0, "a/b", 0, "[1, 2 , 3]" },
    { BODY_JSON, "{\"channels\":[\"a\",\"b\"],\"data\":null}", 0, "a,b", 1, "null" },
    { BODY_JSON, "{\"channel\":\"n\",\"data\":123456789012345678901234567890}", 0, "n", 0, "123456789012345678901234567890" },
    /* Valid JSON is accepted exactly when ws-server accepts it (jansson
     * with ALLOW_NUL and INT_AS_REAL): big integers and \u0000 pass as
     * written; a number past a double's range is refused by both. */
    { BODY_JSON, "{\"channel\":\"n\",\"data\":1e999}", BODY_E_RANGE, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":\"n\",\"data\":[-1e400]}", BODY_E_RANGE, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":\"n\",\"data\":1e-400}", 0, "n", 0, "1e-400" },
    { BODY_JSON, "{\"channel\":\"n\",\"data\":{\"s\":\"a\\u0000b\"}}", 0, "n", 0, "{\"s\":\"a\\u0000b\"}" },
    { BODY_JSON, "{\"channel\":\"n\",\"data\":\"\\u0000\"}", 0, "n", 0, "\"\\u0000\"" },
    { BODY_JSON, "{\"channel\":\"n\",\"data\":{\"a\\u0000\":1}}", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":\"n\",\"data\":[12345678901234567890123, -0.5e-3]}", 0, "n", 0, "[12345678901234567890123, -0.5e-3]" },
    { BODY_JSON, "{\"channel\":\"n\",\"data\":0.1}", 0, "n", 0, "0.1" },
    { BODY_JSON, "{\"channel\":\"n\",\"data\":\"q\\\"}{,\"}", 0, "n", 0, "\"q\\\"}{,\"" },
    { BODY_JSON, "{\"channel\":\"n\",\"data\":{\"x\":[{},\"]\"]},\"channels\":null}", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_JSON, "{\"ch\\u0061nnel\":\"n\",\"d\\u0061ta\":true}", 0, "n", 0, "true" },
    { BODY_JSON, "{\"channel\":\"n\",\"data\":\"\\u00e9\"}", 0, "n", 0, "\"\\u00e9\"" },
    { BODY_JSON, "{\"channel\":\"news\"}", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_JSON, "{\"data\":1}", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":\"a\",\"channels\":[\"b\"],\"data\":1}", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":\"a\",\"data\":1,\"extra\":2}", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":\"a\",\"data\":1,\"data\":2}", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":5,\"data\":1}", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_JSON, "{\"channels\":\"a\",\"data\":1}", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_JSON, "{\"channels\":[5],\"data\":1}", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_JSON, "{\"channels\":[],\"data\":1}", BODY_E_CHANNEL, NULL, 0, NULL },
    { BODY_JSON, "{\"channels\":[\"a\",\"a\"],\"data\":1}", BODY_E_CHANNEL, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":\"a b\",\"data\":1}", BODY_E_CHANNEL, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":\"\",\"data\":1}", BODY_E_CHANNEL, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":\"a\\u0000\",\"data\":1}", BODY_E_CHANNEL, NULL, 0, NULL },
    { BODY_JSON, "{\"channels\":[\"a\",\"\\u0000\"],\"data\":1}", BODY_E_CHANNEL, NULL, 0, NULL },
    { BODY_JSON, "{\"channels\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\","
                 "\"12\",\"13\",\"14\",\"15\",\"16\",\"17\",\"18\",\"19\",\"20\",\"21\",\"22\",\"23\","
                 "\"24\",\"25\",\"26\",\"27\",\"28\",\"29\",\"30\",\"31\",\"32\",\"33\"],\"data\":1}",
      BODY_E_CHANNEL, NULL, 0, NULL },
    { BODY_JSON, "[\"channel\",\"data\"]", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_JSON, "\"x\"", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":\"a\",\"data\":1} x", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_JSON, "{\"channel\":\"a\",\"data\":\"\xff\"}", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_JSON, "", BODY_E_SYNTAX, NULL, 0, NULL },
    /* forms */
    { BODY_FORM, "channel=news&data=hello", 0, "news", 0, "\"hello\"" },
    { BODY_FORM, "data=a+b%20c&channel=user%2Falice", 0, "user/alice", 0, "\"a b c\"" },
    { BODY_FORM, "channels=a,b,c&data=", 0, "a,b,c", 1, "\"\"" },
    { BODY_FORM, "channel=n&data=%22%5C%0A%01%C3%A9", 0, "n", 0, "\"\\\"\\\\\\u000a\\u0001\xc3\xa9\"" },
    { BODY_FORM, "channel=n&data={\"a\":1}", 0, "n", 0, "\"{\\\"a\\\":1}\"" },
    { BODY_FORM, "ch%61nnel=n&d%61ta=x", 0, "n", 0, "\"x\"" },
    { BODY_FORM, "channel=n&data=x&data=y", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_FORM, "channel=n&channels=m&data=x", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_FORM, "channel=n&data=x&csrf=1", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_FORM, "channel=n", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_FORM, "data=x", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_FORM, "", BODY_E_FIELD, NULL, 0, NULL },
    { BODY_FORM, "channel=n&data=x&", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_FORM, "channel=n&&data=x", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_FORM, "channel=n&data", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_FORM, "channel=n&data=%zz", BODY_E_SYNTAX, NULL, 0, NULL },
    /* data keeps every byte, NUL included; names and keys never hold one */
    { BODY_FORM, "channel=n&data=%00", 0, "n", 0, "\"\\u0000\"" },
    { BODY_FORM, "channel=n&data=a%00b%00", 0, "n", 0, "\"a\\u0000b\\u0000\"" },
    { BODY_FORM, "channel=n&data=%00%00+%2500", 0, "n", 0, "\"\\u0000\\u0000 %00\"" },
    { BODY_FORM, "channel=n&data=12345678901234567890123", 0, "n", 0, "\"12345678901234567890123\"" },
    { BODY_FORM, "channel=n&data=%00%zz", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_FORM, "channel=n&data=%0", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_FORM, "channel=n&data=%%00", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_FORM, "channel=n%00&data=x", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_FORM, "channels=a,b%00&data=x", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_FORM, "channel=n&d%00ata=x", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_FORM, "channel=n&data=%ff", BODY_E_SYNTAX, NULL, 0, NULL },
    { BODY_FORM, "channel=a%20b&data=x", BODY_E_CHANNEL, NULL, 0, NULL },
    { BODY_FORM, "channel=&data=x", BODY_E_CHANNEL, NULL, 0, NULL },
    { BODY_FORM, "channels=a,,b&data=x", BODY_E_CHANNEL, NULL, 0, NULL },
    { BODY_FORM, "channels=a,a&data=x", BODY_E_CHANNEL, NULL, 0, NULL },
    { BODY_FORM, "averyveryverylongkey=1&channel=n&data=x", BODY_E_FIELD, NULL, 0, NULL },
    /* an unknown type */
    { 7, "channel=n&data=x", BODY_E_CTYPE, NULL, 0, NULL },
};

static void tb_check(const struct tb_case *c, const char *in, size_t len)
{
    char scratch[BODY_SCRATCH(1024)];
    struct body_msg m;
    assert_true(len <= 1024);
    int rc = body_parse(c->type, in, len, &m, scratch, BODY_SCRATCH(len));
    if (rc != c->want)
        fail_msg("'%s': got %d want %d", c->in, rc, c->want);
    if (rc != 0)
        return;
    char joined[2048] = "";
    for (int i = 0; i < m.nchannels; i++) {
        if (i)
            strcat(joined, ",");
        strncat(joined, m.channels[i].p, m.channels[i].len);
    }
    assert_string_equal(joined, c->channels);
    assert_int_equal(m.listed, c->listed);
    assert_int_equal(m.data_len, strlen(c->data));
    assert_memory_equal(m.data, c->data, m.data_len);
}

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof tb_cases / sizeof tb_cases[0]; i++) {
        struct tb_guard g;
        size_t len = strlen(tb_cases[i].in);
        tb_guard_put(&g, tb_cases[i].in, len);
        tb_check(&tb_cases[i], g.p, len);
        tb_guard_free(&g);
    }
}

/* Every strict prefix of every input, placed against the guard page: no
 * over-read, and a JSON prefix never parses (an object is only complete at
 * its closing brace). */
static void test_prefixes(void **state)
{
    (void)state;
    char scratch[BODY_SCRATCH(1024)];
    for (size_t i = 0; i < sizeof tb_cases / sizeof tb_cases[0]; i++) {
        const struct tb_case *c = &tb_cases[i];
        size_t len = strlen(c->in);
        for (size_t n = 0; n < len; n++) {
            struct tb_guard g;
            struct body_msg m;
            tb_guard_put(&g, c->in, n);
            int rc = body_parse(c->type, g.p, n, &m, scratch, BODY_SCRATCH(n));
            if (c->type == BODY_JSON && c->want == 0 && rc == 0 &&
                strspn(c->in + n, " ") != len - n)
                fail_msg("prefix %zu of '%s' parsed", n, c->in);
            if (rc > 0 || rc < BODY_E_RANGE)
                fail_msg("prefix %zu of '%s': code %d", n, c->in, rc);
            tb_guard_free(&g);
        }
    }
}

/* A scratch area one byte short of what the output needs is reported, not
 * overrun; the documented size always suffices. */
static void test_scratch(void **state)
{
    (void)state;
    static const char form[] = "channel=n&data=%01%01%01%01";
    char scratch[BODY_SCRATCH(sizeof form)];
    struct body_msg m;
    /* needs: "n\0" (2) + decoded data (5, reused) + escaped "\"" + 4*6 + "\"" (26) */
    size_t need = 0;
    for (size_t s = 0; s <= sizeof scratch; s++) {
        if (body_parse(BODY_FORM, form, strlen(form), &m, scratch, s) == 0) {
            need = s;
            break;
        }
    }
    assert_true(need > 0);
    assert_int_equal(m.data_len, 26);
    assert_int_equal(body_parse(BODY_FORM, form, strlen(form), &m, scratch, need - 1), BODY_E_SPACE);
    assert_true(BODY_SCRATCH(strlen(form)) >= need);
}

static void test_strerror(void **state)
{
    (void)state;
    for (int c = BODY_E_RANGE; c <= BODY_E_CTYPE; c++)
        assert_true(strlen(body_strerror(c)) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_scratch),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
