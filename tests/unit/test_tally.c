/* tally: max_connections as a total over worker slots, counters summed
 * over the slots and the workers gone, across a fork. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tally.h"

static void test_admit_is_a_total(void **state)
{
    (void)state;
    tally_t *t = tally_map(3, getpid());
    assert_non_null(t);
    /* max 2 over three slots. */
    assert_int_equal(tally_admit(t, 0, 0, 2), 1);
    assert_int_equal(tally_admit(t, 1, 0, 2), 1);
    assert_int_equal(tally_admit(t, 2, 0, 2), 0);
    assert_int_equal(tally_admit(t, 1, 1, 2), 0);
    /* A refusal leaves the slot at the caller's count. */
    tally_connections(t, 0, 0);
    assert_int_equal(tally_admit(t, 2, 0, 2), 1);
    assert_int_equal(tally_admit(t, 0, 0, 2), 0);
    /* A worker gone frees its connections' places. */
    tally_retire(t, 1, 0);
    assert_int_equal(tally_admit(t, 0, 0, 2), 1);
    tally_unmap(t);
}

static void test_sum_survives_a_worker_gone(void **state)
{
    (void)state;
    tally_t *t = tally_map(2, getpid());
    assert_non_null(t);
    struct stats_counts c = { 0 }, sum;
    /* A worker publishing from its own process, as the forked ones do. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        c.conn.accepted = 5;
        c.conn.open = 3;
        c.hub.deliveries = 40;
        c.channels = 2;
        tally_publish(t, 0, &c);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    c = (struct stats_counts){ 0 };
    c.conn.accepted = 2;
    c.conn.open = 1;
    c.channels = 1;
    tally_publish(t, 1, &c);
    tally_sum(t, &sum);
    assert_int_equal(sum.conn.accepted, 7);
    assert_int_equal(sum.conn.open, 4);
    assert_int_equal(sum.hub.deliveries, 40);
    assert_int_equal(sum.channels, 3);
    /* Slot 0's worker is reaped: its counters stay, its gauges go. */
    tally_retire(t, 0, 1500000);
    tally_sum(t, &sum);
    assert_int_equal(sum.conn.accepted, 7);
    assert_int_equal(sum.hub.deliveries, 40);
    assert_int_equal(sum.conn.open, 1);
    assert_int_equal(sum.channels, 1);
    /* The next worker of the slot starts from zero and adds on. */
    c = (struct stats_counts){ 0 };
    c.conn.accepted = 1;
    c.conn.open = 1;
    tally_publish(t, 0, &c);
    tally_sum(t, &sum);
    assert_int_equal(sum.conn.accepted, 8);
    assert_int_equal(sum.conn.open, 2);
    /* The CPU time of the worker gone counts in the process metrics. */
    struct stats_process p;
    tally_process(t, &p);
    assert_true(p.cpu_seconds >= 1.5);
    assert_true(p.open_fds >= 3);
    tally_unmap(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admit_is_a_total),
        cmocka_unit_test(test_sum_survives_a_worker_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
