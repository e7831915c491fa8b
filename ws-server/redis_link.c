#include "redis_link.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <hiredis/async.h>

#include "list.h"
#include "log.h"

#define RL_READS_PER_EVENT 8      /* 16 KiB each */
#define RL_BACKOFF_MIN_MS  50
#define RL_BACKOFF_MAX_MS  2000

enum rl_which { RL_CMD, RL_SUB, RL_SENTINEL };

/* One hiredis async context on the loop, with its handshake and the
 * commands it has sent. The struct is embedded in the link (fixed address);
 * a context comes and goes within it. */
struct rl_conn {
    struct redis_link *l;
    enum rl_which      which;
    redisAsyncContext *ac;             /* NULL: none */
    struct ev_io       io;
    unsigned           want;           /* what hiredis asked to watch */
    int                ready;          /* handshake done */
    struct list        pending;        /* struct rl_cmd sent, oldest = list_last */
    struct ev_timer    connect_timer;  /* connect + handshake */
    struct ev_timer    cmd_timer;      /* the oldest pending command's deadline */
    struct ev_timer    retry_timer;
    int                backoff_ms;
    /* While a command the server may hold (WAIT) waits for its answer:
     * its deadline. Nothing sent after it can be answered before it, so no
     * later command's deadline is earlier (command_timeout is for Redis's
     * own delay, not the wait it was asked for). 0: none waits. */
    uint64_t           blocked_until;
    /* Set when the server said it no longer serves us (READONLY,
     * MASTERDOWN, LOADING): no new command is sent; once the ones sent
     * have their answers the connection is dropped and made again. */
    const char        *leaving;
};

struct rl_cmd {
    struct list_node     node;
    struct rl_conn      *conn;
    redis_link_reply_fn *cb;
    void                *arg;
    uint64_t             deadline;
    int                  blocks;       /* the server may hold it (WAIT) */
    int                  done;         /* outcome given: hiredis's later call only frees */
};

struct redis_link {
    ev_loop_t                 *loop;
    const struct cfg          *cfg;
    struct redis_link_handlers h;
    void                      *ctx;
    struct rl_conn             cmd, sub, sent;
    int                        sentinel_i;      /* the Sentinel asked now */
    char                       master_host[64]; /* from Sentinel */
    int                        master_port;
    int                        master_moved;    /* Sentinel named another master */
    char                       server_id[96];      /* "<run_id>:<master_replid>" (INFO) */
    char                       last_server_id[96]; /* of the previous command connection */
    int                        logged_down;     /* "unreachable" said once per outage */
    const char                *refusal;         /* why the server refuses us, said once */
    int                        freeing;
    int                        cmd_was_up, sub_was_up;  /* ready once: later readies are reconnects */
    struct stats_redis         stats;           /* counters; the up gauges are read at scrape */
    /* the probe */
    char                       probe_chan[96];
    struct ev_timer            probe_timer;     /* next probe */
    struct ev_timer            probe_deadline;  /* the one in flight must be back by then */
    uint64_t                   probe_seq;
};

static void rl_connect(struct rl_conn *c);
static void rl_drop(struct rl_conn *c, int status, const char *why);

/* ---- the ev adapter: hiredis asks for read/write interest ---- */

static void rl_io(ev_loop_t *loop, struct ev_io *io, unsigned events);

static void rl_apply(struct rl_conn *c)
{
    if (!c->ac)
        return;
    if (c->want == 0) {
        ev_io_stop(c->l->loop, &c->io);
        return;
    }
    int rc = c->io.events ? ev_io_set(c->l->loop, &c->io, c->want)
                          : ev_io_start(c->l->loop, &c->io, c->ac->c.fd, c->want, rl_io);
    if (rc < 0)
        log_error("redis: cannot watch the connection: %s", strerror(-rc));
}

static void rl_add_read(void *d)  { struct rl_conn *c = d; c->want |= EV_READ; rl_apply(c); }
static void rl_del_read(void *d)  { struct rl_conn *c = d; c->want &= ~EV_READ; rl_apply(c); }
static void rl_add_write(void *d) { struct rl_conn *c = d; c->want |= EV_WRITE; rl_apply(c); }
static void rl_del_write(void *d) { struct rl_conn *c = d; c->want &= ~EV_WRITE; rl_apply(c); }

