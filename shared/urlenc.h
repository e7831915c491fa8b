/* urlenc — query strings and x-www-form-urlencoded bodies. Pure. */
#ifndef WSPUSH_URLENC_H
#define WSPUSH_URLENC_H

#include <stddef.h>
#include <sys/types.h>

/* Percent-decodes [in, in+len) into out (room for len bytes suffices),
 * with '+' as space when plus_is_space. Returns the decoded length, or -1
 * on a bad escape or a decoded NUL byte. */
ssize_t url_decode(const char *in, size_t len, char *out, int plus_is_space);

/* Finds the raw (still encoded) value of `key` in "a=1&b=2". Returns 1 and
 * sets *val and *vlen when found (the first occurrence), else 0. A key present
 * twice is reported by returning -1 (ambiguous input is refused). */
int url_query_get(const char *q, size_t qlen, const char *key, const char **val, size_t *vlen);

#endif
