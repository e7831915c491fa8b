#include "pattern.h"

#include <fnmatch.h>
#include <string.h>

/* Pattern text after {user} expansion; longer patterns never match. */
#define PAT_EXPANDED_MAX 512

static int pat_name_byte(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
        || ch == '_' || ch == '-' || ch == '.' || ch == ':' || ch == '/' || ch == '@';
}

int pat_channel_valid(const char *p, size_t len)
{
    if (len == 0 || len > PAT_CHANNEL_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!pat_name_byte((unsigned char)p[i]))
            return 0;
    return 1;
}

int pat_split_channels(const char *s, size_t len, struct str *out, int max)
{
    int n = 0;
    size_t i = 0;
    if (len == 0)
        return PAT_E_EMPTY;
    for (;;) {
        const char *comma = memchr(s + i, ',', len - i);
        size_t end = comma ? (size_t)(comma - s) : len;
        size_t nlen = end - i;
        if (nlen == 0)
            return PAT_E_EMPTY;
        if (!pat_channel_valid(s + i, nlen))
            return PAT_E_NAME;
        if (n >= max)
            return PAT_E_TOO_MANY;
        for (int j = 0; j < n; j++)
            if (out[j].len == nlen && memcmp(out[j].p, s + i, nlen) == 0)
                return PAT_E_DUP;
        out[n].p = s + i;
        out[n].len = nlen;
        n++;
        if (!comma)
            return n;
        i = end + 1;
    }
}

/* A user name goes into a glob verbatim, so any byte fnmatch treats
 * specially (or `/`, which would let it span path levels, or braces)
 * would widen the pattern: such names are refused outright. */
static int pat_user_safe(const char *user)
{
    return user && *user && !strpbrk(user, "*?[]\\/{}");
}

int pat_match(const char *pattern, const char *user, const char *name, size_t len)
{
    char pat[PAT_EXPANDED_MAX], chan[PAT_CHANNEL_MAX + 1];
    size_t o = 0;
    if (!pattern || !pat_channel_valid(name, len))
        return 0;
    for (const char *p = pattern; *p;) {
        const char *src = p;
        size_t n = 1;
        if (strncmp(p, "{user}", 6) == 0) {
            if (!pat_user_safe(user))
                return 0;
            src = user;
            n = strlen(user);
            p += 6;
        } else {
            p++;
        }
        if (n >= sizeof(pat) - o)
            return 0;
        memcpy(pat + o, src, n);
        o += n;
    }
    pat[o] = '\0';
    memcpy(chan, name, len);
    chan[len] = '\0';
    return fnmatch(pat, chan, FNM_PATHNAME) == 0;
}

int pat_match_any(const struct cfg_list *list, const char *user, const char *name, size_t len)
{
    for (int i = 0; i < list->n; i++)
        if (pat_match(list->items[i], user, name, len))
            return 1;
    return 0;
}
