#include "handshake.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "origin.h"

#define HS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HS_KEY_LEN 24   /* base64 of 16 bytes */

/* Header fields that must appear at most once (bit per field). */
enum { HS_SEEN_HOST = 1, HS_SEEN_ORIGIN = 2, HS_SEEN_KEY = 4, HS_SEEN_VERSION = 8,
       HS_SEEN_UPGRADE = 16, HS_SEEN_LAST_EVENT_ID = 32 };

/* RFC 9110 tchar: the bytes a method or a header name may hold. */
static int hs_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field values: visible ASCII, space, tab and obs-text. A CR, LF or NUL
 * inside a value is how header injection and request smuggling start. */
static int hs_is_vchar(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7F);
}

static int hs_is_ows(char c) { return c == ' ' || c == '\t'; }

static int hs_str_ieq(struct str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.p, lit, n) == 0;
}

static int hs_str_eq(struct str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* Finds the next line at *pos. The whole head is re-parsed on every call
 * (the caller keeps the bytes), so a line without its LF yet is simply
 * "need more". */
static int hs_next_line(const char *buf, size_t len, size_t *pos, struct str *line)
{
    const char *start = buf + *pos;
    const char *nl = memchr(start, '\n', len - *pos);
    if (!nl)
        return HS_NEED_MORE;
    size_t n = (size_t)(nl - start);
    if (n > 0 && start[n - 1] == '\r')
        n--;
    line->p = start;
    line->len = n;
    *pos = (size_t)(nl - buf) + 1;
    return 0;
}

static int hs_parse_request_line(struct str line, struct hs_request *req)
{
    const char *p = line.p, *end = line.p + line.len;
    const char *m = p;
    while (p < end && hs_is_tchar((unsigned char)*p))
        p++;
    if (p == m || p == end || *p != ' ')
        return HS_E_MALFORMED;
    req->method = (struct str){ m, (size_t)(p - m) };
    p++;

    const char *t = p;
    while (p < end && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7F)
        p++;
    if (p == t || p == end || *p != ' ')
        return HS_E_MALFORMED;
    req->target = (struct str){ t, (size_t)(p - t) };
    p++;

    if (end - p != 8 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9')
        return HS_E_MALFORMED;
    req->minor_version = p[7] - '0';

    const char *q = memchr(t, '?', req->target.len);
    if (q) {
        req->path = (struct str){ t, (size_t)(q - t) };
        req->query = (struct str){ q + 1, req->target.len - (size_t)(q - t) - 1 };
    } else {
        req->path = req->target;
    }
    req->sse = hs_str_eq(req->path, "/sse");
    return 0;
}

/* 1 if the comma-separated list s holds token tok (case-insensitive). */
static int hs_list_has(struct str s, const char *tok)
{
    const char *p = s.p, *end = s.p + s.len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *a = p, *b = e;
        while (a < b && hs_is_ows(*a))
            a++;
        while (b > a && hs_is_ows(b[-1]))
            b--;
        if (hs_str_ieq((struct str){ a, (size_t)(b - a) }, tok))
            return 1;
        p = comma ? comma + 1 : end;
    }
    return 0;
}

/* Stores a single-instance field; a second one marks the request. */
static void hs_set_once(struct hs_request *req, unsigned *seen, unsigned bit,
                        struct str *dst, struct str v)
{
    if (*seen & bit)
        req->duplicate = 1;
    *seen |= bit;
    *dst = v;
}

static int hs_parse_header(struct str line, struct hs_request *req, unsigned *seen)
{
    const char *p = line.p, *end = line.p + line.len;
    /* A leading space would be obs-fold (RFC 9112 5.2), which we refuse. */
    while (p < end && hs_is_tchar((unsigned char)*p))
        p++;
    if (p == line.p || p == end || *p != ':')
        return HS_E_MALFORMED;
    struct str name = { line.p, (size_t)(p - line.p) };
    p++;
    for (const char *c = p; c < end; c++)
        if (!hs_is_vchar((unsigned char)*c))
            return HS_E_MALFORMED;
    while (p < end && hs_is_ows(*p))
        p++;
    while (end > p && hs_is_ows(end[-1]))
        end--;
    struct str v = { p, (size_t)(end - p) };

    req->nheaders++;
    if (hs_str_ieq(name, "host")) {
        hs_set_once(req, seen, HS_SEEN_HOST, &req->host, v);
    } else if (hs_str_ieq(name, "origin")) {
        hs_set_once(req, seen, HS_SEEN_ORIGIN, &req->origin, v);
    } else if (hs_str_ieq(name, "sec-websocket-key")) {
        hs_set_once(req, seen, HS_SEEN_KEY, &req->key, v);
    } else if (hs_str_ieq(name, "sec-websocket-version")) {
        hs_set_once(req, seen, HS_SEEN_VERSION, &req->version, v);
    } else if (hs_str_ieq(name, "upgrade")) {
        struct str ignored;
        hs_set_once(req, seen, HS_SEEN_UPGRADE, &ignored, v);
        if (hs_list_has(v, "websocket"))
            req->upgrade_websocket = 1;
    } else if (hs_str_ieq(name, "last-event-id")) {
        hs_set_once(req, seen, HS_SEEN_LAST_EVENT_ID, &req->last_event_id, v);
    } else if (hs_str_ieq(name, "connection")) {
        /* Connection may legitimately repeat: the lists combine. */
        if (hs_list_has(v, "upgrade"))
            req->connection_upgrade = 1;
    }
    return 0;
}

ssize_t hs_parse(const char *buf, size_t len, struct hs_request *req)
{
    memset(req, 0, sizeof(*req));
    size_t pos = 0;
    unsigned seen = 0;
    struct str line;

    int rc = hs_next_line(buf, len, &pos, &line);
    if (rc < 0)
        return rc;
    rc = hs_parse_request_line(line, req);
    if (rc < 0)
        return rc;
    for (;;) {
        rc = hs_next_line(buf, len, &pos, &line);
        if (rc < 0)
            return rc;
        if (line.len == 0)
            return (ssize_t)pos;
        rc = hs_parse_header(line, req, &seen);
        if (rc < 0)
            return rc;
    }
}

/* No Origin: not a browser, nothing to check. An empty list admits every
 * origin. */
static int hs_origin_ok(const struct hs_request *req, const struct cfg_list *allowed_origins)
{
    return req->origin.len == 0 || !allowed_origins || allowed_origins->n == 0 ||
           origin_allowed(req->origin.p, req->origin.len, allowed_origins);
}

enum hs_verdict hs_check(const struct hs_request *req, const struct cfg_list *allowed_origins)
{
    char accept[29];

    /* Methods and paths are case-sensitive. */
    if (!hs_str_eq(req->method, "GET"))
        return HS_BAD_REQUEST;
    if (req->duplicate)
        return HS_BAD_REQUEST;
    /* Health probes are often HTTP/1.0 without Host: answer them anyway. */
    if (hs_str_eq(req->path, "/healthz"))
        return HS_HEALTHZ;
    if (req->minor_version != 1 || req->host.len == 0)
        return HS_BAD_REQUEST;
    if (req->target.len == 0 || req->target.p[0] != '/')
        return HS_NOT_FOUND;
    if (req->sse)
        return hs_origin_ok(req, allowed_origins) ? HS_SSE : HS_FORBIDDEN;
    if (!req->upgrade_websocket)
        return HS_UPGRADE_REQUIRED;
    if (!req->connection_upgrade)
        return HS_BAD_REQUEST;
    if (req->version.len != 2 || memcmp(req->version.p, "13", 2) != 0)
        return HS_UPGRADE_REQUIRED;
    if (hs_accept_key(req->key.p, req->key.len, accept) < 0)
        return HS_BAD_REQUEST;
    return hs_origin_ok(req, allowed_origins) ? HS_UPGRADE : HS_FORBIDDEN;
}

static int hs_is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

int hs_accept_key(const char *key, size_t len, char out[29])
{
    unsigned char raw[18];
    unsigned char digest[SHA_DIGEST_LENGTH];
    char cat[HS_KEY_LEN + sizeof(HS_GUID)];

    /* 16 bytes encode to 22 significant chars and "==". Checking the
     * alphabet here matters: EVP_DecodeBlock skips surrounding whitespace. */
    if (!key || len != HS_KEY_LEN || key[22] != '=' || key[23] != '=')
        return -1;
    for (size_t i = 0; i < 22; i++)
        if (!hs_is_b64(key[i]))
            return -1;
    /* EVP_DecodeBlock does not subtract padding: 24 chars give 18. */
    if (EVP_DecodeBlock(raw, (const unsigned char *)key, HS_KEY_LEN) != 18)
        return -1;

    memcpy(cat, key, HS_KEY_LEN);
    memcpy(cat + HS_KEY_LEN, HS_GUID, sizeof(HS_GUID) - 1);
    SHA1((const unsigned char *)cat, HS_KEY_LEN + sizeof(HS_GUID) - 1, digest);
    if (EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH) != 28)
        return -1;
    return 0;
}

