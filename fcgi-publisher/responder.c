#include "responder.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "body.h"
#include "log.h"
#include "origin.h"
#include "pattern.h"
#include "pubclient.h"
#include "pubstats.h"
#include "token.h"
#include "urlenc.h"

#define RESP_QUERY_MAX   8192
/* A body_parse scratch grown past this by one big publish is released. */
#define RESP_SCRATCH_KEEP (1024 * 1024)

struct resp {
    pubc_t           *pub;        /* this worker's pipelined publish connection */
    const struct cfg *c;          /* the config new requests start with */
    struct buf        scratch;    /* body_parse's scratch */
    struct pubstats_slot *stats;  /* this worker's counters (shared memory) */
};

/* One request being answered. The strings point into the request's params,
 * which live until front_reply(). */
struct resp_rq {
    resp_t           *r;
    struct front_req *req;
    const struct cfg *c;          /* only until resp_handle returns */
    const char       *method;
    const char       *path;       /* REQUEST_URI without the query */
    size_t            path_len;
    const char       *cors_origin;/* echoed in CORS headers when listed, else NULL */
    char              user[TOK_SUB_MAX + 1];
    int               status;     /* answered status, for the log line and metrics */
    enum pubstats_endpoint endpoint;
    uint64_t          start_ns;   /* CLOCK_MONOTONIC when the request was handed in */
    uint64_t          queued_ns;  /* ... when its publish was queued to ws-server */
    int               answered;
    struct buf        out;        /* the CGI answer */
    /* A publish waiting for ws-server. */
    uint64_t          ticket;
    int               pending;
    int               listed;     /* the body gave "channels": answer the list */
    json_t           *channels;   /* the answer's "channel" string or "channels" array */
    char              summary[80];/* "channel" or "channel,...", for the log */
};

static void resp_finish(struct resp_rq *rq);

/* CLOCK_MONOTONIC in ns: read through the vDSO, no system call. */
static uint64_t resp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The params an answer depends on for who is asking and from where. Sent
 * twice (a site's included fastcgi_params plus its own line, such as
 * nginx's REMOTE_USER $remote_user -- taken from the client's unchecked
 * Basic header -- before the auth_request one), the first would win
 * unnoticed; such a request is refused instead. */
static const char *const resp_single_params[] = {
    "REMOTE_USER", "HTTP_AUTHORIZATION", "HTTP_COOKIE", "HTTP_ORIGIN", "HTTP_REFERER",
    "HTTP_SEC_FETCH_SITE", "HTTP_HOST", "REQUEST_SCHEME", "HTTPS", "CONTENT_LENGTH",
    "CONTENT_TYPE",
};

static const char *resp_param(const struct resp_rq *rq, const char *name)
{
    return front_param(rq->req, name);
}

static const char *resp_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default:  return "Error";
    }
}

/* Appends to the answer; running out of memory shows as an empty answer,
 * which the web server turns into a 502. */
static void resp_put(struct resp_rq *rq, const char *s)
{
    (void)buf_append(&rq->out, s, strlen(s));
}

static void resp_headers(struct resp_rq *rq, int status, const char *extra)
{
    buf_reset(&rq->out);
    (void)buf_printf(&rq->out, "Status: %d %s\r\n", status, resp_reason(status));
    if (status != 204)
        resp_put(rq, "Content-Type: application/json\r\n");
    resp_put(rq, "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n");
    if (rq->cors_origin)
        (void)buf_printf(&rq->out, "Access-Control-Allow-Origin: %s\r\n"
                                   "Access-Control-Allow-Credentials: true\r\nVary: Origin\r\n",
                         rq->cors_origin);
    if (extra)
        resp_put(rq, extra);
    resp_put(rq, "\r\n");
    rq->status = status;
    rq->answered = 1;
}

/* Sends status with the JSON object obj (consumed). */
static void resp_json(struct resp_rq *rq, int status, const char *extra, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text) {
        status = 500;
        extra = NULL;
    }
    resp_headers(rq, status, extra);
    resp_put(rq, text ? text : "{\"error\":\"internal\",\"message\":\"out of memory\"}");
    resp_put(rq, "\n");
    free(text);
}

