#include "pubstats.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buf.h"
#include "procstat.h"
#include "promwrite.h"

/* 100 us .. 10 s: a token is issued in microseconds, a publish waits for
 * ws-server's ack (sub-millisecond on one host) up to ack_timeout. */
const uint64_t pubstats_bounds_ns[PUBSTATS_BUCKETS - 1] = {
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
    100000000, 250000000, 500000000, 1000000000, 2500000000ull, 10000000000ull,
};

static const int pubstats_codes[PUBSTATS_CODE_OTHER] = { PUBSTATS_CODES_LIST };

_Static_assert(sizeof(pubstats_codes) / sizeof(pubstats_codes[0]) == PUBSTATS_CODE_OTHER,
               "PUBSTATS_CODE_OTHER is the number of listed codes");

static const char *const pubstats_endpoint_names[PUBSTATS_ENDPOINTS] = {
    [PUBSTATS_PUBLISH] = "publish",
    [PUBSTATS_TOKEN] = "token",
    [PUBSTATS_OTHER] = "other",
};

struct pubstats {
    size_t               size;        /* of the mapping */
    pid_t                supervisor;
    int                  nslots;
    struct pubstats_slot slot[];
};

int pubstats_code_slot(int code)
{
    for (int i = 0; i < PUBSTATS_CODE_OTHER; i++)
        if (pubstats_codes[i] == code)
            return i;
    return PUBSTATS_CODE_OTHER;
}

void pubstats_observe(struct pubstats_hist *h, uint64_t ns)
{
    int i = 0;
    while (i < PUBSTATS_BUCKETS - 1 && ns > pubstats_bounds_ns[i])
        i++;
    pubstats_add(&h->bucket[i], 1);
    pubstats_add(&h->sum_ns, ns);
}

void pubstats_request(struct pubstats_slot *s, enum pubstats_endpoint e, int status, uint64_t ns)
{
    pubstats_add(&s->requests[e][pubstats_code_slot(status)], 1);
    pubstats_observe(&s->duration[e], ns);
}

void pubstats_link(void *ctx, int up)
{
    struct pubstats_slot *s = ctx;
    pubstats_set(&s->link_up, up ? 1 : 0);
    if (up)
        pubstats_add(&s->link_connects, 1);
}

pubstats_t *pubstats_map(int nslots, pid_t supervisor)
{
    if (nslots < 1 || nslots > PUBSTATS_SLOTS_MAX) {
        errno = EINVAL;
        return NULL;
    }
    size_t size = sizeof(struct pubstats) + (size_t)nslots * sizeof(struct pubstats_slot);
    /* Anonymous memory comes zeroed. */
    pubstats_t *s = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED)
        return NULL;
    s->size = size;
    s->supervisor = supervisor;
    s->nslots = nslots;
    return s;
}

void pubstats_unmap(pubstats_t *s)
{
    if (s)
        munmap(s, s->size);
}

struct pubstats_slot *pubstats_slot(pubstats_t *s, int i)
{
    return &s->slot[i];
}

static uint64_t pubstats_load(const uint64_t *v)
{
    return __atomic_load_n(v, __ATOMIC_RELAXED);
}

uint64_t pubstats_links_up(const pubstats_t *s)
{
    uint64_t n = 0;
    for (int i = 0; i < s->nslots; i++)
        n += pubstats_load(&s->slot[i].link_up);
    return n;
}

/* ---- the exposition ---- */

static int pubstats_counter(struct buf *out, const char *name, const char *type, const char *help,
                            uint64_t v)
{
    return prom_write_family(out, name, type, help) | prom_write_u64(out, name, "", v);
}

/* The histogram hists[0..n-1] summed, under labels (e.g. endpoint="x",
 * or "" for none). */
static int pubstats_hist_write(struct buf *out, const char *name, const char *labels,
                               const struct pubstats_hist *const *hists, int n)
{
    uint64_t counts[PUBSTATS_BUCKETS] = { 0 }, sum_ns = 0;
    for (int k = 0; k < n; k++) {
        for (int b = 0; b < PUBSTATS_BUCKETS; b++)
            counts[b] += pubstats_load(&hists[k]->bucket[b]);
        sum_ns += pubstats_load(&hists[k]->sum_ns);
    }
    return prom_write_histogram(out, name, labels, counts, pubstats_bounds_ns, PUBSTATS_BUCKETS,
                                sum_ns);
}

/* The process metrics: the supervisor's (or this process's) plus every
 * slot's running worker. A worker gone between the supervisor's record
 * and the read is left out. */
