#include "body.h"

#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "urlenc.h"
#include "utf8.h"

/* Bump allocator over the caller's scratch area. */
struct body_sc {
    char  *p;
    size_t left;
};

static char *body_sc_take(struct body_sc *sc, size_t n)
{
    if (n > sc->left)
        return NULL;
    char *r = sc->p;
    sc->p += n;
    sc->left -= n;
    return r;
}

static int body_is_space(char c) { return c == ' ' || c == '\t'; }

int body_content_type(const char *ct)
{
    if (!ct)
        return BODY_E_CTYPE;
    while (body_is_space(*ct))
        ct++;
    size_t n = strcspn(ct, "; \t");
    int type;
    if (n == 16 && strncasecmp(ct, "application/json", n) == 0)
        type = BODY_JSON;
    else if (n == 33 && strncasecmp(ct, "application/x-www-form-urlencoded", n) == 0)
        type = BODY_FORM;
    else
        return BODY_E_CTYPE;
    /* Parameters: only the charset matters; the body is read as UTF-8, so a
     * page declaring another charset would have its text misread. */
    const char *p = ct + n;
    while (*p) {
        while (body_is_space(*p) || *p == ';')
            p++;
        size_t plen = strcspn(p, ";");
        if (plen >= 8 && strncasecmp(p, "charset=", 8) == 0) {
            const char *v = p + 8;
            size_t vlen = plen - 8;
            while (vlen > 0 && body_is_space(v[vlen - 1]))
                vlen--;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
                v++;
                vlen -= 2;
            }
            if (!(vlen == 5 && strncasecmp(v, "utf-8", 5) == 0) &&
                !(vlen == 4 && strncasecmp(v, "utf8", 4) == 0))
                return BODY_E_CTYPE;
        }
        p += plen;
    }
    return type;
}

static int body_add_channel(struct body_msg *out, const char *p, size_t len)
{
    if (!pat_channel_valid(p, len))
        return BODY_E_CHANNEL;
    if (out->nchannels >= WSPUSH_MAX_CHANNELS)
        return BODY_E_CHANNEL;
    for (int i = 0; i < out->nchannels; i++)
        if (out->channels[i].len == len && memcmp(out->channels[i].p, p, len) == 0)
            return BODY_E_CHANNEL;
    out->channels[out->nchannels].p = p;
    out->channels[out->nchannels].len = len;
    out->nchannels++;
    return 0;
}

/* Writes [s, s+len) as a JSON string literal. s is valid UTF-8, so only
 * quotes, backslashes and control bytes need escaping. */
static int body_json_string(struct body_sc *sc, const char *s, size_t len,
                            const char **outp, size_t *outlen)
{
    static const char hex[] = "0123456789abcdef";
    char *start = sc->p;
    size_t need = 2;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        need += c == '"' || c == '\\' ? 2 : c < 0x20 ? 6 : 1;
    }
    char *o = body_sc_take(sc, need);
    if (!o)
        return BODY_E_SPACE;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            *o++ = '\\';
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    *outp = start;
    *outlen = need;
    return 0;
}

/* Decodes a form value into scratch. url_decode refuses a decoded NUL, as
 * names and keys must; data (allow_nul) may hold one, so the value is
 * decoded in the pieces between its "%00"s. A '%' always opens an escape
 * of two hex digits, so every "%00" found is an escape of its own. */
static int body_form_decode(struct body_sc *sc, const char *v, size_t vlen, int allow_nul,
                            const char **outp, size_t *outlen)
{
    char *o = body_sc_take(sc, vlen + 1);
    if (!o)
        return BODY_E_SPACE;
    size_t n = 0;
    const char *p = v, *end = v + vlen;
    for (;;) {
        const char *nul = allow_nul ? memmem(p, (size_t)(end - p), "%00", 3) : NULL;
        const char *pe = nul ? nul : end;
        ssize_t k = url_decode(p, (size_t)(pe - p), o + n, 1);
        if (k < 0)
            return BODY_E_SYNTAX;
        n += (size_t)k;
        if (!nul)
            break;
        o[n++] = '\0';
        p = nul + 3;
    }
    o[n] = '\0';
    /* Give back what decoding did not use. */
    sc->p -= vlen - n;
    sc->left += vlen - n;
    *outp = o;
    *outlen = n;
    return 0;
}