/* hiredis frees the context: its fd is about to close. */
static void rl_cleanup(void *d)
{
    struct rl_conn *c = d;
    c->want = 0;
    if (c->io.events)
        ev_io_stop(c->l->loop, &c->io);
}

static void rl_io(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct rl_conn *c = ev_container_of(io, struct rl_conn, io);
    redisAsyncContext *ac = c->ac;
    if (!ac)
        return;
    if (events & EV_WRITE)
        redisAsyncHandleWrite(ac);
    if (!(events & EV_READ))
        return;
    /* hiredis reads 16 KiB per call: go on while bytes wait, a bounded
     * number of times, then let the loop serve the others. */
    for (int i = 0; i < RL_READS_PER_EVENT && c->ac == ac; i++) {
        redisAsyncHandleRead(ac);
        int avail = 0;
        if (c->ac != ac || ioctl(ac->c.fd, FIONREAD, &avail) < 0 || avail <= 0)
            break;
    }
}

/* During a long fan-out: send what hiredis holds and read what waits, as
 * an event would, on a connection that is up. */
static void rl_pump_conn(struct rl_conn *c)
{
    redisAsyncContext *ac = c->ac;
    if (!ac || !c->ready)
        return;
    unsigned ev = 0;
    int avail = 0;
    if (c->want & EV_WRITE)
        ev |= EV_WRITE;
    if ((c->want & EV_READ) && ioctl(ac->c.fd, FIONREAD, &avail) == 0 && avail > 0)
        ev |= EV_READ;
    if (ev)
        rl_io(c->l->loop, &c->io, ev);
}

void redis_link_pump(redis_link_t *l)
{
    /* PUB/SUB first: a script's copies reach us before its reply (seen in
     * traces), so both are read in one pump, not the ack one pump late. */
    rl_pump_conn(&l->sub);
    rl_pump_conn(&l->cmd);
}

/* ---- commands and their deadlines ---- */

static void rl_cmd_timer(ev_loop_t *loop, struct ev_timer *t);

static void rl_arm(struct rl_conn *c)
{
    struct list_node *n = list_last(&c->pending);
    if (!n) {
        ev_timer_stop(c->l->loop, &c->cmd_timer);
        return;
    }
    struct rl_cmd *k = list_entry(n, struct rl_cmd, node);
    uint64_t now = ev_now(c->l->loop);
    ev_timer_start(c->l->loop, &c->cmd_timer, k->deadline > now ? k->deadline - now : 0,
                   rl_cmd_timer);
}

static void rl_cmd_timer(ev_loop_t *loop, struct ev_timer *t)
{
    (void)loop;
    struct rl_conn *c = ev_container_of(t, struct rl_conn, cmd_timer);
    rl_drop(c, REDIS_LINK_E_TIMEOUT, "no answer within command_timeout");
}

/* An error reply saying this server does not take our commands now,
 * whatever they are: the master was demoted to a replica (READONLY;
 * MASTERDOWN when the replica has lost its own master and serves no stale
 * data), or it is loading its data after a restart (LOADING). The why
 * of the reconnection, or NULL for any other reply. */
const char *redis_link_not_serving(const redisReply *r)
{
    static const struct { const char *code, *why; } states[] = {
        { "READONLY", "READONLY: the server is a replica now" },
        { "MASTERDOWN", "MASTERDOWN: the server is a replica without its master" },
        { "LOADING", "LOADING: the server is loading its data" },
    };
    if (!r || r->type != REDIS_REPLY_ERROR || !r->str)
        return NULL;
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        size_t n = strlen(states[i].code);
        if ((size_t)r->len >= n && memcmp(r->str, states[i].code, n) == 0 &&
            ((size_t)r->len == n || r->str[n] == ' '))
            return states[i].why;
    }
    return NULL;
}

/* A command that could be held was answered: the ones queued behind it
 * are next in line, so each gets command_timeout from now, up to the next
 * one that could be held. */
static void rl_unblocked(struct rl_conn *c)
{
    uint64_t limit = ev_now(c->l->loop) + (uint64_t)c->l->cfg->redis_command_timeout_ms;
    c->blocked_until = 0;
    for (struct list_node *n = list_last(&c->pending); n && n != &c->pending.head; n = n->prev) {
        struct rl_cmd *k = list_entry(n, struct rl_cmd, node);
        if (k->blocks) {
            c->blocked_until = k->deadline;
            break;
        }
        if (k->deadline > limit)
            k->deadline = limit;
    }
}

