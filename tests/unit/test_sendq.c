/* sendq: frames come out in order and intact across partial writes, the
 * inline slots spill to a ring and back, drop_unsent keeps a started
 * frame, and every reference is released. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "sendq.h"

/* A socketpair whose writing end is non-blocking with a small buffer, so
 * flushes stop part-way. */
static void tq_pair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    int small = 4096;
    setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
}

static rbuf_t *tq_frame(unsigned char fill, size_t len)
{
    rbuf_t *r = rbuf_new(len);
    assert_non_null(r);
    for (size_t i = 0; i < len; i++)
        rbuf_wdata(r)[i] = (unsigned char)(fill + i % 7);
    return r;
}

static size_t tq_drain(int fd, unsigned char *out, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, out + got, cap - got, MSG_DONTWAIT);
        if (n <= 0)
            return got;
        got += (size_t)n;
    }
}

static void test_order_across_partial_writes(void **state)
{
    (void)state;
    int fds[2];
    tq_pair(fds);
    struct sendq q = { 0 };
    enum { N = 100, LEN = 1000 };
    unsigned char *want = malloc(N * LEN), *got = malloc(N * LEN);
    for (int i = 0; i < N; i++) {
        rbuf_t *r = tq_frame((unsigned char)i, LEN);
        memcpy(want + i * LEN, rbuf_data(r), LEN);
        assert_int_equal(sendq_push(&q, r), 0);
        rbuf_unref(r);          /* the queue holds its own reference */
    }
    assert_int_equal(q.bytes, N * LEN);
    assert_non_null(q.ring);    /* spilled past the two inline slots */
    size_t total = 0;
    int rounds = 0;
    while (!sendq_empty(&q)) {
        ssize_t w = sendq_flush(&q, &(struct io){ .ops = &io_plain_ops, .fd = fds[0] });
        assert_true(w >= 0);
        total += tq_drain(fds[1], got + total, N * LEN - total);
        assert_true(++rounds < 10000);
    }
    total += tq_drain(fds[1], got + total, N * LEN - total);
    assert_true(rounds > 1);    /* the small buffer forced partial flushes */
    assert_int_equal(total, N * LEN);
    assert_memory_equal(got, want, N * LEN);
    assert_null(q.ring);        /* drained: back to the inline slots */
    assert_int_equal(q.bytes, 0);
    free(want);
    free(got);
    close(fds[0]);
    close(fds[1]);
}

static void test_drop_unsent_keeps_started_frame(void **state)
{
    (void)state;
    int fds[2];
    tq_pair(fds);
    struct sendq q = { 0 };
    rbuf_t *big = tq_frame(1, 1 << 20), *small = tq_frame(2, 10);
    assert_int_equal(sendq_push(&q, big), 0);
    assert_int_equal(sendq_push(&q, small), 0);
    assert_int_equal(sendq_push(&q, small), 0);
    ssize_t w = sendq_flush(&q, &(struct io){ .ops = &io_plain_ops, .fd = fds[0] });
    assert_true(w > 0 && (size_t)w < (1u << 20));     /* head started, not done */
    sendq_drop_unsent(&q, 0);
    assert_int_equal(q.count, 1);
    assert_int_equal(q.bytes, (1u << 20) - (size_t)w);
    /* Without a started frame everything goes. */
    sendq_clear(&q);
    assert_int_equal(sendq_push(&q, small), 0);
    sendq_drop_unsent(&q, 0);
    assert_true(sendq_empty(&q));
    assert_int_equal(q.bytes, 0);
    rbuf_unref(big);
    rbuf_unref(small);
    close(fds[0]);
    close(fds[1]);
}

/* A TLS layer holding the first bytes in a blocked record (io.held):
 * the frames they span stay, the rest goes. */
static void test_drop_unsent_keeps_held_frames(void **state)
{
    (void)state;
    struct sendq q = { 0 };
    rbuf_t *small = tq_frame(4, 10);
    for (int i = 0; i < 4; i++)
        assert_int_equal(sendq_push(&q, small), 0);
    sendq_drop_unsent(&q, 15);
    assert_int_equal(q.count, 2);
    assert_int_equal(q.bytes, 2 * rbuf_len(small));
    sendq_drop_unsent(&q, rbuf_len(small));
    assert_int_equal(q.count, 1);
    sendq_drop_unsent(&q, 0);
    assert_true(sendq_empty(&q));
    assert_int_equal(q.bytes, 0);
    rbuf_unref(small);
}

static void test_write_error_is_reported(void **state)
{
    (void)state;
    int fds[2];
    tq_pair(fds);
    close(fds[1]);
    struct sendq q = { 0 };
    rbuf_t *r = tq_frame(3, 100);
    assert_int_equal(sendq_push(&q, r), 0);
    rbuf_unref(r);
    assert_int_equal(sendq_flush(&q, &(struct io){ .ops = &io_plain_ops, .fd = fds[0] }), -EPIPE);
    sendq_clear(&q);
    close(fds[0]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_across_partial_writes),
        cmocka_unit_test(test_drop_unsent_keeps_started_frame),
        cmocka_unit_test(test_drop_unsent_keeps_held_frames),
        cmocka_unit_test(test_write_error_is_reported),
    };
    return cmocka_run_group_tests_name("sendq", tests, NULL, NULL);
}
