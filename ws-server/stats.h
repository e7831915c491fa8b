/* stats — ws-server's counters and the Prometheus text exposition (format
 * 0.0.4) of them.
 *
 * Counters live in the module that owns the event: each module embeds the
 * plain struct below that concerns it (conn.c a struct stats_conn, hub.c a
 * struct stats_hub, ...), bumps it on the hot path (an add, no system call,
 * no allocation) and hands it out read-only through a small getter
 * (conns_stats(), hub_stats(), ...). server.c gathers those pointers and
 * the gauges into a struct stats_view at scrape time and stats_write()
 * renders it. This header includes nothing of ws-server, so any module may
 * include it without an arrow back up.
 *
 * No label value is ever a channel or user name: every label here takes
 * one of the fixed values of the enums below.
 */
#ifndef WSPUSH_STATS_H
#define WSPUSH_STATS_H

#include <stddef.h>
#include <stdint.h>

struct buf;

/* Why a subscriber was refused, before the upgrade or at subscribe
 * (label reason of wspush_handshakes_refused_total). */
enum stats_refusal {
    STATS_REFUSED_ORIGIN = 0,     /* 403: Origin not allowed */
    STATS_REFUSED_TOKEN,          /* 4401: token missing, invalid, expired, revoked */
    STATS_REFUSED_CHANNELS,       /* 4400: bad channel list */
    STATS_REFUSED_NOT_COVERED,    /* 4403: a channel the token does not open */
    STATS_REFUSED_LIMIT,          /* 503: max_connections */
    STATS_REFUSED_PER_IP,         /* 503: max_connections_per_ip */
    STATS_REFUSED_VERSION,        /* 426: not a WebSocket upgrade, or a version not 13 */
    STATS_REFUSED_BAD_REQUEST,    /* 400, 404, 431: not a valid request head */
    STATS_REFUSALS
};

struct stats_refusals {
    uint64_t n[STATS_REFUSALS];
};

/* Close codes counted by their own label value; any other code the page
 * sends (and we echo) is counted as "other", so a client cannot create
 * series. 1006: the connection ended without a close frame (peer gone,
 * read or write error, no pong). */
#define STATS_CLOSE_CODES_LIST 1000, 1001, 1002, 1006, 1007, 1008, 1009, 1011, 1013, 4400, 4401, 4403
enum { STATS_CLOSE_OTHER = 12, STATS_CLOSE_SLOTS = 13 };

/* The slot of close code code (STATS_CLOSE_OTHER when not listed). */
int stats_close_slot(int code);

/* A latency histogram: fixed bucket bounds (stats_hist_bounds_ns), counts
 * per bucket (not cumulative; the writer sums them), the last bucket is
 * +Inf. */
#define STATS_HIST_BUCKETS 18
struct stats_hist {
    uint64_t bucket[STATS_HIST_BUCKETS];
    uint64_t count;
    uint64_t sum_ns;
};
extern const uint64_t stats_hist_bounds_ns[STATS_HIST_BUCKETS - 1];

