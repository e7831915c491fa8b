/* pattern — channel names, channel lists and the access patterns that
 * guard them. Pure string functions, shared by both programs.
 *
 * A channel name is 1..200 bytes of A-Z a-z 0-9 _ - . : / @.
 * A pattern is an fnmatch(3) glob with FNM_PATHNAME (`*` does not cross
 * `/`); "{user}" in a config pattern expands to the authenticated user
 * before matching. A user name containing glob metacharacters or `/` never
 * matches an expanded pattern (it could otherwise widen it).
 */
#ifndef WSPUSH_PATTERN_H
#define WSPUSH_PATTERN_H

#include <stddef.h>

#include "cfg.h"
#include "str.h"
#include "wspush.h"

#define PAT_CHANNEL_MAX   200

#define PAT_E_EMPTY    (-1)   /* empty list or empty name */
#define PAT_E_NAME     (-2)   /* a name with a bad byte or over 200 bytes */
#define PAT_E_TOO_MANY (-3)   /* more names than allowed */
#define PAT_E_DUP      (-4)   /* the same name twice */


/* 1 if [p, p+len) is a valid channel name, else 0. */
int pat_channel_valid(const char *p, size_t len);

/* Splits a comma-separated list of channel names (already URL-decoded)
 * into out (pointers into s). Returns the count (1..max) or a PAT_E_ code. */
int pat_split_channels(const char *s, size_t len, struct str *out, int max);

/* 1 if the channel matches the glob, with "{user}" replaced by user (user
 * may be NULL: a pattern holding {user} then never matches). */
int pat_match(const char *pattern, const char *user, const char *name, size_t len);

/* 1 if any pattern in list matches. */
int pat_match_any(const struct cfg_list *list, const char *user, const char *name, size_t len);

#endif
