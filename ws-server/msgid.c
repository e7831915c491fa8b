#include "msgid.h"

#include <stdio.h>
#include <string.h>

int msgid_parse(struct str id, struct msgid *out)
{
    const char *p = id.p;
    size_t len = id.len, i = 0;
    uint64_t e = 0, q = 0;
    for (; i < len && i < 9 && p[i] != '-'; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return -1;
        e = e * 16 + (uint64_t)d;
    }
    if (i == 0 || i >= len || p[i] != '-' || e > UINT32_MAX || (i > 1 && p[0] == '0'))
        return -1;
    size_t start = ++i;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9' || i - start >= 19)
            return -1;
        q = q * 10 + (uint64_t)(p[i] - '0');
    }
    if (i == start || (i - start > 1 && p[start] == '0'))
        return -1;
    out->epoch = (uint32_t)e;
    out->seq = q;
    return 0;
}

void msgid_format(struct msgid id, char out[MSG_ID_MAX])
{
    snprintf(out, MSG_ID_MAX, "%x-%llu", (unsigned)id.epoch, (unsigned long long)id.seq);
}

int msgid_cmp(struct msgid a, struct msgid b)
{
    if (a.epoch != b.epoch)
        return a.epoch < b.epoch ? -1 : 1;
    if (a.seq != b.seq)
        return a.seq < b.seq ? -1 : 1;
    return 0;
}
