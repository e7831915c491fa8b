/* stats: the exposition of a known view line by line (names, labels,
 * HELP/TYPE before every family's samples, cumulative buckets), the close
 * code slots, the histogram's bucket edges and /proc/self. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "buf.h"
#include "stats.h"

struct st_fixture {
    struct stats_counts  c;
    struct stats_view    v;
    struct buf           out;
};

static int st_setup(void **state)
{
    struct st_fixture *f = calloc(1, sizeof(*f));
    f->c.conn.accepted = 7;
    f->c.conn.open = 3;
    f->c.conn.sse_accepted = 4;
    f->c.conn.sse_open = 2;
    f->c.conn.closed[stats_close_slot(1013)] = 2;
    f->c.conn.closed[stats_close_slot(3000)] = 5;
    f->c.conn.refused.n[STATS_REFUSED_ORIGIN] = 1;
    f->c.conn.refused.n[STATS_REFUSED_LIMIT] = 4;
    f->c.conn.deflate_upgrades = 21;
    f->c.conn.deflate_compressed = 22;
    f->c.conn.deflate_plain = 23;
    f->c.conn.deflate_in_bytes = 24000;
    f->c.conn.deflate_out_bytes = 2500;
    f->c.server.refused.n[STATS_REFUSED_LIMIT] = 6;
    f->c.session.refused.n[STATS_REFUSED_TOKEN] = 9;
    f->c.session.replayed = 11;
    f->c.session.resumes_exact = 12;
    f->c.session.resumes_reset = 13;
    f->c.hub.deliveries = 300;
    f->c.hub.delivery_bytes = 18446744073709551615ull;
    f->c.hub.subscriptions = 14;
    f->c.pubsock.ok = 100;
    f->c.pubsock.refused = 2;
    f->c.pubsock.error = 1;
    f->c.tls.handshakes_ok = 21;
    f->c.tls.handshakes_failed = 22;
    stats_hist_observe(&f->c.pubsock.fanout, 50000);       /* 50 us */
    stats_hist_observe(&f->c.pubsock.fanout, 100000);      /* on the first edge */
    stats_hist_observe(&f->c.pubsock.fanout, 3000000);     /* 3 ms */
    stats_hist_observe(&f->c.pubsock.fanout, 9000000000ull); /* 9 s: +Inf */
    f->c.published = 99;
    f->c.channels = 15;
    f->c.history_messages = 16;
    f->c.history_bytes = 17;
    f->v = (struct stats_view){
        .process = { .rss_bytes = 4096, .cpu_seconds = 1.25, .open_fds = 8, .start_time = 1764700000.5 },
    };
    stats_view_of(&f->v, &f->c);
    *state = f;
    return 0;
}

static int st_teardown(void **state)
{
    struct st_fixture *f = *state;
    buf_free(&f->out);
    free(f);
    return 0;
}

static const char *st_text(struct st_fixture *f)
{
    assert_int_equal(stats_write(&f->out, &f->v), 0);
    assert_int_equal(buf_append(&f->out, "", 1), 0);    /* NUL for strstr */
    return buf_head(&f->out);
}

static const char *const want_lines[] = {
    "wspush_connections{transport=\"ws\"} 3\n",
    "wspush_connections{transport=\"sse\"} 2\n",
    "wspush_connections_accepted_total{transport=\"ws\"} 7\n",
    "wspush_connections_accepted_total{transport=\"sse\"} 4\n",
    "wspush_handshakes_refused_total{reason=\"origin\"} 1\n",
    "wspush_handshakes_refused_total{reason=\"token\"} 9\n",
    "wspush_handshakes_refused_total{reason=\"channels\"} 0\n",
    "wspush_handshakes_refused_total{reason=\"not_covered\"} 0\n",
    "wspush_handshakes_refused_total{reason=\"limit\"} 10\n",
    "wspush_handshakes_refused_total{reason=\"per_ip\"} 0\n",
    "wspush_handshakes_refused_total{reason=\"version\"} 0\n",
    "wspush_handshakes_refused_total{reason=\"bad_request\"} 0\n",
    "wspush_connections_closed_total{code=\"1000\"} 0\n",
    "wspush_connections_closed_total{code=\"1013\"} 2\n",
    "wspush_connections_closed_total{code=\"4403\"} 0\n",
    "wspush_connections_closed_total{code=\"other\"} 5\n",
    "wspush_deflate_connections_total 21\n",
    "wspush_deflate_messages_total{result=\"compressed\"} 22\n",
    "wspush_deflate_messages_total{result=\"plain\"} 23\n",
    "wspush_deflate_input_bytes_total 24000\n",
    "wspush_deflate_output_bytes_total 2500\n",
    "wspush_channels 15\n",
    "wspush_subscriptions 14\n",
    "wspush_messages_published_total 99\n",
    "wspush_deliveries_total 300\n",
    "wspush_delivery_bytes_total 18446744073709551615\n",
    "wspush_replayed_messages_total 11\n",
    "wspush_resumes_total{outcome=\"exact\"} 12\n",
    "wspush_resumes_total{outcome=\"reset\"} 13\n",
    "wspush_history_messages 16\n",
    "wspush_history_bytes 17\n",
    "wspush_publish_socket_requests_total{result=\"ok\"} 100\n",
    "wspush_publish_socket_requests_total{result=\"refused\"} 2\n",
    "wspush_publish_socket_requests_total{result=\"error\"} 1\n",
    "wspush_tls_handshakes_total{result=\"ok\"} 21\n",
    "wspush_tls_handshakes_total{result=\"failed\"} 22\n",
    "wspush_fanout_seconds_bucket{le=\"0.0001\"} 2\n",
    "wspush_fanout_seconds_bucket{le=\"0.0025\"} 2\n",
    "wspush_fanout_seconds_bucket{le=\"0.005\"} 3\n",
    "wspush_fanout_seconds_bucket{le=\"2.5\"} 3\n",
    "wspush_fanout_seconds_bucket{le=\"+Inf\"} 4\n",
    "wspush_fanout_seconds_sum 9.003150000\n",
    "wspush_fanout_seconds_count 4\n",
    "process_resident_memory_bytes 4096\n",
    "process_cpu_seconds_total 1.250\n",
    "process_open_fds 8\n",
    "process_start_time_seconds 1764700000.500\n",
};

