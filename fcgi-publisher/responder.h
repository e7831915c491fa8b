/* responder — one FastCGI request in, one JSON answer out.
 *
 * Routes (path from REQUEST_URI, after the configured mount):
 *   POST    {mount}/publish   publish a message (body.h), 200 after ws-server's ack
 *   GET     {mount}/token     ?channels=a,b: an HS256 subscribe token
 *   OPTIONS either            CORS preflight (204)
 * Checks run in a fixed order, so each failure has one answer: params
 * over max_params (431) → a param that says who is asking or what was
 * sent (REMOTE_USER, the credential, origin and host headers,
 * CONTENT_LENGTH, CONTENT_TYPE) given twice (400) → path (404) → method
 * (405) → authentication (401) → origin/CSRF for ambient credentials
 * (403) → Content-Length (411 when absent or -1, 400, 413) → Content-Type
 * (415) → body (400) → channel permissions (403) → ws-server (200, 400,
 * 403, 413, 503, 504).
 *
 * Errors are {"error":"<code>","message":"<text>"}; the codes are
 *   bad_request 400, unauthenticated 401, forbidden 403, not_found 404,
 *   method_not_allowed 405, length_required 411, too_large 413 (and 431
 *   for a request head too large), unsupported_media_type 415, internal
 *   500, unavailable 503, timeout 504.
 *
 * Everything but a publish is answered at once. A publish is queued on the
 * worker's one pipelined publish-socket connection (pubclient.h) and
 * answered from the loop when ws-server acknowledges it; nothing of the
 * config is used after resp_handle() returns, so a reload never changes
 * an answer under way.
 */
#ifndef WSPUSH_RESPONDER_H
#define WSPUSH_RESPONDER_H

#include "cfg.h"
#include "ev.h"
#include "front.h"

typedef struct resp resp_t;
struct pubstats_slot;

/* A responder publishing to c's publish_socket, counting its answers,
 * latencies, tokens and link state in stats (pubstats.h; must outlive
 * it). A request the web server gives up on before its answer is not
 * counted. NULL when the path does not fit a Unix socket address or
 * memory runs out. */
resp_t *resp_new(ev_loop_t *loop, const struct cfg *c, struct pubstats_slot *stats);
/* Pending publishes are dropped without an answer (their connections are
 * closed by front_free). */
void    resp_free(resp_t *r);
/* Serves later requests under c (a reload); c must outlive them. Returns
 * 0, or -1 when the new publish_socket does not fit (the old one stays). */
int     resp_set_cfg(resp_t *r, const struct cfg *c);

/* front_handlers: answers req now or once ws-server has answered. */
void    resp_handle(void *resp, struct front_req *req);
/* front_handlers: req is gone before its answer. */
void    resp_cancel(void *resp, struct front_req *req);
/* Opens the link to ws-server if it is down (a worker keeps it up, so
 * /readyz tells whether publishes can go through). Returns 0, or -1 when
 * ws-server cannot be reached now. */
int     resp_link(resp_t *r);
/* Sends the publishes queued this loop pass (call from the after hook). */
void    resp_flush(resp_t *r);

#endif
