#include "cli_stats.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "promtext.h"

#define CS_EXIT_OK          0
#define CS_EXIT_UNAVAILABLE 3
#define CS_EXIT_TIMEOUT     4
#define CS_EXIT_OTHER       5

/* A scrape past this is not ws-server's. */
#define CS_MAX_SCRAPE (16u << 20)
/* Label values kept per family (reasons, close codes, transports). */
#define CS_MAX_KEYS 32

struct cs_kv {
    char   key[24];
    double v;
};

struct cs_family {
    struct cs_kv kv[CS_MAX_KEYS];
    int          n;
};

/* What the summary shows of one scrape. */
struct cs_scrape {
    struct cs_family conns, refused, closed;
    double channels, subscriptions, published, deliveries;
};

static uint64_t cs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Starts connecting a non-blocking socket to addr (host:port, [v6]:port
 * or a Unix path). Returns the fd or -CS_EXIT_*. */
static int cs_connect(const char *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    int family;
    if (addr[0] == '/' || addr[0] == '.') {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        if (strlen(addr) >= sizeof(un->sun_path)) {
            snprintf(err, errlen, "%s: path too long", addr);
            return -CS_EXIT_UNAVAILABLE;
        }
        memset(un, 0, sizeof(*un));
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, addr, strlen(addr));
        sl = sizeof(*un);
        family = AF_UNIX;
    } else {
        char host[256];
        const char *colon = strrchr(addr, ':');
        size_t hl = colon ? (size_t)(colon - addr) : 0;
        const char *h = addr;
        if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        if (!colon || hl == 0 || hl >= sizeof(host)) {
            snprintf(err, errlen, "%s: not host:port or a Unix socket path", addr);
            return -CS_EXIT_UNAVAILABLE;
        }
        memcpy(host, h, hl);
        host[hl] = '\0';
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai;
        int rc = getaddrinfo(host, colon + 1, &hints, &ai);
        if (rc != 0) {
            snprintf(err, errlen, "%s: %s", addr, gai_strerror(rc));
            return -CS_EXIT_UNAVAILABLE;
        }
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        sl = ai->ai_addrlen;
        family = ai->ai_family;
        freeaddrinfo(ai);
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -CS_EXIT_OTHER;
    }
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
        snprintf(err, errlen, "%s: %s", addr, strerror(errno));
        close(fd);
        return -CS_EXIT_UNAVAILABLE;
    }
    return fd;      /* the first poll for writing waits for the connect */
}

/* Waits for events on fd until deadline. Returns 0, or -CS_EXIT_TIMEOUT. */
static int cs_wait(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = cs_now_ms();
        if (now >= deadline)
            return -CS_EXIT_TIMEOUT;
        struct pollfd p = { fd, events, 0 };
        int rc = poll(&p, 1, (int)(deadline - now));
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -CS_EXIT_OTHER;
    }
}

/* GET /metrics; the body of a 200 answer goes to out. Returns 0 or
 * -CS_EXIT_*. */