static void resp_error(struct resp_rq *rq, int status, const char *extra, const char *code,
                       const char *message)
{
    resp_json(rq, status, extra, json_pack("{s:s,s:s}", "error", code, "message", message));
}

/* The stable error code for a status (see responder.h). */
static const char *resp_code(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthenticated";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 411: return "length_required";
    case 413:
    case 431: return "too_large";
    case 415: return "unsupported_media_type";
    case 503: return "unavailable";
    case 504: return "timeout";
    default:  return "internal";
    }
}

static void resp_fail(struct resp_rq *rq, int status, const char *message)
{
    resp_error(rq, status, NULL, resp_code(status), message);
}

static void resp_fail_channel(struct resp_rq *rq, int status, const char *what,
                              const char *name, size_t len)
{
    char msg[300];
    snprintf(msg, sizeof msg, "%s '%.*s'", what, (int)len, name);
    resp_fail(rq, status, msg);
}

static int resp_authenticate(struct resp_rq *rq, struct auth_user *u)
{
    struct auth_req ar = {
        .remote_user = resp_param(rq, "REMOTE_USER"),
        .authorization = resp_param(rq, "HTTP_AUTHORIZATION"),
        .cookie = resp_param(rq, "HTTP_COOKIE"),
    };
    int rc = auth_identify(rq->c, &ar, (long)time(NULL), u);
    if (rc == 0) {
        snprintf(rq->user, sizeof rq->user, "%s", u->name);
        return 0;
    }
    if (rc == AUTH_E_NOMEM) {
        resp_fail(rq, 500, "out of memory");
        return rc;
    }
    char msg[200];
    if (u->token_error == TOK_E_SCOPE) {
        /* A token made to subscribe, offered as a login: a leaked URL
         * token is the likely story, so it is worth a warning. */
        log_warn("login refused: the JWT of '%s' has %s: a subscribe token is not a login",
                 u->name, u->scope_mark);
        snprintf(msg, sizeof msg, "%s: %s (it has %s); log in with the site's JWT",
                 auth_strerror(rc), tok_strerror(u->token_error), u->scope_mark);
    } else if (u->token_error) {
        snprintf(msg, sizeof msg, "%s: %s", auth_strerror(rc), tok_strerror(u->token_error));
    } else {
        snprintf(msg, sizeof msg, "%s", auth_strerror(rc));
    }
    resp_error(rq, 401, rq->c->auth == CFG_AUTH_JWT ? "WWW-Authenticate: Bearer\r\n" : NULL,
               "unauthenticated", msg);
    return rc;
}

static void resp_origin_req(const struct resp_rq *rq, struct origin_req *o)
{
    const char *scheme = resp_param(rq, "REQUEST_SCHEME");
    const char *https = resp_param(rq, "HTTPS");
    if (!scheme || !*scheme)
        scheme = https && strcasecmp(https, "on") == 0 ? "https" : "http";
    memset(o, 0, sizeof *o);
    o->origin = resp_param(rq, "HTTP_ORIGIN");
    o->referer = resp_param(rq, "HTTP_REFERER");
    o->sec_fetch_site = resp_param(rq, "HTTP_SEC_FETCH_SITE");
    o->x_requested_with = resp_param(rq, "HTTP_X_REQUESTED_WITH");
    o->scheme = scheme;
    o->host = resp_param(rq, "HTTP_HOST");
}

/* Strict CONTENT_LENGTH: decimal digits only. Returns the length, -1 when
 * absent, empty or "-1", -2 when malformed. "-1" is Caddy's (Go's
 * http.Request.ContentLength) way of saying unknown: a chunked body. */
static long resp_content_length(const char *s)
{
    if (!s || !*s || strcmp(s, "-1") == 0)
        return -1;
    if (*s < '0' || *s > '9')
        return -2;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > (unsigned long long)LONG_MAX / 2)
        return -2;
    return (long)v;
}

