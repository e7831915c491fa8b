#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "buf.h"
#include "procstat.h"
#include "promwrite.h"

/* 10 us .. 2.5 s: a fan-out to a few connections takes microseconds,
 * one to a hundred thousand tens of milliseconds. */
const uint64_t stats_hist_bounds_ns[STATS_HIST_BUCKETS - 1] = {
    10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
    10000000, 25000000, 50000000, 100000000, 250000000, 500000000, 1000000000,
    2500000000ull,
};

static const int stats_close_codes[STATS_CLOSE_OTHER] = { STATS_CLOSE_CODES_LIST };

_Static_assert(sizeof(stats_close_codes) / sizeof(stats_close_codes[0]) == STATS_CLOSE_OTHER,
               "STATS_CLOSE_OTHER is the number of listed close codes");

static const char *const stats_refusal_names[STATS_REFUSALS] = {
    [STATS_REFUSED_ORIGIN] = "origin",
    [STATS_REFUSED_TOKEN] = "token",
    [STATS_REFUSED_CHANNELS] = "channels",
    [STATS_REFUSED_NOT_COVERED] = "not_covered",
    [STATS_REFUSED_LIMIT] = "limit",
    [STATS_REFUSED_PER_IP] = "per_ip",
    [STATS_REFUSED_VERSION] = "version",
    [STATS_REFUSED_BAD_REQUEST] = "bad_request",
};

int stats_close_slot(int code)
{
    for (int i = 0; i < STATS_CLOSE_OTHER; i++)
        if (stats_close_codes[i] == code)
            return i;
    return STATS_CLOSE_OTHER;
}

/* ---- the exposition ---- */

/* Seconds of CPU time or since the epoch: clock ticks are 1/100 s, and
 * %g would round a start time to 10 s. */
static int stats_seconds(struct buf *out, const char *name, const char *labels, double v)
{
    return buf_printf(out, "%s%s %.3f\n", name, labels, v);
}

static int stats_counter(struct buf *out, const char *name, const char *help, uint64_t v)
{
    return prom_write_family(out, name, "counter", help) | prom_write_u64(out, name, "", v);
}

static int stats_gauge(struct buf *out, const char *name, const char *help, uint64_t v)
{
    return prom_write_family(out, name, "gauge", help) | prom_write_u64(out, name, "", v);
}

static int stats_hist_write(struct buf *out, const char *name, const char *help,
                            const struct stats_hist *h)
{
    return prom_write_family(out, name, "histogram", help) |
           prom_write_histogram(out, name, "", h->bucket, stats_hist_bounds_ns, STATS_HIST_BUCKETS,
                                h->sum_ns);
}