static int cs_get(const char *addr, int timeout_ms, struct buf *out, char *err, size_t errlen)
{
    uint64_t deadline = cs_now_ms() + (uint64_t)timeout_ms;
    int fd = cs_connect(addr, err, errlen);
    if (fd < 0)
        return fd;
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: wspush\r\nConnection: close\r\n\r\n";
    size_t sent = 0;
    int rc = 0;
    while (sent < sizeof(req) - 1 && rc == 0) {
        if ((rc = cs_wait(fd, POLLOUT, deadline)) < 0)
            break;
        ssize_t n = send(fd, req + sent, sizeof(req) - 1 - sent, MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(err, errlen, "%s: %s", addr, strerror(errno));
            rc = -CS_EXIT_UNAVAILABLE;
        }
    }
    while (rc == 0) {
        if ((rc = cs_wait(fd, POLLIN, deadline)) < 0)
            break;
        if (buf_reserve(out, 65536) < 0) {
            rc = -CS_EXIT_OTHER;
            break;
        }
        ssize_t n = recv(fd, out->data + out->len, out->cap - out->len, 0);
        if (n == 0)
            break;
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(err, errlen, "%s: %s", addr, strerror(errno));
            rc = -CS_EXIT_UNAVAILABLE;
        } else if (n > 0 && (out->len += (size_t)n) > CS_MAX_SCRAPE) {
            snprintf(err, errlen, "%s: answer over %u bytes", addr, CS_MAX_SCRAPE);
            rc = -CS_EXIT_UNAVAILABLE;
        }
    }
    close(fd);
    if (rc == -CS_EXIT_TIMEOUT)
        snprintf(err, errlen, "%s: no answer in %d ms", addr, timeout_ms);
    if (rc < 0)
        return rc;
    const char *head = buf_head(out);
    size_t len = buf_used(out);
    const char *end = len >= 4 ? memmem(head, len, "\r\n\r\n", 4) : NULL;
    if (len < 12 || memcmp(head, "HTTP/1.", 7) != 0 || memcmp(head + 8, " 200", 4) != 0 || !end) {
        snprintf(err, errlen, "%s: not a 200 answer to GET /metrics", addr);
        return -CS_EXIT_UNAVAILABLE;
    }
    buf_consume(out, (size_t)(end + 4 - head));
    return 0;
}

static void cs_add(struct cs_family *f, struct str key, double v)
{
    char k[sizeof(f->kv[0].key)];
    snprintf(k, sizeof(k), "%.*s", (int)key.len, key.p);
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->kv[i].key, k) == 0) {
            f->kv[i].v += v;
            return;
        }
    if (f->n == CS_MAX_KEYS)
        return;
    memcpy(f->kv[f->n].key, k, sizeof(k));
    f->kv[f->n++].v = v;
}

static double cs_get_kv(const struct cs_family *f, const char *key)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->kv[i].key, key) == 0)
            return f->kv[i].v;
    return 0;
}

static int cs_is(struct str name, const char *want)
{
    return name.len == strlen(want) && memcmp(name.p, want, name.len) == 0;
}

/* Reads the families of the summary out of an exposition. Returns 0, or
 * -1 when a line does not parse. */
