/* io_tls — the io table (io.h) over TLS: OpenSSL on the socket itself.
 *
 * The handshake runs inside the first reads (SSL_do_handshake driven by
 * the event loop, want-read / want-write reported as IO_AGAIN), so the
 * transport above times it with its own handshake deadline and never
 * knows TLS is there.
 *
 * writev turns the iovecs of one flush into full records: bytes are
 * gathered into 16 KiB (one record's worth of plaintext) and written with
 * one SSL_write each; a frame of a whole record or more is written from
 * its own buffer without the copy. A record the socket cannot take stays
 * in OpenSSL and is reported in io.held until the retry.
 *
 * When the kernel took the session's keys (kTLS, see tls.h), writev is a
 * plain writev(2) on the socket: the shared frames go out without a copy
 * and the kernel makes the records.
 */
#ifndef WSPUSH_IO_TLS_H
#define WSPUSH_IO_TLS_H

#include "io.h"
#include "tls.h"

extern const struct io_ops io_tls_ops;

/* The io state of a TLS connection on the accepted socket fd, from t's
 * pair in force, for conn_accept(..., &io_tls_ops, state, ...); NULL when
 * out of memory (fd untouched). */
void *io_tls_new(tls_t *t, int fd);

#endif
