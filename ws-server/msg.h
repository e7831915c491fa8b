/* msg — one published message, as every layer of ws-server sees it: its
 * id, its channels and its JSON payload, in one reference-counted block.
 * It knows nothing of WebSocket or SSE.
 *
 * A transport turns a message into bytes for one channel (the envelope
 * names the channel) with msg_encoding(): the first call for a (slot,
 * channel) pair encodes, later calls return the same rbuf, so fan-out to
 * ten thousand connections encodes once and every send queue shares that
 * buffer. Each transport owns one slot (enum msg_slot).
 *
 * Memory: msg_bytes() is everything the message keeps alive (the block and
 * every cached encoding). An owner that budgets memory (history) attaches a
 * counter with msg_account(); encodings made later are added to it.
 */
#ifndef WSPUSH_MSG_H
#define WSPUSH_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "str.h"

#define MSG_ID_MAX 40    /* bytes of an id, NUL included */

/* One encoding cache slot per way of putting a message on the wire. */
enum msg_slot {
    MSG_SLOT_WS = 0,     /* WebSocket text frame */
    MSG_SLOT_SSE,        /* Server-Sent Events event (sse.c) */
    MSG_SLOT_WS_DEFLATE, /* permessage-deflate frame (RSV1), or the WS one when
                            compressing did not make it smaller */
    MSG_SLOTS
};

struct msg;

/* Encodes channel `chan` of m; returns a new rbuf (one reference, handed
 * to the cache) or NULL when out of memory. */
typedef rbuf_t *msg_encode_fn(const struct msg *m, int chan);

/* A message with one reference. id is 1..MSG_ID_MAX-1 bytes of [0-9a-z-];
 * channels are valid names (pattern.h), 1..WSPUSH_MAX_CHANNELS, distinct;
 * data is one JSON value. Everything is copied. NULL when out of memory or
 * an argument is out of range. */
struct msg *msg_new(struct str id, const struct str *channels, int nchannels, struct str data);
struct msg *msg_ref(struct msg *m);
/* Drops one reference; the last frees the message and its encodings.
 * NULL is ignored. */
void        msg_unref(struct msg *m);

struct str  msg_id(const struct msg *m);
int         msg_nchannels(const struct msg *m);
struct str  msg_channel(const struct msg *m, int i);
struct str  msg_data(const struct msg *m);

/* The cached encoding of channel chan for slot, made by enc on first use.
 * Borrowed: take a reference to keep it. NULL when out of memory. */
rbuf_t     *msg_encoding(struct msg *m, enum msg_slot slot, int chan, msg_encode_fn *enc);

/* The same with an encoder that needs a context (the permessage-deflate
 * compressor). An encoder may return a new reference to another slot's
 * encoding of the same channel (a compressed frame that would not be
 * smaller is the plain one): msg_bytes() counts a shared rbuf once. */
typedef rbuf_t *msg_encode_with_fn(void *ctx, const struct msg *m, int chan);
rbuf_t     *msg_encoding_with(struct msg *m, enum msg_slot slot, int chan,
                              msg_encode_with_fn *enc, void *ctx);

/* The JSON envelope every transport carries for channel chan:
 *   {"type":"message","channel":"<name>","id":"<id>","data":<data>}
 * msg_envelope_len() is its length; msg_envelope() writes it to out. */
size_t      msg_envelope_len(const struct msg *m, int chan);
void        msg_envelope(const struct msg *m, int chan, unsigned char *out);

size_t      msg_bytes(const struct msg *m);
/* Adds msg_bytes() changes from now on to *counter (NULL detaches). */
void        msg_account(struct msg *m, size_t *counter);

#endif
