#include "pmdeflate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* memLevel 8 is zlib's default: 128 KiB of hash tables. A bigger one
 * buys almost nothing on messages of a few KiB. */
#define PMD_MEM_LEVEL 8

/* Two stream slots: a level change builds the new stream in the idle one
 * (zlib's state points back at its z_stream, so a stream cannot be moved
 * by copying it). */
struct pmd {
    z_stream slot[2];
    int      cur;       /* slot[cur] is the live stream */
    int      level;
};

static const unsigned char pmd_tail[PMD_TAIL] = { 0x00, 0x00, 0xff, 0xff };

static int pmd_clamp(int level)
{
    return level < PMD_LEVEL_MIN ? PMD_LEVEL_MIN : level > PMD_LEVEL_MAX ? PMD_LEVEL_MAX : level;
}

/* Negative windowBits: raw DEFLATE, no zlib header or checksum. */
static int pmd_init(z_stream *s, int level)
{
    memset(s, 0, sizeof(*s));
    return deflateInit2(s, level, Z_DEFLATED, -PMD_WINDOW_BITS, PMD_MEM_LEVEL,
                        Z_DEFAULT_STRATEGY) == Z_OK ? 0 : -1;
}

pmd_t *pmd_new(int level)
{
    pmd_t *z = malloc(sizeof(*z));
    if (!z)
        return NULL;
    z->level = pmd_clamp(level);
    z->cur = 0;
    if (pmd_init(&z->slot[0], z->level) < 0) {
        free(z);
        return NULL;
    }
    return z;
}

void pmd_free(pmd_t *z)
{
    if (!z)
        return;
    deflateEnd(&z->slot[z->cur]);
    free(z);
}

/* A new level (a reload changed it) gets a new stream rather than
 * deflateParams(): that call right after deflateReset() is only safe from
 * zlib 1.2.12 on, and this happens once per reload. The new stream is made
 * first, so on failure z keeps the old one. */
static int pmd_set_level(pmd_t *z, int level)
{
    level = pmd_clamp(level);
    if (level == z->level)
        return 0;
    int next = !z->cur;
    if (pmd_init(&z->slot[next], level) < 0)
        return -1;
    deflateEnd(&z->slot[z->cur]);
    z->cur = next;
    z->level = level;
    return 0;
}

ssize_t pmd_compress(pmd_t *z, int level, const void *in, size_t len,
                     unsigned char *out, size_t cap)
{
    if (pmd_set_level(z, level) < 0)
        return PMD_E_ZLIB;
    z_stream *zs = &z->slot[z->cur];
    if (deflateReset(zs) != Z_OK)
        return PMD_E_ZLIB;
    /* uInt is 32 bits: messages are bounded by max_message_bytes (64 MiB
     * at most), far below. */
    if (len > UINT32_MAX - PMD_TAIL || cap > UINT32_MAX - PMD_TAIL)
        return PMD_E_NOT_SMALLER;
    zs->next_in = (Bytef *)(uintptr_t)in;
    zs->avail_in = (uInt)len;
    zs->next_out = out;
    zs->avail_out = (uInt)(cap + PMD_TAIL);
    int rc = deflate(zs, Z_SYNC_FLUSH);
    /* With room left over the flush is complete (zlib's rule for
     * Z_SYNC_FLUSH); a full buffer means the output is cap + 4 bytes or
     * more, so the frame would not be smaller. */
    if (rc == Z_BUF_ERROR || (rc == Z_OK && zs->avail_out == 0))
        return PMD_E_NOT_SMALLER;
    if (rc != Z_OK || zs->avail_in != 0)
        return PMD_E_ZLIB;
    size_t n = cap + PMD_TAIL - zs->avail_out;
    /* A sync flush ends in an empty stored block, whose last bytes are
     * LEN 0000 and NLEN ffff. */
    if (n < PMD_TAIL || memcmp(out + n - PMD_TAIL, pmd_tail, PMD_TAIL) != 0)
        return PMD_E_ZLIB;
    return (ssize_t)(n - PMD_TAIL);
}
