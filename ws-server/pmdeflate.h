/* pmdeflate — the compressor of permessage-deflate (RFC 7692), as a
 * push-only server uses it: every message is compressed on its own
 * (server_no_context_takeover), so one zlib stream serves the whole
 * process and is reset before each message. A message is compressed once
 * (its encoding is cached on the message, msg.h) and the result shared by
 * every connection that negotiated the extension, so no connection holds
 * any compression state.
 *
 * The output is what RFC 7692 section 7.2.1 puts in a frame: raw DEFLATE
 * (no zlib header, a 32 KiB window: windowBits 15), ended by a sync flush
 * whose last four bytes (00 00 ff ff) are removed. Any inflater with a 15-bit
 * window decodes it after appending those four bytes back.
 *
 * Not a codec over the caller's buffers only: the stream (about 270 KiB,
 * zlib's own allocations) lives from pmd_new() to pmd_free(); a call
 * allocates nothing unless the level changed (a reload).
 */
#ifndef WSPUSH_PMDEFLATE_H
#define WSPUSH_PMDEFLATE_H

#include <stddef.h>
#include <sys/types.h>

#define PMD_WINDOW_BITS 15      /* the window of every message we send */
#define PMD_TAIL        4       /* bytes of the sync flush's tail, removed */
#define PMD_LEVEL_MIN   1
#define PMD_LEVEL_MAX   9

#define PMD_E_NOT_SMALLER (-1)  /* the compressed form would not be shorter: send it plain */
#define PMD_E_ZLIB        (-2)  /* zlib failed (out of memory): send it plain */

typedef struct pmd pmd_t;

/* A compressor at level (PMD_LEVEL_MIN..MAX, clamped). NULL when out of
 * memory. */
pmd_t  *pmd_new(int level);
/* NULL is ignored. */
void    pmd_free(pmd_t *z);

/* Compresses the message [in, in+len) into out, which has room for
 * cap + PMD_TAIL bytes (zlib writes the tail before it is cut off).
 * Returns the compressed length, always < cap, or PMD_E_NOT_SMALLER when
 * it would be cap bytes or more (out then holds garbage), or PMD_E_ZLIB.
 * level may differ from the last call's (a reload changed it): a new
 * stream is made for it first (not deflateParams(), unsafe after a reset
 * before zlib 1.2.12), and on PMD_E_ZLIB z stays usable at its old level.
 * A caller that wants only a smaller frame passes cap = len. */
ssize_t pmd_compress(pmd_t *z, int level, const void *in, size_t len,
                     unsigned char *out, size_t cap);

#endif
