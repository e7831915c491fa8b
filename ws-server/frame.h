/* frame — RFC 6455 framing, server side. Pure: no I/O, no allocation.
 *
 * frame_parse() reads one client frame header and payload from
 * [buf, buf+len) and enforces every rule a server must: masking required,
 * RSV bits zero (only frame_peek_opcode knows of an extension), known
 * opcodes, control frames <= 125 bytes and FIN set, 64-bit lengths with
 * the top bit clear, minimal length encoding not required (RFC allows any). Continuation rules depend
 * on the previous frame, so the caller passes whether a fragmented message
 * is in progress.
 */
#ifndef WSPUSH_FRAME_H
#define WSPUSH_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum frame_opcode {
    FRAME_CONT = 0x0, FRAME_TEXT = 0x1, FRAME_BINARY = 0x2,
    FRAME_CLOSE = 0x8, FRAME_PING = 0x9, FRAME_PONG = 0xA,
};

/* RSV1 (RFC 7692): the payload of this data message is compressed. Or'ed
 * into frame_header()'s opcode; frame_peek_opcode's FRAME_EXT_DEFLATE. */
#define FRAME_RSV1         0x40
#define FRAME_EXT_DEFLATE  1u     /* permessage-deflate was negotiated */

#define FRAME_NEED_MORE    (-2)
#define FRAME_E_PROTOCOL   (-1)   /* close 1002 */
#define FRAME_E_TOO_BIG    (-3)   /* payload over max_payload: close 1009 */

struct frame {
    int      fin;
    int      opcode;
    uint64_t payload_len;
    const unsigned char *payload;  /* points into buf, still masked */
    unsigned char mask[4];
};

/* Parses one complete frame. Returns bytes consumed (header + payload),
 * FRAME_NEED_MORE, FRAME_E_PROTOCOL or FRAME_E_TOO_BIG (checked as soon as
 * the length field is complete, before the mask and payload arrive).
 * Protocol rules decidable from the first two bytes are checked on them.
 * *f is written only on success.
 * in_fragment: a text/binary message without FIN was seen before, so a
 * continuation is expected and a new text/binary frame is an error. */
ssize_t frame_parse(const unsigned char *buf, size_t len, uint64_t max_payload,
                    int in_fragment, struct frame *f);

/* The opcode of the frame starting at buf, as soon as its first two bytes
 * are in and pass the rules decidable on them (those frame_parse checks
 * first): the opcode (>= 0), FRAME_NEED_MORE or FRAME_E_PROTOCOL. Lets the
 * caller refuse a frame by its opcode before its length or payload matter
 * (a push-only server refuses every data frame, whatever its size).
 * ext: FRAME_EXT_DEFLATE when permessage-deflate was negotiated: RSV1 is
 * then allowed on a text or binary frame (the first of a message), never
 * on a continuation or control frame. */
int     frame_peek_opcode(const unsigned char *buf, size_t len, int in_fragment, unsigned ext);

/* The whole size (header, mask key when the mask bit is set, payload) of
 * the frame starting at buf, valid or not, so a refused frame can be
 * skipped and what follows it (the peer's close) still read. Returns 0
 * with *size set, FRAME_NEED_MORE until the length field is complete, or
 * FRAME_E_PROTOCOL when the 64-bit length has its top bit set: then no
 * later byte can be trusted to start a frame. */
int     frame_size(const unsigned char *buf, size_t len, uint64_t *size);

/* Unmasks n payload bytes from src into dst (may be the same); offset is
 * the payload position of src[0], so a payload can be unmasked in pieces. */
void frame_unmask(unsigned char *dst, const unsigned char *src, size_t n,
                  const unsigned char mask[4], size_t offset);

/* Writes an unmasked server frame header (FIN set) for a payload of len
 * bytes into hdr[10]; opcode may carry FRAME_RSV1. Returns the header
 * length (2, 4 or 10). */
size_t frame_header(unsigned char hdr[10], int opcode, uint64_t len);

/* Validates a close frame payload (already unmasked): empty, or a valid
 * close code (1000-1003, 1007-1011, 3000-4999) followed by UTF-8.
 * Returns the code (1005 for an empty payload) or -1 when invalid. */
int frame_close_code(const unsigned char *payload, size_t len);

#endif
