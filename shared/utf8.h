/* utf8 — strict UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). Pure. */
#ifndef WSPUSH_UTF8_H
#define WSPUSH_UTF8_H

#include <stddef.h>

/* 1 if [p, p+len) is valid UTF-8, else 0. */
int utf8_valid(const unsigned char *p, size_t len);

#endif