static void rl_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct rl_cmd *k = privdata;
    if (k->done) {
        free(k);
        return;
    }
    struct rl_conn *c = k->conn;
    list_remove(&c->pending, &k->node);
    k->done = 1;
    if (k->blocks)
        rl_unblocked(c);
    rl_arm(c);
    /* A server that stopped serving us did not run the command: the
     * caller hears "not sent" (a publish gets 503), and the connection
     * goes once the commands still pending have their answers (they may
     * have run before the change: each is answered as it comes). The
     * handshake reads such replies itself. */
    const char *gone = c->which == RL_CMD && c->ready ? redis_link_not_serving(reply) : NULL;
    if (gone && !c->leaving) {
        c->leaving = gone;
        c->l->refusal = gone;   /* the "lost" line says it */
    }
    /* No reply: the connection broke after the command was sent. */
    k->cb(k->arg, gone ? REDIS_LINK_E_DOWN : reply ? 0 : REDIS_LINK_E_TIMEOUT, gone ? NULL : reply);
    free(k);
    if (c->leaving && c->ac == ac && list_empty(&c->pending))
        rl_drop(c, REDIS_LINK_E_DOWN, c->leaving);
}

/* Sends on c whatever its state (the handshake uses it too). */
static void rl_send(struct rl_conn *c, int argc, const char **argv, const size_t *lens,
                    int block_ms, redis_link_reply_fn *cb, void *arg)
{
    struct rl_cmd *k = c->ac ? calloc(1, sizeof(*k)) : NULL;
    if (!k) {
        cb(arg, REDIS_LINK_E_DOWN, NULL);
        return;
    }
    k->conn = c;
    k->cb = cb;
    k->arg = arg;
    k->blocks = block_ms > 0;
    k->deadline = ev_now(c->l->loop) + (uint64_t)c->l->cfg->redis_command_timeout_ms +
                  (uint64_t)(block_ms > 0 ? block_ms : 0);
    if (k->deadline < c->blocked_until)
        k->deadline = c->blocked_until;
    if (redisAsyncCommandArgv(c->ac, rl_reply, k, argc, argv, lens) != REDIS_OK) {
        free(k);
        cb(arg, REDIS_LINK_E_DOWN, NULL);
        return;
    }
    list_push(&c->pending, &k->node);
    if (block_ms > 0)
        c->blocked_until = k->deadline;
    if (!ev_timer_armed(&c->cmd_timer))
        rl_arm(c);
}

static void rl_send0(struct rl_conn *c, redis_link_reply_fn *cb, int argc, ...)
{
    const char *argv[4];
    size_t lens[4];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc && i < 4; i++) {
        argv[i] = va_arg(ap, const char *);
        lens[i] = strlen(argv[i]);
    }
    va_end(ap);
    rl_send(c, argc, argv, lens, 0, cb, c);
}

void redis_link_command(redis_link_t *l, int argc, const char **argv, const size_t *argvlen,
                        redis_link_reply_fn *cb, void *arg)
{
    redis_link_command_blocking(l, argc, argv, argvlen, 0, cb, arg);
}

void redis_link_command_blocking(redis_link_t *l, int argc, const char **argv,
                                 const size_t *argvlen, int block_ms, redis_link_reply_fn *cb,
                                 void *arg)
{
    if (!redis_link_is_up(l)) {
        cb(arg, REDIS_LINK_E_DOWN, NULL);
        return;
    }
    rl_send(&l->cmd, argc, argv, argvlen, block_ms, cb, arg);
}

/* ---- connection life ---- */

static const char *rl_name(const struct rl_conn *c)
{
    return c->which == RL_CMD ? "command" : c->which == RL_SUB ? "PUB/SUB" : "Sentinel";
}

static void rl_retry_timer(ev_loop_t *loop, struct ev_timer *t)
{
    (void)loop;
    rl_connect(ev_container_of(t, struct rl_conn, retry_timer));
}

