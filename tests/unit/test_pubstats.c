/* pubstats: the code slots, the histogram's bucket edges, the exposition
 * of several slots summed (exact lines), counts surviving a slot's pid
 * change, a child process's writes seen through the shared mapping, and
 * the process metrics summed over the recorded pids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "pubstats.h"

/* The text of the line starting with prefix (up to its '\n'), or NULL. */
static const char *ps_line(const struct buf *out, const char *prefix, char *line, size_t cap)
{
    const char *p = out->data + out->off, *end = p + buf_used(out);
    size_t n = strlen(prefix);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (len >= n && memcmp(p, prefix, n) == 0 && (p[n] == ' ' || p[n] == '{' || n == len)) {
            snprintf(line, cap, "%.*s", (int)len, p);
            return line;
        }
        p += len + 1;
    }
    return NULL;
}

static void ps_expect(const struct buf *out, const char *expected)
{
    char line[256], prefix[256];
    /* A comment line is looked up whole; a sample by its name and labels. */
    size_t sp = expected[0] == '#' ? strlen(expected) : strcspn(expected, " ");
    snprintf(prefix, sizeof(prefix), "%.*s", (int)sp, expected);
    const char *got = ps_line(out, prefix, line, sizeof(line));
    if (!got)
        fail_msg("no line %s", prefix);
    assert_string_equal(got, expected);
}

