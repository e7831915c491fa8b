/* pubstats — fcgi-publisher's counters, shared by its worker processes,
 * and the Prometheus text exposition (format 0.0.4) of their sum.
 *
 * The supervisor maps one region (MAP_SHARED | MAP_ANONYMOUS) before it
 * forks, so every worker inherits it: one struct pubstats_slot per worker,
 * written only by that worker, with plain adds (no system call, no
 * allocation, no lock: one writer per slot). A worker that dies leaves its
 * counts in its slot and the one started in its place goes on adding to
 * them, so a sum never goes backwards. Gauges (link_up) are reset by the
 * supervisor when it reaps the slot's worker.
 *
 * Any process that maps the region may render it: the worker that accepts
 * a scrape on metrics_listen sums every slot, and reads /proc/<pid> of the
 * supervisor and of each worker pid recorded in the slots for the process
 * metrics. A reader may see a slot mid-update: each value is a naturally
 * aligned 64-bit word (read whole), a histogram's count is the sum of the
 * buckets read, so a scrape is consistent in itself.
 *
 * On fd 0 (mod_fcgid, spawn-fcgi: no supervisor) the region has one slot,
 * and a scrape shows that one process only.
 *
 * No label value comes from a request: endpoint and code take the fixed
 * values below.
 */
#ifndef WSPUSH_PUBSTATS_H
#define WSPUSH_PUBSTATS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct buf;

/* Label endpoint of the request metrics. */
enum pubstats_endpoint {
    PUBSTATS_PUBLISH = 0,         /* {mount}/publish (OPTIONS included) */
    PUBSTATS_TOKEN,               /* {mount}/token */
    PUBSTATS_OTHER,               /* anything else (404, a refused head) */
    PUBSTATS_ENDPOINTS
};

/* The statuses the responder answers, each its own code label value; any
 * other is counted as "other". */
#define PUBSTATS_CODES_LIST 200, 204, 400, 401, 403, 404, 405, 411, 413, 415, 431, 500, 503, 504
enum { PUBSTATS_CODE_OTHER = 14, PUBSTATS_CODE_SLOTS = 15 };

/* The slot of HTTP status code (PUBSTATS_CODE_OTHER when not listed). */
int pubstats_code_slot(int code);

/* A latency histogram: counts per bucket (not cumulative), bounds
 * pubstats_bounds_ns, the last bucket +Inf. */
#define PUBSTATS_BUCKETS 16
struct pubstats_hist {
    uint64_t bucket[PUBSTATS_BUCKETS];
    uint64_t sum_ns;
};
extern const uint64_t pubstats_bounds_ns[PUBSTATS_BUCKETS - 1];

/* One worker's counters. pid is the worker's (0: none running). */
struct pubstats_slot {
    pid_t    pid;
    uint64_t requests[PUBSTATS_ENDPOINTS][PUBSTATS_CODE_SLOTS];
    struct pubstats_hist duration[PUBSTATS_ENDPOINTS]; /* request in -> answer out */
    struct pubstats_hist ack_wait;    /* publish queued -> ws-server's answer */
    uint64_t link_up;                 /* gauge: 1 while connected to ws-server */
    uint64_t link_connects;           /* connections made to ws-server */
    uint64_t tokens_issued;
    /* Written by the supervisor when it reaps the slot's worker: the CPU
     * time of the workers that ran in the slot and are gone, so
     * process_cpu_seconds_total never goes backwards either. */
    uint64_t gone_cpu_us;
};

/* Single writer: a load and a store, never a locked instruction. */
static inline void pubstats_add(uint64_t *v, uint64_t n)
{
    __atomic_store_n(v, __atomic_load_n(v, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void pubstats_set(uint64_t *v, uint64_t n)
{
    __atomic_store_n(v, n, __ATOMIC_RELAXED);
}

void pubstats_observe(struct pubstats_hist *h, uint64_t ns);

/* A request of endpoint answered with status after ns nanoseconds. */
void pubstats_request(struct pubstats_slot *s, enum pubstats_endpoint e, int status, uint64_t ns);

/* pubclient's link callback (ctx is the slot): up 1 on a connect, 0 when
 * the connection closes. */
void pubstats_link(void *ctx, int up);

typedef struct pubstats pubstats_t;

/* [publisher] workers is at most this (cfg.c). */
#define PUBSTATS_SLOTS_MAX 1024

/* Maps a zeroed shared region of nslots slots (1..PUBSTATS_SLOTS_MAX); supervisor is
 * the pid whose start time and /proc the scrape shows besides the slots'
 * (0: none, the fd-0 mode). Returns NULL with errno set. */
pubstats_t *pubstats_map(int nslots, pid_t supervisor);
/* Unmaps it (in this process only). NULL is ignored. */
void        pubstats_unmap(pubstats_t *s);
/* Slot i (0 <= i < nslots). */
struct pubstats_slot *pubstats_slot(pubstats_t *s, int i);
/* Sum of link_up over the slots (/readyz: > 0). */
uint64_t    pubstats_links_up(const pubstats_t *s);

/* Appends the exposition of the sum over every slot to out, with the
 * process metrics of the supervisor (or, without one, the calling
 * process) and of each slot's pid. Returns 0 or -ENOMEM (out then holds a
 * truncated text the caller must not send). No allocation but out's. */
int pubstats_write(struct buf *out, const pubstats_t *s);

#endif
