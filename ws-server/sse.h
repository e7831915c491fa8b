/* sse — the Server-Sent Events codec (text/event-stream, WHATWG HTML
 * "Server-sent events"): the bytes of the SSE transport, which conn.c
 * sends over the same connection machinery as WebSocket. Pure: builds
 * buffers, no I/O.
 *
 * A message for one channel is
 *
 *   id: <id>\n
 *   data: <line 1 of the JSON envelope>\n
 *   data: <line 2>\n          (one data line per line of the envelope)
 *   \n
 *
 * The envelope is split at every CR, LF and CRLF, which an event-stream
 * reader would take as line ends: published JSON may hold them between
 * tokens, never inside a string. The reader joins the lines with LF, so
 * the page parses the same JSON value (a CR between tokens comes back as
 * an LF, which JSON treats alike).
 *
 * Control messages (the session's JSON objects, "subscribed", "reset")
 * become "event: <type>\n" + data lines + "\n", without an id (the
 * reader's last event id stays the last message's). The end of a stream
 * is "event: close" with data {"type":"close","code":<close code>}; the
 * keep-alive is a comment line.
 */
#ifndef WSPUSH_SSE_H
#define WSPUSH_SSE_H

#include <stddef.h>

#include "buf.h"
#include "msg.h"
#include "str.h"

/* The keep-alive sent every ping_interval. */
#define SSE_KEEPALIVE ": keep-alive\n"

/* Bytes the data lines of [p, p+len) take; sse_data() writes them (len
 * may be 0: one empty data line). */
size_t  sse_data_len(const char *p, size_t len);
void    sse_data(const char *p, size_t len, unsigned char *out);

/* The event of channel chan of m (msg_encode_fn for MSG_SLOT_SSE): a new
 * rbuf with one reference, NULL when out of memory. */
rbuf_t *sse_encode(const struct msg *m, int chan);
/* The event of a control object {"type":"<name>",...}: named by its type
 * (letters only, else no event line: a plain "message" event). NULL when
 * out of memory. */
rbuf_t *sse_control(const char *json, size_t len);
/* The event that ends a stream where WebSocket would close with code. */
rbuf_t *sse_close_event(int code);

/* Why a request for /sse is refused before its stream starts. */
enum sse_refusal {
    SSE_BAD_CHANNELS = 0,   /* 400: close code 4400 */
    SSE_TOKEN,              /* 401: 4401, token missing, invalid, expired or revoked */
    SSE_NOT_COVERED,        /* 403: 4403, a channel the token does not open */
    SSE_ORIGIN,             /* 403: Origin not in allowed_origins */
    SSE_INTERNAL,           /* 500: out of memory (1011) */
    SSE_UNAVAILABLE,        /* 503: max_connections or max_connections_per_ip */
};

/* The refusal for a session's close code (4400, 4401, 4403; any other is
 * SSE_INTERNAL). */
enum sse_refusal sse_refusal_of(int close_code);

/* Appends the response head that starts a stream: 200, text/event-stream,
 * no caching, no proxy buffering, close-delimited (Connection: close).
 * cors, when not empty, is the request's Origin, already admitted by
 * allowed_origins: it is echoed in Access-Control-Allow-Origin (with
 * Vary: Origin). Returns 0 or -ENOMEM. */
int     sse_head(struct buf *out, struct str cors);
/* Appends a complete refusal: status, a JSON body
 * {"error":"<code>","message":"<text>"}, Connection: close, and the CORS
 * header as sse_head() does (so a page's fetch() can read the status).
 * Returns 0 or -ENOMEM. */
int     sse_refuse(struct buf *out, enum sse_refusal why, struct str cors);

#endif
