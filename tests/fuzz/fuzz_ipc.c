/* ipc_decode over a stream of frames, and a round trip: every frame that
 * decodes is encoded again from the decoded fields and must come out byte
 * for byte the same (the decoder accepts nothing the encoder cannot say,
 * and loses nothing on the way).
 *
 * The first input byte picks max_frame; the rest is the stream. A frame
 * refused as too big is skipped, as pubsock.c does. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "ipc.h"

static const size_t fipc_limits[] = { 9, 16, 64, 300, 4096, 65536 + 64, SIZE_MAX };

static void fipc_str(const struct str *s, const uint8_t *frame, size_t n)
{
    FUZZ_CHECK(fuzz_inside(s->p, s->len, frame, n));
}

static void fipc_roundtrip(const uint8_t *frame, size_t n, const struct ipc_msg *m)
{
    struct buf out = { 0 };
    int rc = -1;
    FUZZ_CHECK(m->frame_len == n);
    FUZZ_CHECK(m->type == frame[4]);
    switch (m->type) {
    case IPC_PUBLISH:
        FUZZ_CHECK(m->nchannels >= 1 && m->nchannels <= WSPUSH_MAX_CHANNELS);
        for (int i = 0; i < m->nchannels; i++) {
            fipc_str(&m->channels[i], frame, n);
            FUZZ_CHECK(m->channels[i].len >= 1 && m->channels[i].len <= 255);
        }
        fipc_str(&m->data, frame, n);
        rc = ipc_encode_publish(&out, m->req_id, m->channels, m->nchannels, m->data.p,
                                m->data.len);
        break;
    case IPC_DISCONNECT:
        fipc_str(&m->user, frame, n);
        rc = ipc_encode_disconnect(&out, m->req_id, m->user.p, m->user.len);
        break;
    case IPC_ACK:
        fipc_str(&m->id, frame, n);
        rc = ipc_encode_ack(&out, m->req_id, m->count, m->id.p, m->id.len);
        break;
    case IPC_DISCONNECTED:
        rc = ipc_encode_disconnected(&out, m->req_id, m->count);
        break;
    case IPC_ERROR: {
        fipc_str(&m->text, frame, n);
        FUZZ_CHECK(m->code != 0);
        FUZZ_CHECK(ipc_error_name(m->code) != NULL);
        /* The encoder takes a C string: a text holding NUL cannot be said
         * again, everything else must come back whole. */
        if (memchr(m->text.p, '\0', m->text.len))
            goto done;
        char text[256];
        memcpy(text, m->text.p, m->text.len);
        text[m->text.len] = '\0';
        rc = ipc_encode_error(&out, m->req_id, m->code, text);
        break;
    }
    default:
        FUZZ_CHECK(!"unknown type decoded");
    }
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(buf_used(&out) == n);
    FUZZ_CHECK(memcmp(buf_head(&out), frame, n) == 0);

    /* And what was encoded decodes to the same fields. */
    struct ipc_msg again;
    FUZZ_CHECK(ipc_decode(buf_head(&out), buf_used(&out), SIZE_MAX, &again) == (ssize_t)n);
    FUZZ_CHECK(again.type == m->type && again.req_id == m->req_id && again.count == m->count &&
               again.nchannels == m->nchannels && again.code == m->code &&
               again.data.len == m->data.len);
done:
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max = fipc_limits[data[0] % (sizeof(fipc_limits) / sizeof(fipc_limits[0]))];
    const uint8_t *p = data + 1;
    size_t len = size - 1;

    while (len > 0) {
        struct ipc_msg m;
        ssize_t n = ipc_decode(p, len, max, &m);
        FUZZ_CHECK(n == IPC_NEED_MORE || n == IPC_E_MALFORMED || n == IPC_E_TOO_BIG ||
                   (n >= IPC_HEADER_LEN && (size_t)n <= len && (size_t)n <= max));
        if (n == IPC_NEED_MORE || n == IPC_E_MALFORMED)
            break;
        if (n == IPC_E_TOO_BIG) {
            FUZZ_CHECK(m.frame_len > max);
            if (m.frame_len >= len)
                break;
            p += m.frame_len;
            len -= m.frame_len;
            continue;
        }
        /* Each shorter prefix of a good frame is incomplete, not corrupt. */
        struct ipc_msg g;
        FUZZ_CHECK(ipc_decode(p, (size_t)n - 1, max, &g) == IPC_NEED_MORE);
        fipc_roundtrip(p, (size_t)n, &m);
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
