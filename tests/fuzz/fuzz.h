/* fuzz — what every libFuzzer target here shares: an oracle failure is a
 * crash (abort), so libFuzzer keeps the input like any sanitizer report. */
#ifndef WSPUSH_FUZZ_H
#define WSPUSH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond) do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort(); \
        } \
    } while (0)

/* 1 if [p, p+n) lies inside [base, base+len). */
static inline int fuzz_inside(const void *p, size_t n, const void *base, size_t len)
{
    const char *q = p, *b = base;
    if (n == 0)
        return 1;
    return q >= b && q <= b + len && n <= (size_t)(b + len - q);
}

#endif
