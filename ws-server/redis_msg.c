#include "redis_msg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The field before the next LF at *pos; -1 when there is no LF. */
static int rm_field(const char *p, size_t len, size_t *pos, struct str *out)
{
    const char *lf = memchr(p + *pos, '\n', len - *pos);
    if (!lf)
        return -1;
    out->p = p + *pos;
    out->len = (size_t)(lf - (p + *pos));
    *pos += out->len + 1;
    return 0;
}

int redis_msg_decode(const char *p, size_t len, struct redis_msg *out)
{
    size_t pos = 0;
    memset(out, 0, sizeof(*out));
    if (rm_field(p, len, &pos, &out->id) < 0 || rm_field(p, len, &pos, &out->prev) < 0)
        return -1;
    if (out->id.len == 0 || out->id.len >= MSG_ID_MAX || out->prev.len >= MSG_ID_MAX ||
        msgid_parse(out->id, &out->mid) < 0 || out->mid.seq == 0)
        return -1;
    if (out->prev.len && (msgid_parse(out->prev, &out->mprev) < 0 ||
                          msgid_cmp(out->mprev, out->mid) >= 0))
        return -1;
    out->data = (struct str){ p + pos, len - pos };
    return out->data.len ? 0 : -1;
}

int redis_msg_decode_revoke(const char *p, size_t len, long *second, struct str *user)
{
    size_t pos = 0;
    struct str tag, sec;
    if (rm_field(p, len, &pos, &tag) < 0 || tag.len != 1 || tag.p[0] != 'r' ||
        rm_field(p, len, &pos, &sec) < 0 || sec.len == 0 || sec.len > 12)
        return -1;
    long s = 0;
    for (size_t i = 0; i < sec.len; i++) {
        if (sec.p[i] < '0' || sec.p[i] > '9' || (i == 0 && sec.p[i] == '0'))
            return -1;
        s = s * 10 + (sec.p[i] - '0');
    }
    if (s <= 0 || s >= (1L << 40) || len - pos == 0 || len - pos > 255)
        return -1;
    *second = s;
    *user = (struct str){ p + pos, len - pos };
    return 0;
}

int redis_msg_encode_revoke(struct buf *out, long second, struct str user)
{
    char head[32];
    int n = snprintf(head, sizeof(head), "r\n%ld\n", second);
    if (buf_append(out, head, (size_t)n) < 0 || buf_append(out, user.p, user.len) < 0)
        return -ENOMEM;
    return 0;
}
