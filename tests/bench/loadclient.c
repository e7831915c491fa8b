/* loadclient — the fan-out benchmark's client: one non-blocking epoll loop
 * holding N subscribers (WebSocket: plain RFC 6455 or socket.io's engine.io
 * framing; or server-sent events), over TCP or TLS, and P publishers (HTTP/1.1 keep-alive POST, or ws-server's
 * publish socket). Every payload carries {"t":<CLOCK_MONOTONIC ns>}; the
 * same process publishes and receives, so publish->receive latency needs no
 * clock sync.
 *
 *   loadclient deliver  --subs N --msgs M [--publishers P --burst B]
 *   loadclient latency  --subs N --rate R --duration S
 *   loadclient httppub  --publishers P --duration S [--subs N]
 *   loadclient idle     --subs N [--hold S]     (prints READY, waits for SIGTERM)
 *   loadclient selftest
 *   --deflate: subscribers offer permessage-deflate and inflate what comes
 *   compressed (one zlib stream, reset per message, as a browser does);
 *   --no-inflate (with --deflate): a compressed frame counts as a delivery
 *   unread, so the client's inflating (a browser's own CPU) does not slow
 *   the run; deliver mode only (no timestamps to read);
 *   --pad-words: the padding is words of text instead of "xxx...", so a
 *   compressor has something like real JSON to work on.
 *
 * deliver --cpu-pids P,Q: also reports server_cpu_ms, the CPU time those
 * processes used from the first publish to the last delivery (connection
 * set-up, a TLS handshake above all, is left out).
 *
 * Output: progress on stderr, one "RESULT key=value ..." line on stdout
 * (idle: a "READY subs=N" line first). Exit 0 on a completed run, 1 on a
 * setup error, 2 on bad arguments.
 *
 * --tls: subscribers speak TLS (OpenSSL, handshake stepped in the loop, no
 * certificate check: the bench's certificate is self-signed); publishers
 * stay plain. OpenSSL's buffers are released while a connection is idle
 * (SSL_MODE_RELEASE_BUFFERS), so 10k TLS subscribers fit in the client.
 * --proto sse: GET with Accept: text/event-stream; every event with a data
 * line is a delivery (chunked or not), its timestamp found as for WebSocket.
 *
 * Several nodes and channels (the Redis rows): --port2 P sends every other
 * subscriber to a second node; --sub-spread gives subscriber i the path
 * PATH<i> (its own channel, e.g. /ws?channels=bench/c); --pub-spread N
 * publishes request j to channel C<j % N> (or HTTP path P<j % N>).
 *
 * Subscribers bind to 127.0.0.2.. before connect (IP_BIND_ADDRESS_NO_PORT)
 * so 10k+ connections to one port do not exhaust one source address's
 * ephemeral ports.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lcproto.h"

#define LC_READ_CHUNK   (256 * 1024)
#define LC_CARRY_MAX    (256 * 1024)  /* largest frame / response kept across reads */
#define LC_MAX_HEADERS  8
#define LC_MAX_EVENTS   512
#define LC_PUB_EVERY    64   /* subscriber events between two looks at the publishers */
#define LC_MAX_SAMPLES  (16u * 1024 * 1024)
#define LC_PAYLOAD_MAX  60000

enum lc_mode { LC_M_DELIVER, LC_M_LATENCY, LC_M_HTTPPUB, LC_M_IDLE };
enum lc_kind { LC_SUB, LC_PUB_HTTP, LC_PUB_IPC, LC_SIGNAL, LC_PUB_POLL };
enum lc_state { LC_CONNECTING, LC_TLS, LC_HANDSHAKE, LC_OPEN, LC_DEAD };
enum lc_proto { LC_P_WS, LC_P_SOCKETIO, LC_P_SSE };

struct lc_conn {
    int       fd;
    uint8_t   kind, state, ready, out_armed;
    uint8_t   chunked;                /* SSE: the response body is chunked */
    uint32_t  idx;
    SSL      *ssl;                    /* --tls subscribers */
    struct lcp_dechunk dc;
    unsigned char *carry;            /* bytes of an incomplete frame/response */
    uint32_t  carry_len, carry_cap;
    unsigned char *out;              /* bytes the socket did not take yet */
    uint32_t  out_len, out_off, out_cap;
    /* publishers */
    uint32_t  inflight;
    uint64_t  budget;                /* requests it may still start this burst */
};

struct lc_opts {
    enum lc_mode  mode;
    enum lc_proto proto;
    int           tls;
    const char   *host;
    int           port;
    int           port2;               /* >0: every other subscriber connects here */
    const char   *path;
    int           sub_spread;          /* subscriber i's path gets i appended */
    int           subs;
    int           src_ips;
    int           connect_par;
    /* publisher */
    int           pub_ipc;             /* 1: publish socket, 0: HTTP */
    char          pub_target[256];     /* socket path or host */
    int           pub_port;
    const char   *pub_path;
    const char   *pub_ctype;
    const char   *pub_headers[LC_MAX_HEADERS];
    int           npub_headers;
    const char   *pub_prefix, *pub_suffix;
    const char   *channel;
    uint32_t      pub_spread;          /* >0: publish j goes to channel/path + (j % n) */
    int           publishers;
    int           window;
    uint64_t      msgs;
    uint64_t      burst;
    int           burst_gap_ms;
    double        rate;
    double        duration;
    int           payload;
    double        timeout;
    double        hold;
    double        settle;
    int           deflate;             /* offer permessage-deflate */
    int           no_inflate;          /* count compressed frames unread */
    int           pad_words;           /* pad with words, not x's */
    const char   *cpu_pids;            /* comma-separated server pids */
};

struct lc_ctx {
    struct lc_opts o;
    int       ep;
    int       pep;                   /* the publishers' own epoll, itself watched by ep */
    struct lc_conn *subs;
    struct lc_conn *pubs;
    struct lc_conn  sig;
    struct lc_conn  pep_watch;     /* x->pep as an event source of x->ep */
    SSL_CTX  *tls;
    int       stop;                  /* a signal arrived */
    unsigned char *rbuf;             /* carry + one read, shared by every socket */
    z_stream  inf;                   /* --deflate: the one inflater, reset per message */
    unsigned char *zbuf;             /* its output */
    char      pad[LC_PAYLOAD_MAX];
    /* subscriber counters */
    int       subs_started, subs_open, subs_ready, subs_failed, subs_closed;
    uint64_t  delivered, deliv_no_ts;
    uint64_t  first_rx_ns, last_rx_ns;
    uint32_t *samples;
    size_t    nsamples, samples_cap;
    /* publisher counters */
    uint64_t  remaining;             /* requests not started yet */
    uint64_t  pub_sent, pub_ok, pub_err, pub_lost, pub_reconnects;
    uint64_t  pub_seq;               /* requests built: the --pub-spread counter */
    int       pub_last_err;
    uint64_t  first_tx_ns;
    uint32_t  req_id;
};

static uint64_t lc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- socket plumbing ---------------------------------------------------- */

/* Publishers live on their own epoll (x->pep), polled between every
 * LC_PUB_EVERY subscriber events: a site's publisher is another process,
 * whose next request does not wait for the subscribers' reads, and here
 * it must not wait behind thousands of ready subscriber sockets either,
 * or the client's own backlog, not the server, would set the pace. */
static int lc_ep_of(const struct lc_ctx *x, const struct lc_conn *c)
{
    return c->kind == LC_PUB_HTTP || c->kind == LC_PUB_IPC ? x->pep : x->ep;
}

static int lc_ep_set(struct lc_ctx *x, struct lc_conn *c, int op, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    return epoll_ctl(lc_ep_of(x, c), op, c->fd, &ev);
}

