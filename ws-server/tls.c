#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "buf.h"
#include "file.h"
#include "log.h"

/* A certificate chain or key file larger than this is not one. */
#define TLS_PEM_MAX (1024 * 1024)
#define TLS_ULP_FILE "/proc/sys/net/ipv4/tcp_available_ulp"

struct tls {
    SSL_CTX         *ctx;          /* for new handshakes; live SSLs hold their own reference */
    int              ktls;         /* ask for kTLS (SSL_OP_ENABLE_KTLS) */
    int              ktls_missed_logged;
    struct stats_tls stats;
};

static const char tls_alpn_http11[] = "\x08http/1.1";

/* ALPN: http/1.1 when offered; a client offering ALPN without it cannot
 * speak to us (RFC 7301 3.2: no_application_protocol). No ALPN at all is
 * HTTP/1.1 by default. */
static int tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, (const unsigned char *)tls_alpn_http11,
                              sizeof(tls_alpn_http11) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* A key file must not ask for a passphrase: there is nobody to type it. */
static int tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* The reason of OpenSSL's last error, or what. Empties the error queue. */
static const char *tls_ssl_reason(const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : what;
}

/* Reads path (key name key) into a memory BIO. NULL with err. */
static BIO *tls_read_pem(const char *key, const char *path, struct buf *b, char *err, size_t errlen)
{
    char why[CFG_PATH_MAX + 128];
    if (file_read_all(path, TLS_PEM_MAX, b, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "key '%s': %s", key, why);
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(b->data, (int)b->len);
    if (!bio)
        snprintf(err, errlen, "key '%s': out of memory", key);
    return bio;
}

/* Installs the certificate chain of cfg->tls_certificate on ctx. */
static int tls_load_chain(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
    struct buf b = { 0 };
    int rc = -1;
    BIO *bio = tls_read_pem("tls_certificate", path, &b, err, errlen);
    if (!bio)
        goto out;
    X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, tls_no_passphrase, NULL);
    if (!leaf) {
        ERR_clear_error();
        snprintf(err, errlen, "key 'tls_certificate': %s: no PEM certificate in it", path);
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        snprintf(err, errlen, "key 'tls_certificate': %s: %s", path, tls_ssl_reason("refused"));
        X509_free(leaf);
        goto out;
    }
    int now_before = X509_cmp_current_time(X509_get0_notBefore(leaf));
    int now_after = X509_cmp_current_time(X509_get0_notAfter(leaf));
    X509_free(leaf);
    if (now_after <= 0 || now_before >= 0) {
        char date[64] = "";
        BIO *mb = BIO_new(BIO_s_mem());
        const ASN1_TIME *when = now_after <= 0 ? X509_get0_notAfter(SSL_CTX_get0_certificate(ctx))
                                               : X509_get0_notBefore(SSL_CTX_get0_certificate(ctx));
        if (mb && ASN1_TIME_print(mb, when) == 1) {
            int n = BIO_read(mb, date, (int)sizeof(date) - 1);
            date[n > 0 ? n : 0] = '\0';
        }
        BIO_free(mb);
        snprintf(err, errlen, "key 'tls_certificate': %s: %s %s", path,
                 now_after <= 0 ? "the certificate expired on" : "the certificate is not valid before",
                 date[0] ? date : "(date unreadable)");
        goto out;
    }
    X509 *ca;
    while ((ca = PEM_read_bio_X509(bio, NULL, tls_no_passphrase, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            snprintf(err, errlen, "key 'tls_certificate': %s: chain: %s", path, tls_ssl_reason("refused"));
            goto out;
        }
    }
    /* The loop ends at the end of the file, or at a PEM object that is
     * not a certificate: the latter is a broken file. */
    unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        snprintf(err, errlen, "key 'tls_certificate': %s: chain: %s", path,
                 ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unreadable");
        goto out;
    }
    rc = 0;
out:
    BIO_free(bio);
    buf_free(&b);
    return rc;
}

static int tls_load_key(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
    struct buf b = { 0 };
    int rc = -1;
    BIO *bio = tls_read_pem("tls_certificate_key", path, &b, err, errlen);
    if (!bio)
        goto out;
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & S_IROTH))
        log_warn("%s: the TLS private key is readable by every user (mode %03o): chmod o-r it",
                 path, (unsigned)(st.st_mode & 0777));
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, tls_no_passphrase, NULL);
    if (!pk) {
        ERR_clear_error();
        snprintf(err, errlen, "key 'tls_certificate_key': %s: %s", path,
                 memmem(b.data, b.len, "ENCRYPTED", 9) ? "an encrypted key (a passphrase cannot be asked for): "
                 "store it without one, readable by ws-server only" : "no PEM private key in it");
        goto out;
    }
    int used = SSL_CTX_use_PrivateKey(ctx, pk);
    EVP_PKEY_free(pk);
    if (used != 1) {
        snprintf(err, errlen, "key 'tls_certificate_key': %s: does not match the certificate in "
                 "tls_certificate (%s)", path, tls_ssl_reason("refused"));
        goto out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "key 'tls_certificate_key': %s: does not match the certificate in %s",
                 path, "tls_certificate");
        goto out;
    }
    rc = 0;
