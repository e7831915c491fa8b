/* lcproto — the load client's codecs: WebSocket frames as a client sees
 * them, HTTP/1.1 response heads and chunked bodies (whole, or decoded as a
 * stream), server-sent events, and the publish timestamp inside a delivered
 * payload. Pure: no I/O, no allocation; every
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

/* A chunked body decoded as it streams in (an SSE response never ends). */
struct lcp_dechunk {
    uint32_t left;                /* bytes of the current chunk still to come */
    uint8_t  state;               /* LCP_DC_*, private to lcp_dechunk */
    uint8_t  digits;              /* hex digits of the size line so far */
};

#define LCP_DC_DONE 6             /* the last (zero) chunk was seen */

/* Decodes len raw bytes in place: the chunks' data is moved to the front of
 * buf. Returns the data length, or LCP_E_BAD (a size that is not hex, over
 * 32 bits, or data not followed by CRLF). Bytes after the last chunk are
 * ignored; d->state is LCP_DC_DONE from then on. Start from a zeroed d. */
ssize_t lcp_dechunk(struct lcp_dechunk *d, unsigned char *buf, size_t len);

/* One server-sent event (text/event-stream): lines ending in LF or CRLF,
 * ended by an empty line. */
struct lcp_sse {
    size_t data_off, data_len;    /* from the first data line's value to the
                                     end of the last one; data_len 0 and
                                     has_data 0 when there is none */
    int    has_data;
    size_t event_off, event_len;  /* the `event:` value; 0 length if absent */
};

/* Parses one event at buf. Returns its length including the empty line,
 * LCP_NEED_MORE, or LCP_E_BAD (a NUL byte). Comments (":...") and other
 * fields (id:, retry:) are skipped. */
ssize_t lcp_sse_event(const char *buf, size_t len, struct lcp_sse *ev);

/* Finds `"t":<digits>` anywhere in p and stores the number. Returns 1 when
 * found, 0 otherwise. */
int lcp_find_ts(const char *p, size_t len, uint64_t *t);

#endif
