/* ipc codec: round trips, every truncated prefix, malformed frames, size
 * limit. Inputs are decoded from right before a PROT_NONE page so any read
 * past the frame crashes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "guard.h"

#include "buf.h"
#include "ipc.h"

#define MAX_FRAME (1u << 20)

/* GUARD_DATA bytes of readable memory followed by a PROT_NONE page. */
#define GUARD_DATA (64 * 1024)


/* The decoded strings point into the guarded copy, so it lives until the
 * next call (or guarded_release()). */
static struct guard last_guard;

static void guarded_release(void)
{
    if (last_guard.base)
        guard_free(&last_guard);
    last_guard.base = NULL;
}

static ssize_t decode_guarded(const void *p, size_t n, size_t max, struct ipc_msg *m)
{
    guarded_release();
    last_guard = guard_new(GUARD_DATA);
    return ipc_decode(guard_put(&last_guard, p, n), n, max, m);
}

/* Every strict prefix of a valid frame must ask for more. */
static void check_prefixes(const void *p, size_t n)
{
    struct guard g = guard_new(GUARD_DATA);
    struct ipc_msg m;
    for (size_t k = 0; k < n; k++)
        assert_int_equal(ipc_decode(guard_put(&g, p, k), k, MAX_FRAME, &m), IPC_NEED_MORE);
    guard_free(&g);
}

static void assert_str(struct str s, const char *want, size_t n)
{
    assert_int_equal(s.len, n);
    assert_memory_equal(s.p, want, n);
}

static void test_publish_round_trip(void **state)
{
    (void)state;
    struct buf b = {0};
    struct str ch[3] = { { "news", 4 }, { "user/alice/inbox", 16 }, { "x", 1 } };
    const char *data = "{\"a\":[1,2,3]}";
    assert_int_equal(ipc_encode_publish(&b, 0xA1B2C3D4u, ch, 3, data, strlen(data)), 0);

    struct ipc_msg m;
    ssize_t r = decode_guarded(buf_head(&b), buf_used(&b), MAX_FRAME, &m);
    assert_int_equal(r, (ssize_t)buf_used(&b));
    assert_int_equal(m.type, IPC_PUBLISH);
    assert_int_equal(m.req_id, 0xA1B2C3D4u);
    assert_int_equal(m.frame_len, buf_used(&b));
    assert_int_equal(m.nchannels, 3);
    for (int i = 0; i < 3; i++)
        assert_str(m.channels[i], ch[i].p, ch[i].len);
    assert_str(m.data, data, strlen(data));
    check_prefixes(buf_head(&b), buf_used(&b));
    buf_free(&b);
}

static void test_publish_max_channels(void **state)
{
    (void)state;
    struct buf b = {0};
    struct str ch[WSPUSH_MAX_CHANNELS + 1];
    char name[256];
    memset(name, 'c', sizeof(name));
    for (int i = 0; i <= WSPUSH_MAX_CHANNELS; i++)
        ch[i] = (struct str){ name, 255 };
    assert_int_equal(ipc_encode_publish(&b, 1, ch, WSPUSH_MAX_CHANNELS, "1", 1), 0);
    struct ipc_msg m;
    assert_int_equal(decode_guarded(buf_head(&b), buf_used(&b), MAX_FRAME, &m),
                     (ssize_t)buf_used(&b));
    assert_int_equal(m.nchannels, WSPUSH_MAX_CHANNELS);
    assert_str(m.channels[31], name, 255);

    /* Out of the protocol's range: refused, buffer untouched. */
    size_t before = buf_used(&b);
    assert_int_equal(ipc_encode_publish(&b, 1, ch, 0, "1", 1), -EINVAL);
    assert_int_equal(ipc_encode_publish(&b, 1, ch, WSPUSH_MAX_CHANNELS + 1, "1", 1), -EINVAL);
    ch[0].len = 256;
    assert_int_equal(ipc_encode_publish(&b, 1, ch, 1, "1", 1), -EINVAL);
    ch[0].len = 0;
    assert_int_equal(ipc_encode_publish(&b, 1, ch, 1, "1", 1), -EINVAL);
    assert_int_equal(buf_used(&b), before);
    buf_free(&b);
}

