#include "io_tls.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "log.h"

/* The most plaintext one record carries (TLS 1.2 and 1.3). */
#define IO_TLS_RECORD 16384

/* Layer bits of io->flags. */
#define IO_TLS_DONE   (IO_LAYER_FLAGS << 0)   /* handshake completed */
#define IO_TLS_FAILED (IO_LAYER_FLAGS << 1)   /* a fatal error: counted, no close_notify */
#define IO_TLS_KTLS   (IO_LAYER_FLAGS << 2)   /* the kernel encrypts what we send */

void *io_tls_new(tls_t *t, int fd) { return tls_session(t, fd); }

/* The io result of an SSL call that returned r (not success). reading:
 * SSL_do_handshake / SSL_read, else SSL_write. */
static ssize_t io_tls_result(struct io *io, int r, int reading)
{
    SSL *ssl = io->state;
    int e = SSL_get_error(ssl, r);
    int saved = errno;
    ssize_t res;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        /* A write that must read first would be renegotiation, which
         * is refused: never seen, but it must not spin on EPOLLOUT. */
        res = reading ? IO_AGAIN : -EPROTO;
        break;
    case SSL_ERROR_WANT_WRITE:
        if (reading)
            io->flags |= IO_READ_NEEDS_WRITE;
        res = IO_AGAIN;
        break;
    case SSL_ERROR_ZERO_RETURN:
        res = reading ? 0 : -EPIPE;     /* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        break;
    case SSL_ERROR_SYSCALL:
        res = saved ? -saved : -ECONNRESET;
        break;
    default: {
        unsigned long err = ERR_peek_last_error();
        const char *why = err ? ERR_reason_error_string(err) : NULL;
        log_debug("fd %d: TLS %s: %s", io->fd, io->flags & IO_TLS_DONE ? "error" : "handshake refused",
                  why ? why : "protocol error");
        res = -EPROTO;
        break;
    }
    }
    ERR_clear_error();
    if (res != IO_AGAIN && res != 0) {
        if (!(io->flags & (IO_TLS_DONE | IO_TLS_FAILED)))
            tls_handshake_done(ssl, 0);
        io->flags |= IO_TLS_FAILED;
    }
    return res;
}

/* Drives the handshake; 0 once it is done, else an io result. */
static ssize_t io_tls_handshake(struct io *io)
{
    SSL *ssl = io->state;
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r != 1)
        return io_tls_result(io, r, 1);
    io->flags |= IO_TLS_DONE;
    tls_handshake_done(ssl, 1);
#ifndef OPENSSL_NO_KTLS
    if (BIO_get_ktls_send(SSL_get_wbio(ssl)))
        io->flags |= IO_TLS_KTLS;
#endif
    log_debug("fd %d: TLS %s %s%s", io->fd, SSL_get_version(ssl),
              SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)), io->flags & IO_TLS_KTLS ? " (kTLS)" : "");
    return 0;
}

static ssize_t io_tls_read(struct io *io, void *buf, size_t len)
{
    io->flags &= ~IO_READ_NEEDS_WRITE;
    if (io->flags & IO_TLS_FAILED)
        return -EPROTO;
    if (!(io->flags & IO_TLS_DONE)) {
        ssize_t h = io_tls_handshake(io);
        if (h != 0)
            return h;
    }
    size_t n;
    ERR_clear_error();
    if (SSL_read_ex(io->state, buf, len, &n) == 1)
        return (ssize_t)n;
    return io_tls_result(io, 0, 1);
}

/* kTLS: the socket takes plaintext and the kernel makes the records. */
static ssize_t io_tls_writev_kernel(struct io *io, const struct iovec *iov, int iovcnt)
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

/* Whole records: each SSL_write gets up to IO_TLS_RECORD bytes, gathered
 * from as many iovecs as they span (small frames of one flush share a
 * record) or, for a frame with a record's worth left, taken from it in
 * place. With partial writes on, an SSL_write that meets a full socket
 * holds exactly the record it encrypted; the caller offers the same bytes
 * first next time (io.held), from wherever they are then (moving buffer). */
static ssize_t io_tls_writev(struct io *io, const struct iovec *iov, int iovcnt)
{
    if (io->flags & IO_TLS_KTLS)
        return io_tls_writev_kernel(io, iov, iovcnt);
    if (io->flags & IO_TLS_FAILED)
        return -EPIPE;
    unsigned char stage[IO_TLS_RECORD];
    ssize_t total = 0;
    int i = 0;
    size_t off = 0;                 /* bytes of iov[i] already written */
    while (i < iovcnt) {
        const unsigned char *p;
        size_t n;
        if (iov[i].iov_len - off >= IO_TLS_RECORD) {
            p = (const unsigned char *)iov[i].iov_base + off;
            n = IO_TLS_RECORD;
        } else {
            n = 0;
            for (int j = i; j < iovcnt && n < IO_TLS_RECORD; j++) {
                size_t from = j == i ? off : 0;
                size_t k = iov[j].iov_len - from;
                if (k > IO_TLS_RECORD - n)
                    k = IO_TLS_RECORD - n;
                memcpy(stage + n, (const unsigned char *)iov[j].iov_base + from, k);
                n += k;
            }
            p = stage;
            if (n == 0)
                break;
        }
        size_t w;
        ERR_clear_error();
        if (SSL_write_ex(io->state, p, n, &w) != 1) {
            ssize_t r = io_tls_result(io, 0, 0);
            if (r == IO_AGAIN)
                io->held = (uint32_t)n;
            return total > 0 ? total : r;
        }
        io->held = 0;
        total += (ssize_t)w;
        while (w > 0 && i < iovcnt) {
            size_t k = iov[i].iov_len - off;
            if (w < k) {
                off += w;
                break;
            }
            w -= k;
            i++;
            off = 0;
        }
        while (i < iovcnt && iov[i].iov_len == off) {
            i++;
            off = 0;
        }
    }
    return total;
}

/* A close_notify is sent when the session is sound (best effort: the
 * socket is non-blocking and closes right after). */
static void io_tls_close(struct io *io)
{
    SSL *ssl = io->state;
    if (ssl) {
        if (!(io->flags & (IO_TLS_DONE | IO_TLS_FAILED)))
            tls_handshake_done(ssl, 0);     /* timed out, or the peer left */
        else if (!(io->flags & IO_TLS_FAILED)) {
            ERR_clear_error();
            SSL_shutdown(ssl);
            ERR_clear_error();
        }
        SSL_free(ssl);
        io->state = NULL;
    }
    if (io->fd >= 0)
        close(io->fd);
    io->fd = -1;
}

const struct io_ops io_tls_ops = {
    .read = io_tls_read,
    .writev = io_tls_writev,
    .close = io_tls_close,
};
