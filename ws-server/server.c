#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "conn.h"
#include "engine_memory.h"
#include "engine_redis.h"
#include "handshake.h"
#include "hub.h"
#include "io_tls.h"
#include "listener.h"
#include "log.h"
#include "metrics_http.h"
#include "peers.h"
#include "pubsock.h"
#include "revoke.h"
#include "session.h"
#include "stats.h"
#include "tls.h"

/* Upper bound on the graceful part of shutdown: SIGTERM must exit within
 * a second even if clients never answer our close. */
#define SERVER_SHUTDOWN_MS 900
#define SERVER_MAX_LISTENERS (2 * CFG_MAX_LIST + 1)   /* listen, tls_listen, unix_listen */
/* Accepts per wake-up of one listener, so a connection flood cannot
 * starve the publish socket and timers. */
#define SERVER_ACCEPT_PER_PASS 256
/* Slots past the connection limits that only answer a request head
 * (/healthz 200, anything else 503), so a monitor still gets its answer
 * when max_connections or an address's max_connections_per_ip is reached.
 * Each holds at most max_header_bytes for handshake_timeout; an address
 * over its own limit may take only a few of them. Past the reserve the
 * 503 is written at once, unread. */
#define SERVER_RESERVE 32
#define SERVER_RESERVE_PER_IP 4

struct server_listener {
    struct listener l;
    struct server  *srv;
    int             is_unix;
    int             is_tls;        /* a tls_listen address */
    struct addr_unix_id id;        /* of the socket file, when is_unix */
    char            spec[CFG_PATH_MAX];
};

struct server {
    ev_loop_t       *loop;
    struct cfg      *cfg;          /* live config; replaced whole on SIGHUP */
    char             cfg_path[CFG_PATH_MAX];
    struct ev_hook   after;
    struct server_listener listeners[SERVER_MAX_LISTENERS];
    int              nlisteners;
    engine_t        *engine;
    int              redis;        /* engine = redis (else memory) */
    hub_t           *hub;
    revoke_t        *revoked;
    sessions_t      *sessions;
    conns_t         *conns;
    peers_t         *peers;        /* connections per client address */
    uint64_t         refused_log_ms;  /* last "503" log line (ev_now), 0 = none */
    unsigned long    refused;      /* 503s since that line */
    struct pubsock  *pubsock;
    mhttp_t         *metrics;      /* metrics_listen, NULL when off */
    tls_t           *tls;          /* the certificate pair of tls_listen, NULL without it */
    struct stats_tls tls_off;      /* zeros, shown when there is no TLS */
    struct stats_redis redis_stats; /* engine = redis: filled at each view */
    struct stats_server stats;     /* refusals at accept */
    int              shutting_down;
    struct ev_timer  shutdown_timer;
    /* One worker of several (workers > 1), else worker.tally is NULL. */
    struct server_worker worker;
    uint64_t         tallied;      /* connections last written to our slot */
    struct ev_timer  tally_timer;  /* publishes our counters to the slot */
    struct ev_timer  hold_timer;   /* a node's page sockets wait for Redis */
    uint64_t         hold_until;   /* ev_now() after which they open anyway */
    int              revocations_loaded;  /* from Redis, complete (server_loaded) */
    int              failed;       /* the held sockets could not be opened */
};

static void server_history_limits(const struct cfg *cfg, struct history_limits *lim)
{
    lim->max_entries = cfg->history_size;
    lim->max_bytes = cfg->history_bytes;
    lim->ttl_ms = (uint64_t)cfg->history_ttl_s * 1000;
}

static struct revoke_limits server_revoke_limits(const struct cfg *cfg)
{
    return (struct revoke_limits){ cfg->max_token_lifetime_s, (size_t)cfg->max_revocations };
}