out:
    BIO_free(bio);
    if (b.data)
        explicit_bzero(b.data, b.cap);
    buf_free(&b);
    return rc;
}

/* A context with the policy of tls.h and cfg's pair. */
static SSL_CTX *tls_ctx_new(const struct cfg *cfg, int ktls, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: %s", tls_ssl_reason("out of memory"));
        return NULL;
    }
    uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF;
#ifndef OPENSSL_NO_KTLS
    if (ktls)
        opts |= SSL_OP_ENABLE_KTLS;
#else
    (void)ktls;
#endif
    SSL_CTX_set_options(ctx, opts);
    /* Partial writes: SSL_write returns after each record, so io_tls can
     * tell which bytes a blocked record holds (io.h "held"); a retry may
     * come from another buffer holding the same bytes. Idle connections
     * give their record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) != 1 ||
        SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1 ||
        SSL_CTX_set_dh_auto(ctx, 1) != 1) {
        snprintf(err, errlen, "TLS policy refused by OpenSSL: %s", tls_ssl_reason("unknown"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select, NULL);
    if (tls_load_chain(ctx, cfg->tls_certificate, err, errlen) < 0 ||
        tls_load_key(ctx, cfg->tls_certificate_key, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* "tls" among the kernel's upper-layer protocols: the tls module is
 * loaded (or built in), so setsockopt(TCP_ULP, "tls") can succeed. */
static int tls_kernel_offers_ktls(char *why, size_t whylen)
{
#ifdef OPENSSL_NO_KTLS
    snprintf(why, whylen, "OpenSSL was built without kTLS");
    return 0;
#else
    struct buf b = { 0 };
    char err[256];
    int found = 0;
    if (file_read_all(TLS_ULP_FILE, 4096, &b, err, sizeof(err)) < 0) {
        snprintf(why, whylen, "%s", err);
        return 0;
    }
    if (buf_append(&b, "", 1) == 0) {
        for (char *save = NULL, *w = strtok_r(b.data, " \n", &save); w; w = strtok_r(NULL, " \n", &save))
            if (strcmp(w, "tls") == 0)
                found = 1;
    }
    if (!found)
        snprintf(why, whylen, "the kernel offers no tls module (%s lists no \"tls\")", TLS_ULP_FILE);
    buf_free(&b);
    return found;
#endif
}

int tls_check(const struct cfg *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = tls_ctx_new(cfg, 0, err, errlen);
    SSL_CTX_free(ctx);
    return ctx ? 0 : -1;
}

tls_t *tls_new(const struct cfg *cfg, char *err, size_t errlen)
{
    struct tls *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    char why[256];
    t->ktls = tls_kernel_offers_ktls(why, sizeof(why));
    t->ctx = tls_ctx_new(cfg, t->ktls, err, errlen);
    if (!t->ctx) {
        free(t);
        return NULL;
    }
    SSL_CTX_set_app_data(t->ctx, t);
    if (t->ktls)
        log_info("TLS: the kernel offers kTLS: records are sent through it where the cipher allows");
    else
        log_info("TLS: kTLS off, records are encrypted in ws-server: %s", why);
    return t;
}

int tls_reload(tls_t *t, const struct cfg *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = tls_ctx_new(cfg, t->ktls, err, errlen);
    if (!ctx)
        return -1;
    SSL_CTX_set_app_data(ctx, t);
    SSL_CTX_free(t->ctx);       /* freed once the last connection on it is */
    t->ctx = ctx;
    return 0;
}

void tls_free(tls_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

SSL *tls_session(tls_t *t, int fd)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

void tls_handshake_done(SSL *ssl, int ok)
{
    struct tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!t)
        return;
    if (!ok) {
        t->stats.handshakes_failed++;
        return;
    }
    t->stats.handshakes_ok++;
#ifndef OPENSSL_NO_KTLS
    if (t->ktls && !BIO_get_ktls_send(SSL_get_wbio(ssl)) && !t->ktls_missed_logged) {
        t->ktls_missed_logged = 1;
        log_info("TLS: kTLS not taken for %s %s (the kernel refused it): such connections are "
                 "encrypted in ws-server (logged once)", SSL_get_version(ssl),
                 SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
    }
#endif
}

int tls_ktls_offered(const tls_t *t) { return t->ktls; }

const struct stats_tls *tls_stats(const tls_t *t) { return &t->stats; }
