/* fcgi — codec of the FastCGI protocol (version 1), the responder side.
 * Pure: no I/O; the decoders never allocate and point into the caller's
 * buffer, the encoders append to a struct buf.
 *
 * A record (integers big-endian):
 *
 *     u8 version (1)  u8 type  u16 request id  u16 content length
 *     u8 padding length  u8 reserved  content  padding
 *
 * PARAMS content is a stream of name-value pairs, each length one byte
 * (< 128) or four bytes with the top bit set; a pair may be split across
 * two PARAMS records, so pairs are decoded from the reassembled stream.
 */
#ifndef WSPUSH_FCGI_H
#define WSPUSH_FCGI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

#define FCGI_HEADER_LEN   8
#define FCGI_MAX_CONTENT  65535

enum fcgi_type {
    FCGI_BEGIN_REQUEST = 1,
    FCGI_ABORT_REQUEST = 2,
    FCGI_END_REQUEST = 3,
    FCGI_PARAMS = 4,
    FCGI_STDIN = 5,
    FCGI_STDOUT = 6,
    FCGI_STDERR = 7,
    FCGI_DATA = 8,
    FCGI_GET_VALUES = 9,
    FCGI_GET_VALUES_RESULT = 10,
    FCGI_UNKNOWN_TYPE = 11,
};

#define FCGI_RESPONDER    1      /* the only role served */
#define FCGI_KEEP_CONN    1      /* BEGIN_REQUEST flag */

enum fcgi_protocol_status {
    FCGI_REQUEST_COMPLETE = 0,
    FCGI_CANT_MPX_CONN = 1,
    FCGI_OVERLOADED = 2,
    FCGI_UNKNOWN_ROLE = 3,
};

/* Decoder results (negative). */
#define FCGI_NEED_MORE    (-2)   /* incomplete: read more */
#define FCGI_E_MALFORMED  (-1)   /* wrong version, or a body that does not
                                    match its type: the stream is corrupt */

struct fcgi_record {
    uint8_t        type;
    uint16_t       req_id;
    const uint8_t *content;
    uint16_t       len;          /* content length (padding excluded) */
};

struct fcgi_pair {
    const char *name;
    size_t      name_len;
    const char *value;
    size_t      value_len;
};

/* Decodes one record from [buf, buf+len). Returns the bytes it occupies
 * (header, content and padding), FCGI_NEED_MORE or FCGI_E_MALFORMED. */
ssize_t fcgi_record_parse(const void *buf, size_t len, struct fcgi_record *r);

/* The role and flags of a BEGIN_REQUEST record. Returns 0, or
 * FCGI_E_MALFORMED when the body is not the 8 bytes it must be. */
int     fcgi_begin_parse(const struct fcgi_record *r, uint16_t *role, uint8_t *flags);

/* Decodes one name-value pair of a reassembled PARAMS or GET_VALUES stream.
 * Returns the bytes consumed, FCGI_NEED_MORE (the stream ends inside the
 * pair) or FCGI_E_MALFORMED (a length over max, a zero-length name). */
ssize_t fcgi_pair_parse(const void *buf, size_t len, size_t max, struct fcgi_pair *p);

/* Encoders: append to out; 0, -ENOMEM, or -EINVAL for a length the
 * protocol cannot carry (record content over FCGI_MAX_CONTENT, a pair
 * length over 2^31 - 1). On failure out is left as it was. */
/* A stream (STDOUT, STDERR, PARAMS, ...) of any length, cut into records;
 * len 0 appends the empty record that ends the stream. */
int fcgi_encode_stream(struct buf *out, uint8_t type, uint16_t req_id, const void *data, size_t len);
int fcgi_encode_end(struct buf *out, uint16_t req_id, uint32_t app_status, uint8_t protocol_status);
int fcgi_encode_begin(struct buf *out, uint16_t req_id, uint16_t role, uint8_t flags);
/* One record of type whose content is len (<= FCGI_MAX_CONTENT) bytes. */
int fcgi_encode_record(struct buf *out, uint8_t type, uint16_t req_id, const void *content,
                       size_t len);
/* One name-value pair (into a PARAMS or GET_VALUES_RESULT body). */
int fcgi_encode_pair(struct buf *out, const char *name, size_t name_len, const char *value,
                     size_t value_len);

#endif