static void pubstats_processes(const pubstats_t *s, struct procstat *total)
{
    pid_t self = getpid();
    struct procstat p;
    /* A file that cannot be read leaves zeros: the rest is still shown. */
    (void)procstat_read(s->supervisor > 0 && s->supervisor != self ? s->supervisor : 0, total);
    if (s->supervisor <= 0)
        return;
    for (int i = 0; i < s->nslots; i++) {
        total->cpu_seconds += (double)pubstats_load(&s->slot[i].gone_cpu_us) / 1e6;
        pid_t pid = __atomic_load_n(&s->slot[i].pid, __ATOMIC_RELAXED);
        if (pid <= 0 || pid == s->supervisor)
            continue;
        if (procstat_read(pid == self ? 0 : pid, &p) == -ENOENT)
            continue;
        total->rss_bytes += p.rss_bytes;
        total->cpu_seconds += p.cpu_seconds;
        total->open_fds += p.open_fds;
    }
}

int pubstats_write(struct buf *out, const pubstats_t *s)
{
    char lab[64];
    int rc = 0;
    uint64_t links = 0, reconnects = 0, tokens = 0;
    for (int i = 0; i < s->nslots; i++) {
        const struct pubstats_slot *sl = &s->slot[i];
        uint64_t c = pubstats_load(&sl->link_connects);
        links += pubstats_load(&sl->link_up);
        /* A slot's first connection is not a reconnect; those of a worker
         * started in its place are. */
        reconnects += c ? c - 1 : 0;
        tokens += pubstats_load(&sl->tokens_issued);
    }

    rc |= prom_write_family(out, "wspush_publisher_requests_total", "counter",
                          "fcgi-publisher answers, by endpoint and HTTP status.");
    for (int e = 0; e < PUBSTATS_ENDPOINTS; e++) {
        for (int k = 0; k < PUBSTATS_CODE_SLOTS; k++) {
            uint64_t n = 0;
            for (int i = 0; i < s->nslots; i++)
                n += pubstats_load(&s->slot[i].requests[e][k]);
            if (k < PUBSTATS_CODE_OTHER)
                snprintf(lab, sizeof(lab), "{endpoint=\"%s\",code=\"%d\"}", pubstats_endpoint_names[e],
                         pubstats_codes[k]);
            else
                snprintf(lab, sizeof(lab), "{endpoint=\"%s\",code=\"other\"}", pubstats_endpoint_names[e]);
            rc |= buf_printf(out, "wspush_publisher_requests_total%s %llu\n", lab, (unsigned long long)n);
        }
    }

    const struct pubstats_hist *hists[PUBSTATS_SLOTS_MAX];
    rc |= prom_write_family(out, "wspush_publisher_request_duration_seconds", "histogram",
                          "FastCGI request in (complete) to answer out, by endpoint.");
    for (int e = 0; e < PUBSTATS_ENDPOINTS; e++) {
        for (int i = 0; i < s->nslots; i++)
            hists[i] = &s->slot[i].duration[e];
        snprintf(lab, sizeof(lab), "endpoint=\"%s\"", pubstats_endpoint_names[e]);
        rc |= pubstats_hist_write(out, "wspush_publisher_request_duration_seconds", lab, hists, s->nslots);
    }
    rc |= prom_write_family(out, "wspush_publisher_ack_wait_seconds", "histogram",
                          "From a publish queued to ws-server to its answer.");
    for (int i = 0; i < s->nslots; i++)
        hists[i] = &s->slot[i].ack_wait;
    rc |= pubstats_hist_write(out, "wspush_publisher_ack_wait_seconds", "", hists, s->nslots);

    rc |= pubstats_counter(out, "wspush_publisher_link_up", "gauge",
                           "Worker processes connected to ws-server's publish socket.", links);
    rc |= pubstats_counter(out, "wspush_publisher_link_reconnects_total", "counter",
                           "Connections to ws-server made after a worker's first.", reconnects);
    rc |= pubstats_counter(out, "wspush_publisher_tokens_issued_total", "counter",
                           "Subscribe tokens issued by /token.", tokens);

    struct procstat p;
    pubstats_processes(s, &p);
    rc |= pubstats_counter(out, "process_resident_memory_bytes", "gauge",
                           "Resident memory size in bytes.", p.rss_bytes);
    rc |= prom_write_family(out, "process_cpu_seconds_total", "counter",
                          "Total user and system CPU time spent in seconds.");
    rc |= buf_printf(out, "process_cpu_seconds_total %.3f\n", p.cpu_seconds);
    rc |= pubstats_counter(out, "process_open_fds", "gauge", "Number of open file descriptors.",
                           p.open_fds);
    rc |= prom_write_family(out, "process_start_time_seconds", "gauge",
                          "Start time of the process since unix epoch in seconds.");
    rc |= buf_printf(out, "process_start_time_seconds %.3f\n", p.start_time);
    return rc ? -ENOMEM : 0;
}
