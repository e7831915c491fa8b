/* engine — where accepted messages get their id, are kept for resuming
 * pages, and are handed to the local subscribers. An interface (a table of
 * functions, as io.h is for sockets): engine_memory.c keeps everything in
 * this process; an engine shared by several nodes (Redis) fills the same
 * table.
 *
 * Arrows: sources (the publish socket) call engine_publish() and get the
 * outcome through a callback, which a remote engine calls once its store
 * has the message (the memory engine calls it before returning); the
 * engine calls the deliver function it was given (the hub) for every
 * message, local or relayed from another node; sessions ask
 * engine_history() for what a resuming page missed and get the answer
 * through a callback too.
 */
#ifndef WSPUSH_ENGINE_H
#define WSPUSH_ENGINE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "str.h"
#include "wspush.h"

typedef struct engine engine_t;

/* Fan-out of an accepted message to this node's subscribers. Returns the
 * deliveries queued. */
typedef uint32_t engine_deliver_fn(void *ctx, struct msg *m);

/* What an engine shared by several nodes needs besides deliver (all with
 * the deliver context; engine_redis.c):
 *   reset    this node's subscribers of channel missed messages that
 *            cannot be recovered: they get {"type":"reset"} for it;
 *   count    this node's subscribers of channel (the ack's count);
 *   revoked  another node ran `disconnect user` at second;
 *   restored a revocation record kept by the engine (read at a
 *            (re)connection: made while this node was away, or before it
 *            started), one call per record, then
 *   loaded   once every record was given: floor is the engine's own bound
 *            (records dropped from a full set): every token dated up to it
 *            is refused; since: the store holds every revocation made after
 *            that second (before it, it may have lost some: a restart, a
 *            failover); complete is 1 when no revocation made after the
 *            read can be missed (it comes through revoked), so the process
 *            start need only bound tokens down to since. */
struct engine_hooks {
    engine_deliver_fn *deliver;
    void     (*reset)(void *ctx, struct str channel);
    uint32_t (*count)(void *ctx, struct str channel);
    void     (*revoked)(void *ctx, struct str user, long second);
    void     (*restored)(void *ctx, struct str user, long second);
    void     (*loaded)(void *ctx, long floor, long since, int complete);
    void      *ctx;
};

/* The outcome of a cluster-wide revocation: 0, or ENGINE_E_UNAVAILABLE
 * (the other nodes were not reached). */
typedef void engine_revoke_fn(void *arg, int status);
struct engine_publish {
    const struct str *channels;   /* valid, distinct names */
    int               nchannels;  /* 1..WSPUSH_MAX_CHANNELS */
    struct str        data;       /* one JSON value, already validated */
    struct str        id;         /* empty: the engine assigns one */
};

struct engine_result {
    char     id[MSG_ID_MAX];
    uint32_t deliveries;          /* queued on this node, summed over channels */
};

/* The outcome of a publish (status of engine_published_fn). */
#define ENGINE_E_INVALID     (-EINVAL)    /* an id given that this engine cannot accept */
#define ENGINE_E_NOMEM       (-ENOMEM)    /* nothing delivered, no id used */
#define ENGINE_E_UNAVAILABLE (-ENOTCONN)  /* the shared store is unreachable: not published */
#define ENGINE_E_TIMEOUT     (-ETIMEDOUT) /* the store did not answer in time: may or may
                                             not be published */

/* Called exactly once per engine_publish(), perhaps before it returns;
 * r is valid (status 0) for the call only. The engine has copied what it
 * needs of the request: the caller's buffers may change right after
 * engine_publish() returns. */
typedef void engine_published_fn(void *arg, int status, const struct engine_result *r);

/* "What did I miss on these channels after this id?" The engine copies
 * what it keeps: the names and the id may change once history() returns. */
struct engine_query {
    const struct str *channels;
    int               nchannels;
    struct str        after;      /* the page's last_id, as sent */
    size_t            max_bytes;  /* slice budget (msg_bytes), 0 = all */
};

struct engine_item {
    struct msg *m;                /* borrowed for the callback */
    int         chan;             /* index among m's channels */
};

struct engine_answer {
    int                       reset[WSPUSH_MAX_CHANNELS]; /* 1: gap cannot be filled */
    const struct engine_item *items;   /* in id order, channels with reset[i] = 0 only */
    size_t                    nitems;
    int                       more;    /* slice ended at max_bytes: ask again ... */
    char                      next[MSG_ID_MAX];  /* ... after this id */
    int                       failed;  /* out of memory: treat every channel as reset */
};

typedef void engine_answer_fn(void *arg, const struct engine_answer *a);

struct engine_ops {
    /* Ends in exactly one cb(arg, status, result), status 0 or ENGINE_E_*.
     * Outcomes reach the callbacks in the order of the calls. */
    void        (*publish)(engine_t *e, const struct engine_publish *p, engine_published_fn *cb,
                           void *arg);
    void        (*history)(engine_t *e, const struct engine_query *q, engine_answer_fn *cb, void *arg);
    /* The newest id ("<epoch>-0" before the first), for the greeting. */
    struct str  (*last_id)(const engine_t *e);
    void        (*free)(engine_t *e);
    /* Optional (NULL: everything is local). watch: this node got its first
     * (on = 1) or lost its last (on = 0) subscriber of channel. revoke:
     * tell every node that user was disconnected at second; ends in one
     * cb(arg, status), perhaps before returning. */
    void        (*watch)(engine_t *e, struct str channel, int on);
    void        (*revoke)(engine_t *e, struct str user, long second, engine_revoke_fn *cb,
                          void *arg);
};

/* The common head of every engine; implementations embed it first. */
struct engine {
    const struct engine_ops *ops;
    engine_deliver_fn       *deliver;
    void                    *deliver_ctx;
};

static inline void engine_publish(engine_t *e, const struct engine_publish *p,
                                  engine_published_fn *cb, void *arg)
{ e->ops->publish(e, p, cb, arg); }
static inline void engine_history(engine_t *e, const struct engine_query *q, engine_answer_fn *cb, void *arg)
{ e->ops->history(e, q, cb, arg); }
static inline struct str engine_last_id(const engine_t *e) { return e->ops->last_id(e); }
static inline void engine_free(engine_t *e) { if (e) e->ops->free(e); }
static inline void engine_watch(engine_t *e, struct str channel, int on)
{ if (e->ops->watch) e->ops->watch(e, channel, on); }

#endif
