/* payload — what the data and channels of a published message must be,
 * wherever a message enters: the publish socket, a restored history_file,
 * the wspush CLI. One rule, so a message one door takes is never refused
 * by another.
 *
 * Data: one JSON value (any type, surrounding whitespace allowed), UTF-8,
 * "\u0000" allowed, big integers allowed; it travels verbatim, never
 * re-serialised. The one limit below the JSON grammar is a number beyond
 * a double's range (1e400): jansson, which checks the syntax, cannot hold
 * it, so it is refused with its own code. Channels: 1..WSPUSH_MAX_CHANNELS
 * distinct valid names (pattern.h).
 */
#ifndef WSPUSH_PAYLOAD_H
#define WSPUSH_PAYLOAD_H

#include <stddef.h>

#include "str.h"

#define PAYLOAD_OK           0
#define PAYLOAD_E_JSON     (-1)   /* not exactly one JSON value */
#define PAYLOAD_E_RANGE    (-2)   /* a number beyond a double's range */
#define PAYLOAD_E_UTF8     (-3)   /* not valid UTF-8 */
#define PAYLOAD_E_CHANNEL  (-4)   /* an invalid channel name */
#define PAYLOAD_E_REPEATED (-5)   /* a channel listed twice */
#define PAYLOAD_E_COUNT    (-6)   /* no channel, or more than WSPUSH_MAX_CHANNELS */

/* PAYLOAD_OK or a PAYLOAD_E_ code for data [p, p+len). */
int payload_check_data(const char *p, size_t len);
/* PAYLOAD_OK or a PAYLOAD_E_ code for the channel list. */
int payload_check_channels(const struct str *names, int n);
/* Short text for a code, for logs and error answers. */
const char *payload_strerror(int code);

#endif