enum { BODY_K_CHANNEL = 1, BODY_K_CHANNELS = 2, BODY_K_DATA = 4 };

static int body_key(const char *k, size_t len)
{
    if (len == 7 && memcmp(k, "channel", 7) == 0)
        return BODY_K_CHANNEL;
    if (len == 8 && memcmp(k, "channels", 8) == 0)
        return BODY_K_CHANNELS;
    if (len == 4 && memcmp(k, "data", 4) == 0)
        return BODY_K_DATA;
    return 0;
}

static int body_parse_form(const char *buf, size_t len, struct body_msg *out, struct body_sc *sc)
{
    int seen = 0;
    const char *p = buf, *end = buf + len;
    if (len == 0)
        return BODY_E_FIELD;
    while (p <= end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        if (pe == p || !eq)
            return BODY_E_SYNTAX;
        /* Keys are compared decoded, so "d%61ta" is "data" as a browser
         * would have meant it. Keys longer than 16 bytes are unknown. */
        char kbuf[17];
        size_t klen = (size_t)(eq - p);
        if (klen >= sizeof kbuf)
            return BODY_E_FIELD;
        ssize_t kn = url_decode(p, klen, kbuf, 1);
        if (kn < 0)
            return BODY_E_SYNTAX;
        int k = body_key(kbuf, (size_t)kn);
        if (k == 0 || (seen & k))
            return BODY_E_FIELD;
        seen |= k;
        const char *v;
        size_t vlen;
        int rc = body_form_decode(sc, eq + 1, (size_t)(pe - eq - 1), k == BODY_K_DATA, &v, &vlen);
        if (rc < 0)
            return rc;
        if (k == BODY_K_CHANNEL) {
            rc = body_add_channel(out, v, vlen);
        } else if (k == BODY_K_CHANNELS) {
            struct str names[WSPUSH_MAX_CHANNELS];
            int n = pat_split_channels(v, vlen, names, WSPUSH_MAX_CHANNELS);
            if (n < 0)
                return BODY_E_CHANNEL;
            for (int i = 0; i < n && rc == 0; i++)
                rc = body_add_channel(out, names[i].p, names[i].len);
            out->listed = 1;
        } else {
            if (!utf8_valid((const unsigned char *)v, vlen))
                return BODY_E_SYNTAX;
            rc = body_json_string(sc, v, vlen, &out->data, &out->data_len);
        }
        if (rc < 0)
            return rc;
        if (!amp)
            break;
        p = amp + 1;
    }
    if ((seen & (BODY_K_CHANNEL | BODY_K_CHANNELS)) == (BODY_K_CHANNEL | BODY_K_CHANNELS))
        return BODY_E_FIELD;
    if (!(seen & BODY_K_DATA) || !(seen & (BODY_K_CHANNEL | BODY_K_CHANNELS)))
        return BODY_E_FIELD;
    return 0;
}

/* Scanning helpers over text jansson has already accepted: they only need
 * to find where things end, never to validate. */
static const char *body_skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *body_skip_string(const char *p, const char *end)
{
    for (p++; p < end && *p != '"'; p++)
        if (*p == '\\')
            p++;
    return p < end ? p + 1 : end;
}

static const char *body_skip_value(const char *p, const char *end)
{
    int depth = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            p = body_skip_string(p, end);
            if (depth == 0)
                return p;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return p;
            if (--depth == 0)
                return p + 1;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
            return p;
        }
        p++;
    }
    return p;
}

/* Finds the raw text of the idx-th member's value of the top-level object
 * in [buf, end). jansson keeps members in document order, so the index it
 * reports for "data" is the index in the text. */
static int body_member_text(const char *buf, const char *end, size_t idx,
                            const char **vp, size_t *vlen)
{
    const char *p = body_skip_ws(buf, end);
    if (p >= end || *p != '{')
        return BODY_E_SYNTAX;
    p++;
    for (size_t i = 0;; i++) {
        p = body_skip_ws(p, end);
        if (p >= end || *p != '"')
            return BODY_E_SYNTAX;
        p = body_skip_ws(body_skip_string(p, end), end);
        if (p >= end || *p != ':')
            return BODY_E_SYNTAX;
        p = body_skip_ws(p + 1, end);
        const char *v = p;
        p = body_skip_value(p, end);
        if (i == idx) {
            *vp = v;
            *vlen = (size_t)(p - v);
            return 0;
        }
        p = body_skip_ws(p, end);
        if (p >= end || *p != ',')
            return BODY_E_SYNTAX;
        p++;
    }
}

