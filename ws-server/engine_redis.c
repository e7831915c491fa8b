#include "engine_redis.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "buf.h"
#include "channel.h"
#include "list.h"
#include "log.h"
#include "msgid.h"
#include "redis_history.h"
#include "redis_link.h"
#include "redis_msg.h"
#include "revoke.h"

/* `run` (the node's run_id:master_replid of its connection) made current:
 * the replication id is read here, in the script, because it changes
 * without the connection closing — a master made a replica and master
 * again (REPLICAOF) has had its data replaced by a full resync while a
 * node stayed connected, and its epoch hash may be an older copy. */
#define ER_SERVER_ID_LUA \
    "run = string.match(run, '^[^:]*') .. ':' ..\n" \
    "      (string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or '')\n"

/* KEYS: epoch hash, then per channel its stream and its last-id key.
 * ARGV: the server id (run_id:master_replid), history size, history ttl, last-id ttl, prefix, data,
 * the newest epoch this node has seen, then the channel names. Returns the
 * id. An epoch made on another master or data set (server id), or none, is
 * replaced by a newer one: writes may have been lost there, and resuming
 * pages must be reset, never given an id again. The new epoch is the
 * server's second, but past every epoch this node has seen (a Redis
 * restarted within the second would otherwise give an id twice). The stream entry id is "<epoch>-<seq>" in decimal, so XRANGE
 * reads "after an id" directly. */
#define ER_ENSURE_EPOCH_LUA \
    ER_SERVER_ID_LUA \
    "local h = redis.call('HMGET', KEYS[1], 'e', 's', 'r')\n" \
    "local e, s = tonumber(h[1]), tonumber(h[2])\n" \
    "if (not e) or (not s) or h[3] ~= run then\n" \
    "  local t = tonumber(redis.call('TIME')[1])\n" \
    "  if e and t <= e then t = e + 1 end\n" \
    "  if t <= tonumber(seen) then t = tonumber(seen) + 1 end\n" \
    "  e, s = t, 0\n" \
    "  redis.call('HSET', KEYS[1], 'e', e, 's', 0, 'r', run)\n" \
    "end\n"

static const char er_publish_lua[] =
    "local run, seen = ARGV[1], ARGV[7]\n"
    ER_ENSURE_EPOCH_LUA
    "s = s + 1\n"
    "redis.call('HSET', KEYS[1], 's', s)\n"
    "local id = string.format('%x-%d', e, s)\n"
    "local sid = string.format('%d-%d', e, s)\n"
    "local size, ttl, mttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "for i = 2, #KEYS, 2 do\n"
    "  local ch = ARGV[7 + i / 2]\n"
    "  local prev = redis.call('GET', KEYS[i + 1]) or ''\n"
    "  redis.call('SET', KEYS[i + 1], id, 'EX', mttl)\n"
    "  if size > 0 then\n"
    "    local ok = redis.pcall('XADD', KEYS[i], 'MAXLEN', size, sid, 'p', prev, 'd', ARGV[6])\n"
    "    if type(ok) == 'table' and ok.err then\n"
    "      redis.call('DEL', KEYS[i])\n"
    "      redis.call('XADD', KEYS[i], 'MAXLEN', size, sid, 'p', prev, 'd', ARGV[6])\n"
    "    end\n"
    "    redis.call('EXPIRE', KEYS[i], ttl)\n"
    "  end\n"
    "  redis.call('PUBLISH', ARGV[5] .. 'm:' .. ch, id .. '\\n' .. prev .. '\\n' .. ARGV[6])\n"
    "end\n"
    "return id\n";

/* KEYS: epoch hash, then per channel its stream and its last-id key.
 * ARGV: run_id, the newest epoch this node has seen, then per channel the
 * stream id to read after ("" = none). Every entry after it is read (no
 * COUNT): the streams are trimmed to an exact MAXLEN at each publish, and
 * a COUNT below a stream's length (a node with a smaller
 * channel_history_size, or one lowered by a reload before the next
 * publish trimmed) would return its oldest entries as if they were all.
 * Returns { "<epoch>-<its newest seq>" (decimal), then per channel: last id
 * or '', entries after its id }.
 * The epoch is made new here too, as the publish script does, when it was
 * made on another server (or is gone): a page resuming after a restart
 * that lost writes is reset before anyone publishes again. Two more ARGV
 * (a node's catch-up): a channel and a message PUBLISHed there once read,
 * the marker that places the entries among the node's copies. */
static const char er_history_lua[] =
    "local run, seen = ARGV[1], ARGV[2]\n"
    ER_ENSURE_EPOCH_LUA
    "local res = { string.format('%d-%d', e, s) }\n"
    "for i = 2, #KEYS, 2 do\n"
    "  local after = ARGV[2 + i / 2]\n"
    "  res[#res + 1] = redis.call('GET', KEYS[i + 1]) or ''\n"
    "  if after ~= '' then\n"
    "    res[#res + 1] = redis.call('XRANGE', KEYS[i], '(' .. after, '+')\n"
    "  else\n"
    "    res[#res + 1] = {}\n"
    "  end\n"
    "end\n"
    "local mc = ARGV[3 + (#KEYS - 1) / 2]\n"
    "if mc then redis.call('PUBLISH', mc, ARGV[4 + (#KEYS - 1) / 2]) end\n"
    "return res\n";

/* KEYS: the revocation set, its floor. ARGV: user, second, oldest second
 * kept, most records, control channel, the broadcast. Records past the
 * most are dropped oldest first and raise the floor to their second
 * (fail closed, as revoke.c does: every token dated up to it is refused
 * by a node that loads the records). */
static const char er_revoke_lua[] =
    "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])\n"
    "local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])\n"
    "if over > 0 then\n"
    "  local gone = redis.call('ZPOPMIN', KEYS[1], over)\n"
    "  local s = tonumber(gone[#gone])\n"
    "  if s > tonumber(redis.call('GET', KEYS[2]) or '0') then\n"
    "    redis.call('SET', KEYS[2], s, 'EX', ARGV[7])\n"
    "  end\n"
    "end\n"
    "return redis.call('PUBLISH', ARGV[5], ARGV[6])\n";

/* KEYS: the revocation set, its floor, the "since" hash. ARGV: oldest
 * second kept, the server id (run_id:master_replid). Returns { the floor,
 * since, the records as ZRANGEBYSCORE WITHSCORES }, read at once so that
 * no record popped by a revocation in between escapes both. "since" is
 * the second from which this server holds every revocation: a server
 * with another id than the one that set it (restarted, a promoted
 * replica, data replaced by a resync), or none, may have lost some, and
 * holds them from now on — by Redis's clock, not a node's. */
static const char er_revocations_lua[] =
    "local run = ARGV[2]\n"
    ER_SERVER_ID_LUA
    "local h = redis.call('HMGET', KEYS[3], 's', 'r')\n"
    "local since = tonumber(h[1])\n"
    "if (not since) or h[2] ~= run then\n"
    "  since = tonumber(redis.call('TIME')[1])\n"
    "  redis.call('HSET', KEYS[3], 's', since, 'r', run)\n"
    "end\n"
    "return { redis.call('GET', KEYS[2]) or '0', tostring(since),\n"
    "         redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES') }\n";

enum er_script { ER_PUBLISH, ER_HISTORY, ER_REVOKE, ER_REVOCATIONS, ER_SCRIPTS };
static const char *const er_scripts[ER_SCRIPTS] = { er_publish_lua, er_history_lua, er_revoke_lua,
                                                    er_revocations_lua };

enum er_state { ER_UNSUB, ER_SUBSCRIBING, ER_SUBSCRIBED, ER_UNSUBSCRIBING };

/* What the engine knows of one channel this node subscribes to in Redis
 * (the registry entry's userdata). */
struct er_chan {
    struct channel *ch;
    int             wanted;     /* this node has subscribers of it */
    enum er_state   state;
    int             queued;     /* on the (un)subscribe batch */
    int             has_last;
    struct msgid    last;       /* the last copy delivered here */
    struct msgid    mark;       /* with no last: catch up after this id */
    struct msgid    since;      /* the newest id known when its first page here came */
    int             recovered;  /* a catch-up just ran: a gap now is a reset */
    int             reading;    /* catch-ups asked or in flight, until placed: not freed before */
    int             catching;   /* on the next catch-up batch */
    int             reread;     /* asked again while one was in flight: once more after it */
    /* In doubt (see "order" below): r->doubts[doubt_ix - 1]; copies newer
     * than floor wait until what it missed is placed. */
    size_t          doubt_ix;   /* 0: not in doubt */
    struct msgid    floor;
    int             await_sub;  /* its catch-up is asked once the SUBSCRIBE is confirmed */
    int             reset_at_sub; /* its hold was given up before that: reset then instead */
};

/* A copy, or an entry a catch-up read, waiting its turn (r->held is in id
 * order). */
struct er_held {
    struct msg  *m;
    struct msgid id;
    int          has_prev;
    struct msgid prev;
    size_t       bytes;     /* msg_bytes(m) when held */
    int          entry;     /* read from the stream (its chain checked) */
};

