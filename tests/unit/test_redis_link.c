/* redis_link: which error replies mean the server no longer serves this
 * node (a replica, or loading its data), so the command connection is
 * rebuilt and the command counts as not run. The integration tests
 * (test_redis_replication.py) produce each reply with a real Redis. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "redis_link.h"

static redisReply reply(int type, const char *s)
{
    redisReply r;
    memset(&r, 0, sizeof(r));
    r.type = type;
    r.str = (char *)s;
    r.len = s ? strlen(s) : 0;
    return r;
}

static void test_not_serving(void **state)
{
    (void)state;
    static const struct { int type; const char *str; const char *code; } t[] = {
        { REDIS_REPLY_ERROR, "READONLY You can't write against a read only replica. script: "
                             "33ec, on @user_script:1.", "READONLY" },
        { REDIS_REPLY_ERROR, "READONLY", "READONLY" },
        { REDIS_REPLY_ERROR, "MASTERDOWN Link with MASTER is down and replica-serve-stale-data "
                             "is set to 'no'.", "MASTERDOWN" },
        { REDIS_REPLY_ERROR, "LOADING Redis is loading the dataset in memory", "LOADING" },
        { REDIS_REPLY_ERROR, "LOADINGX no", NULL },
        { REDIS_REPLY_ERROR, "READONL", NULL },
        { REDIS_REPLY_ERROR, "ERR READONLY later in the text", NULL },
        { REDIS_REPLY_ERROR, "NOSCRIPT No matching script", NULL },
        { REDIS_REPLY_ERROR, "UNBLOCKED force unblock from blocking operation", NULL },
        { REDIS_REPLY_ERROR, "OOM command not allowed", NULL },
        { REDIS_REPLY_STRING, "READONLY", NULL },
        { REDIS_REPLY_STATUS, "LOADING", NULL },
        { REDIS_REPLY_ERROR, "", NULL },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        redisReply r = reply(t[i].type, t[i].str);
        const char *why = redis_link_not_serving(&r);
        if (!t[i].code ? why != NULL : !why || strncmp(why, t[i].code, strlen(t[i].code)) != 0)
            fail_msg("case %zu '%s': %s", i, t[i].str, why ? why : "(null)");
    }
    assert_null(redis_link_not_serving(NULL));
    redisReply r = reply(REDIS_REPLY_ERROR, NULL);
    assert_null(redis_link_not_serving(&r));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_serving),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
