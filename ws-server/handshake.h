/* handshake — the RFC 6455 opening handshake, server side. Pure: parses and
 * validates an HTTP/1.1 request held in the caller's buffer and builds the
 * answer; no I/O, no allocation.
 *
 * hs_parse() returns the bytes of the request head (through the blank line),
 * HS_NEED_MORE, or HS_E_MALFORMED. It fills struct hs_request with
 * pointer+length pairs into the buffer. hs_check() then decides what to do
 * with a well-formed request.
 */
#ifndef WSPUSH_HANDSHAKE_H
#define WSPUSH_HANDSHAKE_H

#include <stddef.h>
#include <sys/types.h>

#include "cfg.h"
#include "str.h"

#define HS_NEED_MORE    (-2)
#define HS_E_MALFORMED  (-1)   /* not HTTP: answer 400 and close */


struct hs_request {
    struct str method;
    struct str target;        /* path plus query, raw */
    struct str path;          /* target up to '?' */
    struct str query;         /* after '?', raw; len 0 when absent */
    int           minor_version; /* HTTP/1.x */
    struct str host;
    struct str origin;        /* len 0 when absent */
    struct str key;           /* Sec-WebSocket-Key */
    struct str version;       /* Sec-WebSocket-Version */
    struct str last_event_id; /* Last-Event-ID (an EventSource reconnecting); len 0 when absent */
    int           sse;           /* path is exactly /sse: the Server-Sent Events endpoint */
    int           upgrade_websocket;   /* Upgrade lists the token "websocket" */
    int           connection_upgrade;  /* Connection lists the token "upgrade" */
    int           nheaders;
    int           duplicate;     /* Host, Key, Version, Origin, Upgrade or Last-Event-ID appear twice */
};

/* Parses the request head in [buf, buf+len). Header names are matched
 * case-insensitively; tokens in Upgrade/Connection are comma lists matched
 * case-insensitively. Lines end in CRLF (a bare LF is accepted, as browsers
 * never send one but curl-like tools might). Returns bytes consumed (> 0). */
ssize_t hs_parse(const char *buf, size_t len, struct hs_request *req);

/* What to do with a parsed request. */
enum hs_verdict {
    HS_UPGRADE = 0,        /* valid WebSocket handshake */
    HS_SSE,                /* GET /sse from an allowed origin: a Server-Sent
                              Events stream (its head is sse_head()'s) */
    HS_HEALTHZ,            /* GET /healthz: answer 200 */
    HS_BAD_REQUEST,        /* 400: not GET, not HTTP/1.1, no Host, bad key,
                              duplicate header */
    HS_NOT_FOUND,          /* 404: a target that is not a path (does not start
                              with '/', e.g. "*" or an absolute URL) */
    HS_UPGRADE_REQUIRED,   /* 426: plain GET or wrong/missing version;
                              answer carries Sec-WebSocket-Version: 13 */
    HS_FORBIDDEN,          /* 403: Origin not in allowed_origins */
    HS_SERVICE_UNAVAILABLE,/* 503: a connection limit reached; never returned
                              by hs_check: the server answers it (before
                              parsing, or from a reserve slot after it, to
                              let /healthz through); req may be NULL */
    HS_HEADERS_TOO_LARGE,  /* 431: request head over max_header_bytes; never
                              returned by hs_check (the connection code
                              counts the bytes; req may be NULL) */
};

/* Validates a parsed request against RFC 6455 section 4.2.1 and the origin
 * allow-list, matched by origin_allowed() (origin.h: scheme and host
 * case-blind, default ports explicit, so "https://a.example" admits
 * "Origin: https://a.example:443"; "*" admits any). An empty or NULL list
 * accepts any Origin; a request without Origin is accepted: non-browser
 * clients send none. Any path is accepted for the
 * WebSocket endpoint except /healthz and /sse (a reverse proxy may mount us
 * anywhere). Checks in order: method GET (else 400), no duplicate header
 * (400), path /healthz -> HS_HEALTHZ (any HTTP/1.x, Host optional: probes
 * are often HTTP/1.0), HTTP/1.1 and Host (400), origin-form target (404),
 * path /sse -> Origin (403), HS_SSE; Upgrade lists websocket (426),
 * Connection lists upgrade (400), version 13 (426), key (400), Origin
 * (403). */
enum hs_verdict hs_check(const struct hs_request *req, const struct cfg_list *allowed_origins);

/* Writes Sec-WebSocket-Accept for key (base64 of SHA-1(key + GUID), 28
 * chars + NUL) into out[29]. Returns 0, or -1 if key is not 24 base64
 * chars decoding to 16 bytes. */
int hs_accept_key(const char *key, size_t len, char out[29]);

/* Writes the complete response for a verdict (101 with the accept key, or
 * an error page with Connection: close) into out. req is only read for
 * HS_UPGRADE and may be NULL for every other verdict. Returns its length,
 * or -1 if outlen is too small (512 bytes always suffice) or v is HS_SSE
 * (whose answers are sse.h's). */
int hs_response(enum hs_verdict v, const struct hs_request *req, char *out, size_t outlen);

#endif
