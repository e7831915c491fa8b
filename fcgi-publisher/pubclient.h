/* pubclient — non-blocking, pipelining client of ws-server's publish
 * socket (shared/ipc.h), on the event loop (shared/ev.h). fcgi-publisher
 * keeps one per worker process for all its requests; the wspush CLI runs
 * one for a single request.
 *
 * A request is queued and its frame goes out with the others of the same
 * loop pass in one send(), when the owner calls pubc_flush() from its
 * after-pass hook. Answers arrive in request order and each completes its
 * request through the callback, from inside the loop.
 *
 * The connection is opened on demand. When it breaks, requests whose bytes
 * had reached it fail with PUBC_E_UNAVAILABLE (they may or may not have
 * been published); requests not yet sent get one new connection, so a
 * ws-server restart between two requests costs none. When the oldest
 * request passes its deadline every request fails with PUBC_E_TIMEOUT and
 * the connection is dropped, since a late answer would be taken for the
 * next request's.
 */
#ifndef WSPUSH_PUBCLIENT_H
#define WSPUSH_PUBCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "ev.h"
#include "ipc.h"
#include "pattern.h"

#define PUBC_E_UNAVAILABLE (-1)  /* cannot connect, or the connection broke
                                    before an answer (503): the message may
                                    or may not have been published */
#define PUBC_E_TIMEOUT     (-2)  /* no answer within timeout_ms (504) */
#define PUBC_E_REFUSED     (-3)  /* ws-server answered IPC_ERROR: see res->code */
#define PUBC_E_PROTO       (-4)  /* an answer that does not parse or match */
#define PUBC_E_INVALID     (-5)  /* arguments outside the protocol's range */
#define PUBC_E_NOMEM       (-6)

#define PUBC_PATH_MAX 108        /* sun_path */

typedef struct pubc pubc_t;

/* The answer. Strings are copied: valid for the duration of the callback. */
struct pubc_result {
    uint32_t count;              /* ACK: subscribers; DISCONNECTED: connections */
    char     id[256];            /* ACK: message id */
    uint16_t code;               /* PUBC_E_REFUSED: the ipc_error_code */
    char     text[256];          /* PUBC_E_REFUSED: ws-server's text */
};

/* rc is 0 (res filled) or a PUBC_E_ code (res->code/text for REFUSED). */
typedef void pubc_done_cb(void *ctx, int rc, const struct pubc_result *res);

/* A client of the socket at path (no I/O yet); NULL when the path does not
 * fit a Unix socket address or memory runs out. */
pubc_t *pubc_new(ev_loop_t *loop, const char *path);
/* Closes the connection; callbacks of requests still open are not run.
 * Not to be called from one of c's callbacks (c is in use up the stack). */
void    pubc_free(pubc_t *c);
/* Points later connections at path; the current one is closed once idle.
 * Returns 0 or PUBC_E_INVALID (path too long: nothing changes). */
int     pubc_set_path(pubc_t *c, const char *path);

/* Queues one PUBLISH or DISCONNECT. Returns 0 and sets *ticket, and cb runs
 * later exactly once (unless cancelled); or returns a PUBC_E_ code at once
 * (INVALID, NOMEM, or UNAVAILABLE when no connection can be made) and cb
 * never runs. */
int pubc_publish(pubc_t *c, const struct str *channels, int n, const char *data, size_t len,
                 int timeout_ms, pubc_done_cb *cb, void *ctx, uint64_t *ticket);
int pubc_disconnect(pubc_t *c, const char *user, int timeout_ms, pubc_done_cb *cb, void *ctx,
                    uint64_t *ticket);
/* The requester is gone: its callback will not run (the request itself
 * still completes at ws-server). */
void pubc_cancel(pubc_t *c, uint64_t ticket);

/* Connects now if not connected (a link kept up ahead of the first
 * request, and watched for readiness). Returns 0 or PUBC_E_UNAVAILABLE. */
int pubc_open(pubc_t *c);

/* Told when the connection to ws-server opens (up 1) and closes (up 0),
 * from inside pubclient: it must only take note (fcgi-publisher's metrics
 * count links and reconnects), never call back into c. */
typedef void pubc_link_cb(void *ctx, int up);
/* Sets or clears (cb NULL) the link callback. */
void pubc_on_link(pubc_t *c, pubc_link_cb *cb, void *ctx);

/* Sends what was queued; call once per loop pass, after dispatch. */
void pubc_flush(pubc_t *c);
/* Requests waiting for an answer. */
size_t pubc_pending(const pubc_t *c);

/* Short text for a PUBC_E_ code. */
const char *pubc_strerror(int code);

#endif
