#include "pmdeflate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* memLevel 8 is zlib's default: 128 KiB of hash tables. A bigger one
 * buys almost nothing on messages of a few KiB. */
#define PMD_MEM_LEVEL 8

struct pmd {
    z_stream s;
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
    if (pmd_init(&z->s, z->level) < 0) {
        free(z);
        return NULL;
    }
    return z;
}

void pmd_free(pmd_t *z)
{
    if (!z)
        return;
    deflateEnd(&z->s);
    free(z);
}

/* Called right after deflateReset(): nothing is buffered, so the new
 * level applies from the first byte of the message. */
static int pmd_set_level(pmd_t *z, int level)
{
    level = pmd_clamp(level);
    if (level == z->level)
        return 0;
    if (deflateParams(&z->s, level, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    z->level = level;
    return 0;
}

ssize_t pmd_compress(pmd_t *z, int level, const void *in, size_t len,
                     unsigned char *out, size_t cap)
{
    if (deflateReset(&z->s) != Z_OK || pmd_set_level(z, level) < 0)
        return PMD_E_ZLIB;
    /* uInt is 32 bits: messages are bounded by max_message_bytes (64 MiB
     * at most), far below. */
    if (len > UINT32_MAX - PMD_TAIL || cap > UINT32_MAX - PMD_TAIL)
        return PMD_E_NOT_SMALLER;
    z->s.next_in = (Bytef *)(uintptr_t)in;
    z->s.avail_in = (uInt)len;
    z->s.next_out = out;
    z->s.avail_out = (uInt)(cap + PMD_TAIL);
    int rc = deflate(&z->s, Z_SYNC_FLUSH);
    /* With room left over the flush is complete (zlib's rule for
     * Z_SYNC_FLUSH); a full buffer means the output is cap + 4 bytes or
     * more, so the frame would not be smaller. */
    if (rc == Z_BUF_ERROR || (rc == Z_OK && z->s.avail_out == 0))
        return PMD_E_NOT_SMALLER;
    if (rc != Z_OK || z->s.avail_in != 0)
        return PMD_E_ZLIB;
    size_t n = cap + PMD_TAIL - z->s.avail_out;
    /* A sync flush ends in an empty stored block, whose last bytes are
     * LEN 0000 and NLEN ffff. */
    if (n < PMD_TAIL || memcmp(out + n - PMD_TAIL, pmd_tail, PMD_TAIL) != 0)
        return PMD_E_ZLIB;
    return (ssize_t)(n - PMD_TAIL);
}