static void rl_schedule(struct rl_conn *c)
{
    if (c->l->freeing)
        return;
    int d = c->backoff_ms ? c->backoff_ms : RL_BACKOFF_MIN_MS;
    c->backoff_ms = d * 2 > RL_BACKOFF_MAX_MS ? RL_BACKOFF_MAX_MS : d * 2;
    ev_timer_start(c->l->loop, &c->retry_timer, (uint64_t)d, rl_retry_timer);
}

/* The connection c had is over (its context freed or being freed by
 * hiredis): fail what it sent, tell the engine, and come back later. */
static void rl_lost(struct rl_conn *c, int status, const char *why)
{
    struct redis_link *l = c->l;
    int was_ready = c->ready;
    c->ready = 0;
    c->leaving = NULL;
    c->blocked_until = 0;
    ev_timer_stop(l->loop, &c->connect_timer);
    ev_timer_stop(l->loop, &c->cmd_timer);
    struct list_node *n;
    while ((n = list_last(&c->pending)) != NULL) {
        struct rl_cmd *k = list_entry(n, struct rl_cmd, node);
        list_remove(&c->pending, n);
        k->done = 1;   /* hiredis's own call with no reply frees it */
        k->cb(k->arg, status, NULL);
    }
    if (l->freeing)
        return;
    if (c->which == RL_SENTINEL) {
        log_debug("redis: Sentinel %s: %s", l->cfg->redis_sentinels.items[l->sentinel_i], why);
        l->sentinel_i++;
        if (l->sentinel_i < l->cfg->redis_sentinels.n) {
            rl_connect(c);
            return;
        }
        l->sentinel_i = 0;
        if (!l->logged_down) {
            log_error("redis: no Sentinel named the master '%s' (%s); retrying",
                      l->cfg->redis_master_name, why);
            l->logged_down = 1;
        }
        rl_schedule(c);
        return;
    }
    if (was_ready)
        log_warn("redis: %s connection lost: %s", rl_name(c), why);
    else if (c->which == RL_CMD && !l->logged_down)
        log_error("redis: %s unreachable: %s; retrying", l->cfg->redis_address, why);
    if (c->which == RL_CMD) {
        l->logged_down = 1;
        l->server_id[0] = '\0';
        ev_timer_stop(l->loop, &l->probe_timer);
        ev_timer_stop(l->loop, &l->probe_deadline);
        if (was_ready && l->h.down)
            l->h.down(l->ctx);
        /* With Sentinel, ask again: the master may have moved. */
        rl_schedule(l->cfg->redis_sentinels.n ? &l->sent : c);
        /* The PUB/SUB connection follows the command one. */
        if (l->sub.ac)
            rl_drop(&l->sub, REDIS_LINK_E_DOWN, "the command connection is down");
        return;
    }
    ev_timer_stop(l->loop, &l->probe_deadline);
    if (l->cmd.ready)
        rl_schedule(c);
}

/* Cuts the context off c: hiredis may free it later (inside its own
 * callback it defers), and by then c may hold a new one, whose watch the
 * old context's cleanup must not stop. */
static void rl_detach(struct rl_conn *c, redisAsyncContext *ac)
{
    if (c->io.events)
        ev_io_stop(c->l->loop, &c->io);
    c->want = 0;
    ac->ev.addRead = ac->ev.delRead = ac->ev.addWrite = ac->ev.delWrite = NULL;
    ac->ev.cleanup = NULL;
    if (c->ac == ac)
        c->ac = NULL;
}

/* Frees c's context from our side, nothing else. */
static void rl_close(struct rl_conn *c)
{
    redisAsyncContext *ac = c->ac;
    if (!ac)
        return;
    rl_detach(c, ac);
    redisAsyncFree(ac);   /* deferred by hiredis when inside its callback */
}

/* Ends c's context from our side: fails what it sent, comes back later. */
static void rl_drop(struct rl_conn *c, int status, const char *why)
{
    redisAsyncContext *ac = c->ac;
    if (ac)
        rl_detach(c, ac);
    rl_lost(c, status, why);
    if (ac)
        redisAsyncFree(ac);
}

static void rl_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rl_conn *c = ac->data;
    if (c->ac != ac)
        return;      /* ours: rl_drop already did the rest */
    rl_detach(c, (redisAsyncContext *)ac);
    rl_lost(c, REDIS_LINK_E_TIMEOUT, status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr
                                                                      : "connection error"));
}

