#include "tally.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "procstat.h"

struct tally_slot {
    pid_t    pid;                 /* 0: no worker running */
    uint64_t connections;
    uint64_t counts[STATS_COUNTS_WORDS];
};

struct tally {
    size_t   size;                /* of the mapping */
    pid_t    supervisor;
    int      nslots;
    uint64_t gone_cpu_us;         /* written by the supervisor only */
    uint64_t gone[STATS_COUNTS_WORDS];
    struct tally_slot slot[];
};

static uint64_t tally_load(const uint64_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }
static void tally_store(uint64_t *v, uint64_t n) { __atomic_store_n(v, n, __ATOMIC_RELAXED); }

tally_t *tally_map(int nslots, pid_t supervisor)
{
    if (nslots < 1) {
        errno = EINVAL;
        return NULL;
    }
    size_t size = sizeof(struct tally) + (size_t)nslots * sizeof(struct tally_slot);
    /* Anonymous memory comes zeroed. */
    tally_t *t = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED)
        return NULL;
    t->size = size;
    t->supervisor = supervisor;
    t->nslots = nslots;
    return t;
}

void tally_unmap(tally_t *t)
{
    if (t)
        munmap(t, t->size);
}

int tally_admit(tally_t *t, int slot, uint64_t mine, uint64_t max)
{
    /* Store, then load every slot, sequentially consistent (a full fence
     * between them): the Dekker pattern that makes concurrent admits see
     * each other. */
    __atomic_store_n(&t->slot[slot].connections, mine + 1, __ATOMIC_SEQ_CST);
    uint64_t total = 0;
    for (int i = 0; i < t->nslots; i++)
        total += __atomic_load_n(&t->slot[i].connections, __ATOMIC_SEQ_CST);
    if (total <= max)
        return 1;
    __atomic_store_n(&t->slot[slot].connections, mine, __ATOMIC_SEQ_CST);
    return 0;
}

void tally_connections(tally_t *t, int slot, uint64_t mine)
{
    __atomic_store_n(&t->slot[slot].connections, mine, __ATOMIC_SEQ_CST);
}

void tally_publish(tally_t *t, int slot, const struct stats_counts *c)
{
    const uint64_t *w = (const uint64_t *)c;
    uint64_t *to = t->slot[slot].counts;
    for (size_t i = 0; i < STATS_COUNTS_WORDS; i++)
        tally_store(&to[i], w[i]);
}

void tally_sum(const tally_t *t, struct stats_counts *out)
{
    uint64_t *w = (uint64_t *)out;
    for (size_t i = 0; i < STATS_COUNTS_WORDS; i++) {
        uint64_t n = tally_load(&t->gone[i]);
        for (int s = 0; s < t->nslots; s++)
            n += tally_load(&t->slot[s].counts[i]);
        w[i] = n;
    }
}

void tally_process(const tally_t *t, struct stats_process *p)
{
    struct procstat ps;
    /* A file that cannot be read leaves zeros: the rest is still shown. */
    (void)procstat_read(t->supervisor == getpid() ? 0 : t->supervisor, &ps);
    *p = (struct stats_process){ .rss_bytes = ps.rss_bytes, .open_fds = ps.open_fds,
                                 .cpu_seconds = ps.cpu_seconds + (double)tally_load(&t->gone_cpu_us) / 1e6,
                                 .start_time = ps.start_time };
    pid_t self = getpid();
    for (int i = 0; i < t->nslots; i++) {
        pid_t pid = __atomic_load_n(&t->slot[i].pid, __ATOMIC_RELAXED);
        if (pid <= 0 || procstat_read(pid == self ? 0 : pid, &ps) == -ENOENT)
            continue;
        p->rss_bytes += ps.rss_bytes;
        p->cpu_seconds += ps.cpu_seconds;
        p->open_fds += ps.open_fds;
    }
}

void tally_started(tally_t *t, int slot, pid_t pid)
{
    __atomic_store_n(&t->slot[slot].pid, pid, __ATOMIC_RELAXED);
}

void tally_retire(tally_t *t, int slot, uint64_t cpu_us)
{
    struct tally_slot *s = &t->slot[slot];
    struct stats_counts last;
    uint64_t *w = (uint64_t *)&last;
    for (size_t i = 0; i < STATS_COUNTS_WORDS; i++)
        w[i] = tally_load(&s->counts[i]);
    stats_counts_drop_gauges(&last);
    /* Added to the gone first, then the slot emptied: a scrape in between
     * counts the worker twice for a moment rather than drop it. */
    for (size_t i = 0; i < STATS_COUNTS_WORDS; i++)
        tally_store(&t->gone[i], tally_load(&t->gone[i]) + w[i]);
    tally_store(&t->gone_cpu_us, tally_load(&t->gone_cpu_us) + cpu_us);
    for (size_t i = 0; i < STATS_COUNTS_WORDS; i++)
        tally_store(&s->counts[i], 0);
    __atomic_store_n(&s->connections, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s->pid, 0, __ATOMIC_RELAXED);
}