static void test_disconnect_round_trip(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_int_equal(ipc_encode_disconnect(&b, 7, "alice", 5), 0);
    struct ipc_msg m;
    assert_int_equal(decode_guarded(buf_head(&b), buf_used(&b), MAX_FRAME, &m),
                     (ssize_t)buf_used(&b));
    assert_int_equal(m.type, IPC_DISCONNECT);
    assert_int_equal(m.req_id, 7);
    assert_str(m.user, "alice", 5);
    check_prefixes(buf_head(&b), buf_used(&b));

    char big[256];
    memset(big, 'u', sizeof(big));
    assert_int_equal(ipc_encode_disconnect(&b, 7, big, 256), -EINVAL);
    assert_int_equal(ipc_encode_disconnect(&b, 7, big, 0), -EINVAL);
    assert_int_equal(ipc_encode_disconnect(&b, 7, big, 255), 0);
    buf_free(&b);
}

static void test_ack_round_trip(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_int_equal(ipc_encode_ack(&b, 9, 123456, "1700000000-42", 13), 0);
    struct ipc_msg m;
    assert_int_equal(decode_guarded(buf_head(&b), buf_used(&b), MAX_FRAME, &m),
                     (ssize_t)buf_used(&b));
    assert_int_equal(m.type, IPC_ACK);
    assert_int_equal(m.req_id, 9);
    assert_int_equal(m.count, 123456);
    assert_str(m.id, "1700000000-42", 13);
    check_prefixes(buf_head(&b), buf_used(&b));
    char big[256] = {0};
    assert_int_equal(ipc_encode_ack(&b, 9, 1, big, 256), -EINVAL);
    buf_free(&b);
}

static void test_disconnected_round_trip(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_int_equal(ipc_encode_disconnected(&b, 0xFFFFFFFFu, 3), 0);
    struct ipc_msg m;
    assert_int_equal(decode_guarded(buf_head(&b), buf_used(&b), MAX_FRAME, &m), 13);
    assert_int_equal(m.type, IPC_DISCONNECTED);
    assert_int_equal(m.req_id, 0xFFFFFFFFu);
    assert_int_equal(m.count, 3);
    check_prefixes(buf_head(&b), buf_used(&b));
    buf_free(&b);
}

static void test_error_round_trip(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_int_equal(ipc_encode_error(&b, 5, IPC_ERR_BAD_CHANNEL, "bad channel"), 0);
    struct ipc_msg m;
    assert_int_equal(decode_guarded(buf_head(&b), buf_used(&b), MAX_FRAME, &m),
                     (ssize_t)buf_used(&b));
    assert_int_equal(m.type, IPC_ERROR);
    assert_int_equal(m.req_id, 5);
    assert_int_equal(m.code, IPC_ERR_BAD_CHANNEL);
    assert_str(m.text, "bad channel", 11);
    check_prefixes(buf_head(&b), buf_used(&b));

    /* Long texts are cut to what the u8 length can say. */
    char big[400];
    memset(big, 't', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_reset(&b);
    assert_int_equal(ipc_encode_error(&b, 5, IPC_ERR_INTERNAL, big), 0);
    assert_int_equal(decode_guarded(buf_head(&b), buf_used(&b), MAX_FRAME, &m),
                     (ssize_t)buf_used(&b));
    assert_int_equal(m.text.len, 255);
    assert_int_equal(ipc_encode_error(&b, 5, 0, "x"), -EINVAL);
    assert_string_equal(ipc_error_name(IPC_ERR_TOO_BIG), "message too big");
    assert_string_equal(ipc_error_name(999), "unknown error");
    buf_free(&b);
}

/* Pipelined frames decode one after another, also when fed 1 byte at a
 * time into a growing buffer. */
static void test_pipeline_byte_feed(void **state)
{
    (void)state;
    struct buf b = {0};
    struct str ch = { "news", 4 };
    assert_int_equal(ipc_encode_publish(&b, 1, &ch, 1, "\"hi\"", 4), 0);
    assert_int_equal(ipc_encode_disconnect(&b, 2, "bob", 3), 0);
    assert_int_equal(ipc_encode_ack(&b, 3, 0, "", 0), 0);

    const unsigned char *all = (const unsigned char *)buf_head(&b);
    size_t total = buf_used(&b), have = 0, off = 0;
    uint32_t seen[3];
    int nseen = 0;
    struct ipc_msg m;
    while (have < total) {
        have++;
        ssize_t r = decode_guarded(all + off, have - off, MAX_FRAME, &m);
        if (r == IPC_NEED_MORE)
            continue;
        assert_true(r > 0);
        assert_true(nseen < 3);
        seen[nseen++] = m.req_id;
        off += (size_t)r;
    }
    assert_int_equal(off, total);
    assert_int_equal(nseen, 3);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 2);
    assert_int_equal(seen[2], 3);
    buf_free(&b);
}

