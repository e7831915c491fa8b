/* ev: timers fire in deadline order and never after being stopped or
 * re-armed away, through heap removals from any position; fds dispatch;
 * the after hook runs once per pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ev.h"

struct te_timer {
    struct ev_timer t;
    int             id;
    uint64_t        due;
    int             fired;
};

static struct te_timer te_timers[300];
static int te_order[300], te_nfired;
static uint64_t te_last_due;

static void te_fire(ev_loop_t *loop, struct ev_timer *t)
{
    struct te_timer *x = ev_container_of(t, struct te_timer, t);
    assert_false(x->fired);
    assert_true(x->due >= te_last_due);     /* deadline order */
    assert_true(ev_now(loop) >= x->due);
    te_last_due = x->due;
    x->fired = 1;
    te_order[te_nfired++] = x->id;
}

static void te_stop_loop(ev_loop_t *loop, struct ev_timer *t)
{
    (void)t;
    ev_stop(loop);
}

static void test_timers_in_order_with_stops_and_rearms(void **state)
{
    (void)state;
    char err[128];
    ev_loop_t *loop = ev_loop_new(err, sizeof(err));
    assert_non_null(loop);
    srand(7);
    uint64_t now = ev_now(loop);
    for (int i = 0; i < 300; i++) {
        te_timers[i] = (struct te_timer){ .id = i };
        uint64_t after = (uint64_t)(rand() % 200);
        te_timers[i].due = now + after;
        assert_int_equal(ev_timer_start(loop, &te_timers[i].t, after, te_fire), 0);
    }
    /* Stop every third, re-arm every fifth to a new deadline. */
    for (int i = 0; i < 300; i += 3)
        ev_timer_stop(loop, &te_timers[i].t);
    for (int i = 1; i < 300; i += 5) {
        if (i % 3 == 0)
            continue;           /* re-arming would restart a stopped one */
        uint64_t after = (uint64_t)(rand() % 200);
        te_timers[i].due = now + after;
        ev_timer_start(loop, &te_timers[i].t, after, te_fire);
    }
    struct ev_timer end = { 0 };
    ev_timer_start(loop, &end, 400, te_stop_loop);
    assert_int_equal(ev_run(loop), 0);
    int expected = 0;
    for (int i = 0; i < 300; i++) {
        if (i % 3 == 0)
            assert_false(te_timers[i].fired);
        else {
            assert_true(te_timers[i].fired);
            expected++;
        }
    }
    assert_int_equal(te_nfired, expected);
    ev_loop_free(loop);
}

struct te_io { struct ev_io io; int reads; };
static int te_afters;

static void te_on_read(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    struct te_io *x = ev_container_of(io, struct te_io, io);
    char buf[16];
    assert_true(events & EV_READ);
    assert_int_equal(read(io->fd, buf, sizeof(buf)), 3);
    if (++x->reads == 3)
        ev_stop(loop);
}

static void te_after(ev_loop_t *loop, void *data)
{
    (void)loop;
    int *fd = data;
    te_afters++;
    assert_int_equal(write(*fd, "abc", 3), 3);   /* feeds the next pass */
}

static void test_fd_dispatch_and_after_hook(void **state)
{
    (void)state;
    char err[128];
    ev_loop_t *loop = ev_loop_new(err, sizeof(err));
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct te_io x = { 0 };
    assert_int_equal(ev_io_start(loop, &x.io, p[0], EV_READ, te_on_read), 0);
    struct ev_hook hook;
    ev_after_add(loop, &hook, te_after, &p[1]);
    assert_int_equal(write(p[1], "abc", 3), 3);
    assert_int_equal(ev_run(loop), 0);
    assert_int_equal(x.reads, 3);
    assert_int_equal(te_afters, 3);      /* once per pass, the stopping one too */
    ev_io_stop(loop, &x.io);
    close(p[0]);
    close(p[1]);
    ev_loop_free(loop);
}

/* Two pipes ready in the same pass: whichever callback runs first stops
 * the other handle, which must then get no event (it would read a closed
 * or reused fd otherwise). */
struct te_pair { struct ev_io io[2]; int fired[2]; };

static struct te_pair te_pair;

static void te_pair_first(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)events;
    int me = io == &te_pair.io[1];
    te_pair.fired[me]++;
    ev_io_stop(loop, &te_pair.io[!me]);
    ev_stop(loop);
}

static void test_handle_stopped_in_pass_gets_nothing(void **state)
{
    (void)state;
    char err[128];
    ev_loop_t *loop = ev_loop_new(err, sizeof(err));
    int a[2], b[2];
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    assert_int_equal(ev_io_start(loop, &te_pair.io[0], a[0], EV_READ, te_pair_first), 0);
    assert_int_equal(ev_io_start(loop, &te_pair.io[1], b[0], EV_READ, te_pair_first), 0);
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "y", 1), 1);
    assert_int_equal(ev_run(loop), 0);
    assert_int_equal(te_pair.fired[0] + te_pair.fired[1], 1);
    ev_io_stop(loop, &te_pair.io[0]);
    ev_io_stop(loop, &te_pair.io[1]);
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
    ev_loop_free(loop);
}

static char te_hooks_ran[8];
static int te_norder;

static void te_hook_a(ev_loop_t *loop, void *data) { (void)data; te_hooks_ran[te_norder++] = 'a'; ev_stop(loop); }
static void te_hook_b(ev_loop_t *loop, void *data) { (void)loop; (void)data; te_hooks_ran[te_norder++] = 'b'; }
static void te_hook_c(ev_loop_t *loop, void *data) { (void)loop; (void)data; te_hooks_ran[te_norder++] = 'c'; }

static void test_several_hooks_in_order(void **state)
{
    (void)state;
    char err[128];
    ev_loop_t *loop = ev_loop_new(err, sizeof(err));
    struct ev_hook ha, hb, hc;
    ev_after_add(loop, &ha, te_hook_a, NULL);
    ev_after_add(loop, &hb, te_hook_b, NULL);
    ev_after_add(loop, &hc, te_hook_c, NULL);
    ev_after_remove(loop, &hb);
    ev_poll_now(loop);
    assert_int_equal(ev_run(loop), 0);
    assert_int_equal(te_norder, 2);
    assert_memory_equal(te_hooks_ran, "ac", 2);
    ev_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_in_order_with_stops_and_rearms),
        cmocka_unit_test(test_fd_dispatch_and_after_hook),
        cmocka_unit_test(test_handle_stopped_in_pass_gets_nothing),
        cmocka_unit_test(test_several_hooks_in_order),
    };
    return cmocka_run_group_tests_name("ev", tests, NULL, NULL);
}
