/* guard — test inputs placed so they end right before a PROT_NONE page: a
 * parser that reads one byte past its (buf, len) crashes instead of
 * passing. Include after <cmocka.h>. */
#ifndef WSPUSH_TEST_GUARD_H
#define WSPUSH_TEST_GUARD_H

#include <string.h>
#include <sys/mman.h>

struct guard { unsigned char *base; size_t page; };

/* `size` readable bytes followed by `size` inaccessible ones. */
static inline struct guard guard_new(size_t size)
{
    struct guard g;
    g.page = size;
    g.base = mmap(NULL, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g.base != MAP_FAILED);
    assert_int_equal(mprotect(g.base + size, size, PROT_NONE), 0);
    return g;
}

/* Copies n bytes to end just before the inaccessible page. */
static inline const void *guard_put(struct guard *g, const void *p, size_t n)
{
    assert_true(n <= g->page);
    unsigned char *dst = g->base + g->page - n;
    if (n)
        memcpy(dst, p, n);
    return dst;
}

static inline void guard_free(struct guard *g) { munmap(g->base, 2 * g->page); }

#endif