static void test_samples(void **state)
{
    const char *text = st_text(*state);
    for (size_t i = 0; i < sizeof(want_lines) / sizeof(want_lines[0]); i++) {
        /* Whole lines: preceded by a newline. */
        char line[160];
        snprintf(line, sizeof(line), "\n%s", want_lines[i]);
        if (!strstr(text, line))
            fail_msg("missing line: %s--- got:\n%s", want_lines[i], text);
    }
}

/* Every sample's family was announced by HELP then TYPE just before its
 * first sample, once; nothing but samples, HELP and TYPE lines. */
static void test_help_and_type_first(void **state)
{
    const char *text = st_text(*state);
    char family[128] = "";
    int nfamilies = 0;
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        assert_non_null(eol);
        size_t n = (size_t)(eol - p);
        char line[512];
        assert_true(n < sizeof(line));
        memcpy(line, p, n);
        line[n] = '\0';
        if (strncmp(line, "# HELP ", 7) == 0) {
            char name[128];
            assert_int_equal(sscanf(line + 7, "%127s", name), 1);
            assert_true(strlen(line) > 8 + strlen(name));     /* a text follows */
            const char *next = eol + 1;
            char type_line[160];
            snprintf(type_line, sizeof(type_line), "# TYPE %s ", name);
            assert_int_equal(strncmp(next, type_line, strlen(type_line)), 0);
            snprintf(family, sizeof(family), "%s", name);
            nfamilies++;
        } else if (strncmp(line, "# TYPE ", 7) != 0) {
            assert_int_not_equal(line[0], '#');
            assert_true(family[0]);
            /* A sample of the current family (histograms add suffixes). */
            if (strncmp(line, family, strlen(family)) != 0)
                fail_msg("sample '%s' outside its family '%s'", line, family);
            char c = line[strlen(family)];
            assert_true(c == ' ' || c == '{' || c == '_');
        }
        p = eol + 1;
    }
    assert_int_equal(nfamilies, 24);
}

static void test_close_slots(void **state)
{
    (void)state;
    static const int listed[] = { STATS_CLOSE_CODES_LIST };
    for (int i = 0; i < STATS_CLOSE_OTHER; i++)
        assert_int_equal(stats_close_slot(listed[i]), i);
    static const int other[] = { 0, 999, 1003, 1005, 1012, 3000, 4000, 4402, 4999, -1, 65535 };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        assert_int_equal(stats_close_slot(other[i]), STATS_CLOSE_OTHER);
}

/* A value on an edge is in that bucket (le: less or equal). */
static void test_hist_edges(void **state)
{
    (void)state;
    for (int i = 0; i < STATS_HIST_BUCKETS - 1; i++) {
        struct stats_hist h = { 0 };
        stats_hist_observe(&h, stats_hist_bounds_ns[i]);
        stats_hist_observe(&h, stats_hist_bounds_ns[i] + 1);
        assert_int_equal(h.bucket[i], 1);
        assert_int_equal(h.bucket[i + 1], 1);
        assert_int_equal(h.count, 2);
        assert_true(i == 0 || stats_hist_bounds_ns[i] > stats_hist_bounds_ns[i - 1]);
    }
    struct stats_hist h = { 0 };
    stats_hist_observe(&h, 0);
    stats_hist_observe(&h, UINT64_MAX / 2);
    assert_int_equal(h.bucket[0], 1);
    assert_int_equal(h.bucket[STATS_HIST_BUCKETS - 1], 1);
}

/* What a worker publishes is what its view shows; a worker gone keeps
 * its counters in a sum but none of its gauges. */
static void test_counts(void **state)
{
    struct st_fixture *f = *state;
    struct stats_counts c;
    stats_counts_of(&f->v, &c);
    assert_memory_equal(&c, &f->c, sizeof(c));
    stats_counts_drop_gauges(&c);
    assert_int_equal(c.conn.open, 0);
    assert_int_equal(c.conn.sse_open, 0);
    assert_int_equal(c.hub.subscriptions, 0);
    assert_int_equal(c.channels, 0);
    assert_int_equal(c.history_messages, 0);
    assert_int_equal(c.history_bytes, 0);
    assert_int_equal(c.conn.accepted, 7);
    assert_int_equal(c.hub.deliveries, 300);
    assert_int_equal(c.published, 99);
    assert_int_equal(c.pubsock.fanout.count, 4);
}

static void test_process(void **state)
{
    (void)state;
    struct stats_process p;
    assert_int_equal(stats_process_read(&p), 0);
    assert_true(p.rss_bytes > 4096);
    assert_true(p.open_fds >= 3);
    assert_true(p.cpu_seconds >= 0);
    double now = (double)time(NULL);
    assert_true(p.start_time > now - 3600 && p.start_time <= now + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_samples, st_setup, st_teardown),
        cmocka_unit_test_setup_teardown(test_help_and_type_first, st_setup, st_teardown),
        cmocka_unit_test_setup_teardown(test_counts, st_setup, st_teardown),
        cmocka_unit_test(test_close_slots),
        cmocka_unit_test(test_hist_edges),
        cmocka_unit_test(test_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