static void resp_map_publish_error(struct resp_rq *rq, int rc, const struct pubc_result *res)
{
    char msg[640];   /* never cut: a cut UTF-8 sequence would fail as JSON */
    if (rc == PUBC_E_REFUSED) {
        int status;
        switch (res->code) {
        case IPC_ERR_BAD_CHANNEL:
        case IPC_ERR_BAD_DATA:
        case IPC_ERR_MALFORMED: status = 400; break;
        case IPC_ERR_TOO_BIG:   status = 413; break;
        case IPC_ERR_NOT_ALLOWED: status = 403; break;
        case IPC_ERR_TIMEOUT:   status = 504; break;
        default:                status = 503; break;
        }
        snprintf(msg, sizeof msg, "ws-server refused the message: %s%s%s",
                 ipc_error_name(res->code), res->text[0] ? ": " : "", res->text);
        resp_fail(rq, status, msg);
        return;
    }
    switch (rc) {
    case PUBC_E_TIMEOUT:
        resp_fail(rq, 504, "ws-server did not acknowledge the message in time");
        return;
    case PUBC_E_NOMEM:
        resp_fail(rq, 500, "out of memory");
        return;
    case PUBC_E_INVALID:
        resp_fail(rq, 400, "message outside the publish protocol's limits");
        return;
    default:
        resp_fail(rq, 503, "ws-server is not reachable; the message was not published");
        return;
    }
}

/* ws-server's answer to a queued publish. */
static void resp_published(void *ctx, int rc, const struct pubc_result *res)
{
    struct resp_rq *rq = ctx;
    rq->pending = 0;
    pubstats_observe(&rq->r->stats->ack_wait, resp_now_ns() - rq->queued_ns);
    if (rc < 0) {
        log_warn("publish by %s to %s: %s%s%s", rq->user, rq->summary, pubc_strerror(rc),
                 res->text[0] ? ": " : "", res->text);
        resp_map_publish_error(rq, rc, res);
    } else {
        json_t *obj = json_pack("{s:s,s:I}", "id", res->id, "subscribers", (json_int_t)res->count);
        if (obj)
            json_object_set(obj, rq->listed ? "channels" : "channel", rq->channels);
        resp_json(rq, 200, NULL, obj);
    }
    resp_finish(rq);
}

/* Everything up to handing the message to pubclient; the answer comes from
 * resp_published() unless a check fails first. */