static int hs_error_page(char *out, size_t outlen, const char *status, const char *extra,
                         const char *body)
{
    int n = snprintf(out, outlen,
                     "HTTP/1.1 %s\r\n"
                     "%s"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "\r\n"
                     "%s",
                     status, extra, strlen(body), body);
    return n < 0 || (size_t)n >= outlen ? -1 : n;
}

int hs_response(enum hs_verdict v, const struct hs_request *req, char *out, size_t outlen)
{
    char accept[29];
    int n;

    switch (v) {
    case HS_UPGRADE:
        if (!req || hs_accept_key(req->key.p, req->key.len, accept) < 0)
            return -1;
        n = snprintf(out, outlen,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "\r\n",
                     accept);
        return n < 0 || (size_t)n >= outlen ? -1 : n;
    case HS_SSE:
        return -1;
    case HS_HEALTHZ:
        return hs_error_page(out, outlen, "200 OK", "", "ok\n");
    case HS_NOT_FOUND:
        return hs_error_page(out, outlen, "404 Not Found", "", "not found\n");
    case HS_UPGRADE_REQUIRED:
        /* RFC 9110 15.5.22: a 426 names the protocol to switch to. */
        return hs_error_page(out, outlen, "426 Upgrade Required",
                             "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
                             "a WebSocket (version 13) handshake is required\n");
    case HS_FORBIDDEN:
        return hs_error_page(out, outlen, "403 Forbidden", "", "origin not allowed\n");
    case HS_SERVICE_UNAVAILABLE:
        return hs_error_page(out, outlen, "503 Service Unavailable", "Retry-After: 5\r\n",
                             "too many connections\n");
    case HS_HEADERS_TOO_LARGE:
        return hs_error_page(out, outlen, "431 Request Header Fields Too Large", "",
                             "request header over max_header_bytes\n");
    case HS_BAD_REQUEST:
    default:
        return hs_error_page(out, outlen, "400 Bad Request", "", "bad request\n");
    }
}