static void rl_on_connect(const redisAsyncContext *ac, int status)
{
    struct rl_conn *c = ac->data;
    if (status == REDIS_OK || c->ac != ac)
        return;
    /* hiredis frees the context after this call. */
    rl_detach(c, (redisAsyncContext *)ac);
    rl_lost(c, REDIS_LINK_E_DOWN, ac->errstr[0] ? ac->errstr : "cannot connect");
}

static void rl_connect_timer(ev_loop_t *loop, struct ev_timer *t)
{
    (void)loop;
    rl_drop(ev_container_of(t, struct rl_conn, connect_timer), REDIS_LINK_E_DOWN,
            "no connection within connect_timeout");
}

/* ---- handshakes ---- */

/* The server of the command connection, for the log. */
static void rl_where(const struct redis_link *l, char *out, size_t n)
{
    if (l->cfg->redis_sentinels.n)
        snprintf(out, n, "%s:%d", l->master_host, l->master_port);
    else
        snprintf(out, n, "%.90s", l->cfg->redis_address);
}

/* The server answers but will not serve us (a replica, loading): said
 * once per reason until the connection is up again. */
static void rl_refused(struct redis_link *l, const char *why)
{
    if (l->refusal == why)
        return;
    l->refusal = why;
    char where[96];
    rl_where(l, where, sizeof(where));
    log_warn("redis: %s is not serving: %s; retrying", where, why);
}

static int rl_reply_ok(int status, const redisReply *r, struct rl_conn *c, const char *what)
{
    if (status < 0)
        return 0;    /* the connection is being dropped already */
    if (r->type == REDIS_REPLY_ERROR) {
        const char *gone = redis_link_not_serving(r);
        if (gone)
            rl_refused(c->l, gone);
        char why[160];
        snprintf(why, sizeof(why), "%s: %.*s", what, (int)(r->len > 100 ? 100 : r->len), r->str);
        rl_drop(c, REDIS_LINK_E_DOWN, why);
        return 0;
    }
    return 1;
}

static void rl_hs_step(void *arg, int status, const redisReply *r)
{
    struct rl_conn *c = arg;
    rl_reply_ok(status, r, c, "refused");
}

static void rl_probe_send(ev_loop_t *loop, struct ev_timer *t);

static void rl_cmd_ready(struct rl_conn *c)
{
    struct redis_link *l = c->l;
    c->ready = 1;
    c->backoff_ms = 0;
    ev_timer_stop(l->loop, &c->connect_timer);
    int lost = (l->last_server_id[0] && strcmp(l->last_server_id, l->server_id) != 0) ||
               l->master_moved;
    l->master_moved = 0;
    memcpy(l->last_server_id, l->server_id, sizeof(l->server_id));
    char where[96];
    rl_where(l, where, sizeof(where));
    l->refusal = NULL;
    l->stats.reconnects += l->cmd_was_up;
    l->cmd_was_up = 1;
    l->stats.epoch_changes += lost != 0;
    if (lost)
        log_warn("redis: connected to %s, another server or data set than before (run_id:replid "
                 "%s): writes may have been lost, a new epoch starts", where, l->server_id);
    else
        log_info("redis: connected to %s (run_id:replid %s)", where, l->server_id);
    l->logged_down = 0;
    if (l->h.up)
        l->h.up(l->ctx, lost);
    if (c->ready && !l->sub.ac && !ev_timer_armed(&l->sub.retry_timer))
        rl_connect(&l->sub);
}

static void rl_hs_role(void *arg, int status, const redisReply *r)
{
    struct rl_conn *c = arg;
    if (!rl_reply_ok(status, r, c, "ROLE"))
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, "master") != 0) {
        static const char not_master[] = "the server is not a master (ROLE)";
        rl_refused(c->l, not_master);
        rl_drop(c, REDIS_LINK_E_DOWN, not_master);
        return;
    }
    rl_cmd_ready(c);
}

/* One "name:value" line of an INFO answer into out (size n); 0 or -1. */
static int rl_info_field(const char *info, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = info; (p = strstr(p, name)) != NULL; p += nl) {
        if ((p != info && p[-1] != '\n') || p[nl] != ':')
            continue;
        p += nl + 1;
        size_t len = strcspn(p, "\r\n");
        if (len == 0 || len >= n)
            return -1;
        memcpy(out, p, len);
        out[len] = '\0';
        return 0;
    }
    return -1;
}