int stats_write(struct buf *out, const struct stats_view *v)
{
    char lab[64];
    int rc = 0;

    rc |= prom_write_family(out, "wspush_connections", "gauge", "Open subscriber connections.");
    rc |= prom_write_u64(out, "wspush_connections", "{transport=\"ws\"}", v->conn->open);
    rc |= prom_write_u64(out, "wspush_connections", "{transport=\"sse\"}", v->conn->sse_open);
    rc |= prom_write_family(out, "wspush_connections_accepted_total", "counter",
                       "Subscriber connections accepted (WebSocket upgrades answered 101, event streams answered 200).");
    rc |= prom_write_u64(out, "wspush_connections_accepted_total", "{transport=\"ws\"}", v->conn->accepted);
    rc |= prom_write_u64(out, "wspush_connections_accepted_total", "{transport=\"sse\"}", v->conn->sse_accepted);

    rc |= prom_write_family(out, "wspush_handshakes_refused_total", "counter",
                       "Subscribers refused before the upgrade or at subscribe, by reason.");
    for (int i = 0; i < STATS_REFUSALS; i++) {
        uint64_t n = v->conn->refused.n[i] + v->server->refused.n[i] + v->session->refused.n[i];
        snprintf(lab, sizeof(lab), "{reason=\"%s\"}", stats_refusal_names[i]);
        rc |= prom_write_u64(out, "wspush_handshakes_refused_total", lab, n);
    }

    rc |= prom_write_family(out, "wspush_connections_closed_total", "counter",
                       "Subscriber connections closed, by close code (1006: no close frame).");
    for (int i = 0; i < STATS_CLOSE_SLOTS; i++) {
        if (i < STATS_CLOSE_OTHER)
            snprintf(lab, sizeof(lab), "{code=\"%d\"}", stats_close_codes[i]);
        else
            snprintf(lab, sizeof(lab), "{code=\"other\"}");
        rc |= prom_write_u64(out, "wspush_connections_closed_total", lab, v->conn->closed[i]);
    }

    rc |= stats_counter(out, "wspush_deflate_connections_total",
                        "WebSocket upgrades that negotiated permessage-deflate.", v->conn->deflate_upgrades);
    rc |= prom_write_family(out, "wspush_deflate_messages_total", "counter",
                       "Message x channel encodings made for permessage-deflate (once each, shared), "
                       "by result: compressed, or plain when compressing did not make it smaller.");
    rc |= prom_write_u64(out, "wspush_deflate_messages_total", "{result=\"compressed\"}", v->conn->deflate_compressed);
    rc |= prom_write_u64(out, "wspush_deflate_messages_total", "{result=\"plain\"}", v->conn->deflate_plain);
    rc |= stats_counter(out, "wspush_deflate_input_bytes_total",
                        "Payload bytes of the compressed encodings before compression.",
                        v->conn->deflate_in_bytes);
    rc |= stats_counter(out, "wspush_deflate_output_bytes_total",
                        "Payload bytes of the compressed encodings after compression.",
                        v->conn->deflate_out_bytes);

    rc |= stats_gauge(out, "wspush_channels", "Channels with at least one subscriber.", v->channels);
    rc |= stats_gauge(out, "wspush_subscriptions", "Subscriptions: (connection, channel) pairs.",
                      v->hub->subscriptions);
    rc |= stats_counter(out, "wspush_messages_published_total",
                        "Messages accepted (one per publish, whatever the channel count).", v->published);
    rc |= stats_counter(out, "wspush_deliveries_total",
                        "Message x channel x connection queued live (the ack's count); replay not included.",
                        v->hub->deliveries);
    rc |= stats_counter(out, "wspush_delivery_bytes_total",
                        "Envelope bytes of those deliveries (WebSocket framing not included).",
                        v->hub->delivery_bytes);
    rc |= stats_counter(out, "wspush_replayed_messages_total",
                        "Message x channel queued on resume (last_id).", v->session->replayed);

    rc |= prom_write_family(out, "wspush_resumes_total", "counter",
                       "Resumes with last_id, by outcome: exact (every channel replayed) or reset.");
    rc |= prom_write_u64(out, "wspush_resumes_total", "{outcome=\"exact\"}", v->session->resumes_exact);
    rc |= prom_write_u64(out, "wspush_resumes_total", "{outcome=\"reset\"}", v->session->resumes_reset);

    rc |= stats_gauge(out, "wspush_history_messages", "Messages held in history by the engine on this node.",
                      v->history_messages);
    rc |= stats_gauge(out, "wspush_history_bytes", "Bytes held in history by the engine on this node.",
                      v->history_bytes);

    rc |= prom_write_family(out, "wspush_publish_socket_requests_total", "counter",
                       "Requests on the publish socket, by answer.");
    rc |= prom_write_u64(out, "wspush_publish_socket_requests_total", "{result=\"ok\"}", v->pubsock->ok);
    rc |= prom_write_u64(out, "wspush_publish_socket_requests_total", "{result=\"refused\"}", v->pubsock->refused);
    rc |= prom_write_u64(out, "wspush_publish_socket_requests_total", "{result=\"error\"}", v->pubsock->error);

    rc |= prom_write_family(out, "wspush_tls_handshakes_total", "counter",
                       "TLS handshakes on tls_listen, by result (failed: refused, broken, timed out or abandoned).");
    rc |= prom_write_u64(out, "wspush_tls_handshakes_total", "{result=\"ok\"}", v->tls->handshakes_ok);
    rc |= prom_write_u64(out, "wspush_tls_handshakes_total", "{result=\"failed\"}", v->tls->handshakes_failed);

    if (v->redis) {
        const struct stats_redis *r = v->redis;
        rc |= prom_write_family(out, "wspush_redis_up", "gauge",
                           "Connections to Redis ready, by link (with workers: workers whose link is ready).");
        rc |= prom_write_u64(out, "wspush_redis_up", "{link=\"commands\"}", r->up_commands);
        rc |= prom_write_u64(out, "wspush_redis_up", "{link=\"pubsub\"}", r->up_pubsub);
        rc |= stats_counter(out, "wspush_redis_reconnects_total",
                            "Connections to Redis made ready again after the first of their kind.",
                            r->reconnects);
        rc |= stats_counter(out, "wspush_redis_epoch_changes_total",
                            "Connected to another Redis server than before (restart, failover): "
                            "a new epoch, writes may have been lost.", r->epoch_changes);
        rc |= prom_write_family(out, "wspush_redis_catchups_total", "counter",
                           "Channels that missed PUB/SUB copies, by result: recovered from their stream, "
                           "or reset.");
        rc |= prom_write_u64(out, "wspush_redis_catchups_total", "{result=\"recovered\"}", r->catchups_recovered);
        rc |= prom_write_u64(out, "wspush_redis_catchups_total", "{result=\"reset\"}", r->catchups_reset);
        rc |= stats_counter(out, "wspush_redis_probe_failures_total",
                            "Liveness probes not seen back on the PUB/SUB connection within command_timeout.",
                            r->probe_failures);
    }

    rc |= stats_hist_write(out, "wspush_fanout_seconds",
                           "From a publish read off the publish socket to its frame queued to the last local subscriber.",
                           &v->pubsock->fanout);

    const struct stats_process *p = &v->process;
    rc |= stats_gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", p->rss_bytes);
    rc |= prom_write_family(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    rc |= stats_seconds(out, "process_cpu_seconds_total", "", p->cpu_seconds);
    rc |= stats_gauge(out, "process_open_fds", "Number of open file descriptors.", p->open_fds);
    rc |= prom_write_family(out, "process_start_time_seconds", "gauge",
                       "Start time of the process since unix epoch in seconds.");
    rc |= stats_seconds(out, "process_start_time_seconds", "", p->start_time);
    return rc ? -ENOMEM : 0;
}

/* ---- /proc/self ---- */

int stats_process_read(struct stats_process *p)
{
    struct procstat ps;
    int rc = procstat_read(0, &ps);
    *p = (struct stats_process){ .rss_bytes = ps.rss_bytes, .cpu_seconds = ps.cpu_seconds,
                                 .open_fds = ps.open_fds, .start_time = ps.start_time };
    return rc;
}

_Static_assert(sizeof(struct stats_counts) % sizeof(uint64_t) == 0,
               "stats_counts is summed as uint64_t words");

void stats_counts_of(const struct stats_view *v, struct stats_counts *c)
{
    *c = (struct stats_counts){
        .conn = *v->conn, .server = *v->server, .session = *v->session, .hub = *v->hub,
        .pubsock = *v->pubsock, .tls = *v->tls,
        .redis = v->redis ? *v->redis : (struct stats_redis){ 0 }, .published = v->published,
        .channels = v->channels, .history_messages = v->history_messages,
        .history_bytes = v->history_bytes,
    };
}

void stats_view_of(struct stats_view *v, const struct stats_counts *c)
{
    v->conn = &c->conn;
    v->server = &c->server;
    v->session = &c->session;
    v->hub = &c->hub;
    v->pubsock = &c->pubsock;
    v->tls = &c->tls;
    v->redis = v->redis ? &c->redis : NULL;
    v->published = c->published;
    v->channels = c->channels;
    v->history_messages = c->history_messages;
    v->history_bytes = c->history_bytes;
}

void stats_counts_drop_gauges(struct stats_counts *c)
{
    c->conn.open = 0;
    c->conn.sse_open = 0;
    c->hub.subscriptions = 0;
    c->channels = 0;
    c->history_messages = 0;
    c->history_bytes = 0;
    c->redis.up_commands = 0;
    c->redis.up_pubsub = 0;
}
