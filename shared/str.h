/* str — a (pointer, length) view of bytes someone else owns: the one type
 * every parser in both programs hands back (handshake fields, IPC strings,
 * channel names). Never NUL-terminated; valid as long as the owner's buffer.
 */
#ifndef WSPUSH_STR_H
#define WSPUSH_STR_H

#include <stddef.h>
#include <string.h>

struct str {
    const char *p;
    size_t      len;
};

static inline int str_eq(struct str a, struct str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

#endif