static void test_code_slots(void **state)
{
    (void)state;
    static const struct { int code, slot; } table[] = {
        { 200, 0 }, { 204, 1 }, { 403, 4 }, { 504, 13 },
        { 302, PUBSTATS_CODE_OTHER }, { 0, PUBSTATS_CODE_OTHER }, { -1, PUBSTATS_CODE_OTHER },
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        assert_int_equal(pubstats_code_slot(table[i].code), table[i].slot);
}

static void test_hist_edges(void **state)
{
    (void)state;
    for (int i = 0; i < PUBSTATS_BUCKETS - 1; i++) {
        struct pubstats_hist h = { 0 };
        pubstats_observe(&h, pubstats_bounds_ns[i]);
        pubstats_observe(&h, pubstats_bounds_ns[i] + 1);
        assert_int_equal(h.bucket[i], 1);
        assert_int_equal(h.bucket[i + 1], 1);
        assert_true(i == 0 || pubstats_bounds_ns[i] > pubstats_bounds_ns[i - 1]);
    }
}

static void test_sum_over_slots(void **state)
{
    (void)state;
    pubstats_t *s = pubstats_map(3, 0);
    assert_non_null(s);
    struct pubstats_slot *a = pubstats_slot(s, 0), *b = pubstats_slot(s, 2);
    pubstats_request(a, PUBSTATS_PUBLISH, 200, 50000);        /* 50 us */
    pubstats_request(b, PUBSTATS_PUBLISH, 200, 100000);       /* on the first edge */
    pubstats_request(b, PUBSTATS_PUBLISH, 403, 300000);       /* 300 us */
    pubstats_request(a, PUBSTATS_OTHER, 302, 20000000000ull); /* 20 s: +Inf, code other */
    pubstats_add(&a->tokens_issued, 2);
    pubstats_add(&b->tokens_issued, 3);
    pubstats_observe(&b->ack_wait, 1000);
    pubstats_link(a, 1);
    pubstats_link(b, 1);
    pubstats_link(b, 0);
    pubstats_link(b, 1);          /* b's second connection: one reconnect */
    pubstats_link(a, 0);
    assert_int_equal(pubstats_links_up(s), 1);

    struct buf out = { 0 };
    assert_int_equal(pubstats_write(&out, s), 0);
    static const char *const lines[] = {
        "wspush_publisher_requests_total{endpoint=\"publish\",code=\"200\"} 2",
        "wspush_publisher_requests_total{endpoint=\"publish\",code=\"403\"} 1",
        "wspush_publisher_requests_total{endpoint=\"token\",code=\"200\"} 0",
        "wspush_publisher_requests_total{endpoint=\"other\",code=\"other\"} 1",
        "wspush_publisher_request_duration_seconds_bucket{endpoint=\"publish\",le=\"0.0001\"} 2",
        "wspush_publisher_request_duration_seconds_bucket{endpoint=\"publish\",le=\"0.0005\"} 3",
        "wspush_publisher_request_duration_seconds_bucket{endpoint=\"publish\",le=\"+Inf\"} 3",
        "wspush_publisher_request_duration_seconds_sum{endpoint=\"publish\"} 0.000450000",
        "wspush_publisher_request_duration_seconds_count{endpoint=\"publish\"} 3",
        "wspush_publisher_request_duration_seconds_bucket{endpoint=\"other\",le=\"10\"} 0",
        "wspush_publisher_request_duration_seconds_count{endpoint=\"other\"} 1",
        "wspush_publisher_ack_wait_seconds_bucket{le=\"0.0001\"} 1",
        "wspush_publisher_ack_wait_seconds_sum 0.000001000",
        "wspush_publisher_ack_wait_seconds_count 1",
        "wspush_publisher_link_up 1",
        "wspush_publisher_link_reconnects_total 1",
        "wspush_publisher_tokens_issued_total 5",
        "# TYPE wspush_publisher_link_up gauge",
        "# TYPE process_cpu_seconds_total counter",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        ps_expect(&out, lines[i]);
    buf_free(&out);
    pubstats_unmap(s);
}

/* A worker is another process: what it adds shows in the parent's view of
 * the mapping, and what it left stays when its slot gets a new pid. */
static void test_child_writes_and_restart(void **state)
{
    (void)state;
    pubstats_t *s = pubstats_map(2, getpid());
    assert_non_null(s);
    for (int round = 0; round < 2; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct pubstats_slot *sl = pubstats_slot(s, 1);
            for (int i = 0; i < 1000; i++)
                pubstats_request(sl, PUBSTATS_PUBLISH, 200, 1000);
            pubstats_link(sl, 1);
            _exit(0);
        }
        pubstats_slot(s, 1)->pid = pid;
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        pubstats_slot(s, 1)->pid = 0;
        pubstats_set(&pubstats_slot(s, 1)->link_up, 0);
    }
    struct buf out = { 0 };
    assert_int_equal(pubstats_write(&out, s), 0);
    ps_expect(&out, "wspush_publisher_requests_total{endpoint=\"publish\",code=\"200\"} 2000");
    ps_expect(&out, "wspush_publisher_link_up 0");
    ps_expect(&out, "wspush_publisher_link_reconnects_total 1");
    buf_free(&out);
    pubstats_unmap(s);
}

/* The process metrics: this process as the supervisor plus a live child
 * recorded in a slot; a pid that is gone is left out. */
static void test_processes(void **state)
{
    (void)state;
    pubstats_t *s = pubstats_map(2, getpid());
    assert_non_null(s);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char c;
        close(pfd[1]);
        (void)read(pfd[0], &c, 1);
        _exit(0);
    }
    close(pfd[0]);
    struct buf one = { 0 }, two = { 0 };
    assert_int_equal(pubstats_write(&one, s), 0);
    pubstats_slot(s, 0)->pid = pid;
    pubstats_slot(s, 1)->pid = 999999999;   /* no such process */
    assert_int_equal(pubstats_write(&two, s), 0);
    char l1[256], l2[256];
    assert_non_null(ps_line(&one, "process_open_fds", l1, sizeof(l1)));
    assert_non_null(ps_line(&two, "process_open_fds", l2, sizeof(l2)));
    long fds1 = strtol(strchr(l1, ' ') + 1, NULL, 10), fds2 = strtol(strchr(l2, ' ') + 1, NULL, 10);
    assert_true(fds1 >= 3);
    assert_true(fds2 > fds1);
    assert_non_null(ps_line(&two, "process_start_time_seconds", l2, sizeof(l2)));
    double start = strtod(strchr(l2, ' ') + 1, NULL), now = (double)time(NULL);
    assert_true(start > now - 3600 && start <= now + 1);
    close(pfd[1]);
    int st;
    waitpid(pid, &st, 0);
    buf_free(&one);
    buf_free(&two);
    pubstats_unmap(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_slots),
        cmocka_unit_test(test_hist_edges),
        cmocka_unit_test(test_sum_over_slots),
        cmocka_unit_test(test_child_writes_and_restart),
        cmocka_unit_test(test_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
