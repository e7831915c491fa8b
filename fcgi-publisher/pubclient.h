/* pubclient — blocking client of ws-server's publish socket (shared/ipc.h),
 * used by the responder (one per worker thread) and by the wspush CLI.
 *
 * The connection is persistent and opened lazily. Before each request a
 * reused connection is probed: if ws-server closed it (restart), it is
 * replaced first, so a restart costs no request. Every call is bounded by
 * timeout_ms as a whole (connect + write + wait for the answer).
 *
 * Answers arrive in request order. After a timeout or any I/O or protocol
 * error the connection is dropped: a late answer would otherwise be read
 * as the answer to the next request. An IPC_ERROR answer leaves the
 * connection usable.
 */
#ifndef WSPUSH_PUBCLIENT_H
#define WSPUSH_PUBCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
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

struct pubc {
    char       path[PUBC_PATH_MAX];
    int        fd;               /* -1 when not connected */
    uint32_t   next_id;
    struct buf in;               /* bytes read, not yet decoded */
    struct buf out;              /* the frame being sent */
};

/* The answer. Strings are copied, so they outlive the next call. */
struct pubc_result {
    uint32_t count;              /* ACK: subscribers; DISCONNECTED: connections */
    char     id[256];            /* ACK: message id */
    uint16_t code;               /* PUBC_E_REFUSED: the ipc_error_code */
    char     text[256];          /* PUBC_E_REFUSED: ws-server's text */
};

/* Prepares c for `path` (no I/O). Returns 0, or PUBC_E_INVALID when the
 * path does not fit a Unix socket address. */
int  pubc_init(struct pubc *c, const char *path);
/* Closes the connection and frees the buffers; c may be init'ed again. */
void pubc_close(struct pubc *c);

/* One PUBLISH. Returns 0 with res->count/id filled, or a PUBC_E_ code. */
int  pubc_publish(struct pubc *c, const struct pat_name *channels, int n,
                  const char *data, size_t len, int timeout_ms, struct pubc_result *res);
/* One DISCONNECT of every connection whose token sub is user. Returns 0
 * with res->count filled, or a PUBC_E_ code. */
int  pubc_disconnect(struct pubc *c, const char *user, int timeout_ms, struct pubc_result *res);

/* Short text for a PUBC_E_ code. */
const char *pubc_strerror(int code);

#endif