static void resp_publish(struct resp_rq *rq)
{
    const struct cfg *c = rq->c;
    resp_t *r = rq->r;
    struct auth_user u;
    if (resp_authenticate(rq, &u) < 0)
        return;
    int ctype = body_content_type(resp_param(rq, "CONTENT_TYPE"));
    if (u.ambient) {
        struct origin_req o;
        resp_origin_req(rq, &o);
        o.is_json = ctype == BODY_JSON;
        o.state_changing = 1;
        int rc = origin_check(&o, &c->pub_allowed_origins);
        if (rc < 0) {
            log_info("publish refused: %s (origin %s, referer %s, host %s, scheme %s)",
                     origin_strerror(rc), o.origin ? o.origin : "-", o.referer ? o.referer : "-",
                     o.host ? o.host : "-", o.scheme);
            resp_fail(rq, 403, origin_strerror(rc));
            goto out;
        }
    }
    long clen = resp_content_length(resp_param(rq, "CONTENT_LENGTH"));
    if (clen == -1) {
        resp_fail(rq, 411, "Content-Length required (a chunked body has none)");
        goto out;
    }
    if (clen < 0) {
        resp_fail(rq, 400, "malformed Content-Length");
        goto out;
    }
    if (clen > c->max_body) {
        char msg[80];
        snprintf(msg, sizeof msg, "body over max_body (%d bytes)", c->max_body);
        resp_fail(rq, 413, msg);
        goto out;
    }
    if (ctype < 0) {
        resp_fail(rq, 415, body_strerror(BODY_E_CTYPE));
        goto out;
    }
    size_t kept, sent;
    const char *body = front_body(rq->req, &kept, &sent);
    if (sent < (size_t)clen || kept < (size_t)clen) {
        resp_fail(rq, 400, "body shorter than Content-Length");
        goto out;
    }
    buf_reset(&r->scratch);
    if (buf_reserve(&r->scratch, BODY_SCRATCH(clen)) < 0) {
        resp_fail(rq, 500, "out of memory");
        goto out;
    }
    struct body_msg m;
    int rc = body_parse(ctype, body, (size_t)clen, &m, r->scratch.data, r->scratch.cap);
    if (rc < 0) {
        resp_fail(rq, rc == BODY_E_SPACE ? 500 : 400, body_strerror(rc));
        goto out;
    }
    for (int i = 0; i < m.nchannels; i++) {
        if (!auth_may_publish(c, &u, m.channels[i].p, m.channels[i].len)) {
            resp_fail_channel(rq, 403, "not allowed to publish to", m.channels[i].p,
                              m.channels[i].len);
            goto out;
        }
    }
    if (m.data_len > (size_t)c->max_message_bytes) {
        resp_fail(rq, 413, "data over max_message_bytes");
        goto out;
    }
    /* What the 200 answer repeats, kept now: the body and scratch are not
     * ours once this returns. */
    rq->listed = m.listed;
    if (!m.listed) {
        rq->channels = json_stringn(m.channels[0].p, m.channels[0].len);
    } else if ((rq->channels = json_array())) {
        for (int i = 0; i < m.nchannels; i++)
            json_array_append_new(rq->channels, json_stringn(m.channels[i].p, m.channels[i].len));
    }
    if (!rq->channels) {
        resp_fail(rq, 500, "out of memory");
        goto out;
    }
    snprintf(rq->summary, sizeof rq->summary, "%.*s%s", (int)m.channels[0].len, m.channels[0].p,
             m.nchannels > 1 ? ",..." : "");
    rq->queued_ns = resp_now_ns();
    rc = pubc_publish(r->pub, m.channels, m.nchannels, m.data, m.data_len, c->ack_timeout_ms,
                      resp_published, rq, &rq->ticket);
    if (rc < 0) {
        struct pubc_result res = { 0 };
        log_warn("publish by %s to %s: %s", u.name, rq->summary, pubc_strerror(rc));
        resp_map_publish_error(rq, rc, &res);
        goto out;
    }
    rq->pending = 1;
out:
    if (r->scratch.cap > RESP_SCRATCH_KEEP)
        buf_free(&r->scratch);
    auth_user_free(&u);
}

