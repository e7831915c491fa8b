/* tally — what ws-server's worker processes (workers > 1) share: one
 * region of memory the supervisor maps (MAP_SHARED | MAP_ANONYMOUS)
 * before it forks, one slot per worker, each slot written by its worker
 * only (and reset by the supervisor once that worker is reaped).
 *
 * - Connections, for max_connections as a total over the workers: each
 *   worker keeps its count of connections (those of the /healthz reserve
 *   left out) in its slot. tally_admit() first raises the caller's own
 *   count, then sums every slot, both sequentially consistent, so of two
 *   workers admitting the last free place at the same instant at least one
 *   sees the other: the total is never exceeded (in that race both may
 *   refuse, one connection too early).
 * - Metrics, for one scrape showing the sum over the workers: each worker
 *   copies its counters (stats.h's struct stats_counts) into its slot
 *   every TALLY_PUBLISH_MS and before it answers a scrape; the worker that
 *   answers sums every slot and the counts of workers gone (added by the
 *   supervisor when it reaps one, gauges left out), so no counter ever
 *   goes backwards when a worker is replaced. Each value is a naturally
 *   aligned 64-bit word stored and loaded whole.
 *
 * No system call, no lock, no allocation after tally_map().
 */
#ifndef WSPUSH_TALLY_H
#define WSPUSH_TALLY_H

#include <stdint.h>
#include <sys/types.h>

#include "stats.h"

/* How often a worker refreshes its slot's counters for the others'
 * scrapes: what a scrape may lag behind another worker. */
#define TALLY_PUBLISH_MS 250

typedef struct tally tally_t;

/* Maps a zeroed region of nslots (>= 1) slots; supervisor is the pid whose
 * process metrics and start time a scrape shows besides the workers'.
 * Returns NULL with errno set. */
tally_t *tally_map(int nslots, pid_t supervisor);
/* Unmaps it in this process. NULL is ignored. */
void     tally_unmap(tally_t *t);

/* ---- in worker slot ---- */

/* May one more connection be admitted, mine being the caller's own count
 * before it? Returns 1 (the slot now holds mine + 1) when the total over
 * every slot stays within max, else 0 (the slot holds mine). */
int  tally_admit(tally_t *t, int slot, uint64_t mine, uint64_t max);
/* The caller's count now (after closes, or an admitted connection that
 * did not open). */
void tally_connections(tally_t *t, int slot, uint64_t mine);
/* Publishes the caller's counters. */
void tally_publish(tally_t *t, int slot, const struct stats_counts *c);
/* The sum over every slot and the workers gone. */
void tally_sum(const tally_t *t, struct stats_counts *out);
/* The process metrics of the supervisor and every running worker summed
 * (the start time is the supervisor's; CPU includes the workers gone). */
void tally_process(const tally_t *t, struct stats_process *p);

/* ---- in the supervisor ---- */

/* Slot's worker is pid from now. */
void tally_started(tally_t *t, int slot, pid_t pid);
/* Slot's worker is gone after cpu_us of CPU time: its counters are kept
 * among the gone, its slot emptied for the next worker. */
void tally_retire(tally_t *t, int slot, uint64_t cpu_us);

#endif
