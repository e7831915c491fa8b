/* redis_msg_decode and redis_msg_decode_revoke: what a node parses from
 * Redis PUB/SUB (ws-server/redis_msg.h). The buffer is heap-allocated to
 * exactly the input's size, so a read past it is an ASan report.
 * Oracles: every field lies inside the input; an accepted copy has a
 * canonical id (formatting it gives it back), seq >= 1, a prev before it
 * and data that is the input's tail; an accepted revocation encodes back
 * to the very bytes. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "redis_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);
    if (!p)
        return 0;
    memcpy(p, data, size);
    struct redis_msg m;
    if (redis_msg_decode(p, size, &m) == 0) {
        FUZZ_CHECK(fuzz_inside(m.id.p, m.id.len, p, size));
        FUZZ_CHECK(fuzz_inside(m.prev.p, m.prev.len, p, size));
        FUZZ_CHECK(m.data.len > 0 && m.data.p + m.data.len == p + size);
        char id[MSG_ID_MAX];
        msgid_format(m.mid, id);
        FUZZ_CHECK(strlen(id) == m.id.len && memcmp(id, m.id.p, m.id.len) == 0);
        FUZZ_CHECK(m.mid.seq >= 1);
        if (m.prev.len) {
            msgid_format(m.mprev, id);
            FUZZ_CHECK(strlen(id) == m.prev.len && memcmp(id, m.prev.p, m.prev.len) == 0);
            FUZZ_CHECK(msgid_cmp(m.mprev, m.mid) < 0);
        }
    }
    long sec;
    struct str user;
    if (redis_msg_decode_revoke(p, size, &sec, &user) == 0) {
        FUZZ_CHECK(fuzz_inside(user.p, user.len, p, size));
        FUZZ_CHECK(user.len >= 1 && user.len <= 255 && sec > 0);
        struct buf out = { 0 };
        FUZZ_CHECK(redis_msg_encode_revoke(&out, sec, user) == 0);
        FUZZ_CHECK(buf_used(&out) == size && memcmp(buf_head(&out), p, size) == 0);
        buf_free(&out);
    }
    free(p);
    return 0;
}
