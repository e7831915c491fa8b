#include "promtext.h"

#include <stdlib.h>
#include <string.h>

static int prom_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static int prom_name_char(char c) { return prom_name_start(c) || (c >= '0' && c <= '9'); }

/* Skips one key="value" pair at p[i..n); returns the index after it (at
 * ',' or the end) or -1. Key and value are reported when asked. */
static ssize_t prom_pair(const char *p, size_t n, size_t i, struct str *key, struct str *value)
{
    size_t k = i;
    if (k >= n || !prom_name_start(p[k]))
        return -1;
    while (k < n && prom_name_char(p[k]))
        k++;
    if (key)
        *key = (struct str){ p + i, k - i };
    if (k + 1 >= n || p[k] != '=' || p[k + 1] != '"')
        return -1;
    size_t v = k += 2;
    while (k < n && p[k] != '"') {
        if (p[k] == '\\')
            k++;
        k++;
    }
    if (k >= n)
        return -1;
    if (value)
        *value = (struct str){ p + v, k - v };
    return (ssize_t)(k + 1);
}

ssize_t prom_parse_line(const char *buf, size_t len, struct prom_sample *s)
{
    const char *nl = memchr(buf, '\n', len);
    if (!nl)
        return PROM_NEED_MORE;
    size_t n = (size_t)(nl - buf), i = 0;
    memset(s, 0, sizeof(*s));
    while (i < n && (buf[i] == ' ' || buf[i] == '\t'))
        i++;
    if (i == n || buf[i] == '#')
        return (ssize_t)(n + 1);
    size_t start = i;
    if (!prom_name_start(buf[i]))
        return PROM_E_MALFORMED;
    while (i < n && prom_name_char(buf[i]))
        i++;
    s->name = (struct str){ buf + start, i - start };
    if (i < n && buf[i] == '{') {
        size_t lstart = ++i;
        /* Pairs separated by ',' (a trailing one allowed), then '}'. */
        while (i < n && buf[i] != '}') {
            ssize_t next = prom_pair(buf, n, i, NULL, NULL);
            if (next < 0)
                return PROM_E_MALFORMED;
            i = (size_t)next;
            if (i < n && buf[i] == ',')
                i++;
            else if (i < n && buf[i] != '}')
                return PROM_E_MALFORMED;
        }
        if (i >= n)
            return PROM_E_MALFORMED;
        s->labels = (struct str){ buf + lstart, i - lstart };
        i++;
    }
    if (i >= n || (buf[i] != ' ' && buf[i] != '\t'))
        return PROM_E_MALFORMED;
    while (i < n && (buf[i] == ' ' || buf[i] == '\t'))
        i++;
    size_t vstart = i;
    while (i < n && buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\r')
        i++;
    char num[64];
    size_t vlen = i - vstart;
    if (vlen == 0 || vlen >= sizeof(num))
        return PROM_E_MALFORMED;
    memcpy(num, buf + vstart, vlen);
    num[vlen] = '\0';
    char *end;
    s->value = strtod(num, &end);
    if (*end)
        return PROM_E_MALFORMED;
    /* An optional timestamp (integer milliseconds) follows. */
    while (i < n && (buf[i] == ' ' || buf[i] == '\t'))
        i++;
    if (i < n && buf[i] == '-')
        i++;
    while (i < n && buf[i] >= '0' && buf[i] <= '9')
        i++;
    while (i < n && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r'))
        i++;
    return i == n ? (ssize_t)(n + 1) : PROM_E_MALFORMED;
}

int prom_label(struct str labels, const char *key, struct str *value)
{
    size_t klen = strlen(key), i = 0;
    while (i < labels.len) {
        struct str k, v;
        ssize_t next = prom_pair(labels.p, labels.len, i, &k, &v);
        if (next < 0)
            return PROM_E_MALFORMED;
        if (k.len == klen && memcmp(k.p, key, klen) == 0) {
            *value = v;
            return 1;
        }
        i = (size_t)next;
        if (i < labels.len && labels.p[i] != ',')
            return PROM_E_MALFORMED;
        i++;
    }
    return 0;
}