static int body_copy_channel(struct body_msg *out, struct body_sc *sc, json_t *s)
{
    if (!json_is_string(s))
        return BODY_E_FIELD;
    size_t n = json_string_length(s);
    char *o = body_sc_take(sc, n + 1);
    if (!o)
        return BODY_E_SPACE;
    memcpy(o, json_string_value(s), n + 1);
    return body_add_channel(out, o, n);
}

static int body_parse_json(const char *buf, size_t len, struct body_msg *out, struct body_sc *sc)
{
    json_error_t jerr;
    int rc = 0, seen = 0;
    size_t idx = 0, data_idx = 0;
    /* The flags of ws-server's own check (pubsock.c), so a body is refused
     * here exactly when ws-server would refuse its data. INT_AS_REAL: an
     * integer past 64 bits is still valid JSON; only its text travels on,
     * so the double jansson keeps does not matter. ALLOW_NUL: "\u0000" is
     * valid in a JSON string. */
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL |
                                        JSON_ALLOW_NUL, &jerr);
    if (!root) {
        rc = json_error_code(&jerr) == json_error_numeric_overflow ? BODY_E_RANGE : BODY_E_SYNTAX;
        goto out;
    }
    if (!json_is_object(root)) {
        rc = BODY_E_SYNTAX;
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        int k = body_key(key, strlen(key));
        if (k == 0) {
            rc = BODY_E_FIELD;
            goto out;
        }
        seen |= k;
        if (k == BODY_K_CHANNEL) {
            rc = body_copy_channel(out, sc, v);
        } else if (k == BODY_K_CHANNELS) {
            size_t n = json_is_array(v) ? json_array_size(v) : 0;
            if (!json_is_array(v))
                rc = BODY_E_FIELD;
            else if (n == 0 || n > WSPUSH_MAX_CHANNELS)
                rc = BODY_E_CHANNEL;
            for (size_t i = 0; i < n && rc == 0; i++)
                rc = body_copy_channel(out, sc, json_array_get(v, i));
            out->listed = 1;
        } else {
            data_idx = idx;
        }
        if (rc < 0)
            goto out;
        idx++;
    }
    if ((seen & (BODY_K_CHANNEL | BODY_K_CHANNELS)) == (BODY_K_CHANNEL | BODY_K_CHANNELS) ||
        !(seen & BODY_K_DATA) || !(seen & (BODY_K_CHANNEL | BODY_K_CHANNELS))) {
        rc = BODY_E_FIELD;
        goto out;
    }
    rc = body_member_text(buf, buf + len, data_idx, &out->data, &out->data_len);
out:
    json_decref(root);
    return rc;
}

int body_parse(int type, const char *buf, size_t len, struct body_msg *out,
               char *scratch, size_t scratch_len)
{
    struct body_sc sc = { scratch, scratch_len };
    memset(out, 0, sizeof *out);
    if (type == BODY_JSON)
        return body_parse_json(buf, len, out, &sc);
    if (type == BODY_FORM)
        return body_parse_form(buf, len, out, &sc);
    return BODY_E_CTYPE;
}

const char *body_strerror(int code)
{
    switch (code) {
    case BODY_E_CTYPE:   return "Content-Type must be application/json or application/x-www-form-urlencoded (UTF-8)";
    case BODY_E_SYNTAX:  return "body does not parse (JSON object or urlencoded form expected)";
    case BODY_E_FIELD:   return "body needs exactly one of channel/channels and one data, nothing else";
    case BODY_E_CHANNEL: return "invalid channel list (1..32 distinct names of A-Z a-z 0-9 _ - . : / @)";
    case BODY_E_SPACE:   return "internal buffer too small";
    case BODY_E_RANGE:   return "a number in the body is beyond a double's range (about 1.8e308); ws-server refuses it, send it as a string";
    default:             return "bad body";
    }
}
