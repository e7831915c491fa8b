/* msgid — message ids "<hex epoch>-<decimal seq>": the one parser, format
 * and order every engine uses. Pure: no allocation, no I/O.
 *
 * An epoch is a run of ids (the memory engine's start second; the Redis
 * engine's epoch key); seq counts from 1 within it ("<epoch>-0" is the
 * greeting's "nothing yet"). Ids compare by (epoch, seq). The form is
 * canonical: lowercase hex, no leading zeros but a lone 0, so that every
 * node writes one id one way.
 */
#ifndef WSPUSH_MSGID_H
#define WSPUSH_MSGID_H

#include <stdint.h>

#include "msg.h"
#include "str.h"

struct msgid {
    uint32_t epoch;
    uint64_t seq;
};

/* Parses id strictly (canonical form only). Returns 0 or -1. */
int  msgid_parse(struct str id, struct msgid *out);
/* Writes "<hex epoch>-<seq>" (at most MSG_ID_MAX bytes, NUL included). */
void msgid_format(struct msgid id, char out[MSG_ID_MAX]);
/* -1, 0 or 1 as a is before, equal to or after b. */
int  msgid_cmp(struct msgid a, struct msgid b);

#endif