static void resp_token(struct resp_rq *rq)
{
    const struct cfg *c = rq->c;
    struct auth_user u;
    if (resp_authenticate(rq, &u) < 0)
        return;
    if (u.ambient) {
        /* Reading a token needs no CSRF marker (nothing changes, and only a
         * CORS-allowed origin can read the answer), and a same-origin GET
         * often carries neither Origin nor Referer; what a browser does say
         * must still be consistent. */
        struct origin_req o;
        resp_origin_req(rq, &o);
        o.referer = NULL;
        int rc = origin_check(&o, &c->pub_allowed_origins);
        if (rc < 0 && rc != ORIGIN_E_MISSING) {
            resp_fail(rq, 403, origin_strerror(rc));
            goto out;
        }
    }
    const char *q = resp_param(rq, "QUERY_STRING");
    const char *raw;
    size_t rawlen;
    int found = q ? url_query_get(q, strlen(q), "channels", &raw, &rawlen) : 0;
    if (found <= 0) {
        resp_fail(rq, 400, found < 0 ? "channels given twice" : "channels parameter required");
        goto out;
    }
    char list[RESP_QUERY_MAX + 1];
    ssize_t n = rawlen <= RESP_QUERY_MAX ? url_decode(raw, rawlen, list, 1) : -1;
    if (n < 0) {
        resp_fail(rq, 400, "malformed channels parameter");
        goto out;
    }
    list[n] = '\0';
    struct str names[WSPUSH_MAX_CHANNELS];
    int nn = pat_split_channels(list, (size_t)n, names, WSPUSH_MAX_CHANNELS);
    if (nn < 0) {
        resp_fail(rq, 400, "invalid channel list (1..32 distinct names of A-Z a-z 0-9 _ - . : / @)");
        goto out;
    }
    const char *chans[WSPUSH_MAX_CHANNELS];
    for (int i = 0; i < nn; i++) {
        if (!auth_may_subscribe(c, &u, names[i].p, names[i].len)) {
            resp_fail_channel(rq, 403, "not allowed to subscribe to", names[i].p, names[i].len);
            goto out;
        }
    }
    /* Names cannot hold a comma, so cutting the list at its commas turns
     * each name into a C string in place. */
    for (int i = 0; i < nn; i++) {
        ((char *)names[i].p)[names[i].len] = '\0';
        chans[i] = names[i].p;
    }
    long now = (long)time(NULL);
    long exp = now + c->token_ttl_s;
    char tok[TOK_MAX_LEN];
    int tlen = tok_issue(&c->secret, u.name, now, exp, chans, nn, tok, sizeof tok);
    if (tlen < 0) {
        resp_fail(rq, 500, "could not issue a token");
        goto out;
    }
    json_t *arr = json_array();
    for (int i = 0; i < nn; i++)
        json_array_append_new(arr, json_string(chans[i]));
    resp_json(rq, 200, NULL, json_pack("{s:s,s:I,s:o}", "token", tok, "expires", (json_int_t)exp,
                                       "channels", arr));
    if (rq->status == 200)
        pubstats_add(&rq->r->stats->tokens_issued, 1);
out:
    auth_user_free(&u);
}

static void resp_preflight(struct resp_rq *rq)
{
    const char *extra = rq->cors_origin
        ? "Access-Control-Allow-Methods: POST, GET, OPTIONS\r\n"
          "Access-Control-Allow-Headers: Content-Type, X-Requested-With, Authorization\r\n"
          "Access-Control-Max-Age: 600\r\n"
        : NULL;
    resp_headers(rq, 204, extra);
}

static int resp_path_is(const struct resp_rq *rq, const char *mount, const char *leaf)
{
    size_t mlen = strlen(mount);
    while (mlen > 0 && mount[mlen - 1] == '/')
        mlen--;
    size_t llen = strlen(leaf);
    return rq->path_len == mlen + llen && memcmp(rq->path, mount, mlen) == 0 &&
           memcmp(rq->path + mlen, leaf, llen) == 0;
}

resp_t *resp_new(ev_loop_t *loop, const struct cfg *c, struct pubstats_slot *stats)
{
    resp_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->c = c;
    r->stats = stats;
    r->pub = pubc_new(loop, c->publish_socket);
    if (!r->pub) {
        free(r);
        return NULL;
    }
    pubc_on_link(r->pub, pubstats_link, stats);
    return r;
}

void resp_free(resp_t *r)
{
    if (!r)
        return;
    pubc_free(r->pub);
    buf_free(&r->scratch);
    free(r);
}

int resp_set_cfg(resp_t *r, const struct cfg *c)
{
    if (pubc_set_path(r->pub, c->publish_socket) < 0)
        return -1;
    r->c = c;
    return 0;
}

void resp_flush(resp_t *r) { pubc_flush(r->pub); }

int resp_link(resp_t *r) { return pubc_open(r->pub) < 0 ? -1 : 0; }

static void resp_rq_free(struct resp_rq *rq)
{
    json_decref(rq->channels);
    buf_free(&rq->out);
    free(rq);
}