struct bad_case {
    const char *name;
    unsigned char bytes[64];
    size_t len;
    ssize_t want;
};

#define HDR(l, t) 0, 0, 0, (l), (t), 0, 0, 0, 1

static const struct bad_case bad_cases[] = {
    { "length 0",            { 0, 0, 0, 0 }, 4, IPC_E_MALFORMED },
    { "length 4",            { 0, 0, 0, 4, 1, 0, 0, 0 }, 8, IPC_E_MALFORMED },
    { "unknown type 0x03",   { HDR(5, 0x03) }, 9, IPC_E_MALFORMED },
    { "unknown type 0x00",   { HDR(5, 0x00) }, 9, IPC_E_MALFORMED },
    { "unknown type 0x80",   { HDR(9, 0x80), 0, 0, 0, 0 }, 13, IPC_E_MALFORMED },
    { "publish empty body",  { HDR(5, IPC_PUBLISH) }, 9, IPC_E_MALFORMED },
    { "publish 0 channels",  { HDR(10, IPC_PUBLISH), 0, 0, 0, 0, 0 }, 14, IPC_E_MALFORMED },
    { "publish 33 channels", { HDR(10, IPC_PUBLISH), 33, 0, 0, 0, 0 }, 14, IPC_E_MALFORMED },
    { "publish empty name",  { HDR(11, IPC_PUBLISH), 1, 0, 0, 0, 0, 0 }, 15, IPC_E_MALFORMED },
    { "publish name past end", { HDR(8, IPC_PUBLISH), 1, 5, 'a' }, 12, IPC_E_MALFORMED },
    { "publish no data len", { HDR(8, IPC_PUBLISH), 1, 1, 'a' }, 12, IPC_E_MALFORMED },
    { "publish data short",  { HDR(13, IPC_PUBLISH), 1, 1, 'a', 0, 0, 0, 2, '1' }, 17,
      IPC_E_MALFORMED },
    { "publish trailing byte", { HDR(14, IPC_PUBLISH), 1, 1, 'a', 0, 0, 0, 1, '1', 'x' }, 18,
      IPC_E_MALFORMED },
    { "publish 2 of 1 channels", { HDR(13, IPC_PUBLISH), 2, 1, 'a', 0, 0, 0, 1, '1' }, 17,
      IPC_E_MALFORMED },
    { "disconnect empty user", { HDR(6, IPC_DISCONNECT), 0 }, 10, IPC_E_MALFORMED },
    { "disconnect no length", { HDR(5, IPC_DISCONNECT) }, 9, IPC_E_MALFORMED },
    { "disconnect short user", { HDR(8, IPC_DISCONNECT), 3, 'a', 'b' }, 12, IPC_E_MALFORMED },
    { "disconnect long user", { HDR(9, IPC_DISCONNECT), 2, 'a', 'b', 'c' }, 13, IPC_E_MALFORMED },
    { "ack short",           { HDR(8, IPC_ACK), 0, 0, 0 }, 12, IPC_E_MALFORMED },
    { "ack id past end",     { HDR(11, IPC_ACK), 0, 0, 0, 1, 3, 'a' }, 15, IPC_E_MALFORMED },
    { "ack trailing byte",   { HDR(12, IPC_ACK), 0, 0, 0, 1, 1, 'a', 'b' }, 16, IPC_E_MALFORMED },
    { "disconnected short",  { HDR(8, IPC_DISCONNECTED), 0, 0, 0 }, 12, IPC_E_MALFORMED },
    { "disconnected long",   { HDR(10, IPC_DISCONNECTED), 0, 0, 0, 1, 0 }, 14, IPC_E_MALFORMED },
    { "error code 0",        { HDR(8, IPC_ERROR), 0, 0, 0 }, 12, IPC_E_MALFORMED },
    { "error no text len",   { HDR(7, IPC_ERROR), 0, 1 }, 11, IPC_E_MALFORMED },
    { "error text past end", { HDR(9, IPC_ERROR), 0, 1, 2, 'a' }, 13, IPC_E_MALFORMED },
    { "error trailing byte", { HDR(10, IPC_ERROR), 0, 1, 0, 'a', 'b' }, 14, IPC_E_MALFORMED },
};

