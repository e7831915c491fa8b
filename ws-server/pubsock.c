#include "pubsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "ipc.h"
#include "list.h"
#include "listener.h"
#include "log.h"
#include "pattern.h"
#include "payload.h"

/* Answers waiting past this make us stop reading the peer's requests until
 * it reads: a peer that pipelines without reading cannot grow our memory. */
#define PUBSOCK_OUT_HIGH (1u << 20)
/* Requests waiting for the engine past this stop the reading too. */
#define PUBSOCK_PENDING_HIGH 4096

/* One request whose answer cannot be written yet: its own outcome is not
 * known, or one before it is still waiting. */
struct pubreq {
    struct list_node node;         /* p->pending; list_last() is the oldest */
    struct pubpeer  *p;            /* NULL once the peer is gone */
    uint32_t         req_id;
    uint8_t          type;         /* the answer: IPC_ACK, IPC_DISCONNECTED, IPC_ERROR */
    int              done;
    uint16_t         code;
    uint32_t         count;
    int              nchannels;
    struct timespec  t0;
    char             id[MSG_ID_MAX];
    char             text[120];
};

struct pubpeer {
    struct ev_io     io;
    struct pubsock  *ps;
    struct list_node node;          /* ps->peers, then ps->dead */
    struct buf       in, out;
    size_t          skip;          /* bytes of an oversized frame still to discard */
    uid_t           uid;
    gid_t           gid;
    int             allowed;
    int             dead;
    int             close_after_flush;
    int             parsing;       /* inside pubsock_parse: it flushes after */
    struct list     pending;       /* struct pubreq, in request order */
};

struct pubsock {
    struct listener         listener;
    ev_loop_t              *loop;
    struct cfg *const      *cfg;
    engine_t               *engine;
    struct pubsock_handlers h;
    void                   *ctx;
    struct ev_hook          after;
    int                     listening;
    char                    path[CFG_PATH_MAX];
    struct addr_unix_id     path_id;      /* the socket file we made */
    struct list             peers;
    struct list             dead;
    struct stats_pubsock    stats;
};

static void pubsock_peer_kill(struct pubpeer *p)
{
    if (p->dead)
        return;
    p->dead = 1;
    ev_io_stop(p->ps->loop, &p->io);
    list_move(&p->ps->peers, &p->ps->dead, &p->node);
}

static int pubsock_peer_allowed(const struct cfg *cfg, uid_t uid, gid_t gid)
{
    if (cfg->publish_allow_uids.n == 0 && cfg->publish_allow_gids.n == 0)
        return 1;
    if (uid == getuid())
        return 1;
    for (int i = 0; i < cfg->publish_allow_uids.n; i++)
        if (strtoul(cfg->publish_allow_uids.items[i], NULL, 10) == uid)
            return 1;
    for (int i = 0; i < cfg->publish_allow_gids.n; i++)
        if (strtoul(cfg->publish_allow_gids.items[i], NULL, 10) == gid)
            return 1;
    return 0;
}

static int pubsock_encode(struct pubpeer *p, const struct pubreq *r)
{
    switch (r->type) {
    case IPC_ACK:
        return ipc_encode_ack(&p->out, r->req_id, r->count, r->id, strlen(r->id));
    case IPC_DISCONNECTED:
        return ipc_encode_disconnected(&p->out, r->req_id, r->count);
    default:
        return ipc_encode_error(&p->out, r->req_id, r->code, r->text);
    }
}

static void pubsock_flush(struct pubpeer *p);
static void pubsock_parse(struct pubpeer *p);

/* Writes the answers now known, oldest first, up to the first still
 * waiting; outside pubsock_parse (an engine's late outcome) also sends
 * them and goes on reading what waited for room. */