struct engine_redis {
    struct engine       base;       /* first */
    ev_loop_t          *loop;
    const struct cfg   *cfg;        /* = &own */
    /* The config as it was at start: [redis] keys need a restart, and a
     * reload frees the struct it came in. Lists are not carried over but
     * the Sentinels' resolved addresses (their items name those). */
    struct cfg          own;
    struct engine_hooks h;
    redis_link_t       *link;
    chan_registry_t    *reg;
    char                sha[ER_SCRIPTS][41];
    unsigned long long  refused_run; /* scripts refused since the last one that ran */
    char                newest[MSG_ID_MAX];  /* the newest id seen: the greeting's */
    uint64_t            published;           /* publishes Redis took through this node */
    /* wait_replicas: publishes the scripts answered, for the next WAIT;
     * the one WAIT in flight (NULL: none); the hook that sends it */
    struct list         unwaited;
    struct er_wait     *waiting;
    struct ev_hook      wait_hook;
    uint64_t            catchups_recovered;  /* channels whose missed copies a catch-up found */
    uint64_t            catchups_reset;      /* channels a catch-up read had to reset */
    struct msgid        mnewest;
    /* channels whose (un)subscribe waits for the after-pass batch */
    struct er_chan    **batch;
    size_t              nbatch, capbatch;
    int                 batch_lost;   /* a channel could not be queued (out of memory) */
    int                 batch_failing; /* logged; cleared by the next batch sent */
    struct ev_timer     batch_retry;  /* then, or a batch not sent: try again */
    struct ev_hook      after;
    /* channels whose catch-up is read in the after-pass, all in one call */
    struct er_chan    **catchup;
    size_t              ncatchup, capcatchup;
    /* Order: the channels in doubt, the lowest floor of theirs; the copies
     * and entries waiting, in id order; the catch-up reads sent, until
     * their answer and their marker are both in */
    struct er_chan    **doubts;
    size_t              ndoubts, capdoubts;
    struct msgid        floor;
    struct er_held     *held;
    size_t              hhead, nheld, capheld;
    size_t              held_bytes;          /* at most [redis] max_held_bytes (entries too) */
    struct list         reading;
    unsigned long long  batch_seq;           /* the last catch-up read's marker */
    unsigned            gen;                 /* catch-ups sent before an er_give_up are moot */
    int                 releasing;
    int                 freeing;
    /* the PUB/SUB connection is subscribed to <prefix>control: from then
     * on no revocation is missed, so a load sent now is complete */
    int                 control_subscribed;
};

static struct engine_redis *er(engine_t *e) { return (struct engine_redis *)e; }

static void er_release(struct engine_redis *r);
static void er_load_revocations(struct engine_redis *r);

/* ---- commands ---- */

/* A command with its arguments as one block (the key names built here). */
struct er_args {
    int          argc, cap;
    const char **argv;
    size_t      *lens;
    struct buf   store;       /* the bytes; argv points in after er_args_fix */
    size_t      *offs;
};

static int er_args_add(struct er_args *a, const char *p, size_t n)
{
    if (a->argc == a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        size_t *lens = realloc(a->lens, sizeof(*lens) * (size_t)cap);
        if (lens)
            a->lens = lens;
        size_t *offs = lens ? realloc(a->offs, sizeof(*offs) * (size_t)cap) : NULL;
        if (offs)
            a->offs = offs;
        if (!lens || !offs)
            return -ENOMEM;
        a->cap = cap;
    }
    a->offs[a->argc] = buf_used(&a->store);
    a->lens[a->argc] = n;
    a->argc++;
    return buf_append(&a->store, p, n);
}

static int er_args_str(struct er_args *a, const char *s) { return er_args_add(a, s, strlen(s)); }

static int er_args_key(struct er_args *a, const char *prefix, const char *kind, struct str name)
{
    char head[96];
    int n = snprintf(head, sizeof(head), "%s%s", prefix, kind);
    if (buf_append(&a->store, head, (size_t)n) < 0)
        return -ENOMEM;
    a->store.len -= (size_t)n;   /* rewritten as one argument below */
    if (er_args_add(a, head, (size_t)n) < 0)
        return -ENOMEM;
    a->lens[a->argc - 1] += name.len;
    return buf_append(&a->store, name.p, name.len);
}

static int er_args_fix(struct er_args *a)
{
    a->argv = malloc(sizeof(*a->argv) * (size_t)(a->argc ? a->argc : 1));
    if (!a->argv)
        return -ENOMEM;
    for (int i = 0; i < a->argc; i++)
        a->argv[i] = (const char *)buf_head(&a->store) + a->offs[i];
    return 0;
}

static void er_args_free(struct er_args *a)
{
    free(a->argv);
    free(a->lens);
    free(a->offs);
    buf_free(&a->store);
    memset(a, 0, sizeof(*a));
}

/* A script call: EVALSHA first; NOSCRIPT (a restarted or promoted
 * server) sends the same call once more as EVAL. */
typedef void er_reply_fn(struct engine_redis *r, void *arg, int status, const redisReply *rep);

struct er_call {
    struct engine_redis *r;
    enum er_script       script;
    struct er_args       a;        /* argv[0] EVALSHA, argv[1] the sha */
    er_reply_fn         *cb;
    void                *arg;
    int                  eval;     /* sent as EVAL already */
};

static void er_call_reply(void *arg, int status, const redisReply *rep)
{
    struct er_call *c = arg;
    if (status == 0 && rep->type == REDIS_REPLY_ERROR && !c->eval &&
        strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        c->eval = 1;
        c->a.argv[0] = "EVAL";
        c->a.lens[0] = 4;
        c->a.argv[1] = er_scripts[c->script];
        c->a.lens[1] = strlen(er_scripts[c->script]);
        redis_link_command(c->r->link, c->a.argc, c->a.argv, c->a.lens, er_call_reply, c);
        return;
    }
    /* Refusals (OOM, READONLY...) come in runs, one per publish: the
     * first is logged, the rest counted until a script runs again. */
    struct engine_redis *r = c->r;
    if (status == 0 && rep->type == REDIS_REPLY_ERROR) {
        if (r->refused_run++ == 0)
            log_warn("redis: script refused: %.200s (the next refusals are counted, not logged, "
                     "until a script runs)", rep->str);
    } else if (status == 0 && r->refused_run) {
        log_info("redis: scripts run again; %llu refused meanwhile", r->refused_run);
        r->refused_run = 0;
    }
    c->cb(c->r, c->arg, status, rep);
    er_args_free(&c->a);
    free(c);
}

/* A call with room for its arguments; add them, then er_call_send. */
static struct er_call *er_call_new(struct engine_redis *r, enum er_script s, int nkeys)
{
    struct er_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->r = r;
    c->script = s;
    char n[16];
    snprintf(n, sizeof(n), "%d", nkeys);
    if (er_args_str(&c->a, "EVALSHA") < 0 || er_args_str(&c->a, r->sha[s]) < 0 ||
        er_args_str(&c->a, n) < 0) {
        er_args_free(&c->a);
        free(c);
        return NULL;
    }
    return c;
}

/* Sends c (or fails it with -ENOMEM through cb). */
static void er_call_send(struct er_call *c, int built, er_reply_fn *cb, void *arg)
{
    c->cb = cb;
    c->arg = arg;
    if (built < 0 || er_args_fix(&c->a) < 0) {
        cb(c->r, arg, -ENOMEM, NULL);
        er_args_free(&c->a);
        free(c);
        return;
    }
    redis_link_command(c->r->link, c->a.argc, c->a.argv, c->a.lens, er_call_reply, c);
}

static int er_status(int link_status)
{
    if (link_status == -ENOMEM)
        return ENGINE_E_NOMEM;
    return link_status == REDIS_LINK_E_TIMEOUT ? ENGINE_E_TIMEOUT : ENGINE_E_UNAVAILABLE;
}

static void er_seen(struct engine_redis *r, struct msgid id)
{
    if (msgid_cmp(id, r->mnewest) > 0) {
        r->mnewest = id;
        msgid_format(id, r->newest);
    }
}

/* ---- publish ---- */

/* With wait_replicas, a publish is acked once a WAIT sent after its
 * script's answer says enough replicas have it. WAIT holds the command
 * connection (Redis answers nothing behind it), and counts the writes of
 * the connection that sends it, so it goes there, one at a time: every
 * publish the scripts answered meanwhile waits for the next one, which
 * covers them all. Each publish keeps its own deadline (command_timeout
 * from its start): past it, it is answered "timeout" whatever its step;
 * a WAIT with too few replicas answers "timeout" to the publishes it
 * covers. Never an ack the replicas did not confirm. */
struct er_pub {
    struct engine_redis *r;
    engine_published_fn *cb;
    void                *arg;
    struct engine_result res;
    struct list_node     wnode;     /* on r->unwaited or its WAIT's list */
    struct list         *on;        /* that list; NULL: on none */
    struct ev_timer      deadline;  /* wait_replicas only */
    uint64_t             due;
    int                  replicas;  /* wait_replicas when it came (a reload may change it) */
    int                  scripting; /* the script's answer is still to come */
    int                  answered;  /* its outcome given (the deadline passed) */
    struct str           names[WSPUSH_MAX_CHANNELS];
    int                  n;
    char                 store[];   /* the names */
};

/* One WAIT in flight and the publishes it covers. */
struct er_wait {
    struct engine_redis *r;
    struct list          covered;
};

/* Gives p its outcome; frees it unless its script's answer is to come. */
static void er_pub_done(struct engine_redis *r, struct er_pub *p, int status)
{
    if (r && status == 0)
        r->published++;
    ev_timer_stop(p->r->loop, &p->deadline);
    if (p->on)
        list_remove(p->on, &p->wnode);
    p->on = NULL;
    p->answered = 1;
    p->cb(p->arg, status, status == 0 ? &p->res : NULL);
    if (!p->scripting)
        free(p);
}

static void er_pub_expired(ev_loop_t *loop, struct ev_timer *t)
{
    (void)loop;
    struct er_pub *p = ev_container_of(t, struct er_pub, deadline);
    er_pub_done(p->r, p, ENGINE_E_TIMEOUT);
}

/* Answers every publish on l with status (0: acked). */
static void er_pubs_done(struct engine_redis *r, struct list *l, int status)
{
    struct list_node *n;
    while ((n = list_last(l)) != NULL)
        er_pub_done(r, list_entry(n, struct er_pub, wnode), status);
}

static void er_waited(void *arg, int status, const redisReply *rep)
{
    struct er_wait *w = arg;
    struct engine_redis *r = w->r;
    r->waiting = NULL;
    /* Fewer replicas than a publish asked for within the time (or no
     * answer): published, not as durable as asked. The publisher hears
     * "may or may not". */
    long long have = status == 0 && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    struct list_node *n;
    while ((n = list_last(&w->covered)) != NULL) {
        struct er_pub *p = list_entry(n, struct er_pub, wnode);
        er_pub_done(r, p, have >= p->replicas ? 0 : ENGINE_E_TIMEOUT);
    }
    free(w);
}

/* The after-pass: one WAIT for every publish the scripts answered, when
 * none is in flight. It waits as long as the latest deadline among them. */
