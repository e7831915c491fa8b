/* io — the byte stream under one connection: a small table of read, writev
 * and close, so that what runs over it (the WebSocket transport today, SSE
 * next) never calls a socket function itself. Plain sockets fill the table
 * in io_plain.c; TLS fills it with OpenSSL calls; tests fill it with a
 * script. Modelled on Redis's ConnectionType.
 *
 * Results follow read(2)/writev(2) but errors are returned, not left in
 * errno: > 0 bytes, 0 end of stream (read only), IO_AGAIN when the call
 * would block, or -errno. A TLS layer may need to write to make a read
 * progress (and the reverse); it then reports IO_AGAIN and the caller keeps
 * waiting for both directions until the call succeeds.
 */
#ifndef WSPUSH_IO_H
#define WSPUSH_IO_H

#include <stddef.h>
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

/* Embedded in the connection. state is the layer's own (NULL for plain
 * sockets; an SSL * for TLS). */
struct io {
    const struct io_ops *ops;
    int                  fd;
    void                *state;
};

static inline ssize_t io_read(struct io *io, void *buf, size_t len) { return io->ops->read(io, buf, len); }
static inline ssize_t io_writev(struct io *io, const struct iovec *iov, int n) { return io->ops->writev(io, iov, n); }
static inline void    io_close(struct io *io) { io->ops->close(io); }

/* Plain non-blocking sockets (io_plain.c). */
extern const struct io_ops io_plain_ops;

#endif
