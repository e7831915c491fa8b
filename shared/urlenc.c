#include "urlenc.h"

#include <string.h>

static int urlenc_hex(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

ssize_t url_decode(const char *in, size_t len, char *out, int plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '%') {
            if (len - i < 3)
                return -1;
            int hi = urlenc_hex(in[i + 1]), lo = urlenc_hex(in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi << 4 | lo);
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        }
        /* A NUL would cut the value short wherever it is later used as a
         * C string, so it is refused rather than passed on. */
        if (ch == '\0')
            return -1;
        out[o++] = ch;
    }
    return (ssize_t)o;
}

/* 1 if the encoded key [k, k+klen) decodes to `key`. Keys are compared
 * decoded so that "%63hannels" cannot smuggle a second "channels" past a
 * reader that decodes keys differently. */
static int urlenc_key_eq(const char *k, size_t klen, const char *key)
{
    size_t want = strlen(key), got = 0;
    for (size_t i = 0; i < klen; i++, got++) {
        char ch = k[i];
        if (ch == '%') {
            if (klen - i < 3)
                return 0;
            int hi = urlenc_hex(k[i + 1]), lo = urlenc_hex(k[i + 2]);
            if (hi < 0 || lo < 0)
                return 0;
            ch = (char)(hi << 4 | lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (got >= want || key[got] != ch)
            return 0;
    }
    return got == want;
}

int url_query_get(const char *q, size_t qlen, const char *key, const char **val, size_t *vlen)
{
    int found = 0;
    size_t i = 0;
    while (i < qlen) {
        const char *amp = memchr(q + i, '&', qlen - i);
        size_t end = amp ? (size_t)(amp - q) : qlen;
        const char *eq = memchr(q + i, '=', end - i);
        size_t kend = eq ? (size_t)(eq - q) : end;
        if (end > i && urlenc_key_eq(q + i, kend - i, key)) {
            if (found)
                return -1;
            found = 1;
            *val = eq ? eq + 1 : q + end;
            *vlen = eq ? end - kend - 1 : 0;
        }
        i = end + 1;
    }
    return found;
}