/* The server's identity: its run_id (a new one at each restart) and its
 * master_replid (a new one whenever it becomes a master, and when a full
 * resync replaces its data): either changed, writes may have been lost. */
static void rl_hs_info(void *arg, int status, const redisReply *r)
{
    struct rl_conn *c = arg;
    if (!rl_reply_ok(status, r, c, "INFO"))
        return;
    char run_id[48], replid[48];
    if (r->type != REDIS_REPLY_STRING || rl_info_field(r->str, "run_id", run_id, sizeof(run_id)) < 0 ||
        rl_info_field(r->str, "master_replid", replid, sizeof(replid)) < 0) {
        rl_drop(c, REDIS_LINK_E_DOWN, "INFO without run_id or master_replid");
        return;
    }
    snprintf(c->l->server_id, sizeof(c->l->server_id), "%s:%s", run_id, replid);
}

static void rl_hs_sub(redisAsyncContext *ac, void *reply, void *privdata);

static void rl_sentinel_reply(void *arg, int status, const redisReply *r)
{
    struct rl_conn *c = arg;
    struct redis_link *l = c->l;
    if (!rl_reply_ok(status, r, c, "SENTINEL"))
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[0]->len >= sizeof(l->master_host)) {
        rl_drop(c, REDIS_LINK_E_DOWN, "does not know the master");
        return;
    }
    int port = atoi(r->element[1]->str);
    if (l->master_host[0] && (strcmp(l->master_host, r->element[0]->str) != 0 ||
                              port != l->master_port)) {
        log_warn("redis: Sentinel names a new master %s:%d (was %s:%d): failover",
                 r->element[0]->str, port, l->master_host, l->master_port);
        l->master_moved = 1;
    }
    snprintf(l->master_host, sizeof(l->master_host), "%s", r->element[0]->str);
    l->master_port = port;
    c->backoff_ms = 0;
    l->sentinel_i = 0;
    rl_close(c);
    ev_timer_stop(l->loop, &c->connect_timer);
    ev_timer_stop(l->loop, &c->cmd_timer);
    ev_timer_stop(l->loop, &c->retry_timer);
    rl_connect(&l->cmd);
}

static void rl_handshake(struct rl_conn *c)
{
    struct redis_link *l = c->l;
    const struct cfg *cfg = l->cfg;
    if (c->which == RL_SENTINEL) {
        rl_send0(c, rl_sentinel_reply, 3, "SENTINEL", "get-master-addr-by-name",
                 cfg->redis_master_name);
        return;
    }
    if (cfg->redis_password[0])
        rl_send0(c, rl_hs_step, 2, "AUTH", cfg->redis_password);
    if (c->which == RL_SUB) {
        const char *argv[2] = { "SUBSCRIBE", l->probe_chan };
        size_t lens[2] = { 9, strlen(l->probe_chan) };
        if (redisAsyncCommandArgv(c->ac, rl_hs_sub, l, 2, argv, lens) != REDIS_OK)
            rl_drop(c, REDIS_LINK_E_DOWN, "cannot subscribe");
        return;
    }
    if (cfg->redis_db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", cfg->redis_db);
        rl_send0(c, rl_hs_step, 2, "SELECT", db);
    }
    rl_send0(c, rl_hs_info, 1, "INFO");
    /* INFO and ROLE are answered while the server loads its data; PING is
     * refused then (LOADING), and by a replica cut off from its master
     * (MASTERDOWN): not up yet, try again later. */
    rl_send0(c, rl_hs_step, 1, "PING");
    rl_send0(c, rl_hs_role, 1, "ROLE");
}