static void er_send_wait(ev_loop_t *loop, void *data)
{
    struct engine_redis *r = data;
    if (r->waiting || list_empty(&r->unwaited))
        return;
    struct er_wait *w = malloc(sizeof(*w));
    if (!w) {
        er_pubs_done(r, &r->unwaited, ENGINE_E_TIMEOUT);
        return;
    }
    w->r = r;
    list_init(&w->covered);
    uint64_t now = ev_now(loop), due = now + 1;
    int replicas = 1;
    struct list_node *n;
    while ((n = list_last(&r->unwaited)) != NULL) {
        struct er_pub *p = list_entry(n, struct er_pub, wnode);
        list_move(&r->unwaited, &w->covered, n);
        p->on = &w->covered;
        if (p->due > due)
            due = p->due;
        if (p->replicas > replicas)
            replicas = p->replicas;   /* the most any of them asked for */
    }
    char num[16], ms[24];
    snprintf(num, sizeof(num), "%d", replicas);
    snprintf(ms, sizeof(ms), "%llu", (unsigned long long)(due - now));   /* never 0: forever */
    const char *argv[3] = { "WAIT", num, ms };
    size_t lens[3] = { 4, strlen(num), strlen(ms) };
    r->waiting = w;
    redis_link_command_blocking(r->link, 3, argv, lens, (int)(due - now), er_waited, w);
}

static void er_published(struct engine_redis *r, void *arg, int status, const redisReply *rep)
{
    struct er_pub *p = arg;
    p->scripting = 0;
    if (p->answered) {        /* its deadline passed first: answered "timeout" */
        free(p);
        return;
    }
    if (status < 0) {
        er_pub_done(r, p, er_status(status));
        return;
    }
    struct msgid id;
    if (rep->type != REDIS_REPLY_STRING || rep->len >= MSG_ID_MAX ||
        msgid_parse((struct str){ rep->str, rep->len }, &id) < 0) {
        er_pub_done(r, p, ENGINE_E_UNAVAILABLE);
        return;
    }
    memcpy(p->res.id, rep->str, rep->len);
    p->res.id[rep->len] = '\0';
    er_seen(r, id);
    /* The deliveries this node queues: its own subscribers of the
     * channels (the copies come back by PUB/SUB, like every node's). */
    p->res.deliveries = 0;
    for (int i = 0; i < p->n; i++)
        p->res.deliveries += r->h.count ? r->h.count(r->h.ctx, p->names[i]) : 0;
    if (p->replicas > 0) {
        list_push(&r->unwaited, &p->wnode);   /* for the WAIT after this pass */
        p->on = &r->unwaited;
        return;
    }
    er_pub_done(r, p, 0);
}

static void er_publish(engine_t *e, const struct engine_publish *pub, engine_published_fn *cb,
                       void *arg)
{
    struct engine_redis *r = er(e);
    if (pub->id.len) {
        cb(arg, ENGINE_E_INVALID, NULL);   /* ids are Redis's to give */
        return;
    }
    if (!redis_link_is_up(r->link)) {
        cb(arg, ENGINE_E_UNAVAILABLE, NULL);
        return;
    }
    size_t total = 0;
    for (int i = 0; i < pub->nchannels; i++)
        total += pub->channels[i].len;
    struct er_pub *p = malloc(sizeof(*p) + total);
    struct er_call *c = p ? er_call_new(r, ER_PUBLISH, 1 + 2 * pub->nchannels) : NULL;
    if (!c) {
        free(p);
        cb(arg, ENGINE_E_NOMEM, NULL);
        return;
    }
    p->r = r;
    p->cb = cb;
    p->arg = arg;
    p->n = pub->nchannels;
    list_node_init(&p->wnode);
    p->on = NULL;
    memset(&p->deadline, 0, sizeof(p->deadline));
    p->scripting = 1;
    p->answered = 0;
    p->due = ev_now(r->loop) + (uint64_t)r->cfg->redis_command_timeout_ms;
    p->replicas = r->cfg->redis_wait_replicas;
    if (p->replicas > 0)
        ev_timer_start(r->loop, &p->deadline, (uint64_t)r->cfg->redis_command_timeout_ms,
                       er_pub_expired);
    size_t off = 0;
    for (int i = 0; i < p->n; i++) {
        memcpy(p->store + off, pub->channels[i].p, pub->channels[i].len);
        p->names[i] = (struct str){ p->store + off, pub->channels[i].len };
        off += pub->channels[i].len;
    }
    const char *prefix = r->cfg->redis_prefix;
    char num[3][24];
    snprintf(num[0], sizeof(num[0]), "%d", r->cfg->redis_channel_history_size);
    snprintf(num[1], sizeof(num[1]), "%d", r->cfg->redis_channel_history_ttl_s);
    snprintf(num[2], sizeof(num[2]), "%d", ER_META_TTL_S);
    int rc = er_args_key(&c->a, prefix, "epoch", (struct str){ "", 0 });
    for (int i = 0; i < p->n && rc == 0; i++) {
        rc |= er_args_key(&c->a, prefix, "s:", p->names[i]);
        rc |= er_args_key(&c->a, prefix, "l:", p->names[i]);
    }
    rc |= er_args_str(&c->a, redis_link_server_id(r->link));
    for (int i = 0; i < 3; i++)
        rc |= er_args_str(&c->a, num[i]);
    rc |= er_args_str(&c->a, prefix);
    rc |= er_args_add(&c->a, pub->data.p, pub->data.len);
    char seen[16];
    snprintf(seen, sizeof(seen), "%u", (unsigned)r->mnewest.epoch);
    rc |= er_args_str(&c->a, seen);
    for (int i = 0; i < p->n; i++)
        rc |= er_args_add(&c->a, p->names[i].p, p->names[i].len);
    er_call_send(c, rc, er_published, p);
}

/* ---- channels this node subscribes to ---- */

static struct er_chan *er_chan_get(struct engine_redis *r, struct str name, int create)
{
    struct channel *ch = chan_lookup(r->reg, name.p, name.len, create);
    if (!ch)
        return NULL;
    void **slot = chan_userdata(ch);
    if (!*slot && create) {
        struct er_chan *c = calloc(1, sizeof(*c));
        if (!c) {
            chan_release(r->reg, ch);
            return NULL;
        }
        c->ch = ch;
        *slot = c;
        chan_pin(ch, 1);
    }
    return *slot;
}

static struct str er_chan_name(const struct er_chan *c)
{
    return (struct str){ chan_name(c->ch), chan_name_len(c->ch) };
}

static void er_doubt_stop(struct engine_redis *r, struct er_chan *c);

/* No page here wants c, Redis has it unsubscribed, and nothing asked or
 * in flight refers to it: it can be dropped. */
static int er_unused(const struct er_chan *c)
{
    return !c->wanted && c->state == ER_UNSUB && !c->reading && !c->queued;
}

static void er_chan_drop(struct engine_redis *r, struct er_chan *c)
{
    er_doubt_stop(r, c);
    struct channel *ch = c->ch;
    *chan_userdata(ch) = NULL;
    free(c);
    chan_pin(ch, 0);
    chan_release(r->reg, ch);
}

#define ER_BATCH_RETRY_MS 100

static void er_batch_retry(ev_loop_t *loop, struct ev_timer *t);

/* Out of memory on the way to Redis's (UN)SUBSCRIBE: nothing is given up;
 * the batch is tried again shortly (a channel left out is found again by
 * its state, er_each_rebatch). */
static void er_batch_later(struct engine_redis *r, const char *what)
{
    if (!r->batch_failing)
        log_error("redis: %s: channel subscriptions retried every %d ms", what, ER_BATCH_RETRY_MS);
    r->batch_failing = 1;
    if (!ev_timer_armed(&r->batch_retry))
        ev_timer_start(r->loop, &r->batch_retry, ER_BATCH_RETRY_MS, er_batch_retry);
}

static void er_batch_add(struct engine_redis *r, struct er_chan *c)
{
    if (c->queued)
        return;
    if (r->nbatch == r->capbatch) {
        size_t cap = r->capbatch ? r->capbatch * 2 : 64;
        struct er_chan **b = realloc(r->batch, sizeof(*b) * cap);
        if (!b) {
            r->batch_lost = 1;
            er_batch_later(r, "out of memory");
            return;
        }
        r->batch = b;
        r->capbatch = cap;
    }
    r->batch[r->nbatch++] = c;
    c->queued = 1;
    ev_poll_now(r->loop);
}

/* Once per loop pass: one SUBSCRIBE and one UNSUBSCRIBE for every channel
 * that got its first or lost its last local subscriber meanwhile. A
 * channel with one of the two in flight waits for its confirmation
 * (hiredis 0.14 must never have both in flight for one channel). */
static void er_flush_subscriptions(struct engine_redis *r);
static void er_flush_catchup(struct engine_redis *r);
static void er_release(struct engine_redis *r);

/* The after-pass: this pass's subscription changes, then its catch-ups. */
static void er_flush_batch(ev_loop_t *loop, void *data)
{
    (void)loop;
    struct engine_redis *r = data;
    er_flush_subscriptions(r);
    er_release(r);
    er_flush_catchup(r);
}

/* Whether c needs a SUBSCRIBE (sub) or an UNSUBSCRIBE (!sub) now. */
static int er_needs(const struct er_chan *c, int sub)
{
    return sub ? c->wanted && c->state == ER_UNSUB : !c->wanted && c->state == ER_SUBSCRIBED;
}

static void er_each_rebatch(struct channel *ch, void *arg)
{
    struct engine_redis *r = arg;
    struct er_chan *c = *chan_userdata(ch);
    if (c && !c->queued && (er_needs(c, 1) || er_needs(c, 0)))
        er_batch_add(r, c);
}

static void er_batch_retry(ev_loop_t *loop, struct ev_timer *t)
{
    struct engine_redis *r = ev_container_of(t, struct engine_redis, batch_retry);
    if (r->batch_lost) {
        r->batch_lost = 0;
        chan_registry_each(r->reg, er_each_rebatch, r);
    }
    ev_poll_now(loop);               /* the after-pass sends the batch */
}

