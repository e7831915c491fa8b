#include "sse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char sse_data_field[] = "data: ";

/* Calls line(p, n, arg) for each line of [p, p+len), split at CR, LF and
 * CRLF (an event-stream reader's line ends); one empty line when len is 0. */
static void sse_lines(const char *p, size_t len, void (*line)(const char *, size_t, void *), void *arg)
{
    const char *end = p + len, *start = p;
    for (;;) {
        const char *q = start;
        while (q < end && *q != '\r' && *q != '\n')
            q++;
        line(start, (size_t)(q - start), arg);
        if (q == end)
            return;
        start = q + (q[0] == '\r' && q + 1 < end && q[1] == '\n' ? 2 : 1);
        if (start == end)
            return;     /* a trailing line end adds no empty data line */
    }
}

static void sse_count_line(const char *p, size_t n, void *arg)
{
    (void)p;
    *(size_t *)arg += sizeof(sse_data_field) - 1 + n + 1;
}

static void sse_write_line(const char *p, size_t n, void *arg)
{
    unsigned char **w = arg;
    memcpy(*w, sse_data_field, sizeof(sse_data_field) - 1);
    *w += sizeof(sse_data_field) - 1;
    memcpy(*w, p, n);
    *w += n;
    *(*w)++ = '\n';
}

size_t sse_data_len(const char *p, size_t len)
{
    size_t n = 0;
    sse_lines(p, len, sse_count_line, &n);
    return n;
}

void sse_data(const char *p, size_t len, unsigned char *out)
{
    sse_lines(p, len, sse_write_line, &out);
}

/* prefix + data lines of [p, p+len) + the blank line that dispatches. */
static rbuf_t *sse_event(const char *prefix, size_t plen, const char *p, size_t len)
{
    size_t dl = sse_data_len(p, len);
    rbuf_t *r = rbuf_new(plen + dl + 1);
    if (!r)
        return NULL;
    unsigned char *w = rbuf_wdata(r);
    memcpy(w, prefix, plen);
    sse_data(p, len, w + plen);
    w[plen + dl] = '\n';
    return r;
}

rbuf_t *sse_encode(const struct msg *m, int chan)
{
    /* The envelope is made once per (message, channel) too: a scratch
     * copy here costs nothing next to the fan-out it serves. */
    size_t elen = msg_envelope_len(m, chan);
    char *env = malloc(elen);
    if (!env)
        return NULL;
    msg_envelope(m, chan, (unsigned char *)env);
    struct str id = msg_id(m);
    char prefix[8 + MSG_ID_MAX];
    int plen = snprintf(prefix, sizeof(prefix), "id: %.*s\n", (int)id.len, id.p);
    rbuf_t *r = sse_event(prefix, (size_t)plen, env, elen);
    free(env);
    return r;
}

rbuf_t *sse_control(const char *json, size_t len)
{
    static const char lead[] = "{\"type\":\"";
    char prefix[64];
    size_t plen = 0;
    size_t k = sizeof(lead) - 1;
    if (len > k && memcmp(json, lead, k) == 0) {
        size_t e = k;
        while (e < len && e - k < 32 && ((json[e] >= 'a' && json[e] <= 'z') || (json[e] >= 'A' && json[e] <= 'Z')))
            e++;
        if (e > k && e < len && json[e] == '"')
            plen = (size_t)snprintf(prefix, sizeof(prefix), "event: %.*s\n", (int)(e - k), json + k);
    }
    return sse_event(prefix, plen, json, len);
}

rbuf_t *sse_close_event(int code)
{
    char json[48];
    int n = snprintf(json, sizeof(json), "{\"type\":\"close\",\"code\":%d}", code);
    return sse_control(json, (size_t)n);
}

enum sse_refusal sse_refusal_of(int close_code)
{
    switch (close_code) {
    case 4400:
        return SSE_BAD_CHANNELS;
    case 4401:
        return SSE_TOKEN;
    case 4403:
        return SSE_NOT_COVERED;
    default:
        return SSE_INTERNAL;
    }
}

static int sse_cors(struct buf *out, struct str cors)
{
    if (cors.len == 0)
        return 0;
    return buf_printf(out, "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n", (int)cors.len, cors.p);
}

int sse_head(struct buf *out, struct str cors)
{
    int rc = buf_printf(out,
                        "HTTP/1.1 200 OK\r\n"
                        "Content-Type: text/event-stream\r\n"
                        "Cache-Control: no-cache\r\n"
                        "X-Accel-Buffering: no\r\n"
                        "Connection: close\r\n");
    rc |= sse_cors(out, cors);
    rc |= buf_printf(out, "\r\n");
    return rc ? -ENOMEM : 0;
}

static const struct {
    const char *status, *error, *message;
} sse_refusals[] = {
    [SSE_BAD_CHANNELS] = { "400 Bad Request", "bad_channels", "channels: 1..max_channels valid, distinct names" },
    [SSE_TOKEN] = { "401 Unauthorized", "token", "token missing, invalid, expired or revoked: fetch a new one" },
    [SSE_NOT_COVERED] = { "403 Forbidden", "not_covered", "the token does not cover every channel" },
    [SSE_ORIGIN] = { "403 Forbidden", "origin", "origin not allowed" },
    [SSE_INTERNAL] = { "500 Internal Server Error", "internal", "out of memory" },
    [SSE_UNAVAILABLE] = { "503 Service Unavailable", "unavailable", "too many connections" },
};

int sse_refuse(struct buf *out, enum sse_refusal why, struct str cors)
{
    char body[160];
    int bl = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}\n",
                      sse_refusals[why].error, sse_refusals[why].message);
    int rc = buf_printf(out,
                        "HTTP/1.1 %s\r\n"
                        "%s"
                        "Content-Type: application/json\r\n"
                        "Cache-Control: no-store\r\n"
                        "Content-Length: %d\r\n"
                        "Connection: close\r\n",
                        sse_refusals[why].status, why == SSE_UNAVAILABLE ? "Retry-After: 5\r\n" : "", bl);
    rc |= sse_cors(out, cors);
    rc |= buf_printf(out, "\r\n%s", body);
    return rc ? -ENOMEM : 0;
}