static void rl_connect(struct rl_conn *c)
{
    struct redis_link *l = c->l;
    const struct cfg *cfg = l->cfg;
    if (c->ac || l->freeing)
        return;
    if (c->which == RL_CMD && cfg->redis_sentinels.n && !l->master_host[0]) {
        rl_connect(&l->sent);
        return;
    }
    redisAsyncContext *ac;
    if (c->which == RL_SENTINEL)
        ac = redisAsyncConnect(cfg->redis_sentinel_host[l->sentinel_i],
                               cfg->redis_sentinel_port[l->sentinel_i]);
    else if (cfg->redis_sentinels.n)
        ac = redisAsyncConnect(l->master_host, l->master_port);
    else if (cfg->redis_address[0] == '/')
        ac = redisAsyncConnectUnix(cfg->redis_address);
    else
        ac = redisAsyncConnect(cfg->redis_host, cfg->redis_port);
    if (!ac || ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        rl_lost(c, REDIS_LINK_E_DOWN, why);
        return;
    }
    c->ac = ac;
    c->want = 0;
    ac->data = c;
    ac->ev.data = c;
    ac->ev.addRead = rl_add_read;
    ac->ev.delRead = rl_del_read;
    ac->ev.addWrite = rl_add_write;
    ac->ev.delWrite = rl_del_write;
    ac->ev.cleanup = rl_cleanup;
    redisAsyncSetConnectCallback(ac, rl_on_connect);
    redisAsyncSetDisconnectCallback(ac, rl_on_disconnect);
    ev_timer_start(l->loop, &c->connect_timer, (uint64_t)cfg->redis_connect_timeout_ms,
                   rl_connect_timer);
    /* Queued at once: hiredis 0.14 finishes connecting on the first write
     * event, which only a queued command asks for. */
    rl_handshake(c);
}

/* ---- PUB/SUB and the probe ---- */

static void rl_probe_lost(ev_loop_t *loop, struct ev_timer *t)
{
    (void)loop;
    struct redis_link *l = ev_container_of(t, struct redis_link, probe_deadline);
    l->stats.probe_failures++;
    if (l->sub.ac)
        rl_drop(&l->sub, REDIS_LINK_E_DOWN, "the liveness probe did not come back within "
                "command_timeout");
}

static void rl_probe_published(void *arg, int status, const redisReply *r)
{
    (void)arg;
    (void)status;
    (void)r;   /* an unanswered PUBLISH rebuilds the command connection itself */
}

static void rl_probe_send(ev_loop_t *loop, struct ev_timer *t)
{
    struct redis_link *l = ev_container_of(t, struct redis_link, probe_timer);
    ev_timer_start(loop, &l->probe_timer, (uint64_t)l->cfg->redis_probe_interval_ms, rl_probe_send);
    if (!redis_link_is_up(l) || !l->sub.ready || ev_timer_armed(&l->probe_deadline))
        return;
    char seq[24];
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)++l->probe_seq);
    const char *argv[3] = { "PUBLISH", l->probe_chan, seq };
    size_t lens[3] = { 7, strlen(l->probe_chan), strlen(seq) };
    /* Behind a WAIT the PUBLISH runs once the WAIT is answered. */
    uint64_t wait = (uint64_t)l->cfg->redis_command_timeout_ms, now = ev_now(loop);
    if (l->cmd.blocked_until > now + wait)
        wait = l->cmd.blocked_until - now;
    ev_timer_start(loop, &l->probe_deadline, wait, rl_probe_lost);
    redis_link_command(l, 3, argv, lens, rl_probe_published, l);
}