static void pubsock_drain(struct pubpeer *p)
{
    struct list_node *n;
    while (!p->dead && (n = list_last(&p->pending)) != NULL) {
        struct pubreq *r = list_entry(n, struct pubreq, node);
        if (!r->done)
            break;
        list_remove(&p->pending, n);
        int rc = pubsock_encode(p, r);
        free(r);
        if (rc < 0)
            pubsock_peer_kill(p);
    }
    if (p->parsing || p->dead)
        return;
    if (buf_used(&p->in) > 0 && p->pending.n < PUBSOCK_PENDING_HIGH)
        pubsock_parse(p);
    if (!p->dead)
        pubsock_flush(p);
}

/* Queues an answer known now: straight to the output when nothing waits
 * before it. */
static void pubsock_answer(struct pubpeer *p, const struct pubreq *a)
{
    if (list_empty(&p->pending)) {
        if (pubsock_encode(p, a) < 0)
            pubsock_peer_kill(p);
        return;
    }
    struct pubreq *r = malloc(sizeof(*r));
    if (!r) {
        pubsock_peer_kill(p);
        return;
    }
    *r = *a;
    r->p = p;
    r->done = 1;
    list_push(&p->pending, &r->node);
}

static void pubsock_error(struct pubpeer *p, uint32_t req_id, uint16_t code, const char *text)
{
    log_info("publish socket: request %u refused: %s", req_id, text);
    if (code == IPC_ERR_INTERNAL)
        p->ps->stats.error++;
    else
        p->ps->stats.refused++;
    struct pubreq a = { .req_id = req_id, .type = IPC_ERROR, .code = code };
    snprintf(a.text, sizeof(a.text), "%s", text);
    pubsock_answer(p, &a);
}

/* A request whose outcome comes through a callback; NULL (peer killed)
 * when out of memory. */
static struct pubreq *pubsock_wait(struct pubpeer *p, uint32_t req_id)
{
    struct pubreq *r = calloc(1, sizeof(*r));
    if (!r) {
        pubsock_peer_kill(p);
        return NULL;
    }
    r->p = p;
    r->req_id = req_id;
    list_push(&p->pending, &r->node);
    return r;
}

static void pubsock_published(void *arg, int status, const struct engine_result *res)
{
    struct pubreq *r = arg;
    struct pubpeer *p = r->p;
    if (!p) {
        free(r);
        return;
    }
    struct pubsock *ps = p->ps;
    r->done = 1;
    if (status == 0) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int64_t ns = (int64_t)(t1.tv_sec - r->t0.tv_sec) * 1000000000 + (t1.tv_nsec - r->t0.tv_nsec);
        stats_hist_observe(&ps->stats.fanout, ns > 0 ? (uint64_t)ns : 0);
        ps->stats.ok++;
        log_debug("published %s to %d channel(s), %u subscriber(s)", res->id, r->nchannels,
                  res->deliveries);
        r->type = IPC_ACK;
        r->count = res->deliveries;
        snprintf(r->id, sizeof(r->id), "%s", res->id);
    } else {
        r->type = IPC_ERROR;
        const char *why;
        switch (status) {
        case ENGINE_E_UNAVAILABLE:
            r->code = IPC_ERR_UNAVAILABLE;
            why = "Redis is unreachable: the message was not published";
            break;
        case ENGINE_E_TIMEOUT:
            r->code = IPC_ERR_TIMEOUT;
            why = "Redis did not answer in time: the message may or may not be published";
            break;
        default:
            r->code = IPC_ERR_INTERNAL;
            why = "out of memory";
            break;
        }
        snprintf(r->text, sizeof(r->text), "%s", why);
        log_info("publish socket: request %u refused: %s", r->req_id, why);
        if (r->code == IPC_ERR_INTERNAL)
            ps->stats.error++;
        else
            ps->stats.refused++;
    }
    pubsock_drain(p);
}