static inline void stats_hist_observe(struct stats_hist *h, uint64_t ns)
{
    int i = 0;
    while (i < STATS_HIST_BUCKETS - 1 && ns > stats_hist_bounds_ns[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum_ns += ns;
}

/* conn.c: the WebSocket and SSE transports. */
struct stats_conn {
    uint64_t accepted;            /* upgrades answered 101 */
    uint64_t open;                /* gauge: upgraded and not yet freed */
    uint64_t sse_accepted;        /* event streams started (200) */
    uint64_t sse_open;            /* gauge: streams not yet freed */
    uint64_t closed[STATS_CLOSE_SLOTS];
    struct stats_refusals refused; /* origin, version, bad_request, limit, per_ip */
    /* permessage-deflate: upgrades that negotiated it; message x channel
     * encodings made for it (once each, shared), compressed or left plain
     * (not smaller, or zlib failed); the payload bytes of the compressed
     * ones before and after. */
    uint64_t deflate_upgrades;
    uint64_t deflate_compressed;
    uint64_t deflate_plain;
    uint64_t deflate_in_bytes;
    uint64_t deflate_out_bytes;
};

/* server.c: connections refused at accept (503 past the reserve). */
struct stats_server {
    struct stats_refusals refused; /* limit, per_ip */
};

/* session.c */
struct stats_session {
    struct stats_refusals refused; /* channels, token, not_covered */
    uint64_t replayed;            /* message x channel queued by a resume */
    uint64_t resumes_exact;       /* resume ended with every channel replayed */
    uint64_t resumes_reset;       /* resume ended with at least one channel reset */
};

/* hub.c */
struct stats_hub {
    uint64_t deliveries;          /* message x channel x connection queued live */
    uint64_t delivery_bytes;      /* their envelope bytes (transport framing not included) */
    uint64_t subscriptions;       /* gauge: (connection, channel) pairs */
};

/* pubsock.c */
struct stats_pubsock {
    uint64_t ok, refused, error;  /* requests by answer: ack, a refusal, internal error */
    struct stats_hist fanout;     /* publish read off the socket -> queued to the last subscriber */
};

/* tls.c: TLS handshakes on tls_listen (all zero without it). */
struct stats_tls {
    uint64_t handshakes_ok;
    uint64_t handshakes_failed;   /* refused, broken, timed out, or the client left first */
};

/* The process, read from /proc/self at scrape time. */
struct stats_process {
    uint64_t rss_bytes;
    double   cpu_seconds;
    uint64_t open_fds;
    double   start_time;          /* seconds since the Unix epoch */
};

/* Fills p from /proc/self (and /proc/stat for the boot time). Returns 0,
 * or -errno when a file cannot be read (p then holds what could be read,
 * zeros elsewhere). No allocation. */
int stats_process_read(struct stats_process *p);

/* Everything one scrape shows. Pointers are borrowed for the call; none
 * may be NULL. A number added here goes into struct stats_counts too, or
 * a scrape of several workers (tally.h) would not sum it. */
struct stats_view {
    const struct stats_conn    *conn;
    const struct stats_server  *server;
    const struct stats_session *session;
    const struct stats_hub     *hub;
    const struct stats_pubsock *pubsock;
    const struct stats_tls     *tls;
    uint64_t published;           /* messages accepted by the engine */
    uint64_t channels;            /* gauge: channels with subscribers */
    uint64_t history_messages;    /* gauges: what the engine holds */
    uint64_t history_bytes;
    struct stats_process process;
};

/* Every counter and gauge of one process as plain numbers, nothing but
 * uint64_t words: worker processes publish theirs in shared memory and a
 * scrape sums them word by word (tally.h). */
struct stats_counts {
    struct stats_conn    conn;
    struct stats_server  server;
    struct stats_session session;
    struct stats_hub     hub;
    struct stats_pubsock pubsock;
    struct stats_tls     tls;
    uint64_t published, channels, history_messages, history_bytes;
};

#define STATS_COUNTS_WORDS (sizeof(struct stats_counts) / sizeof(uint64_t))

/* Copies what v shows (its process metrics aside) into c. */
void stats_counts_of(const struct stats_view *v, struct stats_counts *c);
/* Points v at c's numbers (v->process untouched); c must outlive v's use. */
void stats_view_of(struct stats_view *v, const struct stats_counts *c);
/* Zeroes c's gauges (open connections and streams, subscriptions,
 * channels, history held), keeping the counters: what a process that is
 * gone still adds to a sum. */
void stats_counts_drop_gauges(struct stats_counts *c);

/* Appends the exposition of v to out: HELP and TYPE for every family, the
 * samples in a fixed order. Returns 0 or -ENOMEM (out then holds a
 * truncated text the caller must not send). */
int stats_write(struct buf *out, const struct stats_view *v);

#endif