static void lc_close(struct lc_ctx *x, struct lc_conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(lc_ep_of(x, c), EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->fd = -1;
    c->state = LC_DEAD;
    c->carry_len = 0;
    c->out_len = c->out_off = 0;
    c->out_armed = 0;
}

static int lc_reserve(unsigned char **p, uint32_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    unsigned char *q = realloc(*p, n);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = (uint32_t)n;
    return 0;
}

/* One write: bytes taken, -EAGAIN when none can be taken now, or -errno. */
static ssize_t lc_send(struct lc_conn *c, const void *p, size_t n)
{
    if (!c->ssl) {
        ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
        return r < 0 ? -errno : r;
    }
    ERR_clear_error();
    int r = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? -EAGAIN : -EPIPE;
}

/* One read: bytes, 0 at the end of the stream, -EAGAIN, or -errno. TLS
 * hands out at most one record per call. */
static ssize_t lc_recv(struct lc_conn *c, void *p, size_t n)
{
    if (!c->ssl) {
        ssize_t r = read(c->fd, p, n);
        return r < 0 ? -errno : r;
    }
    ERR_clear_error();
    int r = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        return -EPROTO;
    }
}

/* Writes pending output; arms EPOLLOUT while some remains. 0 or -errno. */
static int lc_flush(struct lc_ctx *x, struct lc_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = lc_send(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (n == -EINTR)
                continue;
            if (n != -EAGAIN)
                return (int)n;
            if (!c->out_armed) {
                c->out_armed = 1;
                lc_ep_set(x, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
            }
            return 0;
        }
        c->out_off += (uint32_t)n;
    }
    c->out_len = c->out_off = 0;
    if (c->out_armed) {
        c->out_armed = 0;
        lc_ep_set(x, c, EPOLL_CTL_MOD, EPOLLIN);
    }
    return 0;
}

static int lc_queue(struct lc_conn *c, const void *p, size_t n)
{
    if (lc_reserve(&c->out, &c->out_cap, (size_t)c->out_len + n) < 0)
        return -ENOMEM;
    memcpy(c->out + c->out_len, p, n);
    c->out_len += (uint32_t)n;
    return 0;
}

static int lc_tcp_socket(const char *src, const char *host, int port, int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int rc = 0;
    if (src) {
        struct sockaddr_in la = { .sin_family = AF_INET };
        inet_pton(AF_INET, src, &la.sin_addr);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&la, sizeof(la)) < 0) {
            rc = -errno;
            goto fail;
        }
    }
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        rc = -EINVAL;
        goto fail;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        rc = -errno;
        goto fail;
    }
    *fd_out = fd;
    return 0;
fail:
    close(fd);
    return rc;
}

static int lc_unix_socket(const char *path, int *fd_out)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t pl = strlen(path);
    if (pl >= sizeof(sa.sun_path)) {
        close(fd);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, pl + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS &&
        errno != EAGAIN) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* ---- subscribers -------------------------------------------------------- */

static void lc_sub_fail(struct lc_ctx *x, struct lc_conn *c, const char *why)
{
    if (c->state == LC_DEAD)
        return;
    if (c->ready) {
        x->subs_ready--;
        x->subs_closed++;
        if (x->subs_closed <= 3)
            fprintf(stderr, "loadclient: subscriber %u closed: %s\n", c->idx, why);
    } else {
        x->subs_failed++;
        if (x->subs_failed <= 3)
            fprintf(stderr, "loadclient: subscriber %u failed: %s\n", c->idx, why);
    }
    if (c->state != LC_CONNECTING)
        x->subs_open--;
    c->ready = 0;
    lc_close(x, c);
}

/* --port2: subscribers alternate between the two ports (two nodes). */
static int lc_sub_port(const struct lc_ctx *x, const struct lc_conn *c)
{
    return x->o.port2 > 0 && (c->idx & 1) ? x->o.port2 : x->o.port;
}

static int lc_sub_start(struct lc_ctx *x, struct lc_conn *c)
{
    char src[32];
    snprintf(src, sizeof(src), "127.0.0.%d", 2 + (int)(c->idx % (uint32_t)x->o.src_ips));
    x->subs_started++;
    int rc = lc_tcp_socket(strcmp(x->o.host, "127.0.0.1") == 0 ? src : NULL, x->o.host,
                           lc_sub_port(x, c), &c->fd);
    if (rc < 0) {
        c->fd = -1;
        x->subs_failed++;
        if (x->subs_failed <= 3)
            fprintf(stderr, "loadclient: connect: %s\n", strerror(-rc));
        c->state = LC_DEAD;
        return rc;
    }
    c->state = LC_CONNECTING;
    return lc_ep_set(x, c, EPOLL_CTL_ADD, EPOLLOUT);
}

static void lc_sub_send_frame(struct lc_ctx *x, struct lc_conn *c, int opcode, const void *p,
                              size_t n)
{
    unsigned char f[256];
    ssize_t len = lcp_frame_encode(f, sizeof(f), opcode, p, n, 0x1b2c3d4eu ^ c->idx);
    if (len < 0 || lc_queue(c, f, (size_t)len) < 0 || lc_flush(x, c) < 0)
        lc_sub_fail(x, c, "write");
}

static void lc_sub_set_ready(struct lc_ctx *x, struct lc_conn *c)
{
    if (!c->ready) {
        c->ready = 1;
        x->subs_ready++;
    }
}

