/* responder — one FastCGI request in, one JSON answer out.
 *
 * Routes (path from REQUEST_URI, after the configured mount):
 *   POST    {mount}/publish   publish a message (body.h), 200 after ws-server's ack
 *   GET     {mount}/token     ?channels=a,b: an HS256 subscribe token
 *   OPTIONS either            CORS preflight (204)
 * Checks run in a fixed order, so each failure has one answer: method (405)
 * → authentication (401) → origin/CSRF for ambient credentials (403) →
 * Content-Length (411, 400, 413) → Content-Type (415) → body (400) →
 * channel permissions (403) → ws-server (200, 400, 403, 413, 503, 504).
 *
 * Errors are {"error":"<code>","message":"<text>"}; the codes are
 *   bad_request 400, unauthenticated 401, forbidden 403, not_found 404,
 *   method_not_allowed 405, length_required 411, too_large 413,
 *   unsupported_media_type 415, internal 500, unavailable 503, timeout 504.
 */
#ifndef WSPUSH_RESPONDER_H
#define WSPUSH_RESPONDER_H

#include <fcgiapp.h>

#include "buf.h"
#include "cfg.h"
#include "pubclient.h"

/* Per-thread state, reused from request to request. */
struct resp_worker {
    struct pubc pub;        /* this worker's persistent publish connection */
    struct buf  body;       /* the request body */
    struct buf  scratch;    /* body_parse's scratch */
    int         id;         /* worker number, for logs */
};

/* Prepares w for the publish socket of c. Returns 0, or PUBC_E_INVALID when
 * the socket path does not fit. */
int  resp_worker_init(struct resp_worker *w, const struct cfg *c, int id);
void resp_worker_free(struct resp_worker *w);

/* Answers the accepted request completely (headers, body) under config c,
 * reading and discarding whatever request body it did not need. The caller
 * then finishes the request (FCGX_Finish_r or the next FCGX_Accept_r). A
 * changed publish_socket in c is picked up here. */
void resp_handle(struct resp_worker *w, const struct cfg *c, FCGX_Request *req);

#endif
