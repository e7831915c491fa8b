#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "conn.h"
#include "handshake.h"
#include "log.h"
#include "pubsock.h"

/* Upper bound on the graceful part of shutdown: SIGTERM must exit within
 * a second even if clients never answer our close. */
#define SERVER_SHUTDOWN_MS 900

static void server_history_limits(const struct cfg *cfg, struct history_limits *lim)
{
    lim->max_entries = cfg->history_size;
    lim->max_bytes = cfg->history_bytes;
    lim->ttl_ms = (uint64_t)cfg->history_ttl_s * 1000;
}

static void server_refuse(int fd)
{
    char resp[512];
    int n = hs_response(HS_SERVICE_UNAVAILABLE, NULL, resp, sizeof(resp));
    /* Best effort on a fresh socket: its buffer is empty, so this fits. */
    if (n > 0 && send(fd, resp, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("503 answer not sent: %s", strerror(errno));
    close(fd);
}

static void server_on_accept(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    struct server_listener *l = ev_container_of(io, struct server_listener, io);
    struct server *srv = l->srv;
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept on %s: %s", l->spec, strerror(errno));
            return;
        }
        if (srv->conns.n >= (size_t)srv->cfg->max_connections) {
            log_info("max_connections (%d) reached: 503", srv->cfg->max_connections);
            server_refuse(fd);
            continue;
        }
        /* Frames are complete messages, written once per pass: waiting
         * for more (Nagle) would only add latency. Fails harmlessly on a
         * Unix socket. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn_accept(srv, fd);
    }
}

static void server_stop_listening(struct server *srv)
{
    for (int i = 0; i < srv->nlisteners; i++) {
        ev_io_stop(srv->loop, &srv->listeners[i].io);
        close(srv->listeners[i].io.fd);
        if (addr_is_unix(srv->listeners[i].spec))
            unlink(srv->listeners[i].spec);
    }
    srv->nlisteners = 0;
}

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
    log_info("shutting down: closing %zu connection(s) with 1001", srv->conns.n);
    if (srv->cfg->history_file[0]) {
        char why[512];
        if (broker_save(srv->broker, srv->cfg->history_file, ev_now(srv->loop), why, sizeof(why)) < 0)
            log_error("history not saved: %s", why);
        else
            log_info("history saved to %s", srv->cfg->history_file);
    }
    server_stop_listening(srv);
    if (srv->pubsock)
        pubsock_stop(srv->pubsock);
    for (struct conn *c = srv->conns.head; c; c = conn_next(c))
        conn_close(c, 1001);
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
    if (cfg_load(next, srv->cfg_path, err, sizeof(err)) < 0) {
        log_error("reload failed, keeping the running config: %s", err);
        cfg_free(next);
        free(next);
        return;
    }
    /* Listeners and the publish socket stay as bound at start; everything
     * else (limits, origins, channel patterns, secrets) applies from now. */
    cfg_free(srv->cfg);
    free(srv->cfg);
    srv->cfg = next;
    struct history_limits lim;
    server_history_limits(next, &lim);
    broker_set_limits(srv->broker, &lim, ev_now(srv->loop));
    log_set_level((enum log_level)next->log_level);
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

static void server_after(ev_loop_t *loop, void *data)
{
    struct server *srv = data;
    conn_flush_dirty(srv);
    conn_reap_dead(srv);
    if (srv->pubsock)
        pubsock_reap(srv->pubsock);
    if (srv->shutting_down && srv->conns.n == 0)
        ev_stop(loop);
}

uint32_t server_disconnect_user(struct server *srv, const char *user, size_t len)
{
    uint32_t n = 0;
    /* A scan of every connection: revocation is rare, and an index by user
     * would cost every connection memory. */
    for (struct conn *c = srv->conns.head; c; c = conn_next(c)) {
        size_t ul;
        const char *u = conn_user(c, &ul);
        if (u && ul == len && memcmp(u, user, len) == 0) {
            conn_close(c, 4401);
            n++;
        }
    }
    return n;
}

static int server_listen(struct server *srv, const char *spec, char *err, size_t errlen)
{
    if (srv->nlisteners == SERVER_MAX_LISTENERS) {
        snprintf(err, errlen, "too many listen addresses");
        return -1;
    }
    struct server_listener *l = &srv->listeners[srv->nlisteners];
    int fd = addr_listen(spec, 1024, srv->cfg->ws_workers > 1, 0666, NULL, err, errlen);
    if (fd < 0)
        return -1;
    l->srv = srv;
    snprintf(l->spec, sizeof(l->spec), "%s", spec);
    if (ev_io_start(srv->loop, &l->io, fd, EV_READ, server_on_accept) < 0) {
        close(fd);
        snprintf(err, errlen, "%s: cannot watch", spec);
        return -1;
    }
    srv->nlisteners++;
    log_info("listening on %s", spec);
    return 0;
}

int server_init(struct server *srv, ev_loop_t *loop, struct cfg *cfg, const char *cfg_path,
                char *err, size_t errlen)
{
    srv->loop = loop;
    srv->cfg = cfg;
    snprintf(srv->cfg_path, sizeof(srv->cfg_path), "%s", cfg_path);
    srv->channels = chan_registry_new();
    struct history_limits lim;
    server_history_limits(cfg, &lim);
    srv->broker = srv->channels ? broker_new(srv->channels, conn_deliver, srv, &lim) : NULL;
    if (!srv->broker) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg->history_file[0] && access(cfg->history_file, F_OK) == 0) {
        char why[512];
        if (broker_restore(srv->broker, cfg->history_file, ev_now(loop), why, sizeof(why)) < 0)
            log_error("history not restored, starting a new epoch: %s", why);
        else
            log_info("history restored from %s: last id %s", cfg->history_file,
                     broker_last_id(srv->broker));
        /* Used once: a later crash must not replay a stale file. */
        unlink(cfg->history_file);
    }
    for (int i = 0; i < cfg->listen.n; i++)
        if (server_listen(srv, cfg->listen.items[i], err, errlen) < 0)
            return -1;
    if (cfg->unix_listen[0] && server_listen(srv, cfg->unix_listen, err, errlen) < 0)
        return -1;
    srv->pubsock = pubsock_open(srv, err, errlen);
    if (!srv->pubsock)
        return -1;
    log_info("publish socket %s", cfg->publish_socket);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    int rc = ev_signals(loop, &set, server_on_signal, srv);
    if (rc < 0) {
        snprintf(err, errlen, "signalfd: %s", strerror(-rc));
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    ev_after_add(loop, &srv->after, server_after, srv);
    return 0;
}

void server_free(struct server *srv)
{
    conn_free_all(srv);
    server_stop_listening(srv);
    pubsock_free(srv->pubsock);
    broker_free(srv->broker);
    chan_registry_free(srv->channels);
    ev_timer_stop(srv->loop, &srv->shutdown_timer);
}
