/* io — the byte stream under one connection: a small table of read, writev
 * and close, so that what runs over it (the WebSocket transport, SSE) never
 * calls a socket function itself. Plain sockets fill the table in
 * io_plain.c, TLS in io_tls.c (OpenSSL); tests fill it with a script.
 * Modelled on Redis's ConnectionType.
 *
 * Results follow read(2)/writev(2) but errors are returned, not left in
 * errno: > 0 bytes, 0 end of stream (read only), IO_AGAIN when the call
 * would block, or -errno.
 *
 * Two things a layer with its own buffering (TLS) tells its caller through
 * struct io, which a plain socket leaves at 0:
 * - IO_READ_NEEDS_WRITE in flags after a read returned IO_AGAIN: the read
 *   waits for the socket to become writable (a TLS handshake message that
 *   did not fit), not readable; the caller watches for writability and
 *   reads again then.
 * - held after a writev returned IO_AGAIN or fewer bytes than offered: the
 *   first `held` bytes not reported written are taken into a TLS record
 *   already and must be offered again, unchanged, at the head of the next
 *   writev (the caller may drop what lies past them, never them).
 * A writev never needs a read: TLS renegotiation is refused.
 */
#ifndef WSPUSH_IO_H
#define WSPUSH_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define IO_AGAIN (-100000)

struct io;

struct io_ops {
    ssize_t (*read)(struct io *io, void *buf, size_t len);
    ssize_t (*writev)(struct io *io, const struct iovec *iov, int iovcnt);
    /* Releases the layer's state and closes the descriptor. */
    void    (*close)(struct io *io);
};

#define IO_READ_NEEDS_WRITE 1u
/* Bits from here up are the layer's own. */
#define IO_LAYER_FLAGS      0x100u

/* Embedded in the connection. state is the layer's own (NULL for plain
 * sockets; an SSL * for TLS), released by close. */
struct io {
    const struct io_ops *ops;
    int                  fd;
    void                *state;
    uint32_t             held;     /* see above */
    uint32_t             flags;    /* IO_READ_NEEDS_WRITE, layer bits */
};

static inline ssize_t io_read(struct io *io, void *buf, size_t len) { return io->ops->read(io, buf, len); }
static inline ssize_t io_writev(struct io *io, const struct iovec *iov, int n) { return io->ops->writev(io, iov, n); }
static inline void    io_close(struct io *io) { io->ops->close(io); }

/* Plain non-blocking sockets (io_plain.c). */
extern const struct io_ops io_plain_ops;

#endif
