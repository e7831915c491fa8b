/* redis_msg — what one node tells the others through Redis PUB/SUB, and
 * the parser each node runs on it (input from the network: strict, over
 * (buf, len), no allocation; fuzzed by tests/fuzz/fuzz_redis_msg.c).
 *
 * A message copy, published by the publish script on "<prefix>m:<channel>"
 * (one copy per channel of the message):
 *     <id> LF <prev> LF <data>
 * id is the message's id, prev the id of the channel's message before it
 * ("" when the channel has none on record), data the JSON payload, the
 * rest of the bytes. A node that last delivered something else than prev
 * on that channel has missed a message (engine_redis.c).
 *
 * A revocation, published on "<prefix>control" by the node that ran
 * `disconnect`:
 *     r LF <unix second> LF <user>
 * user is the rest of the bytes (1..255, any byte).
 */
#ifndef WSPUSH_REDIS_MSG_H
#define WSPUSH_REDIS_MSG_H

#include <stddef.h>

#include "buf.h"
#include "msgid.h"
#include "str.h"

struct redis_msg {
    struct str   id, prev, data;   /* into the caller's buffer */
    struct msgid mid, mprev;       /* mprev valid when prev.len > 0 */
};

/* 0, or -1 when the bytes are not a message copy (ids not canonical, data
 * empty). */
int redis_msg_decode(const char *p, size_t len, struct redis_msg *out);

/* 0, or -1 when the bytes are not a revocation (second not a positive
 * decimal under 2^40, user empty or over 255 bytes). */
int redis_msg_decode_revoke(const char *p, size_t len, long *second, struct str *user);
/* Appends a revocation to out. 0 or -ENOMEM. */
int redis_msg_encode_revoke(struct buf *out, long second, struct str user);

#endif