static void pubsock_publish(struct pubpeer *p, const struct ipc_msg *m)
{
    /* wspush_fanout_seconds: from the decoded request (its checks
     * included) to its frame queued to the last local subscriber. The
     * monotonic clock is read through the vDSO: no system call. */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const struct cfg *cfg = *p->ps->cfg;
    int rc = payload_check_channels(m->channels, m->nchannels);
    if (rc < 0) {
        pubsock_error(p, m->req_id, IPC_ERR_BAD_CHANNEL, payload_strerror(rc));
        return;
    }
    if (m->data.len > (size_t)cfg->max_message_bytes) {
        pubsock_error(p, m->req_id, IPC_ERR_TOO_BIG, "message over max_message_bytes");
        return;
    }
    /* The envelope embeds data verbatim: it must be exactly one JSON value. */
    rc = payload_check_data(m->data.p, m->data.len);
    if (rc < 0) {
        pubsock_error(p, m->req_id, IPC_ERR_BAD_DATA,
                      rc == PAYLOAD_E_UTF8 ? payload_strerror(PAYLOAD_E_JSON) : payload_strerror(rc));
        return;
    }
    struct pubreq *r = pubsock_wait(p, m->req_id);
    if (!r)
        return;
    r->t0 = t0;
    r->nchannels = m->nchannels;
    struct engine_publish pub = { m->channels, m->nchannels, m->data, { NULL, 0 } };
    engine_publish(p->ps->engine, &pub, pubsock_published, r);
}

static void pubsock_disconnected(void *arg, int status, uint32_t connections)
{
    struct pubreq *r = arg;
    struct pubpeer *p = r->p;
    if (!p) {
        free(r);
        return;
    }
    r->done = 1;
    if (status == 0) {
        p->ps->stats.ok++;
        r->type = IPC_DISCONNECTED;
        r->count = connections;
    } else {
        p->ps->stats.refused++;
        r->type = IPC_ERROR;
        r->code = IPC_ERR_UNAVAILABLE;
        snprintf(r->text, sizeof(r->text), "Redis is unreachable: %u connection(s) closed on "
                 "this node, the other nodes were not reached", connections);
    }
    pubsock_drain(p);
}

static void pubsock_handle(struct pubpeer *p, const struct ipc_msg *m)
{
    if (!p->allowed) {
        pubsock_error(p, m->req_id, IPC_ERR_NOT_ALLOWED, "peer not in publish_allow_uids/gids");
        return;
    }
    switch (m->type) {
    case IPC_PUBLISH:
        pubsock_publish(p, m);
        break;
    case IPC_DISCONNECT: {
        struct pubreq *r = pubsock_wait(p, m->req_id);
        if (r)
            p->ps->h.disconnect_user(p->ps->ctx, m->user, pubsock_disconnected, r);
        break;
    }
    default:
        pubsock_error(p, m->req_id, IPC_ERR_MALFORMED, "not a request type");
        break;
    }
}

static size_t pubsock_max_frame(const struct cfg *cfg)
{
    return IPC_HEADER_LEN + 1 + WSPUSH_MAX_CHANNELS * (1 + PAT_CHANNEL_MAX) + 4 +
           (size_t)cfg->max_message_bytes;
}

static void pubsock_parse(struct pubpeer *p)
{
    const struct cfg *cfg = *p->ps->cfg;
    p->parsing = 1;
    while (!p->dead && !p->close_after_flush && p->pending.n < PUBSOCK_PENDING_HIGH) {
        if (p->skip > 0) {
            size_t n = buf_used(&p->in) < p->skip ? buf_used(&p->in) : p->skip;
            buf_consume(&p->in, n);
            p->skip -= n;
            if (p->skip > 0)
                break;
        }
        struct ipc_msg m;
        ssize_t n = ipc_decode(buf_head(&p->in), buf_used(&p->in), pubsock_max_frame(cfg), &m);
        if (n == IPC_NEED_MORE)
            break;
        if (n == IPC_E_TOO_BIG) {
            pubsock_error(p, m.req_id, IPC_ERR_TOO_BIG, "message over max_message_bytes");
            p->skip = m.frame_len;
            continue;
        }
        if (n < 0) {
            /* The stream has lost its framing: answer once and hang up. */
            pubsock_error(p, 0, IPC_ERR_MALFORMED, "malformed frame");
            p->close_after_flush = 1;
            break;
        }
        /* Consumed first: the engine copies what it keeps, and a late
         * outcome may parse on from here. */
        pubsock_handle(p, &m);
        buf_consume(&p->in, (size_t)n);
    }
    p->parsing = 0;
}