/* One (UN)SUBSCRIBE for the batch's channels that need it; they are
 * marked as in flight only once it is sent. 0, or -1 (nothing sent). */
static int er_send_batch(struct engine_redis *r, int sub)
{
    struct buf names = { 0 };
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i < r->nbatch && rc == 0; i++) {
        struct er_chan *c = r->batch[i];
        if (!c || !er_needs(c, sub))
            continue;
        struct str nm = er_chan_name(c);
        if (buf_printf(&names, "%sm:%.*s", r->cfg->redis_prefix, (int)nm.len, nm.p) < 0 ||
            buf_append(&names, "", 1) < 0)
            rc = -1;
        n++;
    }
    const char **argv = rc == 0 && n ? malloc(sizeof(*argv) * n) : NULL;
    size_t *lens = argv ? malloc(sizeof(*lens) * n) : NULL;
    if (n && (!argv || !lens))
        rc = -1;
    if (rc == 0 && n) {
        const char *p = (const char *)buf_head(&names);
        for (size_t k = 0; k < n; k++) {
            argv[k] = p;
            lens[k] = strlen(p);
            p += lens[k] + 1;
        }
        if (redis_link_subscribe(r->link, sub, (int)n, argv, lens) < 0) {
            if (!r->batch_failing)
                log_warn("redis: %s of %zu channel(s) not sent", sub ? "SUBSCRIBE" : "UNSUBSCRIBE", n);
            rc = -1;
        }
    }
    for (size_t i = 0; rc == 0 && i < r->nbatch; i++) {
        struct er_chan *c = r->batch[i];
        if (c && er_needs(c, sub))
            c->state = sub ? ER_SUBSCRIBING : ER_UNSUBSCRIBING;
    }
    free(argv);
    free(lens);
    buf_free(&names);
    return rc;
}

static void er_flush_subscriptions(struct engine_redis *r)
{
    if (r->nbatch == 0 || !redis_link_sub_is_up(r->link))
        return;
    if (er_send_batch(r, 1) < 0 || er_send_batch(r, 0) < 0) {
        er_batch_later(r, "(UN)SUBSCRIBE not sent");   /* the batch stays as it is */
        return;
    }
    if (r->batch_failing && !r->batch_lost) {
        r->batch_failing = 0;
        log_info("redis: channel subscriptions sent again");
    }
    for (size_t i = 0; i < r->nbatch; i++) {
        struct er_chan *c = r->batch[i];
        c->queued = 0;
        if (er_unused(c))
            er_chan_drop(r, c);
    }
    r->nbatch = 0;
}

static int er_doubt_start(struct engine_redis *r, struct er_chan *c, struct msgid floor);
static struct msgid er_after(const struct er_chan *c);
static void er_restart(struct engine_redis *r, struct er_chan *c);

static void er_watch(engine_t *e, struct str name, int on)
{
    struct engine_redis *r = er(e);
    struct er_chan *c = er_chan_get(r, name, on);
    if (!c)
        return;
    /* Its first page here (or the first since the last left, though the
     * UNSUBSCRIBE may still be out) starts at the newest id this node
     * knows, as its greeting says: not from an older last copy or mark. */
    if (on && !c->wanted && c->state != ER_SUBSCRIBED) {
        er_restart(r, c);
        c->since = c->mark;
        c->reset_at_sub = 0;     /* owed to pages gone: the SUBSCRIBE reads from here */
    }
    c->wanted = on;
    /* A page joins a channel whose copies this node does not get yet: what
     * was published since it joined comes from the stream, and the copies
     * of its other channels newer than that wait for it (er_doubt). */
    if (on && c->state != ER_SUBSCRIBED && !c->await_sub && er_doubt_start(r, c, er_after(c)) == 0)
        c->await_sub = 1;
    er_batch_add(r, c);
}

/* ---- order: channels in doubt, the copies waiting, catch-ups ----
 *
 * Copies come on the PUB/SUB connection in id order, and a page sees
 * every channel it is on in one id order. A channel is "in doubt" when
 * this node may have missed messages of it: a page joined it here and the
 * SUBSCRIBE is not confirmed yet, the PUB/SUB connection was rebuilt, or a
 * copy's previous id is not the last one delivered (a gap). Its catch-up
 * reads its stream after its floor (the last id delivered here, or the
 * newest id this node knew when the page joined). Until what it read is
 * placed, every copy newer than the lowest floor of the channels in doubt
 * waits in r->held, in id order; older copies go on. A channel in doubt
 * later has a floor past every copy come by then, so a steady flow of
 * joining pages never stalls delivery: a copy waits only for the
 * catch-ups of channels in doubt before it came.
 *
 * A catch-up's entries are placed among the copies waiting, by id, once
 * its answer is in and its marker came: the read script publishes the
 * marker to this node's own channel, so every copy published before the
 * read came before it, and none older than an entry can come after the
 * entry is placed. Past max_held_bytes waiting, every channel in doubt is
 * reset here and the copies go out (er_give_up). */

static void er_deliver(struct engine_redis *r, struct er_chan *c, struct msg *m, struct msgid id)
{
    c->last = id;
    c->has_last = 1;
    c->recovered = 0;
    er_seen(r, id);
    r->base.deliver(r->base.deliver_ctx, m);
}

/* c's pages start over (after a reset): from the next copy, or a catch-up
 * after the newest id known here, never from an older mark. */
static void er_restart(struct engine_redis *r, struct er_chan *c)
{
    c->has_last = 0;
    c->mark = r->mnewest;
}

static void er_reset(struct engine_redis *r, struct er_chan *c, const char *why)
{
    struct str nm = er_chan_name(c);
    log_warn("redis: channel '%.*s': %s: its subscribers here are reset", (int)nm.len, nm.p, why);
    if (r->h.reset)
        r->h.reset(r->h.ctx, nm);
}

/* Where c's catch-up reads from. */
static struct msgid er_after(const struct er_chan *c) { return c->has_last ? c->last : c->mark; }

/* An id c's pages have, or are not owed: at or before the last delivered,
 * or with none, at or before where its first page here started (a copy
 * held for pages gone, older than the greeting of a page that joined
 * since). After a reset, copies that came are still sent. */
static int er_had(const struct er_chan *c, struct msgid id)
{
    return msgid_cmp(id, c->has_last ? c->last : c->since) <= 0;
}

static int er_doubt_start(struct engine_redis *r, struct er_chan *c, struct msgid floor)
{
    if (c->doubt_ix) {
        if (msgid_cmp(floor, c->floor) < 0)
            c->floor = floor;
    } else {
        if (r->ndoubts == r->capdoubts) {
            size_t cap = r->capdoubts ? r->capdoubts * 2 : 64;
            struct er_chan **d = realloc(r->doubts, sizeof(*d) * cap);
            if (!d)
                return -1;
            r->doubts = d;
            r->capdoubts = cap;
        }
        c->floor = floor;
        r->doubts[r->ndoubts++] = c;
        c->doubt_ix = r->ndoubts;
    }
    if (r->ndoubts == 1 || msgid_cmp(c->floor, r->floor) < 0)
        r->floor = c->floor;
    return 0;
}

/* c is no longer in doubt: what waited for it alone goes out in the
 * after-pass (er_release), never from inside a caller's loop. */
static void er_doubt_stop(struct engine_redis *r, struct er_chan *c)
{
    if (!c->doubt_ix)
        return;
    size_t i = c->doubt_ix - 1;
    r->doubts[i] = r->doubts[--r->ndoubts];
    r->doubts[i]->doubt_ix = i + 1;
    c->doubt_ix = 0;
    for (size_t k = 0; k < r->ndoubts; k++)
        if (k == 0 || msgid_cmp(r->doubts[k]->floor, r->floor) < 0)
            r->floor = r->doubts[k]->floor;
    ev_poll_now(r->loop);
}

/* Ends c's doubt once it waits for nothing: no SUBSCRIBE to confirm, no
 * catch-up asked, in flight or to ask again. */
static void er_doubt_check(struct engine_redis *r, struct er_chan *c)
{
    if (c->doubt_ix && !c->await_sub && !c->catching && !c->reading && !c->reread)
        er_doubt_stop(r, c);
}

/* A copy or entry of this id waits for a channel in doubt. */
static int er_waits(const struct engine_redis *r, struct msgid id)
{
    return r->ndoubts > 0 && msgid_cmp(id, r->floor) > 0;
}

static void er_catch_up(struct engine_redis *r, struct er_chan *c);

/* Room for n more waiting at the end. */
static int er_held_room(struct engine_redis *r, size_t n)
{
    if (r->hhead + r->nheld + n <= r->capheld)
        return 0;
    if (r->hhead > 0) {
        memmove(r->held, r->held + r->hhead, sizeof(*r->held) * r->nheld);
        r->hhead = 0;
        if (r->nheld + n <= r->capheld)
            return 0;
    }
    size_t cap = r->capheld ? r->capheld : 64;
    while (cap < r->nheld + n)
        cap *= 2;
    struct er_held *nh = realloc(r->held, sizeof(*nh) * cap);
    if (!nh)
        return -1;
    r->held = nh;
    r->capheld = cap;
    return 0;
}

/* One catch-up read: its channels, where each was read from, and what it
 * found, until its answer and its marker are both in. */
struct er_catchup {
    struct list_node   node;     /* on r->reading */
    unsigned long long seq;      /* its marker */
    unsigned           gen;      /* r->gen when sent */
    int                answered, marked;
    int                n;
    struct er_chan   **c;
    struct msgid      *after;
    struct er_held    *e;        /* the entries to place, in id order */
    size_t             ne, bytes;
};

static void er_catchup_free(struct er_catchup *b)
{
    for (size_t i = 0; i < b->ne; i++)
        msg_unref(b->e[i].m);
    free(b->e);
    free(b->c);
    free(b->after);
    free(b);
}

/* What er_give_up resets, for its one log line. */
struct er_abandoned {
    struct engine_redis *r;
    struct buf           names;     /* the first few, quoted */
    size_t               n;
};

static void er_abandoned_add(struct er_abandoned *a, struct er_chan *c)
{
    struct str nm = er_chan_name(c);
    if (a->n++ < 5)
        buf_printf(&a->names, "%s'%.*s'", a->n > 1 ? ", " : "", (int)nm.len, nm.p);
}