/* Revocations are saved next to history_file, on the same occasions. */
static int server_revoke_path(const struct cfg *cfg, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s.revocations", cfg->history_file);
    return cfg->history_file[0] && n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* One descriptor per connection, plus listeners, publish-socket peers and
 * a margin for the files ws-server opens itself. */
void server_fd_limit(const struct cfg *cfg)
{
    char what[64];
    snprintf(what, sizeof(what), "max_connections %d", cfg->max_connections);
    listener_fd_limit((long)cfg->max_connections + 256, what);
}

/* ---- wiring: the callbacks each layer was given ---- */

static uint32_t server_fan_out(void *ctx, struct msg *m)
{
    struct server *srv = ctx;
    return hub_publish(srv->hub, m);
}

static void *server_session_open(void *ctx, struct str query, struct str resume, struct conn *c,
                                 int *close_code)
{
    struct server *srv = ctx;
    return session_open(srv->sessions, query, resume, c, &conn_transport, close_code);
}

static void server_session_closed(void *ctx, void *session)
{
    (void)ctx;
    session_close(session);
}

static void server_session_drained(void *ctx, void *session)
{
    (void)ctx;
    session_drained(session);
}

static void server_peer_released(void *ctx, void *peer, int limited)
{
    struct server *srv = ctx;
    if (limited)
        peers_reserved(peer, -1);
    peers_release(srv->peers, peer);
}

static void server_pump(void *ctx)
{
    struct server *srv = ctx;
    if (srv->pubsock)
        pubsock_pump(srv->pubsock);
    if (srv->redis)
        engine_redis_pump(srv->engine);
}

/* ---- the Redis engine's hooks (engine_hooks) ---- */

static int server_is_redis(const struct server *srv) { return srv->redis; }

static void server_reset(void *ctx, struct str channel)
{
    struct server *srv = ctx;
    hub_each(srv->hub, channel, session_reset_channel);
}

static uint32_t server_count(void *ctx, struct str channel)
{
    struct server *srv = ctx;
    return hub_count(srv->hub, channel);
}

/* Another node (or this one, its own broadcast back) disconnected user. */
static void server_revoked(void *ctx, struct str user, long second)
{
    struct server *srv = ctx;
    if (revoke_user(srv->revoked, user, second) < 0)
        log_error("revocation of '%.*s' from Redis: out of memory: every token issued until now "
                  "is refused instead", (int)user.len, user.p);
    uint32_t n = sessions_disconnect_user(srv->sessions, user);
    if (n)
        log_info("disconnect user '%.*s' (cluster): %u connection(s) here", (int)user.len, user.p, n);
}

/* A record kept in Redis, read at a (re)connection. */
static void server_restored(void *ctx, struct str user, long second)
{
    struct server *srv = ctx;
    if (revoke_restore_user(srv->revoked, user, second, revoke_clock()) < 0)
        log_error("revocation of '%.*s' from Redis: out of memory: every token issued until then "
                  "is refused instead", (int)user.len, user.p);
}

/* Every record kept in Redis was read: connections whose tokens they
 * cover are closed (one pass). Once a load was complete, tokens are
 * bounded by the second Redis holds revocations since, not by this
 * start (unless Redis may have lost some since: a restart, a failover). */
static void server_loaded(void *ctx, long floor, long since, int complete)
{
    struct server *srv = ctx;
    revoke_refuse_before(srv->revoked, floor);
    if (complete) {
        int lowered = revoke_restored(srv->revoked, floor, since);
        if (lowered && !srv->revocations_loaded)
            log_info("revocations: %zu record(s) loaded from Redis, which holds them since %ld: "
                     "tokens dated up to %ld are refused (no longer every token dated before "
                     "this start)", revoke_count(srv->revoked), since, revoke_not_before(srv->revoked));
        else if (!srv->revocations_loaded)
            log_info("revocations: %zu record(s) loaded from Redis, which holds them only since "
                     "%ld (a first start on that server, or a restart or failover that may have "
                     "lost older ones): tokens dated before this start stay refused",
                     revoke_count(srv->revoked), since);
        srv->revocations_loaded = 1;
    }
    uint32_t n = srv->sessions ? sessions_close_revoked(srv->sessions, floor) : 0;
    if (n)
        log_info("revocations from Redis: %u connection(s) here closed (revoked while this node "
                 "was away)", n);
}

static void server_watch(void *ctx, struct str channel, int on)
{
    struct server *srv = ctx;
    engine_watch(srv->engine, channel, on);
}

struct server_disconnect {
    pubsock_disconnected_fn *done;
    void                    *arg;
    uint32_t                 n;
};

static void server_revoke_sent(void *arg, int status)
{
    struct server_disconnect *d = arg;
    if (status < 0)
        log_warn("disconnect: Redis unreachable: only this node's %u connection(s) were closed", d->n);
    d->done(d->arg, status, d->n);
    free(d);
}

static void server_disconnect_user(void *ctx, struct str user, pubsock_disconnected_fn *done,
                                   void *arg)
{
    struct server *srv = ctx;
    /* Remembered first: a page reconnecting at once with its old token
     * must already meet the record. */
    if (revoke_user(srv->revoked, user, revoke_clock()) < 0)
        log_error("disconnect user '%.*s': out of memory: every token issued until now is "
                  "refused instead", (int)user.len, user.p);
    uint32_t n = sessions_disconnect_user(srv->sessions, user);
    log_info("disconnect user '%.*s': %u connection(s), tokens issued until now revoked",
             (int)user.len, user.p, n);
    struct server_disconnect *d = srv->engine->ops->revoke ? malloc(sizeof(*d)) : NULL;
    if (!d) {
        done(arg, srv->engine->ops->revoke ? ENGINE_E_UNAVAILABLE : 0, n);
        return;
    }
    *d = (struct server_disconnect){ done, arg, n };
    /* Every node applies it, this one's record and second included. */
    srv->engine->ops->revoke(srv->engine, user, revoke_clock(), server_revoke_sent, d);
}

/* ---- metrics: the exporter reads every module's counters ---- */

static void server_metrics_view(struct server *srv, struct stats_view *out)
{
    if (server_is_redis(srv))
        engine_redis_stats(srv->engine, &srv->redis_stats);
    struct stats_view v = {
        .conn = conns_stats(srv->conns),
        .server = &srv->stats,
        .session = sessions_stats(srv->sessions),
        .hub = hub_stats(srv->hub),
        .pubsock = pubsock_stats(srv->pubsock),
        .tls = srv->tls ? tls_stats(srv->tls) : &srv->tls_off,
        .redis = server_is_redis(srv) ? &srv->redis_stats : NULL,
        .published = server_is_redis(srv) ? engine_redis_published(srv->engine)
                                          : engine_memory_published(srv->engine),
        .channels = hub_channels(srv->hub),
        .history_messages = server_is_redis(srv) ? 0 : engine_memory_entries(srv->engine),
        .history_bytes = server_is_redis(srv) ? 0 : engine_memory_bytes(srv->engine),
    };
    *out = v;
}

/* Our counters into our slot, for the scrapes other workers answer. */
static void server_tally_publish(struct server *srv)
{
    struct stats_view v;
    struct stats_counts mine;
    server_metrics_view(srv, &v);
    stats_counts_of(&v, &mine);
    tally_publish(srv->worker.tally, srv->worker.slot, &mine);
}

static void server_tally_due(ev_loop_t *loop, struct ev_timer *t)
{
    struct server *srv = ev_container_of(t, struct server, tally_timer);
    server_tally_publish(srv);
    ev_timer_start(loop, t, TALLY_PUBLISH_MS, server_tally_due);
}

/* One worker of several answers a scrape with the sum over all of them. */
static int server_metrics(void *ctx, struct buf *out)
{
    struct server *srv = ctx;
    struct stats_view v;
    struct stats_counts sum;
    server_metrics_view(srv, &v);
    if (srv->worker.tally) {
        server_tally_publish(srv);
        tally_sum(srv->worker.tally, &sum);
        stats_view_of(&v, &sum);
        tally_process(srv->worker.tally, &v.process);
    } else if (stats_process_read(&v.process) < 0) {
        log_debug("metrics: /proc/self not fully read");
    }
    return stats_write(out, &v);
}

/* Ready while the publish socket accepts (and not shutting down). */
static int server_ready(void *ctx)
{
    struct server *srv = ctx;
    return !srv->shutting_down && srv->pubsock && pubsock_listening(srv->pubsock);
}

/* ---- listeners ---- */

static void server_refuse(int fd)
{
    char resp[512];
    int n = hs_response(HS_SERVICE_UNAVAILABLE, NULL, resp, sizeof(resp));
    /* Best effort on a fresh socket: its buffer is empty, so this fits. */
    if (n > 0 && send(fd, resp, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("503 answer not sent: %s", strerror(errno));
    close(fd);
}

/* At most one line a second under a flood, with the count since the last. */
static void server_log_refusal(struct server *srv, const char *why)
{
    uint64_t now = ev_now(srv->loop);
    srv->refused++;
    if (srv->refused_log_ms && now - srv->refused_log_ms < 1000)
        return;
    log_info("%s: new connections get 503 (%lu since the last report)", why, srv->refused);
    srv->refused_log_ms = now;
    srv->refused = 0;
}

/* Counted per address (peers.h) unless it comes through unix_listen or a
 * trusted proxy. Past max_connections (slots of the reserve not counted)
 * or the address's max_connections_per_ip, the connection takes a reserve
 * slot; past the reserve, or an address's share of it, it gets 503 now. */
static void server_on_accept(struct listener *l, int fd, void *data)
{
    (void)l;
    struct server_listener *sl = data;
    struct server *srv = sl->srv;
    const struct cfg *cfg = srv->cfg;
    struct peer *peer = NULL;
    uint32_t n = 0;
    if (!sl->is_unix) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
            peer = peers_hold(srv->peers, (struct sockaddr *)&ss, len, &n);
    }
    size_t limited = conns_limited(srv->conns);
    size_t mine = conns_count(srv->conns) - limited;
    uint32_t per_ip = (uint32_t)cfg->max_connections_per_ip;
    int full;
    if (srv->worker.tally) {
        /* max_connections counts every worker's connections; the per-address
         * limit is split, each worker holding its share of an address's. */
        full = !tally_admit(srv->worker.tally, srv->worker.slot, mine,
                            (uint64_t)cfg->max_connections);
        /* What the slot holds now; the after-pass hook corrects it when
         * the connection does not open or takes a reserve slot. */
        srv->tallied = full ? mine : mine + 1;
        per_ip = (per_ip + (uint32_t)srv->worker.n - 1) / (uint32_t)srv->worker.n;
    } else {
        full = mine >= (size_t)cfg->max_connections;
    }
    int over_ip = per_ip > 0 && n > per_ip;
    unsigned flags = 0;
    if (full || over_ip) {
        const char *why = full ? "max_connections reached" : "max_connections_per_ip reached";
        /* One address holds at most SERVER_RESERVE_PER_IP reserve slots,
         * with or without a per-address limit: a single client must not
         * be able to take /healthz away. */
        if (limited >= SERVER_RESERVE ||
            (peer && peers_reserved(peer, 0) >= SERVER_RESERVE_PER_IP)) {
            server_log_refusal(srv, why);
            srv->stats.refused.n[full ? STATS_REFUSED_LIMIT : STATS_REFUSED_PER_IP]++;
            if (peer)
                peers_release(srv->peers, peer);
            /* A TLS client could not read a plain 503: it is just closed. */
            if (sl->is_tls)
                close(fd);
            else
                server_refuse(fd);
            return;
        }
        server_log_refusal(srv, why);
        flags = CONN_ACCEPT_LIMITED | (full ? 0 : CONN_ACCEPT_PER_IP);
        if (peer)
            peers_reserved(peer, 1);
    }
    /* Frames are complete messages, written once per pass: waiting for
     * more (Nagle) would only add latency. */
    if (!sl->is_unix) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    const struct io_ops *ops = &io_plain_ops;
    void *state = NULL;
    if (sl->is_tls) {
        ops = &io_tls_ops;
        state = io_tls_new(srv->tls, fd);
        if (!state) {
            log_error("TLS connection dropped: out of memory");
            close(fd);
            fd = -1;
        }
    }
    if ((fd < 0 || conn_accept(srv->conns, fd, ops, state, flags, peer) < 0) && peer) {
        if (flags & CONN_ACCEPT_LIMITED)
            peers_reserved(peer, -1);
        peers_release(srv->peers, peer);
    }
}

static int server_listen(struct server *srv, const char *spec, int tls, char *err, size_t errlen)
{
    if (srv->nlisteners == SERVER_MAX_LISTENERS) {
        snprintf(err, errlen, "too many listen addresses");
        return -1;
    }
    struct server_listener *sl = &srv->listeners[srv->nlisteners];
    /* A worker's sockets are its supervisor's, which removes their files. */
    int fd = srv->worker.bound ? bound_take(srv->worker.bound, spec, srv->worker.slot)
                               : addr_listen(spec, 1024, 0, 0666, NULL, err, errlen);
    if (fd < 0) {
        if (srv->worker.bound)
            snprintf(err, errlen, "%s: not bound by the supervisor", spec);
        return -1;
    }
    sl->srv = srv;
    sl->is_unix = addr_is_unix(spec);
    sl->is_tls = tls;
    sl->id = srv->worker.bound ? (struct addr_unix_id){ 0 } : addr_unix_identity(spec);
    snprintf(sl->spec, sizeof(sl->spec), "%s", spec);
    if (listener_start(&sl->l, srv->loop, fd, spec, SERVER_ACCEPT_PER_PASS, server_on_accept, sl) < 0) {
        close(fd);
        snprintf(err, errlen, "%s: cannot watch", spec);
        return -1;
    }
    srv->nlisteners++;
    log_info("listening on %s%s", spec, tls ? " (TLS)" : "");
    return 0;
}

static void server_stop_listening(struct server *srv)
{
    for (int i = 0; i < srv->nlisteners; i++) {
        listener_stop(&srv->listeners[i].l);
        if (srv->listeners[i].is_unix)
            addr_unlink_owned(srv->listeners[i].spec, &srv->listeners[i].id);
    }
    srv->nlisteners = 0;
}

/* ---- signals ---- */

static void server_shutdown_timeout(ev_loop_t *loop, struct ev_timer *t)
{
    (void)t;
    ev_stop(loop);
}

static void server_shutdown(struct server *srv)
{
    if (srv->shutting_down)
        return;
    srv->shutting_down = 1;
    log_info("shutting down: closing %zu connection(s) with 1001", conns_count(srv->conns));
    if (srv->cfg->history_file[0] && !server_is_redis(srv)) {
        char why[512];
        if (engine_memory_save(srv->engine, srv->cfg->history_file, why, sizeof(why)) < 0)
            log_error("history not saved: %s", why);
        else
            log_info("history saved to %s", srv->cfg->history_file);
        char path[CFG_PATH_MAX + 16];
        if (server_revoke_path(srv->cfg, path, sizeof(path)) == 0 &&
            revoke_save(srv->revoked, path, why, sizeof(why)) < 0)
            log_error("revocations not saved: %s", why);
    }
    ev_timer_stop(srv->loop, &srv->hold_timer);
    server_stop_listening(srv);
    if (srv->pubsock)
        pubsock_stop(srv->pubsock);
    conns_close_all(srv->conns, 1001);
    uint64_t wait = (uint64_t)srv->cfg->close_timeout_ms;
    ev_timer_start(srv->loop, &srv->shutdown_timer, wait < SERVER_SHUTDOWN_MS ? wait : SERVER_SHUTDOWN_MS,
                   server_shutdown_timeout);
}

static void server_reload(struct server *srv)
{
    struct cfg *next = malloc(sizeof(*next));
    char err[512];
    if (!next) {
        log_error("reload: out of memory");
        return;
    }
    /* A certificate pair that cannot be used fails the reload like a bad
     * key would: the running config and pair stay, and the log says why. */
    int failed = cfg_load(next, srv->cfg_path, err, sizeof(err)) < 0;
    const char *store = failed ? NULL : cfg_store_key_changed(srv->cfg, next);
    if (store) {
        snprintf(err, sizeof(err), "%s changed: restart to move the node to another store", store);
        failed = 1;
    }
    if (failed ||
        (srv->tls && next->tls_certificate[0] && tls_reload(srv->tls, next, err, sizeof(err)) < 0)) {
        log_error("reload failed, keeping the running config: %s", err);
        cfg_free(next);
        free(next);
        return;
    }
    /* tls_listen is bound at start: without a pair in the new file the
     * one in force serves until a restart. */
    if (srv->tls && next->tls_certificate[0])
        log_info("TLS certificate %s loaded for new connections", next->tls_certificate);
    else if (srv->tls)
        log_warn("reload: no tls_certificate any more: the TLS listeners keep the pair in force "
                 "until a restart");
    /* Listeners and the publish socket stay as bound at start; everything
     * else (limits, origins, channel patterns, secrets) applies from now:
     * every layer reads the config through &srv->cfg. */
    cfg_free(srv->cfg);
    free(srv->cfg);
    srv->cfg = next;
    struct history_limits lim;
    server_history_limits(next, &lim);
    if (server_is_redis(srv))
        engine_redis_reload(srv->engine, next);
    else
        engine_memory_set_limits(srv->engine, &lim);
    struct revoke_limits rl = server_revoke_limits(next);
    revoke_set_limits(srv->revoked, &rl, revoke_clock());
    log_set_level((enum log_level)next->log_level);
    server_fd_limit(next);
    if (peers_set_trusted(srv->peers, &next->trusted_proxies) < 0)
        log_warn("trusted_proxies: an entry does not parse and is left out");
    log_info("configuration reloaded from %s", srv->cfg_path);
}

static void server_on_signal(ev_loop_t *loop, int signo, void *data)
{
    (void)loop;
    struct server *srv = data;
    if (signo == SIGHUP)
        server_reload(srv);
    else
        server_shutdown(srv);
}

/* Runs after the connections' own hook (flush, reap), so the count is
 * final for the pass. */
static void server_after(ev_loop_t *loop, void *data)
{
    struct server *srv = data;
    if (srv->worker.tally) {
        uint64_t mine = conns_count(srv->conns) - conns_limited(srv->conns);
        if (mine != srv->tallied)
            tally_connections(srv->worker.tally, srv->worker.slot, mine);
        srv->tallied = mine;
    }
    if (srv->shutting_down && conns_count(srv->conns) == 0)
        ev_stop(loop);
}

/* ---- life cycle ---- */

/* A node on Redis takes no page until its link to Redis is up and the
 * revocation records are loaded from it, or until [redis] connect_timeout
 * has passed (then it serves without, as a node does while Redis is
 * down): a page reconnecting to a node (or worker) just restarted resumes
 * from Redis instead of getting a reset, its token (dated before this
 * start) is let in, and a publish it takes is not refused. Meanwhile
 * connections wait in the backlog: a worker's in the supervisor's
 * sockets (the other workers take the shared ones), a single node's in
 * its own, bound at start (so a port in use still fails the start) but
 * not accepted from (listener_hold).
 * The engine has no "up" event, so this polls its state, briefly. */
#define SERVER_HOLD_POLL_MS 10

static int server_open(struct server *srv, char *err, size_t errlen);

static void server_hold_due(ev_loop_t *loop, struct ev_timer *t)
{
    struct server *srv = ev_container_of(t, struct server, hold_timer);
    int up = engine_redis_up(srv->engine) && srv->revocations_loaded;
    if (!up && ev_now(loop) < srv->hold_until) {
        if (ev_timer_start(loop, t, SERVER_HOLD_POLL_MS, server_hold_due) == 0)
            return;
    }
    if (!up)
        log_warn("Redis not reached (or its revocation records not loaded) within connect_timeout: "
                 "serving without it for now");
    if (!srv->worker.bound) {
        for (int i = 0; i < srv->nlisteners; i++)
            listener_hold(&srv->listeners[i].l, 0);
        log_info("accepting pages");
        return;
    }
    char err[512];
    if (server_open(srv, err, sizeof(err)) < 0) {
        log_error("%s", err);
        srv->failed = 1;
        ev_stop(loop);
        return;
    }
    server_tally_due(loop, &srv->tally_timer);
}

static void server_restore_history(struct server *srv)
{
    const char *path = srv->cfg->history_file;
    if (!path[0] || access(path, F_OK) != 0 || server_is_redis(srv))
        return;
    char why[512];
    if (engine_memory_restore(srv->engine, path, why, sizeof(why)) < 0) {
        log_error("history not restored, starting a new epoch: %s", why);
    } else {
        struct str last = engine_last_id(srv->engine);
        log_info("history restored from %s: last id %.*s", path, (int)last.len, last.p);
    }
    /* Used once: a later crash must not replay a stale file. */
    unlink(path);
}

/* Without the file of a planned stop, the records of earlier runs are
 * lost: revoke_new() made every token issued before this start refused. */
static void server_restore_revocations(struct server *srv)
{
    char path[CFG_PATH_MAX + 16], why[512];
    if (server_revoke_path(srv->cfg, path, sizeof(path)) < 0 || access(path, F_OK) != 0)
        return;
    if (revoke_load(srv->revoked, path, revoke_clock(), why, sizeof(why)) < 0)
        log_error("revocations not restored, tokens issued before this start are refused: %s", why);
    else
        log_info("revocations restored from %s: %zu user(s)", path, revoke_count(srv->revoked));
    unlink(path);
}

static int server_build(struct server *srv, char *err, size_t errlen)
{
    struct history_limits lim;
    server_history_limits(srv->cfg, &lim);
    struct cfg *const *cfg = &srv->cfg;
    struct revoke_limits rl = server_revoke_limits(srv->cfg);
    /* Tokens dated before the second this run started are refused until a
     * planned stop's records, or Redis's, say otherwise (see revoke.h). */
    long start = revoke_clock() - 1;
    srv->revoked = revoke_new(&rl, start);
    srv->hub = srv->revoked ? hub_new(session_deliver) : NULL;
    srv->redis = srv->cfg->engine == CFG_ENGINE_REDIS;
    if (srv->redis) {
        const struct engine_hooks eh = { server_fan_out, server_reset, server_count, server_revoked,
                                         server_restored, server_loaded, srv };
        /* The records are in Redis, not lost: once they are read, the
         * start no longer bounds tokens (server_loaded). */
        log_info("revocations: tokens dated up to %ld (this start) are refused until the records "
                 "kept in Redis are loaded", start);
        srv->engine = srv->hub ? engine_redis_new(srv->loop, srv->cfg, &eh) : NULL;
        if (srv->engine)
            hub_set_watch(srv->hub, server_watch, srv);
    } else {
        srv->engine = srv->hub ? engine_memory_new(srv->loop, &lim, server_fan_out, srv) : NULL;
    }
    srv->sessions = srv->engine ? sessions_new(srv->hub, srv->engine, srv->revoked, cfg) : NULL;
    const struct conn_handlers ch = { server_session_open, server_session_closed, server_pump,
                                      server_session_drained, server_peer_released };
    srv->peers = srv->sessions ? peers_new() : NULL;
    srv->conns = srv->peers ? conns_new(srv->loop, cfg, &ch, srv) : NULL;
    if (!srv->conns) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (peers_set_trusted(srv->peers, &srv->cfg->trusted_proxies) < 0)
        log_warn("trusted_proxies: an entry does not parse and is left out");
    server_restore_history(srv);
    server_restore_revocations(srv);
    if (srv->cfg->tls_listen.n > 0) {
        srv->tls = tls_new(srv->cfg, err, errlen);
        if (!srv->tls)
            return -1;
    }
    return 0;
}

/* Listeners, the publish socket and metrics_listen: from here on the
 * server is reachable. */
static int server_open(struct server *srv, char *err, size_t errlen)
{
    struct cfg *const *cfg = &srv->cfg;
    for (int i = 0; i < srv->cfg->listen.n; i++)
        if (server_listen(srv, srv->cfg->listen.items[i], 0, err, errlen) < 0)
            return -1;
    if (srv->cfg->unix_listen[0] && server_listen(srv, srv->cfg->unix_listen, 0, err, errlen) < 0)
        return -1;
    for (int i = 0; i < srv->cfg->tls_listen.n; i++)
        if (server_listen(srv, srv->cfg->tls_listen.items[i], 1, err, errlen) < 0)
            return -1;
    const struct pubsock_handlers ph = { server_disconnect_user };
    if (srv->worker.bound) {
        int fd = bound_take_publish(srv->worker.bound);
        srv->pubsock = fd < 0 ? NULL : pubsock_open_fd(srv->loop, cfg, srv->engine, &ph, srv, fd,
                                                       err, errlen);
        if (!srv->pubsock && fd >= 0)
            close(fd);
    } else {
        srv->pubsock = pubsock_open(srv->loop, cfg, srv->engine, &ph, srv, err, errlen);
    }
    if (!srv->pubsock)
        return -1;
    log_info("publish socket %s", srv->cfg->publish_socket);
    if (srv->cfg->metrics_listen[0]) {
        const struct mhttp_handlers mh = { server_metrics, server_ready };
        char why[256];
        int fd = srv->worker.bound ? bound_take_metrics(srv->worker.bound) : -1;
        if (fd >= 0)
            srv->metrics = mhttp_open_fd(srv->loop, fd, srv->cfg->metrics_listen, &mh, srv, why,
                                         sizeof(why));
        else
            srv->metrics = mhttp_open(srv->loop, srv->cfg->metrics_listen, &mh, srv, why,
                                      sizeof(why));
        if (!srv->metrics && fd >= 0)
            close(fd);
        if (!srv->metrics) {
            snprintf(err, errlen, "metrics_listen: %s", why);
            return -1;
        }
        log_info("metrics on %s", srv->cfg->metrics_listen);
    }
    return 0;
}

server_t *server_new(ev_loop_t *loop, struct cfg *cfg, const char *cfg_path,
                     const struct server_worker *w, char *err, size_t errlen)
{
    struct server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        snprintf(err, errlen, "out of memory");
        cfg_free(cfg);
        free(cfg);
        return NULL;
    }
    srv->loop = loop;
    srv->cfg = cfg;
    if (w)
        srv->worker = *w;
    snprintf(srv->cfg_path, sizeof(srv->cfg_path), "%s", cfg_path);
    if (server_build(srv, err, errlen) < 0 ||
        (!srv->worker.bound && server_open(srv, err, errlen) < 0)) {
        server_free(srv);
        return NULL;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    int rc = ev_signals(loop, &set, server_on_signal, srv);
    if (rc < 0) {
        snprintf(err, errlen, "signalfd: %s", strerror(-rc));
        server_free(srv);
        return NULL;
    }
    signal(SIGPIPE, SIG_IGN);
    ev_after_add(loop, &srv->after, server_after, srv);
    if (srv->worker.bound || server_is_redis(srv)) {
        for (int i = 0; !srv->worker.bound && i < srv->nlisteners; i++)
            listener_hold(&srv->listeners[i].l, 1);
        srv->hold_until = ev_now(loop) + (uint64_t)srv->cfg->redis_connect_timeout_ms;
        server_hold_due(loop, &srv->hold_timer);
    }
    return srv;
}

int server_failed(const server_t *srv) { return srv->failed; }

void server_free(server_t *srv)
{
    if (!srv)
        return;
    ev_after_remove(srv->loop, &srv->after);
    conns_free(srv->conns);         /* closes sessions, which leave the hub; releases peers */
    tls_free(srv->tls);             /* after the connections, whose SSLs report to it */
    peers_free(srv->peers);
    server_stop_listening(srv);
    mhttp_free(srv->metrics);
    pubsock_free(srv->pubsock);
    sessions_free(srv->sessions);
    engine_free(srv->engine);
    hub_free(srv->hub);
    revoke_free(srv->revoked);
    ev_timer_stop(srv->loop, &srv->shutdown_timer);
    ev_timer_stop(srv->loop, &srv->tally_timer);
    ev_timer_stop(srv->loop, &srv->hold_timer);
    cfg_free(srv->cfg);
    free(srv->cfg);
    free(srv);
}