static void test_malformed_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct ipc_msg m;
        ssize_t r = decode_guarded(c->bytes, c->len, MAX_FRAME, &m);
        if (r != c->want)
            fail_msg("%s: got %zd want %zd", c->name, r, c->want);
    }
}

static void test_too_big(void **state)
{
    (void)state;
    /* 4 + 0x00100000 bytes announced; only the header is present. */
    const unsigned char hdr[9] = { 0x00, 0x10, 0x00, 0x00, IPC_PUBLISH, 0, 0, 0x30, 0x39 };
    struct ipc_msg m;
    for (size_t k = 0; k < 9; k++)
        assert_int_equal(decode_guarded(hdr, k, 1024, &m), IPC_NEED_MORE);
    assert_int_equal(decode_guarded(hdr, 9, 1024, &m), IPC_E_TOO_BIG);
    assert_int_equal(m.type, IPC_PUBLISH);
    assert_int_equal(m.req_id, 12345);
    assert_int_equal(m.frame_len, 0x00100004u);

    /* The limit counts the whole frame: exactly max_frame is fine. */
    struct buf b = {0};
    assert_int_equal(ipc_encode_disconnected(&b, 1, 2), 0);
    assert_int_equal(decode_guarded(buf_head(&b), buf_used(&b), 13, &m), 13);
    assert_int_equal(decode_guarded(buf_head(&b), buf_used(&b), 12, &m), IPC_E_TOO_BIG);
    assert_int_equal(m.frame_len, 13);

    /* Largest announced length. */
    const unsigned char huge[9] = { 0xFF, 0xFF, 0xFF, 0xFF, IPC_ACK, 0, 0, 0, 1 };
    assert_int_equal(decode_guarded(huge, 9, MAX_FRAME, &m), IPC_E_TOO_BIG);
    assert_int_equal(m.frame_len, (size_t)0xFFFFFFFFu + 4);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_round_trip),
        cmocka_unit_test(test_publish_max_channels),
        cmocka_unit_test(test_disconnect_round_trip),
        cmocka_unit_test(test_ack_round_trip),
        cmocka_unit_test(test_disconnected_round_trip),
        cmocka_unit_test(test_error_round_trip),
        cmocka_unit_test(test_pipeline_byte_feed),
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_too_big),
    };
    int failed = cmocka_run_group_tests_name("ipc", tests, NULL, NULL);
    guarded_release();
    return failed;
}