/* The catch-ups asked this pass, not sent yet, are not read. */
static void er_abandon_asked(struct engine_redis *r)
{
    size_t n = r->ncatchup;
    r->ncatchup = 0;
    for (size_t i = 0; i < n; i++) {
        struct er_chan *c = r->catchup[i];
        c->catching = 0;
        c->reading--;
        if (er_unused(c))
            er_chan_drop(r, c);     /* left meanwhile: nothing to read for */
    }
}

static void er_batch_done(struct engine_redis *r, struct er_catchup *b, int place);

static int er_is_answered(const struct er_catchup *b) { return b->answered; }
static int er_is_unmarked(const struct er_catchup *b) { return !b->marked; }

/* The oldest read in flight for which `which` holds, or NULL (r->reading
 * has the newest first). Callers end it and ask again rather than walk
 * on: ending one read can end or start others. */
static struct er_catchup *er_reading_find(struct engine_redis *r,
                                          int (*which)(const struct er_catchup *))
{
    struct er_catchup *found = NULL;
    struct list_node *pos, *next;
    list_for_each_safe(pos, next, &r->reading) {
        struct er_catchup *b = list_entry(pos, struct er_catchup, node);
        if (which(b))
            found = b;
    }
    return found;
}

/* Past max_held_bytes waiting (or out of memory): every channel in doubt
 * is given up and reset here (one joining, when its SUBSCRIBE is
 * confirmed), so what waits goes out now (er_release) and live delivery
 * never waits on an unbounded hold. Catch-ups in flight are moot (gen).
 * One log line per event. */
static void er_give_up(struct engine_redis *r, const char *why)
{
    struct er_abandoned a = { r, { 0 }, 0 };
    size_t nheld = r->nheld, bytes = r->held_bytes;
    er_abandon_asked(r);
    while (r->ndoubts > 0) {
        struct er_chan *c = r->doubts[--r->ndoubts];
        c->doubt_ix = 0;
        c->reread = 0;
        er_abandoned_add(&a, c);
        r->catchups_reset++;
        if (c->await_sub) {
            c->await_sub = 0;
            c->reset_at_sub = 1;
        } else {
            er_restart(r, c);
            if (r->h.reset)
                r->h.reset(r->h.ctx, er_chan_name(c));
        }
    }
    r->gen++;
    struct er_catchup *done;
    while ((done = er_reading_find(r, er_is_answered)))
        er_batch_done(r, done, 0);   /* the others are moot when answered */
    log_warn("redis: %zu message copies (%zu bytes) held while %zu channel(s) caught up, %s: "
             "those channels' subscribers here are reset: %s%s", nheld, bytes, a.n, why,
             buf_used(&a.names) ? (const char *)buf_head(&a.names) : "", a.n > 5 ? ", ..." : "");
    buf_free(&a.names);
    ev_poll_now(r->loop);
}

static void er_copy(struct engine_redis *r, struct er_chan *c, struct msg *m, int has_prev,
                    struct msgid prev);
static void er_release(struct engine_redis *r);

/* Keeps a copy in id order: at the end (it just came), or at the front
 * (it was the first waiting, taken out by er_release, and found a gap).
 * Past max_held_bytes, or out of memory, the channels in doubt are given
 * up and the copy goes out in its turn: never a silent loss. */
static void er_hold(struct engine_redis *r, struct er_chan *c, struct msg *m, int has_prev,
                    struct msgid prev, int at_front)
{
    size_t bytes = msg_bytes(m);
    const char *why = NULL;
    if (r->held_bytes + bytes > (size_t)r->cfg->redis_max_held_bytes)
        why = "past max_held_bytes";
    else if (!(at_front && r->hhead > 0) && er_held_room(r, 1) < 0)
        why = "out of memory";
    if (why) {
        er_give_up(r, why);
        if (!at_front)
            er_release(r);      /* the older copies first */
        if (at_front || r->nheld == 0 || er_held_room(r, 1) < 0) {
            er_copy(r, c, m, has_prev, prev);
            return;
        }
    }
    struct er_held h = { msg_ref(m), { 0, 0 }, has_prev, prev, bytes, 0 };
    msgid_parse(msg_id(m), &h.id);
    if (at_front && r->hhead > 0) {
        r->held[--r->hhead] = h;
    } else if (at_front) {
        memmove(r->held + 1, r->held, sizeof(*r->held) * r->nheld);
        r->held[0] = h;
    } else {
        /* In id order: a copy comes after every one waiting, but an entry
         * placed ahead of a slow connection's copies must not make the
         * queue unsorted (er_place merges into a sorted one). */
        size_t at = r->hhead + r->nheld;
        while (at > r->hhead && msgid_cmp(r->held[at - 1].id, h.id) > 0)
            at--;
        memmove(r->held + at + 1, r->held + at, sizeof(*r->held) * (r->hhead + r->nheld - at));
        r->held[at] = h;
    }
    r->nheld++;
    r->held_bytes += bytes;
}

/* One copy in its turn. */
static void er_copy(struct engine_redis *r, struct er_chan *c, struct msg *m, int has_prev,
                    struct msgid prev)
{
    struct msgid id;
    msgid_parse(msg_id(m), &id);
    if (er_had(c, id))
        return;                          /* recovered from the stream already, or not owed */
    if (c->has_last && has_prev && msgid_cmp(prev, c->last) != 0) {
        if (!c->recovered) {
            /* A copy was missed: read the stream; this one waits, first. */
            er_catch_up(r, c);
            if (er_waits(r, id)) {
                er_hold(r, c, m, has_prev, prev, 1);
                return;
            }
        }
        er_reset(r, c, "a message was missed and is not in the stream");
        r->catchups_reset++;
    }
    er_deliver(r, c, m, id);
}

/* One entry of a catch-up in its turn (no chain to check: the read did). */
static void er_entry(struct engine_redis *r, struct er_chan *c, struct msg *m, struct msgid id)
{
    if (er_had(c, id))
        return;                          /* its copy came first */
    er_deliver(r, c, m, id);
    c->recovered = 1;
}

/* What waits and no channel in doubt holds back, in id order. */
static void er_release(struct engine_redis *r)
{
    if (r->releasing || r->freeing)
        return;
    r->releasing = 1;
    while (r->nheld > 0 && !er_waits(r, r->held[r->hhead].id)) {
        struct er_held h = r->held[r->hhead++];
        r->nheld--;
        r->held_bytes -= h.bytes;
        struct er_chan *c = er_chan_get(r, msg_channel(h.m, 0), 0);
        if (c && c->state == ER_SUBSCRIBED && h.entry)
            er_entry(r, c, h.m, h.id);
        else if (c && c->state == ER_SUBSCRIBED)
            er_copy(r, c, h.m, h.has_prev, h.prev);
        msg_unref(h.m);
    }
    if (r->nheld == 0)
        r->hhead = 0;
    r->releasing = 0;
}

/* The catch-up's entries join the copies waiting, by id (both are in id
 * order: one merge from the back). */
static int er_place(struct engine_redis *r, struct er_catchup *b)
{
    if (er_held_room(r, b->ne) < 0)
        return -1;
    size_t i = r->hhead + r->nheld, j = b->ne, out = i + b->ne;
    while (j > 0) {
        if (i > r->hhead && msgid_cmp(r->held[i - 1].id, b->e[j - 1].id) >= 0)
            r->held[--out] = r->held[--i];
        else
            r->held[--out] = b->e[--j];
    }
    r->nheld += b->ne;
    b->ne = 0;                 /* the messages are r->held's now */
    b->bytes = 0;              /* counted in held_bytes at the answer */
    return 0;
}

/* The catch-up is over (its answer and marker in, or moot): its entries
 * placed (place), its channels' doubt ended where nothing else holds it. */
static void er_batch_done(struct engine_redis *r, struct er_catchup *b, int place)
{
    list_remove(&r->reading, &b->node);
    if (place && b->ne && er_place(r, b) < 0) {
        for (int k = 0; k < b->n; k++)
            if (b->c[k]->state == ER_SUBSCRIBED) {
                er_reset(r, b->c[k], "out of memory");
                er_restart(r, b->c[k]);
            }
    }
    r->held_bytes -= b->bytes;
    for (int k = 0; k < b->n; k++) {
        struct er_chan *c = b->c[k];
        c->reading--;
        if (c->reread && !c->reading && !r->freeing) {
            c->reread = 0;
            if (c->wanted && c->state == ER_SUBSCRIBED)
                er_catch_up(r, c);   /* still in doubt: what waits stays */
        }
        if (er_unused(c))
            er_chan_drop(r, c);      /* left while its catch-up was read */
        else
            er_doubt_check(r, c);
    }
    er_catchup_free(b);
    er_release(r);
}

static void er_marker(void *ctx, unsigned long long seq)
{
    struct engine_redis *r = ctx;
    struct list_node *pos, *tmp;
    list_for_each_safe(pos, tmp, &r->reading) {
        struct er_catchup *b = list_entry(pos, struct er_catchup, node);
        if (b->seq != seq)
            continue;
        b->marked = 1;
        if (b->answered)
            er_batch_done(r, b, 1);
        return;
    }
}

