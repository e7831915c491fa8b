/* session — one page's subscription, whatever transport carries it: the
 * query (channels, token, last_id), the token and channel checks, the
 * channels joined in the hub, the "subscribed" greeting and the resume.
 *
 *   transport --session_open()--> session --hub_subscribe--> hub
 *   hub --session_deliver()--> session --transport_ops--> transport
 *
 * The transport opens a session once its handshake succeeded and closes
 * it when the connection is freed (after the loop pass, never inside a
 * fan-out). All sessions of the process live in one sessions_t, which
 * also serves "disconnect every connection of user U".
 */
#ifndef WSPUSH_SESSION_H
#define WSPUSH_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "engine.h"
#include "hub.h"
#include "revoke.h"
#include "stats.h"
#include "str.h"
#include "transport.h"

typedef struct sessions sessions_t;
struct session;

/* cfg points at the live config pointer (a reload swaps it). Tokens are
 * checked against revoked (revoke.h) as well as their signature. */
sessions_t *sessions_new(hub_t *hub, engine_t *engine, revoke_t *revoked, struct cfg *const *cfg);
/* Every session must have been closed. */
void        sessions_free(sessions_t *ss);

/* Opens a session for the raw query string of an accepted handshake
 * (resume, when not empty, is an id given outside the query, SSE's
 * Last-Event-ID header: it replaces last_id, taken as is, not URL-decoded):
 * checks it, subscribes, queues the greeting and, with last_id, starts the
 * resume: once the greeting is written, a reset for the channels whose
 * gap cannot be filled, then the missed messages of the others in slices
 * of at most the transport's room, each once the previous one is written
 * (session_drained). Until a channel has caught up, its live messages wait
 * in the history and come in id order after the replayed ones. Returns
 * the session, or NULL with *close_code set: 4400 bad channel list, 4401
 * token missing, invalid, expired or revoked, 4403 a channel the token
 * does not open, 1011 out of memory. */
struct session *session_open(sessions_t *ss, struct str query, struct str resume, void *transport,
                             const struct transport_ops *ops, int *close_code);
/* Leaves every channel and frees the session. */
void        session_close(struct session *s);

/* The hub's deliver function (hub_deliver_fn): owner is a session.
 * Returns 1 when the message was queued, or will be by the resume in
 * progress; 0 when the connection is closing or over its budget. */
int         session_deliver(void *owner, struct msg *m, int chan);
/* For hub_each: tells the page it missed messages of channel that cannot
 * be recovered ({"type":"reset","channels":[channel]}). */
void        session_reset_channel(void *owner, struct str channel);
/* The transport's queue is empty, as asked by want_drained: the next
 * slice of a resume is queued (wired to the transport's drained handler). */
void        session_drained(struct session *s);

/* Closes (4401) every session whose token's sub equals user. Returns how
 * many. */
uint32_t    sessions_disconnect_user(sessions_t *ss, struct str user);
/* Closes (4401) every session whose token a record of the revocation
 * table now covers, or whose dated token (iat) is at or before floor_s
 * (the store's floor: records dropped from its full set, whose users
 * this node may never have heard of); records learned in bulk: one pass,
 * not one per record. Returns how many. */
uint32_t    sessions_close_revoked(sessions_t *ss, long floor_s);
size_t      sessions_count(const sessions_t *ss);
/* Refusals at subscribe, replayed messages and resumes (stats.h). Valid
 * while ss lives. */
const struct stats_session *sessions_stats(const sessions_t *ss);

#endif
