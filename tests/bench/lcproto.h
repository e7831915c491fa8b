/* lcproto — the load client's codecs: WebSocket frames as a client sees
 * them, HTTP/1.1 response heads and chunked bodies, and the publish
 * timestamp inside a delivered payload. Pure: no I/O, no allocation; every
 * parser takes (buf, len) and returns bytes consumed, LCP_NEED_MORE or
 * LCP_E_BAD.
 */
#ifndef WSPUSH_LCPROTO_H
#define WSPUSH_LCPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LCP_NEED_MORE (-2)
#define LCP_E_BAD     (-1)

struct lcp_frame {
    int      fin;
    int      opcode;
    int      masked;              /* servers must not mask; tolerated */
    int      rsv1;                /* compressed (permessage-deflate): the caller decides */
    unsigned char mask[4];
    uint64_t payload_len;
    size_t   header_len;          /* payload starts at buf + header_len */
};

/* Parses a frame header (2..14 bytes: 7-, 16- and 64-bit lengths). Returns
 * the header length, LCP_NEED_MORE, or LCP_E_BAD (RSV2/RSV3, 64-bit
 * length with the top bit set). RSV1 is reported in rsv1. The payload may not have arrived yet: the
 * caller checks header_len + payload_len against what it holds. */
ssize_t lcp_frame_header(const unsigned char *buf, size_t len, struct lcp_frame *f);

/* Writes one masked client frame (FIN set) into out, which holds outcap
 * bytes. Returns the frame length, or LCP_E_BAD when it does not fit. */
ssize_t lcp_frame_encode(unsigned char *out, size_t outcap, int opcode,
                         const void *payload, size_t len, uint32_t mask);

struct lcp_http {
    int     status;
    int64_t content_length;       /* -1: not given */
    int     chunked;
};

/* Parses a response head up to and including the blank line. Returns its
 * length, LCP_NEED_MORE, or LCP_E_BAD (no status line, a bad length). */
ssize_t lcp_http_head(const char *buf, size_t len, struct lcp_http *h);

/* Length of a complete chunked body at buf (sizes, data, last chunk, no
 * trailers), LCP_NEED_MORE or LCP_E_BAD. Stateless: rescans from buf. */
ssize_t lcp_chunked_len(const char *buf, size_t len);

/* Finds `"t":<digits>` anywhere in p and stores the number. Returns 1 when
 * found, 0 otherwise. */
int lcp_find_ts(const char *p, size_t len, uint64_t *t);

#endif