static void er_sub_event(void *ctx, char kind, const char *chan, size_t clen, const char *payload,
                         size_t plen)
{
    struct engine_redis *r = ctx;
    size_t pl = strlen(r->cfg->redis_prefix);
    if (clen == pl + 7 && memcmp(chan, r->cfg->redis_prefix, pl) == 0 &&
        memcmp(chan + pl, "control", 7) == 0) {
        long second;
        struct str user;
        if (kind == 'm' && redis_msg_decode_revoke(payload, plen, &second, &user) == 0 && r->h.revoked)
            r->h.revoked(r->h.ctx, user, second);
        if (kind == 's') {
            r->control_subscribed = 1;
            er_load_revocations(r);
        }
        return;
    }
    if (clen <= pl + 2 || memcmp(chan, r->cfg->redis_prefix, pl) != 0 || memcmp(chan + pl, "m:", 2) != 0)
        return;
    struct str name = { chan + pl + 2, clen - pl - 2 };
    struct er_chan *c = er_chan_get(r, name, 0);
    if (!c)
        return;
    if (kind == 's') {
        c->state = ER_SUBSCRIBED;
        c->await_sub = 0;
        if (!c->wanted) {
            c->reset_at_sub = 0;
            er_batch_add(r, c);
        } else if (c->reset_at_sub) {
            /* Its catch-up was given up while the SUBSCRIBE was out: what
             * was published meanwhile is not read; its pages start over. */
            c->reset_at_sub = 0;
            er_reset(r, c, "its catch-up was given up");
            er_restart(r, c);
        } else {
            /* Subscribed from now on: what was published since the mark (or
             * since the last copy, after a rebuilt connection) comes from the
             * stream; it is in doubt until then. */
            er_catch_up(r, c);
        }
        er_doubt_check(r, c);
        return;
    }
    if (kind == 'u') {
        c->state = ER_UNSUB;
        /* Wanted again meanwhile: er_watch started it over, the next
         * SUBSCRIBE catches up from there. */
        if (!c->wanted)
            c->has_last = 0;
        er_batch_add(r, c);
        return;
    }
    if (c->state != ER_SUBSCRIBED)
        return;
    struct redis_msg rm;
    if (redis_msg_decode(payload, plen, &rm) < 0) {
        log_warn("redis: channel '%.*s': a copy that does not parse, ignored", (int)name.len, name.p);
        return;
    }
    struct msg *m = msg_new(rm.id, &name, 1, rm.data);
    if (!m) {
        er_reset(r, c, "out of memory");
        return;
    }
    er_seen(r, rm.mid);        /* come: a page joining from now starts after it */
    if (r->nheld > 0 || er_waits(r, rm.mid))
        er_hold(r, c, m, rm.prev.len > 0, rm.mprev, 0);
    else
        er_copy(r, c, m, rm.prev.len > 0, rm.mprev);
    msg_unref(m);
}

/* An epoch (Redis's second when it began) younger than a last-id key
 * lives: within it, a missing key means "never set", not "expired". */
static int er_young(uint32_t epoch) { return (long)epoch + ER_META_TTL_S > revoke_clock(); }

/* The history script's call; marker (non-zero): published once read. */
static struct er_call *er_history_call(struct engine_redis *r, const struct str *names, int n,
                                       const struct msgid *after, unsigned long long marker,
                                       int *rc)
{
    struct er_call *c = er_call_new(r, ER_HISTORY, 1 + 2 * n);
    if (!c)
        return NULL;
    const char *prefix = r->cfg->redis_prefix;
    *rc = er_args_key(&c->a, prefix, "epoch", (struct str){ "", 0 });
    for (int i = 0; i < n; i++) {
        *rc |= er_args_key(&c->a, prefix, "s:", names[i]);
        *rc |= er_args_key(&c->a, prefix, "l:", names[i]);
    }
    char sid[48], seen[16];
    snprintf(seen, sizeof(seen), "%u", (unsigned)r->mnewest.epoch);
    *rc |= er_args_str(&c->a, redis_link_server_id(r->link));
    *rc |= er_args_str(&c->a, seen);
    for (int i = 0; i < n; i++) {
        snprintf(sid, sizeof(sid), "%u-%llu", (unsigned)after[i].epoch,
                 (unsigned long long)after[i].seq);
        *rc |= er_args_str(&c->a, sid);
    }
    if (marker) {
        snprintf(sid, sizeof(sid), "m%llu", marker);
        *rc |= er_args_str(&c->a, redis_link_probe_channel(r->link));
        *rc |= er_args_str(&c->a, sid);
    }
    return c;
}

struct er_cvisit {
    struct msgid  id;
    int           k;       /* the channel: b->c[k] */
    struct str    data;
};

static int er_cvisit_cmp(const void *a, const void *b)
{
    const struct er_cvisit *x = a, *y = b;
    int c = msgid_cmp(x->id, y->id);
    return c ? c : (x->k > y->k) - (x->k < y->k);
}

/* What the channels missed, from their streams, in id order over all of
 * them, kept to be placed when the marker comes; a channel whose stream
 * does not reach back is reset. */
static void er_caught_up(struct engine_redis *r, void *arg, int status, const redisReply *rep)
{
    struct er_catchup *b = arg;
    b->answered = 1;
    if (b->gen != r->gen || r->freeing) {
        er_batch_done(r, b, 0);
        return;
    }
    uint32_t epoch = 0;
    int has_epoch = 0;
    uint64_t newest = 0;
    int ok = status == 0 && redis_history_head(rep, (size_t)b->n, &epoch, &has_epoch, &newest) == 0;
    if (!ok)
        b->marked = 1;      /* the script did not run (or may not have): no marker to wait for */
    struct redis_entry **es = calloc((size_t)b->n, sizeof(*es));
    size_t *ns = calloc((size_t)b->n, sizeof(*ns));
    size_t total = 0;
    if (!es || !ns)
        ok = 0;
    for (int k = 0; k < b->n; k++) {
        struct er_chan *c = b->c[k];
        /* Unsubscribed meanwhile, or started over (er_restart: its pages
         * start after the newest id known): the read is of no use; one
         * asked since reads from where it is now. */
        if (c->state != ER_SUBSCRIBED || msgid_cmp(er_after(c), b->after[k]) != 0)
            continue;
        if (!ok || redis_history_entries(rep->element[2 + 2 * k], &es[k], &ns[k]) < 0) {
            er_reset(r, c, status < 0 ? "Redis did not answer the catch-up" : "bad catch-up answer");
            r->catchups_reset++;
            er_restart(r, c);
            c->recovered = 1;
            continue;
        }
        struct msgid last = { 0, 0 };
        int has_last = redis_history_last(rep->element[1 + 2 * k], &last);
        if (has_last)
            er_seen(r, last);
        /* From the last copy delivered here, an epoch made since (Redis
         * restarted) is no gap: the chain of prev ids says whether the
         * stream follows on from it. A page resuming has no such proof. */
        int own = c->has_last && msgid_cmp(c->last, b->after[k]) == 0;
        int follows = own ? redis_history_follows(epoch, has_epoch, b->after[k], has_last, last,
                                                  es[k], ns[k])
                          : redis_history_continuous(epoch, has_epoch, er_young(epoch), b->after[k],
                                                     has_last, last, es[k], ns[k]);
        if (!follows) {
            if (c->has_last || b->after[k].seq != 0) {
                er_reset(r, c, "messages were missed and the stream does not hold them all");
                r->catchups_reset++;
            }
            /* The page starts over: the copies waiting (or next) go out as
             * they come, the first one sets the chain again. */
            er_restart(r, c);
            free(es[k]);
            es[k] = NULL;
            ns[k] = 0;
        } else {
            r->catchups_recovered += ns[k] > 0;   /* missed copies found in the stream */
            if (ns[k] == 0 && has_last && !c->has_last) {
                c->last = last;
                c->has_last = 1;
            }
        }
        c->recovered = 1;
        total += ns[k];
    }
    struct er_cvisit *v = total ? calloc(total, sizeof(*v)) : NULL;
    size_t nv = 0;
    for (int k = 0; v && k < b->n; k++)
        for (size_t i = 0; i < ns[k]; i++)
            v[nv++] = (struct er_cvisit){ es[k][i].id, k, es[k][i].data };
    if (nv)
        qsort(v, nv, sizeof(*v), er_cvisit_cmp);
    b->e = nv ? calloc(nv, sizeof(*b->e)) : NULL;
    for (size_t i = 0; b->e && i < nv; i++) {
        struct er_chan *c = b->c[v[i].k];
        if (er_had(c, v[i].id))
            continue;                /* delivered here already */
        struct str name = er_chan_name(c);
        char id[MSG_ID_MAX];
        msgid_format(v[i].id, id);
        struct msg *m = msg_new((struct str){ id, strlen(id) }, &name, 1, v[i].data);
        if (!m) {
            er_reset(r, c, "out of memory");
            continue;
        }
        b->e[b->ne++] = (struct er_held){ m, v[i].id, 0, { 0, 0 }, msg_bytes(m), 1 };
        b->bytes += msg_bytes(m);
    }
    if (total && (!v || (nv && !b->e)))
        for (int k = 0; k < b->n; k++)
            if (ns[k]) {
                er_reset(r, b->c[k], "out of memory");
                er_restart(r, b->c[k]);
            }
    for (int k = 0; es && k < b->n; k++)
        free(es[k]);
    free(v);
    free(es);
    free(ns);
    r->held_bytes += b->bytes;
    if (r->held_bytes > (size_t)r->cfg->redis_max_held_bytes) {
        er_give_up(r, "past max_held_bytes");   /* b with the rest */
        er_release(r);
        return;
    }
    if (b->marked)
        er_batch_done(r, b, 1);
}

/* Asks for c's catch-up, read in the after-pass with every other channel
 * asking in the same pass; c is in doubt from now on (if it was not). */
static void er_catch_up(struct engine_redis *r, struct er_chan *c)
{
    if (er_doubt_start(r, c, er_after(c)) < 0) {
        er_reset(r, c, "out of memory");
        er_restart(r, c);
        return;
    }
    if (c->catching)
        return;
    if (c->reading > 0) {
        /* Two reads of one range at once would deliver it twice; what
         * the one in flight cannot have seen is read after it. */
        c->reread = 1;
        return;
    }
    if (r->ncatchup == r->capcatchup) {
        size_t cap = r->capcatchup ? r->capcatchup * 2 : 64;
        struct er_chan **a = realloc(r->catchup, sizeof(*a) * cap);
        if (!a) {
            er_reset(r, c, "out of memory");
            er_restart(r, c);
            er_doubt_check(r, c);
            return;
        }
        r->catchup = a;
        r->capcatchup = cap;
    }
    r->catchup[r->ncatchup++] = c;
    c->catching = 1;
    c->reading++;
    ev_poll_now(r->loop);
}

/* Channels read in one catch-up call at most: a rebuilt PUB/SUB connection
 * puts every channel of the node in doubt at once, and one script over
 * tens of thousands of streams would hold Redis (single-threaded) for all
 * its clients. Each call has its own marker; order holds across them. */