static void pubsock_flush(struct pubpeer *p)
{
    while (buf_used(&p->out) > 0) {
        ssize_t w = send(p->io.fd, buf_head(&p->out), buf_used(&p->out), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                pubsock_peer_kill(p);
            break;
        }
        buf_consume(&p->out, (size_t)w);
    }
    if (p->dead)
        return;
    if (buf_used(&p->out) == 0 && p->close_after_flush && list_empty(&p->pending)) {
        pubsock_peer_kill(p);
        return;
    }
    unsigned ev = 0;
    if (buf_used(&p->out) > 0)
        ev |= EV_WRITE;
    if (buf_used(&p->out) < PUBSOCK_OUT_HIGH && !p->close_after_flush &&
        p->pending.n < PUBSOCK_PENDING_HIGH)
        ev |= EV_READ;
    ev_io_set(p->ps->loop, &p->io, ev);
}

static void pubsock_peer_io(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    struct pubpeer *p = ev_container_of(io, struct pubpeer, io);
    if (p->dead)
        return;
    if ((events & EV_READ) && !p->close_after_flush) {
        for (;;) {
            if (buf_reserve(&p->in, 65536) < 0) {
                pubsock_peer_kill(p);
                return;
            }
            ssize_t n = read(p->io.fd, p->in.data + p->in.len, 65536);
            if (n > 0) {
                p->in.len += (size_t)n;
                pubsock_parse(p);
                if (p->dead || buf_used(&p->out) >= PUBSOCK_OUT_HIGH ||
                    p->pending.n >= PUBSOCK_PENDING_HIGH)
                    break;
                continue;
            }
            if (n == 0) {
                /* Peer done writing: answer what it sent, then close. */
                p->close_after_flush = 1;
                break;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                pubsock_peer_kill(p);
            break;
        }
        if (buf_used(&p->in) == 0)
            buf_free(&p->in);
    }
    if (!p->dead)
        pubsock_flush(p);
}

static void pubsock_accept(struct listener *l, int fd, void *data)
{
    (void)l;
    struct pubsock *ps = data;
    struct ucred cred = { 0 };
    socklen_t cl = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
        close(fd);
        return;
    }
    struct pubpeer *p = calloc(1, sizeof(*p));
    if (!p) {
        close(fd);
        return;
    }
    p->ps = ps;
    p->uid = cred.uid;
    p->gid = cred.gid;
    list_init(&p->pending);
    p->allowed = pubsock_peer_allowed(*ps->cfg, cred.uid, cred.gid);
    if (!p->allowed)
        log_warn("publish socket: peer uid %u gid %u not allowed", (unsigned)cred.uid,
                 (unsigned)cred.gid);
    if (ev_io_start(ps->loop, &p->io, fd, EV_READ, pubsock_peer_io) < 0) {
        close(fd);
        free(p);
        return;
    }
    list_push(&ps->peers, &p->node);
}

void pubsock_pump(struct pubsock *ps)
{
    struct list_node *pos, *tmp;
    list_for_each_safe(pos, tmp, &ps->peers) {
        struct pubpeer *p = list_entry(pos, struct pubpeer, node);
        if (p->io.events & EV_READ)
            pubsock_peer_io(ps->loop, &p->io, EV_READ);
    }
}

