/* body — the body of `POST {mount}/publish`, parsed into channels + data.
 *
 * Two encodings (Content-Type, parameters after ';' allowed, case-blind):
 *   application/json                   {"channel":"news","data":<any JSON>}
 *                                      {"channels":["a","b"],"data":<any JSON>}
 *   application/x-www-form-urlencoded  channel=news&data=hello
 *                                      channels=a,b&data=hello
 * Exactly one of channel/channels and exactly one data are required; any
 * other key, a key given twice, an invalid or repeated channel name is
 * refused (a typo such as "chanel" must not publish somewhere unexpected).
 * A form's data becomes a JSON string, its every byte kept (%00 too, as
 * \u0000); a JSON body's data is passed on exactly as sent, so numbers
 * keep every digit and "\u0000" stays in strings. What is accepted is what
 * ws-server accepts (one JSON value, UTF-8, read by jansson with
 * JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL): a number beyond a double's
 * range (1e400, an integer of 310 digits) is refused by both, as
 * BODY_E_RANGE here; a \u0000 inside an object key is a BODY_E_SYNTAX.
 *
 * No I/O and nothing for the caller to free: every output string lives in
 * the caller's scratch area. (jansson allocates internally while parsing a
 * JSON body and releases it before returning.)
 */
#ifndef WSPUSH_BODY_H
#define WSPUSH_BODY_H

#include <stddef.h>
#include <sys/types.h>

#include "ipc.h"
#include "pattern.h"

enum body_type { BODY_JSON = 1, BODY_FORM = 2 };

#define BODY_E_CTYPE    (-1)  /* Content-Type missing or not one of the two (415) */
#define BODY_E_SYNTAX   (-2)  /* not a JSON object / bad %-escape / bad UTF-8 (400) */
#define BODY_E_FIELD    (-3)  /* unknown, repeated, missing or wrongly typed key (400) */
#define BODY_E_CHANNEL  (-4)  /* an invalid, repeated or over-32 channel list (400) */
#define BODY_E_SPACE    (-5)  /* scratch too small: caller sized it wrong */
#define BODY_E_RANGE    (-6)  /* valid JSON, but a number past a double's range (400) */

/* Scratch bytes that always suffice for a body of len bytes. */
#define BODY_SCRATCH(len) (8 * (size_t)(len) + 64)

struct body_msg {
    int nchannels;                               /* 1..WSPUSH_MAX_CHANNELS */
    int listed;                                  /* 1 if given as "channels" */
    struct str channels[WSPUSH_MAX_CHANNELS];  /* into scratch */
    const char *data;                            /* one JSON value: into buf (JSON
                                                    body, the member's text as sent)
                                                    or into scratch (form) */
    size_t data_len;
};

/* Classifies a Content-Type header value (NULL allowed). Returns BODY_JSON,
 * BODY_FORM or BODY_E_CTYPE. A charset other than utf-8 is refused. */
int body_content_type(const char *ctype);

/* Parses [buf, buf+len) of the given type into *out, using scratch (at
 * least BODY_SCRATCH(len) bytes). Returns 0 or a BODY_E_ code; *out is
 * meaningful only on 0. */
int body_parse(int type, const char *buf, size_t len, struct body_msg *out,
               char *scratch, size_t scratch_len);

/* Short stable text for a BODY_E_ code, for the JSON error message. */
const char *body_strerror(int code);

#endif