#define ER_CATCHUP_CHANNELS_MAX 256

static void er_flush_catchup(struct engine_redis *r)
{
    while (r->ncatchup > 0) {
        int n = r->ncatchup < ER_CATCHUP_CHANNELS_MAX ? (int)r->ncatchup : ER_CATCHUP_CHANNELS_MAX;
        struct er_catchup *b = calloc(1, sizeof(*b));
        struct str *names = calloc((size_t)n, sizeof(*names));
        if (b) {
            b->c = malloc(sizeof(*b->c) * (size_t)n);
            b->after = malloc(sizeof(*b->after) * (size_t)n);
        }
        if (!b || !names || !b->c || !b->after) {
            free(names);
            if (b)
                er_catchup_free(b);
            er_give_up(r, "out of memory");   /* each channel starts over with a reset, never a gap */
            return;
        }
        b->n = n;
        b->gen = r->gen;
        b->seq = ++r->batch_seq;
        for (int k = 0; k < n; k++) {
            struct er_chan *c = r->catchup[k];
            c->catching = 0;
            b->c[k] = c;
            b->after[k] = er_after(c);
            names[k] = er_chan_name(c);
        }
        /* Taken off before sending: a failed send answers at once, and
         * may ask again (appended). */
        r->ncatchup -= (size_t)n;
        memmove(r->catchup, r->catchup + n, sizeof(*r->catchup) * r->ncatchup);
        list_push(&r->reading, &b->node);
        int rc = 0;
        struct er_call *call = er_history_call(r, names, n, b->after, b->seq, &rc);
        free(names);
        if (!call)
            er_caught_up(r, b, -ENOMEM, NULL);
        else
            er_call_send(call, rc, er_caught_up, b);
    }
}

/* ---- history for a resuming page ---- */

struct er_query {
    engine_answer_fn *cb;
    void             *arg;
    int               n;
    struct msgid      after;
    int               parsed;
    size_t            max_bytes;
    struct str        names[WSPUSH_MAX_CHANNELS];
    char              store[];
};

struct er_visit {
    struct msgid id;
    int          chan;
    struct str   data;
};

static int er_visit_cmp(const void *a, const void *b)
{
    const struct er_visit *x = a, *y = b;
    int c = msgid_cmp(x->id, y->id);
    return c ? c : (x->chan > y->chan) - (x->chan < y->chan);
}

static void er_answered(struct engine_redis *r, void *arg, int status, const redisReply *rep)
{
    (void)r;
    struct er_query *q = arg;
    struct engine_answer a;
    memset(&a, 0, sizeof(a));
    uint32_t epoch = 0;
    int has_epoch = 0;
    struct er_visit *v = NULL;
    size_t nv = 0;
    struct engine_item *items = NULL;
    struct msg **msgs = NULL;
    size_t nmsgs = 0;
    uint64_t newest = 0;
    int ok = status == 0 && q->parsed &&
             redis_history_head(rep, (size_t)q->n, &epoch, &has_epoch, &newest) == 0;
    /* An id past the newest of the epoch was never given (made up, or of
     * another site's Redis): nothing proves what the page has; reset, as
     * the memory engine does for an id it did not give. */
    int never_given = ok && has_epoch && q->after.epoch == epoch && q->after.seq > newest;
    size_t cap = 0;
    for (int i = 0; ok && i < q->n; i++)
        if (rep->element[2 + 2 * i]->type == REDIS_REPLY_ARRAY)
            cap += rep->element[2 + 2 * i]->elements;
    v = ok && cap ? calloc(cap, sizeof(*v)) : NULL;
    for (int i = 0; i < q->n; i++) {
        struct redis_entry *e = NULL;
        size_t n = 0;
        struct msgid last;
        a.reset[i] = 1;
        if (!ok || never_given || redis_history_entries(rep->element[2 + 2 * i], &e, &n) < 0)
            continue;
        int has_last = redis_history_last(rep->element[1 + 2 * i], &last);
        if (redis_history_continuous(epoch, has_epoch, er_young(epoch), q->after, has_last, last, e,
                                     n) &&
            (n == 0 || v)) {
            a.reset[i] = 0;
            for (size_t k = 0; k < n; k++)
                v[nv++] = (struct er_visit){ e[k].id, i, e[k].data };
        }
        free(e);
    }
    if (status < 0 || !ok)
        a.failed = status == -ENOMEM;
    if (nv)
        qsort(v, nv, sizeof(*v), er_visit_cmp);
    /* One message per id, with the requested channels it is on; sliced
     * at max_bytes (at least one message). */
    items = nv ? calloc(nv, sizeof(*items)) : NULL;
    msgs = nv ? calloc(nv, sizeof(*msgs)) : NULL;
    size_t bytes = 0, k = 0;
    while (items && msgs && k < nv) {
        size_t j = k;
        struct str chans[WSPUSH_MAX_CHANNELS];
        int nc = 0;
        while (j < nv && msgid_cmp(v[j].id, v[k].id) == 0)
            chans[nc++] = q->names[v[j++].chan];
        char id[MSG_ID_MAX];
        msgid_format(v[k].id, id);
        struct msg *m = msg_new((struct str){ id, strlen(id) }, chans, nc, v[k].data);
        if (!m) {
            a.failed = 1;
            break;
        }
        size_t mb = 0;
        for (int c = 0; c < nc; c++)
            mb += msg_envelope_len(m, c);
        if (q->max_bytes && nmsgs > 0 && bytes + mb > q->max_bytes) {
            msg_unref(m);
            a.more = 1;
            msgid_format(v[k - 1].id, a.next);
            break;
        }
        bytes += mb;
        msgs[nmsgs++] = m;
        for (int c = 0; c < nc; c++)
            items[a.nitems++] = (struct engine_item){ m, c };
        k = j;
    }
    if (a.failed) {
        for (int i = 0; i < q->n; i++)
            a.reset[i] = 1;
        a.nitems = 0;
        a.more = 0;
    }
    a.items = items;
    q->cb(q->arg, &a);
    for (size_t i = 0; i < nmsgs; i++)
        msg_unref(msgs[i]);
    free(msgs);
    free(items);
    free(v);
    free(q);
}

static void er_history(engine_t *e, const struct engine_query *eq, engine_answer_fn *cb, void *arg)
{
    struct engine_redis *r = er(e);
    size_t total = 0;
    int n = eq->nchannels < WSPUSH_MAX_CHANNELS ? eq->nchannels : WSPUSH_MAX_CHANNELS;
    for (int i = 0; i < n; i++)
        total += eq->channels[i].len;
    struct er_query *q = calloc(1, sizeof(*q) + total);
    if (!q) {
        struct engine_answer a = { .failed = 1 };
        for (int i = 0; i < n; i++)
            a.reset[i] = 1;
        cb(arg, &a);
        return;
    }
    q->cb = cb;
    q->arg = arg;
    q->n = n;
    q->max_bytes = eq->max_bytes;
    q->parsed = msgid_parse(eq->after, &q->after) == 0;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        memcpy(q->store + off, eq->channels[i].p, eq->channels[i].len);
        q->names[i] = (struct str){ q->store + off, eq->channels[i].len };
        off += eq->channels[i].len;
    }
    /* Nothing is held here: the page's session keeps the live copies
     * that come while its question is in flight and settles them with
     * the answer (session.c); other pages are not made to wait. */
    int rc = 0;
    struct msgid afters[WSPUSH_MAX_CHANNELS];
    for (int i = 0; i < n; i++)
        afters[i] = q->after;
    struct er_call *c = q->parsed ? er_history_call(r, q->names, n, afters, 0, &rc) : NULL;
    if (!c) {
        er_answered(r, q, q->parsed ? -ENOMEM : 0, NULL);
        return;
    }
    er_call_send(c, rc, er_answered, q);
}

/* ---- revocations ---- */

struct er_revoke {
    engine_revoke_fn *cb;
    void             *arg;
};

static void er_revoked(struct engine_redis *r, void *arg, int status, const redisReply *rep)
{
    (void)r;
    struct er_revoke *v = arg;
    v->cb(v->arg, status == 0 && rep->type == REDIS_REPLY_INTEGER ? 0 : ENGINE_E_UNAVAILABLE);
    free(v);
}

static void er_revoke(engine_t *e, struct str user, long second, engine_revoke_fn *cb, void *arg)
{
    struct engine_redis *r = er(e);
    struct er_revoke *v = malloc(sizeof(*v));
    struct er_call *c = v && redis_link_is_up(r->link) ? er_call_new(r, ER_REVOKE, 2) : NULL;
    if (!c) {
        free(v);
        cb(arg, ENGINE_E_UNAVAILABLE);
        return;
    }
    v->cb = cb;
    v->arg = arg;
    struct buf msg = { 0 };
    char sec[24], oldest[24], max[24], chan[96];
    snprintf(sec, sizeof(sec), "%ld", second);
    snprintf(oldest, sizeof(oldest), "%ld", second - r->cfg->max_token_lifetime_s);
    snprintf(max, sizeof(max), "%d", r->cfg->max_revocations);
    snprintf(chan, sizeof(chan), "%scontrol", r->cfg->redis_prefix);
    int rc = redis_msg_encode_revoke(&msg, second, user);
    rc |= er_args_key(&c->a, r->cfg->redis_prefix, "revoked", (struct str){ "", 0 });
    rc |= er_args_key(&c->a, r->cfg->redis_prefix, "revoked_floor", (struct str){ "", 0 });
    rc |= er_args_add(&c->a, user.p, user.len);
    rc |= er_args_str(&c->a, sec);
    rc |= er_args_str(&c->a, oldest);
    rc |= er_args_str(&c->a, max);
    rc |= er_args_str(&c->a, chan);
    rc |= er_args_add(&c->a, buf_head(&msg), buf_used(&msg));
    char life[24];
    snprintf(life, sizeof(life), "%d", r->cfg->max_token_lifetime_s);
    rc |= er_args_str(&c->a, life);
    buf_free(&msg);
    er_call_send(c, rc, er_revoked, v);
}

/* The records kept in Redis, applied at every (re)connection: what was
 * revoked while this node was away (or before it started) is refused
 * here too. */