static int cs_parse(const char *p, size_t len, struct cs_scrape *s)
{
    memset(s, 0, sizeof(*s));
    while (len > 0) {
        struct prom_sample smp;
        ssize_t n = prom_parse_line(p, len, &smp);
        if (n == PROM_NEED_MORE)
            break;
        if (n < 0)
            return -1;
        struct str v;
        if (cs_is(smp.name, "wspush_connections") && prom_label(smp.labels, "transport", &v) == 1)
            cs_add(&s->conns, v, smp.value);
        else if (cs_is(smp.name, "wspush_handshakes_refused_total") &&
                 prom_label(smp.labels, "reason", &v) == 1)
            cs_add(&s->refused, v, smp.value);
        else if (cs_is(smp.name, "wspush_connections_closed_total") &&
                 prom_label(smp.labels, "code", &v) == 1)
            cs_add(&s->closed, v, smp.value);
        else if (cs_is(smp.name, "wspush_channels"))
            s->channels = smp.value;
        else if (cs_is(smp.name, "wspush_subscriptions"))
            s->subscriptions = smp.value;
        else if (cs_is(smp.name, "wspush_messages_published_total"))
            s->published = smp.value;
        else if (cs_is(smp.name, "wspush_deliveries_total"))
            s->deliveries = smp.value;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int cs_scrape(const char *addr, int timeout_ms, struct cs_scrape *s)
{
    struct buf b = { 0 };
    char err[512] = "";
    int rc = cs_get(addr, timeout_ms, &b, err, sizeof(err));
    if (rc == 0 && cs_parse(buf_head(&b), buf_used(&b), s) < 0) {
        snprintf(err, sizeof(err), "%s: the answer is not a Prometheus exposition", addr);
        rc = -CS_EXIT_UNAVAILABLE;
    }
    buf_free(&b);
    if (rc < 0)
        fprintf(stderr, "wspush: stats: %s\n", err[0] ? err : "out of memory");
    return rc;
}

/* "origin 1 (+1), token 2" for the keys with a total, or "none". */
static void cs_print_family(const char *title, const struct cs_family *a, const struct cs_family *b)
{
    int shown = 0;
    printf("  %-14s", title);
    for (int i = 0; i < b->n; i++) {
        double total = b->kv[i].v, delta = total - cs_get_kv(a, b->kv[i].key);
        if (total == 0)
            continue;
        printf("%s%s %.0f (+%.0f)", shown++ ? ", " : "", b->kv[i].key, total, delta);
    }
    printf("%s\n", shown ? "" : "none");
}

/* Counts are integers in the JSON; a rate stays a real. */
static json_t *cs_json_num(double v)
{
    if (v == (double)(int64_t)v && v > -9007199254740992.0 && v < 9007199254740992.0)
        return json_integer((json_int_t)v);
    return json_real(v);
}

static json_t *cs_json_family(const struct cs_family *a, const struct cs_family *b)
{
    json_t *o = json_object();
    for (int i = 0; o && i < b->n; i++)
        json_object_set_new(o, b->kv[i].key,
                            json_pack("{s:o,s:o}", "total", cs_json_num(b->kv[i].v),
                                      "interval", cs_json_num(b->kv[i].v - cs_get_kv(a, b->kv[i].key))));
    return o;
}

static json_t *cs_json_rate(double a, double b, double secs)
{
    return json_pack("{s:f,s:o,s:o}", "per_s", (b - a) / secs, "interval", cs_json_num(b - a),
                     "total", cs_json_num(b));
}

int cli_stats(const char *addr, double interval_s, int timeout_ms, int json)
{
    struct cs_scrape a, b;
    int rc = cs_scrape(addr, timeout_ms, &a);
    if (rc < 0)
        return -rc;
    uint64_t t0 = cs_now_ms();
    struct timespec ts = { (time_t)interval_s, (long)((interval_s - (double)(time_t)interval_s) * 1e9) };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    rc = cs_scrape(addr, timeout_ms, &b);
    if (rc < 0)
        return -rc;
    double secs = (double)(cs_now_ms() - t0) / 1000.0;
    if (secs <= 0)
        secs = 0.001;
    if (json) {
        json_t *conns = json_object();
        for (int i = 0; conns && i < b.conns.n; i++)
            json_object_set_new(conns, b.conns.kv[i].key, cs_json_num(b.conns.kv[i].v));
        json_t *o = json_pack("{s:s,s:f,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "addr", addr,
                              "interval_s", secs, "connections", conns,
                              "channels", cs_json_num(b.channels),
                              "subscriptions", cs_json_num(b.subscriptions),
                              "messages", cs_json_rate(a.published, b.published, secs),
                              "deliveries", cs_json_rate(a.deliveries, b.deliveries, secs),
                              "refused", cs_json_family(&a.refused, &b.refused),
                              "closed", cs_json_family(&a.closed, &b.closed));
        char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(o);
        if (!text) {
            fprintf(stderr, "wspush: stats: out of memory\n");
            return CS_EXIT_OTHER;
        }
        printf("%s\n", text);
        free(text);
        return CS_EXIT_OK;
    }
    printf("ws-server metrics at %s, over %.1f s\n", addr, secs);
    printf("  %-14s", "connections");
    for (int i = 0; i < b.conns.n; i++)
        printf("%s%s %.0f", i ? ", " : "", b.conns.kv[i].key, b.conns.kv[i].v);
    printf("%s\n", b.conns.n ? "" : "none");
    printf("  %-14s%.0f\n", "channels", b.channels);
    printf("  %-14s%.0f\n", "subscriptions", b.subscriptions);
    printf("  %-14s%.1f  (%.0f in the interval, %.0f since start)\n", "messages/s",
           (b.published - a.published) / secs, b.published - a.published, b.published);
    printf("  %-14s%.1f  (%.0f in the interval, %.0f since start)\n", "deliveries/s",
           (b.deliveries - a.deliveries) / secs, b.deliveries - a.deliveries, b.deliveries);
    cs_print_family("refused", &a.refused, &b.refused);
    cs_print_family("closed", &a.closed, &b.closed);
    return CS_EXIT_OK;
}