static void lc_on_delivery(struct lc_ctx *x, const unsigned char *p, size_t n, uint64_t now)
{
    uint64_t t;
    if (!lcp_find_ts((const char *)p, n, &t)) {
        x->deliv_no_ts++;
        return;
    }
    x->delivered++;
    if (!x->first_rx_ns)
        x->first_rx_ns = now;
    x->last_rx_ns = now;
    if (x->o.mode != LC_M_LATENCY || t > now)
        return;
    if (x->nsamples == x->samples_cap) {
        if (x->samples_cap >= LC_MAX_SAMPLES)
            return;
        size_t cap = x->samples_cap ? x->samples_cap * 2 : 65536;
        uint32_t *s = realloc(x->samples, cap * sizeof(*s));
        if (!s)
            return;
        x->samples = s;
        x->samples_cap = cap;
    }
    uint64_t us = (now - t) / 1000;
    x->samples[x->nsamples++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* RFC 7692 7.2.2: the payload, then 00 00 ff ff, through a raw inflate
 * reset first (the server takes no context over either). */
static ssize_t lc_inflate(struct lc_ctx *x, const unsigned char *p, size_t n)
{
    static const unsigned char tail[4] = { 0x00, 0x00, 0xff, 0xff };
    if (inflateReset(&x->inf) != Z_OK)
        return -1;
    x->inf.next_out = x->zbuf;
    x->inf.avail_out = LC_CARRY_MAX;
    for (int part = 0; part < 2; part++) {
        x->inf.next_in = (Bytef *)(uintptr_t)(part ? tail : p);
        x->inf.avail_in = (uInt)(part ? 4 : n);
        int rc = inflate(&x->inf, Z_SYNC_FLUSH);
        if ((rc != Z_OK && rc != Z_BUF_ERROR) || x->inf.avail_in)
            return -1;
    }
    return (ssize_t)(LC_CARRY_MAX - x->inf.avail_out);
}

static void lc_on_message(struct lc_ctx *x, struct lc_conn *c, const unsigned char *p, size_t n,
                          uint64_t now)
{
    if (x->o.proto == LC_P_WS) {
        lc_on_delivery(x, p, n, now);
        return;
    }
    /* engine.io v4 packets: 0 open, 2 ping, 4 message; socket.io inside:
     * 40 connect(ed), 42 event. */
    if (n >= 2 && p[0] == '4' && p[1] == '2')
        lc_on_delivery(x, p, n, now);
    else if (n >= 1 && p[0] == '0')
        lc_sub_send_frame(x, c, 1, "40", 2);
    else if (n == 1 && p[0] == '2')
        lc_sub_send_frame(x, c, 1, "3", 1);
    else if (n >= 2 && p[0] == '4' && p[1] == '0')
        lc_sub_set_ready(x, c);
}

/* Consumes complete frames from buf; returns bytes used or -1 to close. */
static ssize_t lc_sub_parse(struct lc_ctx *x, struct lc_conn *c, unsigned char *buf,
                            size_t *lenp, uint64_t now)
{
    size_t pos = 0, len = *lenp;
    if (c->state == LC_HANDSHAKE) {
        struct lcp_http h;
        ssize_t r = lcp_http_head((const char *)buf, len, &h);
        if (r == LCP_NEED_MORE)
            return 0;
        if (r < 0 || h.status != 101) {
            lc_sub_fail(x, c, r < 0 ? "bad handshake answer" : "handshake not 101");
            return -1;
        }
        pos = (size_t)r;
        c->state = LC_OPEN;
        if (x->o.proto == LC_P_WS)
            lc_sub_set_ready(x, c);
    }
    while (pos < len && c->state == LC_OPEN) {
        struct lcp_frame f;
        ssize_t r = lcp_frame_header(buf + pos, len - pos, &f);
        if (r == LCP_NEED_MORE)
            break;
        if (r < 0) {
            lc_sub_fail(x, c, "bad frame");
            return -1;
        }
        if (f.payload_len > LC_CARRY_MAX) {
            lc_sub_fail(x, c, "frame too big");
            return -1;
        }
        if (f.header_len + f.payload_len > len - pos)
            break;
        unsigned char *p = buf + pos + f.header_len;
        size_t n = (size_t)f.payload_len;
        if (f.masked)
            for (size_t i = 0; i < n; i++)
                p[i] ^= f.mask[i & 3];
        pos += f.header_len + n;
        if (f.rsv1 && (!x->o.deflate || f.opcode == 0x0 || f.opcode >= 0x8)) {
            lc_sub_fail(x, c, "RSV1 not negotiated");
            return -1;
        }
        if (f.rsv1 && x->o.no_inflate && f.opcode != 0x0 && f.opcode < 0x8) {
            x->delivered++;
            if (!x->first_rx_ns)
                x->first_rx_ns = now;
            x->last_rx_ns = now;
            continue;
        }
        if (f.rsv1) {
            ssize_t z = lc_inflate(x, p, n);
            if (z < 0) {
                lc_sub_fail(x, c, "bad compressed frame");
                return -1;
            }
            p = x->zbuf;
            n = (size_t)z;
        }
        switch (f.opcode) {
        case 0x0: case 0x1: case 0x2:
            lc_on_message(x, c, p, n, now);
            break;
        case 0x9:
            lc_sub_send_frame(x, c, 0xA, p, n);
            break;
        case 0x8:
            lc_sub_send_frame(x, c, 0x8, p, n < 2 ? n : 2);
            lc_sub_fail(x, c, "server closed");
            return -1;
        default:
            break;
        }
    }
    return c->state == LC_DEAD ? -1 : (ssize_t)pos;
}

/* An event stream: the response head (200), then events. The carry holds
 * body bytes already de-chunked, so only what follows it is decoded. */
static ssize_t lc_sub_parse_sse(struct lc_ctx *x, struct lc_conn *c, unsigned char *buf,
                                size_t *len, uint64_t now)
{
    size_t pos = 0, raw = c->carry_len;
    if (c->state == LC_HANDSHAKE) {
        struct lcp_http h;
        ssize_t r = lcp_http_head((const char *)buf, *len, &h);
        if (r == LCP_NEED_MORE)
            return 0;
        if (r < 0 || h.status != 200) {
            lc_sub_fail(x, c, r < 0 ? "bad response head" : "event stream not 200");
            return -1;
        }
        pos = raw = (size_t)r;
        c->state = LC_OPEN;
        c->chunked = (uint8_t)h.chunked;
        lc_sub_set_ready(x, c);
    }
    int ended = 0;
    if (c->chunked) {
        ssize_t d = lcp_dechunk(&c->dc, buf + raw, *len - raw);
        if (d < 0) {
            lc_sub_fail(x, c, "bad chunked stream");
            return -1;
        }
        *len = raw + (size_t)d;
        ended = c->dc.state == LCP_DC_DONE;
    }
    while (pos < *len) {
        struct lcp_sse ev;
        ssize_t r = lcp_sse_event((const char *)buf + pos, *len - pos, &ev);
        if (r == LCP_NEED_MORE)
            break;
        if (r < 0) {
            lc_sub_fail(x, c, "bad event stream");
            return -1;
        }
        if (ev.has_data)
            lc_on_delivery(x, buf + pos + ev.data_off, ev.data_len, now);
        pos += (size_t)r;
    }
    if (ended) {
        lc_sub_fail(x, c, "server ended the event stream");
        return -1;
    }
    return (ssize_t)pos;
}

/* Sends the WebSocket upgrade or the event-stream GET. */
static void lc_sub_request(struct lc_ctx *x, struct lc_conn *c)
{
    char req[1024], path[512];
    if (x->o.sub_spread)
        snprintf(path, sizeof(path), "%s%u", x->o.path, c->idx);
    else
        snprintf(path, sizeof(path), "%s", x->o.path);
    int port = lc_sub_port(x, c);
    int n = x->o.proto == LC_P_SSE
        ? snprintf(req, sizeof(req),
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n",
                   path, x->o.host, port)
        : snprintf(req, sizeof(req),
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n%s\r\n",
                   path, x->o.host, port,
                   x->o.deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
    c->state = LC_HANDSHAKE;
    lc_ep_set(x, c, EPOLL_CTL_MOD, EPOLLIN);
    if (n < 0 || (size_t)n >= sizeof(req) || lc_queue(c, req, (size_t)n) < 0 ||
        lc_flush(x, c) < 0)
        lc_sub_fail(x, c, "write request");
}

/* Advances the TLS handshake; sends the request once it is done. */
static void lc_sub_tls_step(struct lc_ctx *x, struct lc_conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        lc_sub_request(x, c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        lc_ep_set(x, c, EPOLL_CTL_MOD, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
        return;
    }
    char why[160] = "tls: ";
    ERR_error_string_n(ERR_get_error(), why + 5, sizeof(why) - 5);
    lc_sub_fail(x, c, why);
}

static void lc_sub_connected(struct lc_ctx *x, struct lc_conn *c)
{
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        lc_sub_fail(x, c, strerror(err));
        return;
    }
    x->subs_open++;
    if (!x->tls) {
        lc_sub_request(x, c);
        return;
    }
    c->state = LC_TLS;
    c->ssl = SSL_new(x->tls);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
        lc_sub_fail(x, c, "SSL_new");
        return;
    }
    SSL_set_connect_state(c->ssl);
    lc_sub_tls_step(x, c);
}

/* Reads a chunk (up to 4 while they come full), parses, keeps an
 * incomplete tail in the connection's carry. A parser may shorten the
 * bytes it was given (*len: de-chunking in place). TLS reads gather
 * records until the chunk is full or none is left, and go on past 4 while
 * OpenSSL holds decrypted bytes epoll cannot report. */
static void lc_read_into(struct lc_ctx *x, struct lc_conn *c,
                         ssize_t (*parse)(struct lc_ctx *, struct lc_conn *, unsigned char *,
                                          size_t *, uint64_t),
                         void (*fail)(struct lc_ctx *, struct lc_conn *, const char *))
{
    for (int round = 0; c->state != LC_DEAD; round++) {
        if (round >= 4 && !(c->ssl && SSL_pending(c->ssl) > 0))
            return;
        size_t have = c->carry_len, got = 0;
        if (have)
            memcpy(x->rbuf, c->carry, have);
        ssize_t n;
        do {
            n = lc_recv(c, x->rbuf + have + got, LC_READ_CHUNK - got);
            if (n > 0)
                got += (size_t)n;
        } while ((n > 0 && c->ssl && got < LC_READ_CHUNK) || n == -EINTR);
        if (got == 0) {
            if (n != -EAGAIN)
                fail(x, c, n == 0 ? "EOF" : strerror((int)-n));
            return;
        }
        size_t len = have + got;
        ssize_t used = parse(x, c, x->rbuf, &len, lc_now());
        if (used < 0 || c->state == LC_DEAD)
            return;
        size_t rest = len - (size_t)used;
        if (rest > LC_CARRY_MAX) {
            fail(x, c, "unparsed input over carry limit");
            return;
        }
        if (lc_reserve(&c->carry, &c->carry_cap, rest) < 0) {
            fail(x, c, "out of memory");
            return;
        }
        if (rest)
            memmove(c->carry, x->rbuf + used, rest);
        c->carry_len = (uint32_t)rest;
        if (n == 0) {
            fail(x, c, "EOF");
            return;
        }
        if (n < 0 && n != -EAGAIN) {
            fail(x, c, strerror((int)-n));
            return;
        }
        if (got < LC_READ_CHUNK)
            return;
    }
}

/* ---- publishers --------------------------------------------------------- */

static int lc_pub_start(struct lc_ctx *x, struct lc_conn *c)
{
    int rc = x->o.pub_ipc ? lc_unix_socket(x->o.pub_target, &c->fd)
                          : lc_tcp_socket(NULL, x->o.pub_target, x->o.pub_port, &c->fd);
    if (rc < 0) {
        c->fd = -1;
        c->state = LC_DEAD;
        fprintf(stderr, "loadclient: publisher connect: %s\n", strerror(-rc));
        return rc;
    }
    c->state = LC_CONNECTING;
    c->inflight = 0;
    return lc_ep_set(x, c, EPOLL_CTL_ADD, EPOLLOUT);
}

static void lc_pub_fail(struct lc_ctx *x, struct lc_conn *c, const char *why)
{
    if (c->state == LC_DEAD)
        return;
    x->pub_lost += c->inflight;
    c->inflight = 0;
    lc_close(x, c);
    x->pub_reconnects++;
    if (x->pub_reconnects <= 3 || x->pub_reconnects % 1000 == 0)
        fprintf(stderr, "loadclient: publisher %u: %s (reconnect #%" PRIu64 ")\n", c->idx, why,
                x->pub_reconnects);
    if (!x->stop && x->pub_reconnects < 100000)
        lc_pub_start(x, c);
}

/* The message: {"t":<ns>,"pad":"xxx..."} sized to about o.payload bytes. */
static size_t lc_payload(struct lc_ctx *x, char *out, size_t cap)
{
    uint64_t t = lc_now();
    if (!x->first_tx_ns)
        x->first_tx_ns = t;
    int n = snprintf(out, cap, "{\"t\":%" PRIu64 ",\"pad\":\"", t);
    size_t len = (size_t)n;
    size_t want = (size_t)x->o.payload > len + 2 ? (size_t)x->o.payload - len - 2 : 0;
    if (want > cap - len - 3)
        want = cap - len - 3;
    memcpy(out + len, x->pad, want);
    len += want;
    memcpy(out + len, "\"}", 2);
    return len + 2;
}

static int lc_pub_request(struct lc_ctx *x, struct lc_conn *c)
{
    char body[LC_PAYLOAD_MAX + 1024];
    char head[2048];
    /* --pub-spread: the channel (or the HTTP path) of this request. */
    char target[512];
    const char *base = x->o.pub_ipc ? x->o.channel : x->o.pub_path;
    uint64_t seq = x->pub_seq++;
    if (x->o.pub_spread)
        snprintf(target, sizeof(target), "%s%" PRIu64, base, seq % x->o.pub_spread);
    else
        snprintf(target, sizeof(target), "%s", base);
    if (x->o.pub_ipc) {
        unsigned char *b = (unsigned char *)body;
        size_t cl = strlen(target);
        size_t at = 9;
        b[at++] = 1;
        b[at++] = (unsigned char)cl;
        memcpy(b + at, target, cl);
        at += cl;
        size_t dl = lc_payload(x, body + at + 4, sizeof(body) - at - 4);
        uint32_t v = (uint32_t)dl;
        b[at] = (unsigned char)(v >> 24); b[at + 1] = (unsigned char)(v >> 16);
        b[at + 2] = (unsigned char)(v >> 8); b[at + 3] = (unsigned char)v;
        at += 4 + dl;
        uint32_t flen = (uint32_t)(at - 4), id = ++x->req_id;
        b[0] = (unsigned char)(flen >> 24); b[1] = (unsigned char)(flen >> 16);
        b[2] = (unsigned char)(flen >> 8); b[3] = (unsigned char)flen;
        b[4] = 0x01;
        b[5] = (unsigned char)(id >> 24); b[6] = (unsigned char)(id >> 16);
        b[7] = (unsigned char)(id >> 8); b[8] = (unsigned char)id;
        return lc_queue(c, b, at);
    }
    size_t pl = strlen(x->o.pub_prefix), sl = strlen(x->o.pub_suffix);
    memcpy(body, x->o.pub_prefix, pl);
    size_t bl = pl + lc_payload(x, body + pl, sizeof(body) - pl - sl - 1);
    memcpy(body + bl, x->o.pub_suffix, sl);
    bl += sl;
    int hl = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\n",
                      target, x->o.pub_target, x->o.pub_port, x->o.pub_ctype, bl);
    for (int i = 0; i < x->o.npub_headers && hl < (int)sizeof(head) - 300; i++)
        hl += snprintf(head + hl, sizeof(head) - (size_t)hl, "%s\r\n", x->o.pub_headers[i]);
    hl += snprintf(head + hl, sizeof(head) - (size_t)hl, "\r\n");
    if (lc_queue(c, head, (size_t)hl) < 0 || lc_queue(c, body, bl) < 0)
        return -ENOMEM;
    return 0;
}

/* Starts as many requests as window, budget and the global count allow. */
static void lc_pub_pump(struct lc_ctx *x, struct lc_conn *c)
{
    if (c->state != LC_OPEN || x->stop)
        return;
    int started = 0;
    while (c->inflight < (uint32_t)x->o.window && c->budget > 0 && x->remaining > 0) {
        if (lc_pub_request(x, c) < 0) {
            lc_pub_fail(x, c, "out of memory");
            return;
        }
        c->inflight++;
        c->budget--;
        x->remaining--;
        x->pub_sent++;
        started = 1;
    }
    if (started && lc_flush(x, c) < 0)
        lc_pub_fail(x, c, "write");
}

static void lc_pub_answer(struct lc_ctx *x, struct lc_conn *c, int ok, int code)
{
    if (c->inflight)
        c->inflight--;
    if (ok) {
        x->pub_ok++;
    } else {
        x->pub_err++;
        x->pub_last_err = code;
        if (x->pub_err <= 3)
            fprintf(stderr, "loadclient: publish answered %d\n", code);
    }
}

static ssize_t lc_pub_parse(struct lc_ctx *x, struct lc_conn *c, unsigned char *buf,
                            size_t *lenp, uint64_t now)
{
    (void)now;
    size_t pos = 0, len = *lenp;
    while (pos < len) {
        if (x->o.pub_ipc) {
            if (len - pos < 9)
                break;
            const unsigned char *p = buf + pos;
            size_t fl = 4 + ((size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3]);
            if (fl < 9 || fl > LC_CARRY_MAX) {
                lc_pub_fail(x, c, "bad ipc answer");
                return -1;
            }
            if (len - pos < fl)
                break;
            int code = p[4] == 0xFF && fl >= 11 ? (p[9] << 8 | p[10]) : p[4];
            lc_pub_answer(x, c, p[4] == 0x81, code);
            pos += fl;
            continue;
        }
        struct lcp_http h;
        ssize_t r = lcp_http_head((const char *)buf + pos, len - pos, &h);
        if (r == LCP_NEED_MORE)
            break;
        if (r < 0) {
            lc_pub_fail(x, c, "bad http answer");
            return -1;
        }
        size_t body;
        if (h.chunked) {
            ssize_t b = lcp_chunked_len((const char *)buf + pos + r, len - pos - (size_t)r);
            if (b == LCP_NEED_MORE)
                break;
            if (b < 0) {
                lc_pub_fail(x, c, "bad chunked body");
                return -1;
            }
            body = (size_t)b;
        } else {
            body = h.content_length > 0 ? (size_t)h.content_length : 0;
            if ((size_t)r + body > len - pos)
                break;
        }
        lc_pub_answer(x, c, h.status >= 200 && h.status < 300, h.status);
        pos += (size_t)r + body;
    }
    return (ssize_t)pos;
}

/* ---- the loop ----------------------------------------------------------- */

static void lc_dispatch(struct lc_ctx *x, struct lc_conn *c, uint32_t ev)
{
    if (c->kind == LC_SIGNAL) {
        struct signalfd_siginfo si;
        while (read(c->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            x->stop = 1;
        return;
    }
    int sub = c->kind == LC_SUB;
    if (c->state == LC_TLS) {
        lc_sub_tls_step(x, c);
        return;
    }
    if (c->state == LC_CONNECTING) {
        if (sub) {
            lc_sub_connected(x, c);
            return;
        }
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            lc_pub_fail(x, c, strerror(err));
            return;
        }
        c->state = LC_OPEN;
        lc_ep_set(x, c, EPOLL_CTL_MOD, EPOLLIN);
        lc_pub_pump(x, c);
        return;
    }
    if (ev & EPOLLOUT) {
        if (lc_flush(x, c) < 0) {
            if (sub)
                lc_sub_fail(x, c, "write");
            else
                lc_pub_fail(x, c, "write");
            return;
        }
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (sub) {
            lc_read_into(x, c, x->o.proto == LC_P_SSE ? lc_sub_parse_sse : lc_sub_parse,
                         lc_sub_fail);
        } else {
            lc_read_into(x, c, lc_pub_parse, lc_pub_fail);
            lc_pub_pump(x, c);
        }
    }
}

static void lc_poll_pubs(struct lc_ctx *x)
{
    struct epoll_event evs[64];
    int n = epoll_wait(x->pep, evs, 64, 0);
    for (int i = 0; i < n; i++)
        lc_dispatch(x, evs[i].data.ptr, evs[i].events);
}

static void lc_poll(struct lc_ctx *x, int timeout_ms)
{
    struct epoll_event evs[LC_MAX_EVENTS];
    int n = epoll_wait(x->ep, evs, LC_MAX_EVENTS, timeout_ms);
    for (int i = 0; i < n; i++) {
        struct lc_conn *c = evs[i].data.ptr;
        if (c->kind == LC_PUB_POLL || i % LC_PUB_EVERY == LC_PUB_EVERY - 1)
            lc_poll_pubs(x);
        if (c->kind != LC_PUB_POLL)
            lc_dispatch(x, c, evs[i].events);
    }
}

static double lc_secs(uint64_t a, uint64_t b) { return b > a ? (double)(b - a) / 1e9 : 0.0; }

/* Opens every subscriber, connect_par at a time. Returns when all are
 * ready or failed, or at the deadline. */
static void lc_connect_subs(struct lc_ctx *x, uint64_t deadline)
{
    int next = 0;
    uint64_t t0 = lc_now(), report = t0 + 2000000000u;
    while (!x->stop && lc_now() < deadline) {
        int pending = x->subs_started - x->subs_ready - x->subs_failed - x->subs_closed;
        while (next < x->o.subs && pending < x->o.connect_par) {
            lc_sub_start(x, &x->subs[next++]);
            pending++;
        }
        if (next == x->o.subs && x->subs_ready + x->subs_failed + x->subs_closed >= x->o.subs)
            break;
        lc_poll(x, 50);
        if (lc_now() > report) {
            fprintf(stderr, "loadclient: %d/%d subscribers ready\n", x->subs_ready, x->o.subs);
            report += 2000000000u;
        }
    }
    fprintf(stderr, "loadclient: %d subscribers ready, %d failed in %.2fs\n", x->subs_ready,
            x->subs_failed, lc_secs(t0, lc_now()));
}

/* Processes events for ms milliseconds (answers pings, drains input). */
static void lc_idle_for(struct lc_ctx *x, double secs)
{
    uint64_t end = lc_now() + (uint64_t)(secs * 1e9);
    while (!x->stop) {
        uint64_t now = lc_now();
        if (now >= end)
            break;
        uint64_t left = (end - now) / 1000000u;
        lc_poll(x, left > 100 ? 100 : (int)left + 1);
    }
}

static int lc_open_pubs(struct lc_ctx *x, uint64_t deadline)
{
    for (int i = 0; i < x->o.publishers; i++)
        if (lc_pub_start(x, &x->pubs[i]) < 0)
            return -1;
    for (;;) {
        int open = 0;
        for (int i = 0; i < x->o.publishers; i++)
            open += x->pubs[i].state == LC_OPEN;
        if (open == x->o.publishers)
            return 0;
        if (lc_now() > deadline || x->stop)
            return -1;
        lc_poll(x, 20);
    }
}

static int lc_pubs_idle(const struct lc_ctx *x)
{
    for (int i = 0; i < x->o.publishers; i++)
        if (x->pubs[i].inflight)
            return 0;
    return 1;
}

/* One burst: every publisher may start `per_pub` requests (0: unlimited,
 * bounded by x->remaining). Returns when every answer and every expected
 * delivery arrived, when deliveries stall for 3 s after the last answer,
 * or at the deadline. Returns the burst's active nanoseconds. */
static uint64_t lc_burst(struct lc_ctx *x, uint64_t per_pub, uint64_t deadline)
{
    uint64_t t0 = lc_now();
    for (int i = 0; i < x->o.publishers; i++) {
        x->pubs[i].budget = per_pub ? per_pub : UINT64_MAX;
        lc_pub_pump(x, &x->pubs[i]);
    }
    uint64_t last_progress = t0, seen = x->delivered, report = t0 + 2000000000u;
    for (;;) {
        lc_poll(x, 20);
        uint64_t now = lc_now();
        if (x->delivered != seen) {
            seen = x->delivered;
            last_progress = now;
        }
        int budget_left = 0;
        for (int i = 0; i < x->o.publishers; i++) {
            struct lc_conn *c = &x->pubs[i];
            if (c->state == LC_OPEN && c->inflight < (uint32_t)x->o.window)
                lc_pub_pump(x, c);
            budget_left |= c->budget > 0 && x->remaining > 0;
        }
        int answered = !budget_left && lc_pubs_idle(x);
        uint64_t expected = x->pub_ok * (uint64_t)x->subs_ready;
        if (answered && x->delivered >= expected)
            break;
        if (answered && now - last_progress > 3000000000u) {
            fprintf(stderr, "loadclient: deliveries stalled at %" PRIu64 "/%" PRIu64 "\n",
                    x->delivered, expected);
            break;
        }
        if (now > deadline || x->stop) {
            fprintf(stderr, "loadclient: time limit: %" PRIu64 " deliveries, %" PRIu64
                    " publishes answered\n", x->delivered, x->pub_ok + x->pub_err);
            x->stop = 1;
            break;
        }
        if (now > report) {
            fprintf(stderr, "loadclient: %" PRIu64 " published, %" PRIu64 " deliveries\n",
                    x->pub_ok, x->delivered);
            report += 2000000000u;
        }
    }
    uint64_t end = x->last_rx_ns > t0 ? x->last_rx_ns : lc_now();
    return end - t0;
}

static void lc_print_common(const struct lc_ctx *x)
{
    printf(" subs=%d subs_failed=%d subs_closed=%d pub_ok=%" PRIu64 " pub_err=%" PRIu64
           " pub_lost=%" PRIu64 " pub_last_err=%d delivered=%" PRIu64 " expected=%" PRIu64,
           x->subs_ready, x->subs_failed, x->subs_closed, x->pub_ok, x->pub_err, x->pub_lost,
           x->pub_last_err, x->delivered, x->pub_ok * (uint64_t)x->subs_ready);
}

/* CPU time (user + system, ms) the --cpu-pids processes have used; -1
 * when one cannot be read. */
static long lc_server_cpu_ms(const struct lc_ctx *x)
{
    if (!x->o.cpu_pids)
        return -1;
    long ticks = 0, hz = sysconf(_SC_CLK_TCK);
    const char *p = x->o.cpu_pids;
    while (*p) {
        char path[64], buf[1024];
        long pid = strtol(p, (char **)&p, 10);
        if (*p == ',')
            p++;
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        /* Fields after the command name, which ends at the last ')':
         * state is field 3, utime 14, stime 15. */
        const char *q = strrchr(buf, ')');
        unsigned long ut, st;
        if (!q || sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                         &st) != 2)
            return -1;
        ticks += (long)(ut + st);
    }
    return hz > 0 ? ticks * 1000 / hz : -1;
}

static int lc_run_deliver(struct lc_ctx *x, uint64_t deadline)
{
    long cpu0 = lc_server_cpu_ms(x);
    x->remaining = x->o.msgs;
    uint64_t active = 0;
    int bursts = 0;
    while (x->remaining > 0 && !x->stop) {
        active += lc_burst(x, x->o.burst, deadline);
        bursts++;
        if (x->o.burst && x->remaining > 0)
            lc_idle_for(x, x->o.burst_gap_ms / 1000.0);
    }
    double s = (double)active / 1e9;
    long cpu1 = lc_server_cpu_ms(x);
    printf("RESULT mode=deliver bursts=%d secs=%.3f rate=%.0f", bursts, s,
           s > 0 ? (double)x->delivered / s : 0.0);
    if (cpu0 >= 0 && cpu1 >= 0)
        printf(" server_cpu_ms=%ld", cpu1 - cpu0);
    lc_print_common(x);
    printf("\n");
    return 0;
}

static int lc_cmp_u32(const void *a, const void *b)
{
    uint32_t p = *(const uint32_t *)a, q = *(const uint32_t *)b;
    return p < q ? -1 : p > q;
}

static double lc_pct(const uint32_t *s, size_t n, double q)
{
    if (!n)
        return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return s[i] / 1000.0;
}

/* One message every 1/rate seconds, round robin over the publishers; a
 * publisher with a full window skips its turn (counted as late). */
static int lc_run_latency(struct lc_ctx *x, uint64_t deadline)
{
    uint64_t total = (uint64_t)(x->o.rate * x->o.duration);
    uint64_t step = (uint64_t)(1e9 / x->o.rate), t0 = lc_now(), next = t0, late = 0;
    uint64_t issued = 0;
    int rr = 0;
    x->remaining = 0;
    while (issued < total && !x->stop && lc_now() < deadline) {
        uint64_t now = lc_now();
        if (now >= next) {
            struct lc_conn *c = &x->pubs[rr++ % x->o.publishers];
            if (c->state == LC_OPEN && c->inflight < (uint32_t)x->o.window) {
                c->budget = 1;
                x->remaining = 1;
                lc_pub_pump(x, c);
            } else {
                late++;
            }
            issued++;
            next += step;
            continue;
        }
        uint64_t wait = (next - now) / 1000000u;
        lc_poll(x, wait > 50 ? 50 : (int)wait);
    }
    x->remaining = 0;
    uint64_t tail = lc_now() + 3000000000u, seen = x->delivered;
    while (!x->stop && lc_now() < deadline) {
        if (lc_pubs_idle(x) && x->delivered >= x->pub_ok * (uint64_t)x->subs_ready)
            break;
        lc_poll(x, 20);
        if (x->delivered != seen) {
            seen = x->delivered;
            tail = lc_now() + 3000000000u;
        }
        if (lc_now() > tail)
            break;
    }
    qsort(x->samples, x->nsamples, sizeof(*x->samples), lc_cmp_u32);
    printf("RESULT mode=latency rate=%.0f secs=%.3f late=%" PRIu64 " samples=%zu p50_ms=%.3f"
           " p90_ms=%.3f p99_ms=%.3f max_ms=%.3f",
           x->o.rate, lc_secs(t0, lc_now()), late, x->nsamples,
           lc_pct(x->samples, x->nsamples, 0.50), lc_pct(x->samples, x->nsamples, 0.90),
           lc_pct(x->samples, x->nsamples, 0.99),
           x->nsamples ? x->samples[x->nsamples - 1] / 1000.0 : 0.0);
    lc_print_common(x);
    printf("\n");
    return 0;
}

static int lc_run_httppub(struct lc_ctx *x, uint64_t deadline)
{
    uint64_t t0 = lc_now(), end = t0 + (uint64_t)(x->o.duration * 1e9);
    if (end > deadline)
        end = deadline;
    x->remaining = UINT64_MAX;
    for (int i = 0; i < x->o.publishers; i++) {
        x->pubs[i].budget = UINT64_MAX;
        lc_pub_pump(x, &x->pubs[i]);
    }
    while (!x->stop && lc_now() < end) {
        lc_poll(x, 20);
        for (int i = 0; i < x->o.publishers; i++)
            lc_pub_pump(x, &x->pubs[i]);
    }
    uint64_t t1 = lc_now();
    uint64_t ok = x->pub_ok;
    x->remaining = 0;
    uint64_t drain = t1 + 2000000000u;
    while (!lc_pubs_idle(x) && lc_now() < drain)
        lc_poll(x, 20);
    double s = lc_secs(t0, t1);
    printf("RESULT mode=httppub secs=%.3f rate=%.0f reconnects=%" PRIu64, s,
           s > 0 ? (double)ok / s : 0.0, x->pub_reconnects);
    lc_print_common(x);
    printf("\n");
    return 0;
}

static int lc_run_idle(struct lc_ctx *x)
{
    printf("READY subs=%d failed=%d\n", x->subs_ready, x->subs_failed);
    fflush(stdout);
    lc_idle_for(x, x->o.hold);
    printf("RESULT mode=idle");
    lc_print_common(x);
    printf("\n");
    return 0;
}

/* ---- self test of the codecs ------------------------------------------- */

static int lc_selftest(void)
{
    int fails = 0;
    static const struct { const char *in; size_t len; ssize_t rc; uint64_t plen; int op; } fr[] = {
        { "\x81\x05", 2, 2, 5, 1 },
        { "\x81\x7e\x01\x00", 4, 4, 256, 1 },
        { "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10, 10, 65536, 2 },
        { "\x89\x80\x01\x02\x03\x04", 6, 6, 0, 9 },
        { "\x81\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 10, LCP_E_BAD, 0, 0 },
        { "\xc1\x05", 2, 2, 5, 1 },                 /* RSV1: reported, not refused */
        { "\xa1\x05", 2, LCP_E_BAD, 0, 0 },
    };
    for (size_t i = 0; i < sizeof(fr) / sizeof(fr[0]); i++) {
        struct lcp_frame f;
        ssize_t rc = lcp_frame_header((const unsigned char *)fr[i].in, fr[i].len, &f);
        if (rc != fr[i].rc || (rc > 0 && (f.payload_len != fr[i].plen || f.opcode != fr[i].op))) {
            fprintf(stderr, "selftest: frame %zu: rc %zd\n", i, rc);
            fails++;
        }
        for (size_t k = 0; k < fr[i].len && fr[i].rc > 0; k++)
            if (lcp_frame_header((const unsigned char *)fr[i].in, k, &f) != LCP_NEED_MORE) {
                fprintf(stderr, "selftest: frame %zu prefix %zu\n", i, k);
                fails++;
            }
    }
    static const struct { const char *in; ssize_t rc; int status; int64_t cl; int ch; } hd[] = {
        { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", 56, 101, -1, 0 },
        { "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", 39, 200, 12, 0 },
        { "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n", 52, 201, -1, 1 },
        { "SSH-2.0-x\r\n\r\n", LCP_E_BAD, 0, 0, 0 },
    };
    for (size_t i = 0; i < sizeof(hd) / sizeof(hd[0]); i++) {
        struct lcp_http h;
        size_t len = strlen(hd[i].in);
        ssize_t rc = lcp_http_head(hd[i].in, len, &h);
        if (rc != hd[i].rc || (rc > 0 && (h.status != hd[i].status ||
                                          h.content_length != hd[i].cl || h.chunked != hd[i].ch))) {
            fprintf(stderr, "selftest: head %zu: rc %zd\n", i, rc);
            fails++;
        }
        for (size_t k = 0; k < len && hd[i].rc > 0; k++)
            if (lcp_http_head(hd[i].in, k, &h) != LCP_NEED_MORE) {
                fprintf(stderr, "selftest: head %zu prefix %zu\n", i, k);
                fails++;
            }
    }
    const char *ch = "5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
    size_t chl = strlen(ch);
    if (lcp_chunked_len(ch, chl) != (ssize_t)chl)
        fails++;
    for (size_t k = 0; k < chl; k++)
        if (lcp_chunked_len(ch, k) != LCP_NEED_MORE)
            fails++;
    uint64_t t = 0;
    const char *env = "{\"type\":\"message\",\"channel\":\"bench/x\",\"id\":\"1-2\","
                      "\"data\":{\"t\":123456789012,\"pad\":\"xx\"}}";
    if (!lcp_find_ts(env, strlen(env), &t) || t != 123456789012u)
        fails++;
    if (lcp_find_ts("{\"type\":\"subscribed\"}", 21, &t))
        fails++;
    /* A chunked event stream cut at every point decodes to the same events. */
    const char *cs = "6\r\n: hi\n\n\r\n1c\r\nid: 1\ndata: {\"t\":42,\"p\":1}\n\n\r\n"
                     "13;x=y\r\nevent: subscribed\n\n\r\n0\r\n\r\n";
    const char *plain = ": hi\n\nid: 1\ndata: {\"t\":42,\"p\":1}\n\nevent: subscribed\n\n";
    size_t csl = strlen(cs);
    for (size_t k = 0; k <= csl; k++) {
        unsigned char b[200];
        struct lcp_dechunk d = { 0 };
        memcpy(b, cs, csl);
        ssize_t a = lcp_dechunk(&d, b, k), z = a;
        if (a >= 0) {
            memmove(b + a, b + k, csl - k);   /* the second read lands after the data */
            z = lcp_dechunk(&d, b + a, csl - k);
        }
        if (a < 0 || z < 0 || (size_t)(a + z) != strlen(plain) || memcmp(b, plain, strlen(plain)) ||
            d.state != LCP_DC_DONE) {
            fprintf(stderr, "selftest: dechunk split %zu\n", k);
            fails++;
            break;
        }
    }
    struct lcp_dechunk bad = { 0 };
    unsigned char b1[] = "zz\r\n", b2[] = "3\r\nabcX";
    if (lcp_dechunk(&bad, b1, 4) != LCP_E_BAD)
        fails++;
    bad = (struct lcp_dechunk){ 0 };
    if (lcp_dechunk(&bad, b2, 8) != LCP_E_BAD)
        fails++;
    static const struct { const char *in; ssize_t rc; int data; const char *val; const char *ev; } se[] = {
        { ": hi\n\n", 6, 0, "", "" },
        { "id: 1\ndata: {\"t\":42}\n\nrest", 22, 1, "{\"t\":42}", "" },
        { "event: subscribed\r\ndata:x\r\n\r\n", 29, 1, "x", "subscribed" },
        { "data: a\ndata: b\n\n", 17, 1, "a\ndata: b", "" },
        { "data: a\n", LCP_NEED_MORE, 0, "", "" },
        { "data: a\0\n\n", LCP_E_BAD, 0, "", "" },
    };
    for (size_t i = 0; i < sizeof(se) / sizeof(se[0]); i++) {
        struct lcp_sse ev;
        size_t len = strlen(se[i].in) + (se[i].rc == LCP_E_BAD ? 4 : 0);
        ssize_t rc = lcp_sse_event(se[i].in, len, &ev);
        if (rc != se[i].rc ||
            (rc > 0 && (ev.has_data != se[i].data || ev.data_len != strlen(se[i].val) ||
                        memcmp(se[i].in + ev.data_off, se[i].val, ev.data_len) ||
                        ev.event_len != strlen(se[i].ev) ||
                        memcmp(se[i].in + ev.event_off, se[i].ev, ev.event_len)))) {
            fprintf(stderr, "selftest: sse %zu: rc %zd\n", i, rc);
            fails++;
        }
    }
    unsigned char out[200];
    struct lcp_frame f;
    ssize_t n = lcp_frame_encode(out, sizeof(out), 1, "hello", 5, 0x01020304u);
    if (n != 11 || lcp_frame_header(out, (size_t)n, &f) != 6 || !f.masked || f.payload_len != 5 ||
        (out[6] ^ f.mask[0]) != 'h')
        fails++;
    fprintf(stderr, "selftest: %s\n", fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}

/* ---- TLS ---------------------------------------------------------------- */

/* The subscribers' client context: no certificate check (the bench's
 * certificate is self-signed and made for the run), buffers released while
 * idle, writes that may be partial and retried from a moved buffer. */
static SSL_CTX *lc_tls_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}

/* ---- arguments ---------------------------------------------------------- */

static void lc_usage(void)
{
    fprintf(stderr,
            "usage: loadclient deliver|latency|httppub|idle|selftest [options]\n"
            "  --host H --port P --path PATH --proto ws|socketio|sse [--tls]   subscribers\n"
            "  --port2 P        every other subscriber connects to P (two nodes)\n"
            "  --sub-spread     subscriber i's path gets i appended (a channel each)\n"
            "  --pub-spread N   publish j goes to channel (or pub path) + (j %% N)\n"
            "  --subs N --src-ips K --connect-par C\n"
            "  --pub ipc:SOCKET | http:HOST:PORT  --pub-path P --pub-ctype T\n"
            "  --pub-header 'H: v' (repeat) --pub-prefix S --pub-suffix S --channel C\n"
            "  --publishers P --window W --msgs M --burst B --burst-gap-ms G\n"
            "  --rate R --duration S --payload BYTES --timeout S --hold S --settle S\n"
            "  --cpu-pids P,P   deliver: report the CPU these processes used publishing\n"
            "  --deflate --no-inflate --pad-words\n");
}

static int lc_parse_args(int argc, char **argv, struct lc_opts *o)
{
    static const struct option lo[] = {
        { "host", 1, 0, 'h' }, { "port", 1, 0, 'p' }, { "path", 1, 0, 'P' },
        { "proto", 1, 0, 'x' }, { "subs", 1, 0, 'n' }, { "src-ips", 1, 0, 'k' },
        { "connect-par", 1, 0, 'C' }, { "pub", 1, 0, 'u' }, { "pub-path", 1, 0, 'U' },
        { "pub-ctype", 1, 0, 'T' }, { "pub-header", 1, 0, 'H' }, { "pub-prefix", 1, 0, 'A' },
        { "pub-suffix", 1, 0, 'Z' }, { "channel", 1, 0, 'c' }, { "publishers", 1, 0, 'N' },
        { "window", 1, 0, 'w' }, { "msgs", 1, 0, 'm' }, { "burst", 1, 0, 'b' },
        { "burst-gap-ms", 1, 0, 'g' }, { "rate", 1, 0, 'r' }, { "duration", 1, 0, 'd' },
        { "payload", 1, 0, 'l' }, { "timeout", 1, 0, 't' }, { "hold", 1, 0, 'o' },
        { "settle", 1, 0, 's' }, { "deflate", 0, 0, 'D' }, { "pad-words", 0, 0, 'W' },
        { "no-inflate", 0, 0, 'I' },
        { "settle", 1, 0, 's' }, { "tls", 0, 0, 'L' }, { "cpu-pids", 1, 0, 'K' },
        { "port2", 1, 0, '2' }, { "sub-spread", 0, 0, 'S' }, { "pub-spread", 1, 0, 'Y' },
        { 0, 0, 0, 0 },
    };
    *o = (struct lc_opts){
        .proto = LC_P_WS, .host = "127.0.0.1", .port = 8081, .path = "/ws?channels=bench/x",
        .src_ips = 8, .connect_par = 512, .pub_path = "/publish", .pub_ctype = "application/json",
        .pub_prefix = "", .pub_suffix = "", .channel = "bench/x", .publishers = 1, .window = 1,
        .msgs = 1000, .burst_gap_ms = 50, .rate = 100, .duration = 5, .payload = 100,
        .timeout = 120, .hold = 600, .settle = 0.3,
    };
    if (argc < 2)
        return -1;
    const char *m = argv[1];
    if (!strcmp(m, "deliver")) o->mode = LC_M_DELIVER;
    else if (!strcmp(m, "latency")) o->mode = LC_M_LATENCY;
    else if (!strcmp(m, "httppub")) o->mode = LC_M_HTTPPUB;
    else if (!strcmp(m, "idle")) o->mode = LC_M_IDLE;
    else return -1;
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'h': o->host = optarg; break;
        case 'p': o->port = atoi(optarg); break;
        case 'P': o->path = optarg; break;
        case 'x':
            if (!strcmp(optarg, "ws")) o->proto = LC_P_WS;
            else if (!strcmp(optarg, "socketio")) o->proto = LC_P_SOCKETIO;
            else if (!strcmp(optarg, "sse")) o->proto = LC_P_SSE;
            else return -1;
            break;
        case 'n': o->subs = atoi(optarg); break;
        case 'k': o->src_ips = atoi(optarg); break;
        case 'C': o->connect_par = atoi(optarg); break;
        case 'u':
            if (!strncmp(optarg, "ipc:", 4)) {
                o->pub_ipc = 1;
                snprintf(o->pub_target, sizeof(o->pub_target), "%s", optarg + 4);
            } else if (!strncmp(optarg, "http:", 5)) {
                const char *colon = strrchr(optarg + 5, ':');
                if (!colon)
                    return -1;
                snprintf(o->pub_target, sizeof(o->pub_target), "%.*s",
                         (int)(colon - optarg - 5), optarg + 5);
                o->pub_port = atoi(colon + 1);
            } else {
                return -1;
            }
            break;
        case 'U': o->pub_path = optarg; break;
        case 'T': o->pub_ctype = optarg; break;
        case 'H':
            if (o->npub_headers == LC_MAX_HEADERS)
                return -1;
            o->pub_headers[o->npub_headers++] = optarg;
            break;
        case 'A': o->pub_prefix = optarg; break;
        case 'Z': o->pub_suffix = optarg; break;
        case 'c': o->channel = optarg; break;
        case 'N': o->publishers = atoi(optarg); break;
        case 'w': o->window = atoi(optarg); break;
        case 'm': o->msgs = strtoull(optarg, NULL, 10); break;
        case 'b': o->burst = strtoull(optarg, NULL, 10); break;
        case 'g': o->burst_gap_ms = atoi(optarg); break;
        case 'r': o->rate = atof(optarg); break;
        case 'd': o->duration = atof(optarg); break;
        case 'l': o->payload = atoi(optarg); break;
        case 't': o->timeout = atof(optarg); break;
        case 'o': o->hold = atof(optarg); break;
        case 's': o->settle = atof(optarg); break;
        case 'D': o->deflate = 1; break;
        case 'W': o->pad_words = 1; break;
        case 'I': o->no_inflate = 1; break;
        case 'L': o->tls = 1; break;
        case 'K': o->cpu_pids = optarg; break;
        case '2': o->port2 = atoi(optarg); break;
        case 'S': o->sub_spread = 1; break;
        case 'Y': o->pub_spread = (uint32_t)strtoul(optarg, NULL, 10); break;
        default: return -1;
        }
    }
    if (o->subs < 0 || o->src_ips < 1 || o->src_ips > 250 || o->connect_par < 1 ||
        o->publishers < 1 || o->publishers > 4096 || o->window < 1 || o->rate <= 0 ||
        o->payload < 0 || o->payload > LC_PAYLOAD_MAX - 100 || strlen(o->channel) > 200 ||
        strlen(o->pub_path) > 400 || strlen(o->path) > 400 || o->port2 < 0 || o->port2 > 65535)
        return -1;
    if (o->mode != LC_M_IDLE && !o->pub_target[0])
        return -1;
    if (o->no_inflate && (!o->deflate || o->mode != LC_M_DELIVER))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "selftest"))
        return lc_selftest();
    struct lc_ctx *x = calloc(1, sizeof(*x));
    int rc = 1;
    if (!x)
        return 1;
    x->ep = -1;
    x->pep = -1;
    x->sig.fd = -1;
    if (lc_parse_args(argc, argv, &x->o) < 0) {
        lc_usage();
        rc = 2;
        goto out;
    }
    memset(x->pad, 'x', sizeof(x->pad));
    if (x->o.pad_words) {
        static const char *const words[] = { "price", "name", "item", "status", "open", "closed",
            "the", "quick", "brown", "fox", "user", "alice", "bob", "order", "id", "total",
            "2026-12-03", "true", "false", "null", "EUR", "shipping", "address", "street" };
        uint32_t r = 12345;
        for (size_t at = 0; at < sizeof(x->pad);) {
            r = r * 1103515245u + 12345u;
            const char *w = words[(r >> 16) % (sizeof(words) / sizeof(words[0]))];
            for (size_t i = 0; w[i] && at < sizeof(x->pad); i++)
                x->pad[at++] = w[i];
            if (at < sizeof(x->pad))
                x->pad[at++] = (r >> 8) % 5 ? ' ' : (char)('0' + (r >> 4) % 10);
        }
    }
    if (x->o.deflate) {
        x->zbuf = malloc(LC_CARRY_MAX);
        if (!x->zbuf || inflateInit2(&x->inf, -15) != Z_OK) {
            fprintf(stderr, "loadclient: inflater: out of memory\n");
            return 1;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    x->ep = epoll_create1(EPOLL_CLOEXEC);
    x->pep = epoll_create1(EPOLL_CLOEXEC);
    x->pep_watch = (struct lc_conn){ .fd = x->pep, .kind = LC_PUB_POLL };
    struct epoll_event pev = { .events = EPOLLIN, .data.ptr = &x->pep_watch };
    if (x->ep < 0 || x->pep < 0 || epoll_ctl(x->ep, EPOLL_CTL_ADD, x->pep, &pev) < 0)
        goto out;
    x->rbuf = malloc(LC_CARRY_MAX + LC_READ_CHUNK);
    x->subs = calloc((size_t)x->o.subs + 1, sizeof(*x->subs));
    if (x->o.tls && !(x->tls = lc_tls_ctx())) {
        fprintf(stderr, "loadclient: no TLS context\n");
        goto out;
    }
    x->pubs = calloc((size_t)x->o.publishers, sizeof(*x->pubs));
    if (x->ep < 0 || !x->rbuf || !x->subs || !x->pubs)
        goto out;
    for (int i = 0; i < x->o.subs; i++)
        x->subs[i] = (struct lc_conn){ .fd = -1, .kind = LC_SUB, .idx = (uint32_t)i };
    for (int i = 0; i < x->o.publishers; i++)
        x->pubs[i] = (struct lc_conn){
            .fd = -1, .idx = (uint32_t)i, .kind = x->o.pub_ipc ? LC_PUB_IPC : LC_PUB_HTTP };

    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    signal(SIGPIPE, SIG_IGN);
    x->sig.kind = LC_SIGNAL;
    x->sig.fd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
    if (x->sig.fd < 0 || lc_ep_set(x, &x->sig, EPOLL_CTL_ADD, EPOLLIN) < 0)
        goto out;

    uint64_t deadline = lc_now() + (uint64_t)(x->o.timeout * 1e9);
    if (x->o.subs > 0) {
        lc_connect_subs(x, deadline);
        if (x->subs_ready == 0) {
            fprintf(stderr, "loadclient: no subscriber connected\n");
            goto out;
        }
    }
    if (x->o.mode == LC_M_IDLE) {
        rc = lc_run_idle(x);
        goto out;
    }
    lc_idle_for(x, x->o.settle);
    if (lc_open_pubs(x, deadline) < 0) {
        fprintf(stderr, "loadclient: publishers did not connect\n");
        goto out;
    }
    switch (x->o.mode) {
    case LC_M_DELIVER: rc = lc_run_deliver(x, deadline); break;
    case LC_M_LATENCY: rc = lc_run_latency(x, deadline); break;
    case LC_M_HTTPPUB: rc = lc_run_httppub(x, deadline); break;
    default: break;
    }
out:
    if (x->subs)
        for (int i = 0; i < x->o.subs; i++) {
            if (x->subs[i].fd >= 0)
                close(x->subs[i].fd);
            SSL_free(x->subs[i].ssl);
            free(x->subs[i].carry);
            free(x->subs[i].out);
        }
    if (x->pubs)
        for (int i = 0; i < x->o.publishers; i++) {
            if (x->pubs[i].fd >= 0)
                close(x->pubs[i].fd);
            free(x->pubs[i].carry);
            free(x->pubs[i].out);
        }
    if (x->sig.fd >= 0)
        close(x->sig.fd);
    if (x->ep >= 0)
        close(x->ep);
    if (x->pep >= 0)
        close(x->pep);
    SSL_CTX_free(x->tls);
    free(x->subs);
    free(x->pubs);
    free(x->rbuf);
    free(x->samples);
    free(x);
    return rc;
}
