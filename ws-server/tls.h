/* tls — ws-server's TLS context: the certificate pair, the policy, the
 * certificate swap on SIGHUP and the kernel TLS (kTLS) probe. One per
 * process, made only when tls_listen is set; io_tls.c runs each
 * connection over it.
 *
 * Policy (docs/security.md#tls): TLS 1.2 and 1.3 only, Mozilla's
 * "intermediate" cipher list (TLS_CIPHERS_12 below; TLS 1.3 suites are
 * OpenSSL's defaults, which are that list's), ALPN http/1.1 (a client
 * offering only other protocols is refused with no_application_protocol),
 * no renegotiation, no compression, no server-side session cache
 * (stateless tickets resume), record buffers released while idle.
 *
 * The pair is read whole from tls_certificate (PEM: the certificate, then
 * its chain) and tls_certificate_key (PEM, not encrypted), through
 * file.h (regular files only, never blocking). A pair is refused when a
 * file is unreadable or holds no PEM object, the key does not match the
 * certificate, or the certificate is expired or not yet valid.
 *
 * A swap (tls_reload) builds a whole new SSL_CTX: connections already up
 * keep the one they started with (each SSL holds a reference), new
 * handshakes get the new pair. A bad pair leaves the old one in force.
 */
#ifndef WSPUSH_TLS_H
#define WSPUSH_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "cfg.h"
#include "stats.h"

/* Mozilla Server Side TLS, "intermediate" configuration (guidelines 5.7),
 * for TLS 1.2. */
#define TLS_CIPHERS_12 "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"     \
                       "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"     \
                       "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"     \
                       "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"           \
                       "DHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS     "X25519:prime256v1:secp384r1"

typedef struct tls tls_t;

/* A context with cfg's pair. NULL with err "key 'K': PATH: reason" when
 * the pair is refused or out of memory. Probes kTLS once (logged). */
tls_t *tls_new(const struct cfg *cfg, char *err, size_t errlen);
/* Checks cfg's pair as tls_new() would, keeping nothing (ws-server -t). */
int    tls_check(const struct cfg *cfg, char *err, size_t errlen);
/* Loads cfg's pair for new handshakes. Returns 0, or -1 with err (the
 * pair in force stays). */
int    tls_reload(tls_t *t, const struct cfg *cfg, char *err, size_t errlen);
void   tls_free(tls_t *t);

/* A server-side SSL on fd from the pair in force, or NULL (out of
 * memory). The caller frees it (SSL_free). */
SSL   *tls_session(tls_t *t, int fd);

/* What io_tls.c reports about ssl's handshake: completed (ok != 0) or
 * given up (an error, the peer gone, the handshake timeout). Also logs,
 * once per process, a handshake that asked for kTLS but did not get it. */
void   tls_handshake_done(SSL *ssl, int ok);
/* Whether new handshakes ask the kernel for TLS offload (tcp_available_ulp
 * offers "tls" and OpenSSL was built with it). */
int    tls_ktls_offered(const tls_t *t);

/* Handshake counters (stats.h), valid while t lives. */
const struct stats_tls *tls_stats(const tls_t *t);

#endif
