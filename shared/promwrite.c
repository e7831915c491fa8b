#include "promwrite.h"

int prom_write_family(struct buf *out, const char *name, const char *type, const char *help)
{
    return buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type) < 0 ? -1 : 0;
}

int prom_write_u64(struct buf *out, const char *name, const char *labels, uint64_t v)
{
    return buf_printf(out, "%s%s %llu\n", name, labels, (unsigned long long)v) < 0 ? -1 : 0;
}

int prom_write_histogram(struct buf *out, const char *name, const char *labels,
                         const uint64_t *counts, const uint64_t *bounds_ns, int n, uint64_t sum_ns)
{
    const char *sep = labels[0] ? "," : "";
    uint64_t cum = 0;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        cum += counts[i];
        if (i < n - 1)
            rc |= buf_printf(out, "%s_bucket{%s%sle=\"%.9g\"} %llu\n", name, labels, sep,
                             (double)bounds_ns[i] / 1e9, (unsigned long long)cum);
        else
            rc |= buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                             (unsigned long long)cum);
    }
    const char *lb = labels[0] ? "{" : "", *rb = labels[0] ? "}" : "";
    rc |= buf_printf(out, "%s_sum%s%s%s %llu.%09llu\n", name, lb, labels, rb,
                     (unsigned long long)(sum_ns / 1000000000u),
                     (unsigned long long)(sum_ns % 1000000000u));
    rc |= buf_printf(out, "%s_count%s%s%s %llu\n", name, lb, labels, rb, (unsigned long long)cum);
    return rc < 0 ? -1 : 0;
}
