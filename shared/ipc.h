/* ipc — codec of the publish socket's binary protocol (ws-server's Unix
 * socket, spoken by fcgi-publisher and the wspush CLI). Pure: no I/O, no
 * allocation while decoding; decoded strings point into the caller's buffer.
 *
 * The protocol itself (frame layout, request and answer types, error
 * codes, pipelining) is documented once, in docs/protocol.md, section
 * "The publish socket protocol"; the enums below are its numbers.
 */
#ifndef WSPUSH_IPC_H
#define WSPUSH_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "str.h"
#include "wspush.h"

#define IPC_HEADER_LEN    9      /* length + type + request id */

enum ipc_type {
    IPC_PUBLISH = 0x01,
    IPC_DISCONNECT = 0x02,
    IPC_ACK = 0x81,
    IPC_DISCONNECTED = 0x82,
    IPC_ERROR = 0xFF,
};

/* Codes carried by an IPC_ERROR answer. */
enum ipc_error_code {
    IPC_ERR_MALFORMED = 1,   /* frame does not parse */
    IPC_ERR_BAD_CHANNEL = 2, /* a channel name is invalid */
    IPC_ERR_TOO_BIG = 3,     /* data over max_message_bytes */
    IPC_ERR_NOT_ALLOWED = 4, /* peer may not do this */
    IPC_ERR_BAD_DATA = 5,    /* data is not one JSON value */
    IPC_ERR_INTERNAL = 6,    /* out of memory and the like */
    IPC_ERR_UNAVAILABLE = 7, /* the engine's store (Redis) is unreachable: nothing
                                published; a disconnect closed only this node's */
    IPC_ERR_TIMEOUT = 8,     /* the engine's store did not answer in time: the
                                message may or may not be published */
};

/* Decoder results (negative). */
#define IPC_NEED_MORE   (-2)  /* a frame is not complete yet: read more */
#define IPC_E_MALFORMED (-1)  /* stream is corrupt: answer error, close */
#define IPC_E_TOO_BIG   (-3)  /* frame longer than max_frame: msg->type,
                                 req_id and frame_len are set; the caller may
                                 answer an error and skip frame_len bytes */


struct ipc_msg {
    uint8_t  type;
    uint32_t req_id;
    size_t   frame_len;                  /* whole frame, header included */
    /* PUBLISH */
    int      nchannels;
    struct str channels[WSPUSH_MAX_CHANNELS];
    struct str data;
    /* DISCONNECT */
    struct str user;
    /* ACK (count = subscribers) and DISCONNECTED (count = connections) */
    uint32_t count;
    struct str id;
    /* ERROR */
    uint16_t code;
    struct str text;
};

/* Decodes one frame from [buf, buf+len). max_frame bounds the length field
 * (header included). Returns the bytes consumed (> 0), IPC_NEED_MORE,
 * IPC_E_TOO_BIG or IPC_E_MALFORMED (unknown type, body that does not match
 * its length, counts out of range). Strings in *msg point into buf. */
ssize_t ipc_decode(const void *buf, size_t len, size_t max_frame, struct ipc_msg *msg);

/* Encoders append one frame to out. Return 0, -EINVAL for arguments out of
 * the protocol's range (0 or > 32 channels, a name or user over 255 bytes),
 * or -ENOMEM. */
int ipc_encode_publish(struct buf *out, uint32_t req_id, const struct str *channels,
                       int nchannels, const void *data, size_t data_len);
int ipc_encode_disconnect(struct buf *out, uint32_t req_id, const char *user, size_t user_len);
int ipc_encode_ack(struct buf *out, uint32_t req_id, uint32_t subscribers,
                   const char *id, size_t id_len);
int ipc_encode_disconnected(struct buf *out, uint32_t req_id, uint32_t connections);
int ipc_encode_error(struct buf *out, uint32_t req_id, uint16_t code, const char *text);

/* Human text for an ipc_error_code. */
const char *ipc_error_name(uint16_t code);

#endif
