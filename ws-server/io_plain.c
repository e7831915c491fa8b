/* io_plain — the io table over a plain non-blocking socket. */
#include "io.h"

#include <errno.h>
#include <unistd.h>

static ssize_t io_plain_read(struct io *io, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(io->fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : -errno;
    }
}

static ssize_t io_plain_writev(struct io *io, const struct iovec *iov, int iovcnt)
{
    for (;;) {
        ssize_t n = writev(io->fd, iov, iovcnt);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : -errno;
    }
}

static void io_plain_close(struct io *io)
{
    if (io->fd >= 0)
        close(io->fd);
    io->fd = -1;
}

const struct io_ops io_plain_ops = {
    .read = io_plain_read,
    .writev = io_plain_writev,
    .close = io_plain_close,
};
