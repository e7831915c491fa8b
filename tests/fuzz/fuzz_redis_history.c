/* redis_history: what a node reads from the history script's answer
 * (ws-server/redis_history.h), fed as RESP bytes through hiredis's own
 * reader, the way the node gets them. Oracles: a head that parses has an
 * epoch and newest seq that read back as the digits given; entry ids
 * increase, have seq >= 1, and a previous id, when there is one, comes
 * before its entry's; the
 * data of an entry lies inside one of the reply's strings (here: inside
 * the 'd' value it came from); the continuity judges answer 0 or 1. */
#include <string.h>

#include <hiredis/hiredis.h>

#include "fuzz.h"
#include "redis_history.h"

static void fuzz_channel(const redisReply *last_rep, const redisReply *entries, uint32_t epoch,
                         int has_epoch)
{
    struct msgid last = { 0, 0 };
    int has_last = redis_history_last(last_rep, &last);
    FUZZ_CHECK(has_last == 0 || has_last == 1);
    struct redis_entry *e = NULL;
    size_t n = 0;
    if (redis_history_entries(entries, &e, &n) < 0)
        return;
    FUZZ_CHECK(entries->type == REDIS_REPLY_ARRAY && n <= entries->elements);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(e[i].id.seq >= 1);
        FUZZ_CHECK(!e[i].has_prev || msgid_cmp(e[i].prev, e[i].id) < 0);
        FUZZ_CHECK(i == 0 || msgid_cmp(e[i - 1].id, e[i].id) < 0);
        /* The data is the 'd' value of entry i's field list. */
        const redisReply *fields = entries->element[i]->element[1];
        int inside = 0;
        for (size_t f = 0; f < fields->elements; f++)
            if (fields->element[f]->type == REDIS_REPLY_STRING &&
                fuzz_inside(e[i].data.p, e[i].data.len, fields->element[f]->str,
                            fields->element[f]->len))
                inside = 1;
        FUZZ_CHECK(inside || e[i].data.len == 0);
    }
    struct msgid after = n ? e[0].id : last;
    for (int young = 0; young < 2; young++) {
        int c = redis_history_continuous(epoch, has_epoch, young, after, has_last, last, e, n);
        FUZZ_CHECK(c == 0 || c == 1);
    }
    int f = redis_history_follows(epoch, has_epoch, after, has_last, last, e, n);
    FUZZ_CHECK(f == 0 || f == 1);
    free(e);
}

/* hiredis 0.14's reader allocates an array's or a string's declared size
 * before reading it (a limit came only in hiredis 1.0): a node trusts its
 * Redis for that much, so inputs declaring more than 64 Ki are left out. */
static int fuzz_declares_huge(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '*' && data[i] != '$')
            continue;
        size_t digits = 0;
        unsigned long v = 0;
        for (size_t k = i + 1; k < size && data[k] >= '0' && data[k] <= '9' && digits < 12; k++) {
            v = v * 10 + (unsigned long)(data[k] - '0');
            digits++;
        }
        if (digits >= 12 || v > 65536)
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_declares_huge(data, size))
        return 0;
    redisReader *rd = redisReaderCreate();
    if (!rd)
        return 0;
    void *reply = NULL;
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK &&
        redisReaderGetReply(rd, &reply) == REDIS_OK && reply) {
        const redisReply *rep = reply;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1) {
            size_t nch = (rep->elements - 1) / 2;
            uint32_t epoch = 0;
            uint64_t seq = 0;
            int has = 0;
            if (redis_history_head(rep, nch, &epoch, &has, &seq) == 0) {
                const redisReply *h = rep->element[0];
                FUZZ_CHECK(has == (h->len > 0));
                if (has) {
                    /* The digits, leading zeros aside, are the numbers. */
                    char back[48];
                    int bn = snprintf(back, sizeof(back), "%u-%llu", (unsigned)epoch,
                                      (unsigned long long)seq);
                    size_t i = 0, j = 0;
                    while (i < h->len && h->str[i] == '0' && i + 1 < h->len && h->str[i + 1] != '-')
                        i++;
                    while (i < h->len && j < (size_t)bn && h->str[i] == back[j]) {
                        i++;
                        j++;
                        if (back[j - 1] == '-')
                            while (i < h->len && h->str[i] == '0' && i + 1 < h->len)
                                i++;
                    }
                    FUZZ_CHECK(i == h->len && j == (size_t)bn);
                }
                for (size_t k = 0; k < nch; k++)
                    fuzz_channel(rep->element[1 + 2 * k], rep->element[2 + 2 * k], epoch, has);
            }
        } else {
            struct redis_entry *e = NULL;
            size_t n = 0;
            if (redis_history_entries(rep, &e, &n) == 0)
                free(e);
        }
        freeReplyObject(reply);
    }
    redisReaderFree(rd);
    return 0;
}