static void pubsock_peer_free(struct pubsock *ps, struct pubpeer *p)
{
    list_remove(&ps->dead, &p->node);
    /* Outcomes still to come find their request orphaned and free it. */
    struct list_node *n;
    while ((n = list_first(&p->pending)) != NULL) {
        struct pubreq *r = list_entry(n, struct pubreq, node);
        list_remove(&p->pending, n);
        if (r->done)
            free(r);
        else
            r->p = NULL;
    }
    close(p->io.fd);
    buf_free(&p->in);
    buf_free(&p->out);
    free(p);
}

static void pubsock_reap(ev_loop_t *loop, void *data)
{
    (void)loop;
    struct pubsock *ps = data;
    struct list_node *n;
    while ((n = list_first(&ps->dead)) != NULL)
        pubsock_peer_free(ps, list_entry(n, struct pubpeer, node));
}

/* Serves fd (a listening socket, owned from here on success) as the
 * publish socket; owned_id names the socket file to remove at stop (an
 * invalid one: someone else's, never removed). */
static struct pubsock *pubsock_serve(ev_loop_t *loop, struct cfg *const *cfgp, engine_t *engine,
                                     const struct pubsock_handlers *h, void *ctx, int fd,
                                     struct addr_unix_id owned_id, char *err, size_t errlen)
{
    struct pubsock *ps = calloc(1, sizeof(*ps));
    if (!ps) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ps->loop = loop;
    ps->cfg = cfgp;
    ps->engine = engine;
    ps->h = *h;
    ps->ctx = ctx;
    list_init(&ps->peers);
    list_init(&ps->dead);
    snprintf(ps->path, sizeof(ps->path), "%s", (*cfgp)->publish_socket);
    ps->path_id = owned_id;
    if (listener_start(&ps->listener, loop, fd, "publish socket", 0, pubsock_accept, ps) < 0) {
        snprintf(err, errlen, "publish socket: cannot watch");
        free(ps);
        return NULL;
    }
    ps->listening = 1;
    ev_after_add(loop, &ps->after, pubsock_reap, ps);
    return ps;
}

struct pubsock *pubsock_open(ev_loop_t *loop, struct cfg *const *cfgp, engine_t *engine,
                             const struct pubsock_handlers *h, void *ctx, char *err, size_t errlen)
{
    const struct cfg *cfg = *cfgp;
    int fd = addr_listen(cfg->publish_socket, 128, 0, (mode_t)cfg->publish_socket_mode,
                         cfg->publish_socket_group, err, errlen);
    if (fd < 0)
        return NULL;
    struct addr_unix_id id = addr_unix_identity(cfg->publish_socket);
    struct pubsock *ps = pubsock_serve(loop, cfgp, engine, h, ctx, fd, id, err, errlen);
    if (!ps) {
        close(fd);
        addr_unlink_owned(cfg->publish_socket, &id);
    }
    return ps;
}

struct pubsock *pubsock_open_fd(ev_loop_t *loop, struct cfg *const *cfgp, engine_t *engine,
                                const struct pubsock_handlers *h, void *ctx, int fd, char *err,
                                size_t errlen)
{
    return pubsock_serve(loop, cfgp, engine, h, ctx, fd, (struct addr_unix_id){ 0 }, err, errlen);
}

void pubsock_stop(struct pubsock *ps)
{
    if (ps->listening) {
        ps->listening = 0;
        listener_stop(&ps->listener);
        /* Another process may have replaced the file since: only ours goes. */
        addr_unlink_owned(ps->path, &ps->path_id);
    }
}

int pubsock_listening(const struct pubsock *ps) { return ps->listening; }
const struct stats_pubsock *pubsock_stats(const struct pubsock *ps) { return &ps->stats; }

void pubsock_free(struct pubsock *ps)
{
    if (!ps)
        return;
    pubsock_stop(ps);
    struct list_node *n;
    while ((n = list_first(&ps->peers)) != NULL)
        pubsock_peer_kill(list_entry(n, struct pubpeer, node));
    pubsock_reap(ps->loop, ps);
    ev_after_remove(ps->loop, &ps->after);
    free(ps);
}
