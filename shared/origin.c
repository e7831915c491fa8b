#include "origin.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int origin_canon(const char *s, size_t len, char *out, size_t outlen)
{
    const char *end = s + len;
    const char *scheme;
    int defport;
    if (len >= 7 && strncasecmp(s, "http://", 7) == 0) {
        scheme = "http";
        defport = 80;
        s += 7;
    } else if (len >= 8 && strncasecmp(s, "https://", 8) == 0) {
        scheme = "https";
        defport = 443;
        s += 8;
    } else {
        return -1;
    }
    const char *auth_end = s;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
        auth_end++;
    /* Userinfo is dropped: "http://good@evil" names host evil. */
    for (const char *q = auth_end; q > s; q--) {
        if (q[-1] == '@') {
            s = q;
            break;
        }
    }
    const char *host = s, *host_end, *port = NULL;
    if (s < auth_end && *s == '[') {
        host_end = memchr(s, ']', (size_t)(auth_end - s));
        if (!host_end)
            return -1;
        host_end++;
        if (host_end < auth_end) {
            if (*host_end != ':')
                return -1;
            port = host_end + 1;
        }
    } else {
        host_end = memchr(s, ':', (size_t)(auth_end - s));
        if (host_end)
            port = host_end + 1;
        else
            host_end = auth_end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen > 255)
        return -1;
    long pn = defport;
    if (port) {
        if (port == auth_end)
            return -1;
        pn = 0;
        for (const char *q = port; q < auth_end; q++) {
            if (*q < '0' || *q > '9')
                return -1;
            pn = pn * 10 + (*q - '0');
            if (pn > 65535)
                return -1;
        }
        if (pn == 0)
            return -1;
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c <= ' ' || c >= 0x7f || c == '@' || c == '\\')
            return -1;
    }
    int n = snprintf(out, outlen, "%s://%.*s:%ld", scheme, (int)hlen, host, pn);
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    for (int i = 0; i < n; i++)
        if (out[i] >= 'A' && out[i] <= 'Z')
            out[i] = (char)(out[i] - 'A' + 'a');
    return n;
}

static int origin_in_list(const char *canon, const struct cfg_list *allowed)
{
    char c[ORIGIN_MAX];
    for (int i = 0; i < allowed->n; i++) {
        const char *a = allowed->items[i];
        if (origin_canon(a, strlen(a), c, sizeof c) >= 0 && strcmp(c, canon) == 0)
            return 1;
    }
    return 0;
}

/* An Origin header is a bare scheme://host[:port] (RFC 6454 7.1): what the
 * canonicaliser would cut off (path, query, userinfo) means a client
 * making the value up, not a browser. A Referer is a URL and may have them. */
static int origin_is_bare(const char *s, size_t len)
{
    const char *sep = len >= 3 ? memmem(s, len, "://", 3) : NULL;
    if (!sep)
        return 0;
    for (const char *q = sep + 3; q < s + len; q++)
        if (*q == '/' || *q == '?' || *q == '#' || *q == '@' || *q == '\\')
            return 0;
    return 1;
}

/* The one comparison both programs make: a bare Origin value against the
 * list's entries, both canonicalised. */
static int origin_match(const char *origin, size_t len, const struct cfg_list *allowed)
{
    char c[ORIGIN_MAX];
    if (!origin || !origin_is_bare(origin, len) || origin_canon(origin, len, c, sizeof c) < 0)
        return 0;
    return origin_in_list(c, allowed);
}

int origin_allowed(const char *origin, size_t len, const struct cfg_list *allowed)
{
    for (int i = 0; i < allowed->n; i++)
        if (strcmp(allowed->items[i], "*") == 0)
            return 1;
    return origin_match(origin, len, allowed);
}

int origin_is_listed(const char *origin, const struct cfg_list *allowed)
{
    return origin && origin_match(origin, strlen(origin), allowed);
}

static int origin_is_self(const char *canon, const struct origin_req *r)
{
    char self[ORIGIN_MAX], c[ORIGIN_MAX];
    if (!r->host || !r->scheme || !*r->host)
        return 0;
    int n = snprintf(self, sizeof self, "%s://%s", r->scheme, r->host);
    if (n < 0 || (size_t)n >= sizeof self)
        return 0;
    /* Host must be a bare host[:port]; anything that canon would cut off
     * (a path, userinfo) means a malformed Host header. */
    if (strpbrk(r->host, "/?#@\\"))
        return 0;
    if (origin_canon(self, (size_t)n, c, sizeof c) < 0)
        return 0;
    return strcmp(c, canon) == 0;
}

int origin_check(const struct origin_req *r, const struct cfg_list *allowed)
{
    if (r->sec_fetch_site && strcasecmp(r->sec_fetch_site, "cross-site") == 0)
        return ORIGIN_E_CROSS_SITE;
    const char *src = r->origin && *r->origin ? r->origin : NULL;
    if (src && !origin_is_bare(src, strlen(src)))
        return ORIGIN_E_FOREIGN;
    if (!src)
        src = r->referer && *r->referer ? r->referer : NULL;
    if (!src)
        return ORIGIN_E_MISSING;
    char canon[ORIGIN_MAX];
    /* "Origin: null" (sandboxed frames, file:) and any non-http origin
     * cannot be same-origin. */
    if (origin_canon(src, strlen(src), canon, sizeof canon) < 0)
        return ORIGIN_E_FOREIGN;
    if (allowed->n > 0 ? !origin_in_list(canon, allowed) : !origin_is_self(canon, r))
        return ORIGIN_E_FOREIGN;
    if (r->state_changing && !r->is_json && !(r->x_requested_with && *r->x_requested_with))
        return ORIGIN_E_NO_MARKER;
    return 0;
}

const char *origin_strerror(int code)
{
    switch (code) {
    case ORIGIN_E_CROSS_SITE: return "cross-site request refused (Sec-Fetch-Site)";
    case ORIGIN_E_MISSING:    return "Origin or Referer header required";
    case ORIGIN_E_FOREIGN:    return "origin not allowed";
    case ORIGIN_E_NO_MARKER:  return "X-Requested-With header or a JSON body required";
    default:                  return "request refused";
    }
}