static int rl_str_is(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* Every reply of the subscribed connection: confirmations and messages. */
static void rl_hs_sub(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_link *l = privdata;
    struct rl_conn *c = &l->sub;
    const redisReply *r = reply;
    if (!r || c->ac != ac)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        rl_drop(c, REDIS_LINK_E_DOWN, r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[1]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *kind = r->element[0], *chan = r->element[1], *body = r->element[2];
    int is_probe = chan->len == strlen(l->probe_chan) && memcmp(chan->str, l->probe_chan, chan->len) == 0;
    if (is_probe) {
        if (rl_str_is(kind, "subscribe") && !c->ready) {
            c->ready = 1;
            c->backoff_ms = 0;
            ev_timer_stop(l->loop, &c->connect_timer);
            log_info("redis: PUB/SUB connection up");
            l->stats.reconnects += l->sub_was_up;
            l->sub_was_up = 1;
            if (!ev_timer_armed(&l->probe_timer))
                ev_timer_start(l->loop, &l->probe_timer,
                               (uint64_t)l->cfg->redis_probe_interval_ms, rl_probe_send);
            if (l->h.sub_up)
                l->h.sub_up(l->ctx);
        } else if (rl_str_is(kind, "message") && body->type == REDIS_REPLY_STRING &&
                   body->len > 0 && body->str[0] == 'm') {
            if (l->h.marker)
                l->h.marker(l->ctx, strtoull(body->str + 1, NULL, 10));
        } else if (rl_str_is(kind, "message")) {
            ev_timer_stop(l->loop, &l->probe_deadline);
        }
        return;
    }
    if (!l->h.sub_event)
        return;
    if (rl_str_is(kind, "message") && body->type == REDIS_REPLY_STRING)
        l->h.sub_event(l->ctx, 'm', chan->str, chan->len, body->str, body->len);
    else if (rl_str_is(kind, "subscribe"))
        l->h.sub_event(l->ctx, 's', chan->str, chan->len, NULL, 0);
    else if (rl_str_is(kind, "unsubscribe"))
        l->h.sub_event(l->ctx, 'u', chan->str, chan->len, NULL, 0);
}

int redis_link_subscribe(redis_link_t *l, int subscribe, int n, const char **names,
                         const size_t *lens)
{
    if (!l->sub.ready || !l->sub.ac || n <= 0)
        return -ENOTCONN;
    const char **argv = malloc(sizeof(*argv) * (size_t)(n + 1));
    size_t *al = malloc(sizeof(*al) * (size_t)(n + 1));
    int rc = -ENOMEM;
    if (argv && al) {
        argv[0] = subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE";
        al[0] = strlen(argv[0]);
        memcpy(argv + 1, names, sizeof(*argv) * (size_t)n);
        memcpy(al + 1, lens, sizeof(*al) * (size_t)n);
        rc = redisAsyncCommandArgv(l->sub.ac, rl_hs_sub, l, n + 1, argv, al) == REDIS_OK ? 0
                                                                                  : -ENOTCONN;
    }
    free(argv);
    free(al);
    return rc;
}

/* ---- life ---- */

static void rl_conn_init(struct redis_link *l, struct rl_conn *c, enum rl_which which)
{
    c->l = l;
    c->which = which;
    list_init(&c->pending);
}

redis_link_t *redis_link_new(ev_loop_t *loop, const struct cfg *cfg,
                             const struct redis_link_handlers *h, void *ctx)
{
    struct redis_link *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->loop = loop;
    l->cfg = cfg;
    l->h = *h;
    l->ctx = ctx;
    rl_conn_init(l, &l->cmd, RL_CMD);
    rl_conn_init(l, &l->sub, RL_SUB);
    rl_conn_init(l, &l->sent, RL_SENTINEL);
    /* Unique per process: only this node subscribes to its probe. */
    unsigned r = 0;
    FILE *f = fopen("/dev/urandom", "re");
    if (f) {
        if (fread(&r, sizeof(r), 1, f) != 1)
            r = 0;
        fclose(f);
    }
    snprintf(l->probe_chan, sizeof(l->probe_chan), "%sprobe:%ld-%08x", cfg->redis_prefix,
             (long)getpid(), r);
    rl_connect(&l->cmd);
    return l;
}

static void rl_conn_free(struct rl_conn *c)
{
    ev_timer_stop(c->l->loop, &c->retry_timer);
    rl_drop(c, REDIS_LINK_E_DOWN, "stopping");
}

void redis_link_free(redis_link_t *l)
{
    if (!l)
        return;
    l->freeing = 1;
    ev_timer_stop(l->loop, &l->probe_timer);
    ev_timer_stop(l->loop, &l->probe_deadline);
    rl_conn_free(&l->sub);
    rl_conn_free(&l->sent);
    rl_conn_free(&l->cmd);
    free(l);
}

int redis_link_is_up(const redis_link_t *l) { return l->cmd.ready && !l->cmd.leaving; }
int redis_link_sub_is_up(const redis_link_t *l) { return l->sub.ready; }
void redis_link_stats(const redis_link_t *l, struct stats_redis *out)
{
    *out = l->stats;
    out->up_commands = redis_link_is_up(l);
    out->up_pubsub = l->sub.ready != 0;
}

const char *redis_link_probe_channel(const redis_link_t *l) { return l->probe_chan; }

const char *redis_link_server_id(const redis_link_t *l) { return l->server_id; }