static void er_revocations_loaded(struct engine_redis *r, int complete, int status,
                                  const redisReply *rep)
{
    if (status < 0 || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING ||
        rep->element[2]->type != REDIS_REPLY_ARRAY)
        return;
    const redisReply *recs = rep->element[2];
    for (size_t i = 0; i + 1 < recs->elements; i += 2) {
        const redisReply *u = recs->element[i], *s = recs->element[i + 1];
        if (u->type == REDIS_REPLY_STRING && s->type == REDIS_REPLY_STRING && u->len > 0 && u->len <= 255)
            r->h.restored(r->h.ctx, (struct str){ u->str, u->len }, strtol(s->str, NULL, 10));
    }
    r->h.loaded(r->h.ctx, strtol(rep->element[0]->str, NULL, 10),
                strtol(rep->element[1]->str, NULL, 10), complete);
}

static void er_revocations_partial(struct engine_redis *r, void *arg, int status, const redisReply *rep)
{
    (void)arg;
    er_revocations_loaded(r, 0, status, rep);
}

static void er_revocations_complete(struct engine_redis *r, void *arg, int status, const redisReply *rep)
{
    (void)arg;
    er_revocations_loaded(r, 1, status, rep);
}

/* ---- the link ---- */

static void er_newest_loaded(void *arg, int status, const redisReply *rep)
{
    struct engine_redis *r = arg;
    if (status < 0 || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
        return;
    struct msgid id = { (uint32_t)strtoul(rep->element[0]->str, NULL, 10),
                        strtoull(rep->element[1]->str, NULL, 10) };
    er_seen(r, id);
}

/* The revocations kept in Redis: at every (re)connection of either
 * connection, since broadcasts sent meanwhile were missed. Complete only
 * when sent once <prefix>control is subscribed: a revocation made after
 * the script ran then comes as a broadcast, one made before is in its
 * answer. */
static void er_load_revocations(struct engine_redis *r)
{
    if (!r->h.restored || !r->h.loaded || !redis_link_is_up(r->link))
        return;
    struct er_call *c = er_call_new(r, ER_REVOCATIONS, 3);
    if (!c)
        return;
    char oldest[24];
    snprintf(oldest, sizeof(oldest), "%ld", revoke_clock() - r->cfg->max_token_lifetime_s);
    int rc = er_args_key(&c->a, r->cfg->redis_prefix, "revoked", (struct str){ "", 0 });
    rc |= er_args_key(&c->a, r->cfg->redis_prefix, "revoked_floor", (struct str){ "", 0 });
    rc |= er_args_key(&c->a, r->cfg->redis_prefix, "revoked_since", (struct str){ "", 0 });
    rc |= er_args_str(&c->a, oldest);
    rc |= er_args_str(&c->a, redis_link_server_id(r->link));
    int complete = r->control_subscribed && redis_link_sub_is_up(r->link);
    er_call_send(c, rc, complete ? er_revocations_complete : er_revocations_partial, NULL);
}

static void er_up(void *ctx, int writes_lost)
{
    struct engine_redis *r = ctx;
    (void)writes_lost;   /* the publish and history scripts start the new epoch (run_id) */
    char key[96];
    snprintf(key, sizeof(key), "%sepoch", r->cfg->redis_prefix);
    const char *a1[4] = { "HMGET", key, "e", "s" };
    size_t l1[4] = { 5, strlen(key), 1, 1 };
    redis_link_command(r->link, 4, a1, l1, er_newest_loaded, r);
    er_load_revocations(r);
}

static void er_each_resubscribe(struct channel *ch, void *arg)
{
    struct engine_redis *r = arg;
    struct er_chan *c = *chan_userdata(ch);
    if (!c)
        return;
    c->state = ER_UNSUB;     /* the new connection is subscribed to nothing */
    /* What passed while it was down comes from the stream: in doubt. */
    if (c->wanted && !c->await_sub && er_doubt_start(r, c, er_after(c)) == 0)
        c->await_sub = 1;
    er_batch_add(r, c);
}

static void er_sub_up(void *ctx)
{
    struct engine_redis *r = ctx;
    char chan[96];
    snprintf(chan, sizeof(chan), "%scontrol", r->cfg->redis_prefix);
    const char *names[1] = { chan };
    size_t lens[1] = { strlen(chan) };
    redis_link_subscribe(r->link, 1, 1, names, lens);
    r->control_subscribed = 0;   /* until confirmed: then the revocations are loaded */
    chan_registry_each(r->reg, er_each_resubscribe, r);
    /* A catch-up whose marker went to the connection gone: answered, its
     * read ran before these SUBSCRIBEs, and its entries are placed (the
     * doubts just begun hold what is newer than the copies that
     * connection may have lost). Not answered yet, its read may run after
     * them, with copies published before it still to come on the new
     * connection: it is moot, and its channels are read again after their
     * SUBSCRIBE (from their last id, which it did not move). */
    struct er_catchup *open;
    while ((open = er_reading_find(r, er_is_unmarked))) {
        open->marked = 1;
        if (open->answered)
            er_batch_done(r, open, 1);
        else
            open->gen = r->gen - 1;
    }
}

static struct str er_last_id(const engine_t *e)
{
    const struct engine_redis *r = (const struct engine_redis *)e;
    return (struct str){ r->newest, strlen(r->newest) };
}

static void er_each_free(struct channel *ch, void *arg)
{
    (void)arg;
    free(*chan_userdata(ch));
    *chan_userdata(ch) = NULL;
}

static void er_free(engine_t *e)
{
    struct engine_redis *r = er(e);
    r->freeing = 1;
    redis_link_free(r->link);   /* fails what is in flight first */
    while (!list_empty(&r->reading))
        er_batch_done(r, list_entry(list_first(&r->reading), struct er_catchup, node), 0);
    er_pubs_done(r, &r->unwaited, ENGINE_E_TIMEOUT);   /* their scripts ran */
    ev_after_remove(r->loop, &r->wait_hook);
    ev_after_remove(r->loop, &r->after);
    ev_timer_stop(r->loop, &r->batch_retry);
    for (size_t i = 0; i < r->nheld; i++)
        msg_unref(r->held[r->hhead + i].m);
    free(r->held);
    free(r->doubts);
    free(r->batch);
    free(r->catchup);
    chan_registry_each(r->reg, er_each_free, NULL);
    chan_registry_free(r->reg);
    free(r);
}

static const struct engine_ops er_ops = {
    .publish = er_publish,
    .history = er_history,
    .last_id = er_last_id,
    .free = er_free,
    .watch = er_watch,
    .revoke = er_revoke,
};

engine_t *engine_redis_new(ev_loop_t *loop, const struct cfg *cfg, const struct engine_hooks *h)
{
    struct engine_redis *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->loop = loop;
    r->own = *cfg;
    struct cfg_list *lists[] = { &r->own.listen, &r->own.tls_listen, &r->own.allowed_origins,
                                 &r->own.trusted_proxies, &r->own.publish_allow_uids,
                                 &r->own.publish_allow_gids, &r->own.pub_allowed_origins,
                                 &r->own.public_channels, &r->own.publish, &r->own.subscribe };
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        memset(lists[i], 0, sizeof(*lists[i]));
    for (int i = 0; i < r->own.redis_sentinels.n; i++)
        r->own.redis_sentinels.items[i] = r->own.redis_sentinel_host[i];
    r->cfg = &r->own;
    cfg = &r->own;
    r->h = *h;
    r->base.ops = &er_ops;
    r->base.deliver = h->deliver;
    r->base.deliver_ctx = h->ctx;
    msgid_format(r->mnewest, r->newest);
    for (int i = 0; i < ER_SCRIPTS; i++) {
        unsigned char d[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)er_scripts[i], strlen(er_scripts[i]), d);
        for (int k = 0; k < SHA_DIGEST_LENGTH; k++)
            snprintf(r->sha[i] + 2 * k, 3, "%02x", d[k]);
    }
    r->reg = chan_registry_new();
    ev_after_add(loop, &r->after, er_flush_batch, r);
    list_init(&r->unwaited);
    list_init(&r->reading);
    ev_after_add(loop, &r->wait_hook, er_send_wait, r);
    const struct redis_link_handlers lh = { er_up, NULL, er_sub_up, er_sub_event, er_marker };
    r->link = r->reg ? redis_link_new(loop, cfg, &lh, r) : NULL;
    if (!r->link) {
        ev_after_remove(loop, &r->wait_hook);
        ev_after_remove(loop, &r->after);
        chan_registry_free(r->reg);
        free(r);
        return NULL;
    }
    return &r->base;
}

void engine_redis_reload(engine_t *e, const struct cfg *next)
{
    struct cfg *own = &er(e)->own;   /* the link reads the same copy */
    /* A rotated password: the next connection authenticates with it. */
    memcpy(own->redis_password, next->redis_password, sizeof(own->redis_password));
    own->redis_connect_timeout_ms = next->redis_connect_timeout_ms;
    own->redis_command_timeout_ms = next->redis_command_timeout_ms;
    own->redis_probe_interval_ms = next->redis_probe_interval_ms;
    own->redis_channel_history_size = next->redis_channel_history_size;
    own->redis_channel_history_ttl_s = next->redis_channel_history_ttl_s;
    own->redis_wait_replicas = next->redis_wait_replicas;
    own->redis_max_held_bytes = next->redis_max_held_bytes;
    own->max_token_lifetime_s = next->max_token_lifetime_s;
    own->max_revocations = next->max_revocations;
}

uint64_t engine_redis_published(const engine_t *e)
{
    return ((const struct engine_redis *)e)->published;
}

void engine_redis_stats(const engine_t *e, struct stats_redis *out)
{
    const struct engine_redis *r = (const struct engine_redis *)e;
    redis_link_stats(r->link, out);
    out->catchups_recovered = r->catchups_recovered;
    out->catchups_reset = r->catchups_reset;
}

int engine_redis_up(const engine_t *e)
{
    return redis_link_is_up(((const struct engine_redis *)e)->link);
}

void engine_redis_pump(engine_t *e) { redis_link_pump(er(e)->link); }
