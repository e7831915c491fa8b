/* promwrite — writing the Prometheus text exposition (format 0.0.4): a
 * family's HELP and TYPE lines, one sample, a histogram's samples.
 * ws-server's metrics (stats.c) and fcgi-publisher's (pubstats.c) are
 * written with it; reading a scrape is promtext.h's.
 */
#ifndef WSPUSH_PROMWRITE_H
#define WSPUSH_PROMWRITE_H

#include <stdint.h>

#include "buf.h"

/* Each returns 0, or -1 out of memory (what was written stays). */

/* "# HELP name help" and "# TYPE name type". */
int prom_write_family(struct buf *out, const char *name, const char *type, const char *help);

/* "name{labels} v"; labels is "" or written with its braces. */
int prom_write_u64(struct buf *out, const char *name, const char *labels, uint64_t v);

/* A histogram's buckets, sum and count (its family written before):
 * counts[i] observations in bucket i, whose upper bound is bounds_ns[i]
 * nanoseconds, the last (i = n - 1) +Inf; sum_ns their sum, written exact
 * to the nanosecond however large (a short double would lose the
 * resolution rate() needs). labels: "" or key="value" pairs without
 * braces, put before le. */
int prom_write_histogram(struct buf *out, const char *name, const char *labels,
                         const uint64_t *counts, const uint64_t *bounds_ns, int n, uint64_t sum_ns);

#endif