/* Sends the answer built in rq->out and forgets the request. */
static void resp_finish(struct resp_rq *rq)
{
    if (!rq->answered)
        resp_fail(rq, 500, "no answer");
    log_info("%s %.*s -> %d%s%s", rq->method, (int)rq->path_len, rq->path, rq->status,
             rq->user[0] ? " user=" : "", rq->user);
    pubstats_request(rq->r->stats, rq->endpoint, rq->status, resp_now_ns() - rq->start_ns);
    front_req_set_data(rq->req, NULL);
    front_reply(rq->req, rq->out.data, rq->out.len);
    resp_rq_free(rq);
}

void resp_cancel(void *resp, struct front_req *req)
{
    resp_t *r = resp;
    struct resp_rq *rq = front_req_data(req);
    if (!rq)
        return;
    if (rq->pending)
        pubc_cancel(r->pub, rq->ticket);
    log_info("%s %.*s: the web server gave up on the request", rq->method, (int)rq->path_len,
             rq->path);
    resp_rq_free(rq);
}

void resp_handle(void *resp, struct front_req *req)
{
    resp_t *r = resp;
    const struct cfg *c = r->c;
    struct resp_rq *rq = calloc(1, sizeof *rq);
    if (!rq) {
        static const char oom[] = "Status: 500 Internal Server Error\r\n\r\n";
        front_reply(req, oom, sizeof oom - 1);
        return;
    }
    rq->r = r;
    rq->req = req;
    rq->c = c;
    rq->start_ns = resp_now_ns();
    rq->method = resp_param(rq, "REQUEST_METHOD");
    if (!rq->method)
        rq->method = "";
    rq->path = resp_param(rq, "REQUEST_URI");
    if (!rq->path)
        rq->path = resp_param(rq, "DOCUMENT_URI");
    if (!rq->path)
        rq->path = resp_param(rq, "SCRIPT_NAME");
    if (!rq->path)
        rq->path = "";
    rq->path_len = strcspn(rq->path, "?#");
    const char *twice = front_req_truncated(req) ? NULL
        : front_param_repeated(req, resp_single_params,
                               sizeof resp_single_params / sizeof resp_single_params[0]);
    const char *origin = twice ? NULL : resp_param(rq, "HTTP_ORIGIN");
    if (origin && origin_is_listed(origin, &c->pub_allowed_origins) &&
        !strpbrk(origin, "\r\n"))
        rq->cors_origin = origin;

    int is_publish = resp_path_is(rq, c->mount, "/publish");
    int is_token = resp_path_is(rq, c->mount, "/token");
    rq->endpoint = is_publish ? PUBSTATS_PUBLISH : is_token ? PUBSTATS_TOKEN : PUBSTATS_OTHER;
    if (front_req_truncated(req)) {
        resp_fail(rq, 431, "request head over max_params");
    } else if (twice) {
        /* nginx passes a header the client repeats as two params too. */
        log_warn("%s %.*s refused: FastCGI param %s sent twice; if every request gets this, "
                 "fix the web server's config (replace the line, do not add a second)",
                 rq->method, (int)rq->path_len, rq->path, twice);
        char msg[200];
        snprintf(msg, sizeof msg, "FastCGI param %s sent twice (two lines of the web server's "
                                  "config set it, or the client repeated the header)", twice);
        resp_fail(rq, 400, msg);
    } else if (!is_publish && !is_token) {
        resp_fail(rq, 404, "no such endpoint (publish, token)");
    } else if (strcmp(rq->method, "OPTIONS") == 0) {
        resp_preflight(rq);
    } else if (is_publish && strcmp(rq->method, "POST") != 0) {
        resp_error(rq, 405, "Allow: POST, OPTIONS\r\n", "method_not_allowed", "use POST");
    } else if (is_token && strcmp(rq->method, "GET") != 0) {
        resp_error(rq, 405, "Allow: GET, OPTIONS\r\n", "method_not_allowed", "use GET");
    } else if (is_publish) {
        resp_publish(rq);
    } else {
        resp_token(rq);
    }
    rq->c = NULL;
    if (rq->pending)
        front_req_set_data(req, rq);
    else
        resp_finish(rq);
}
