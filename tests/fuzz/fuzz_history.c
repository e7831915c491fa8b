/* fuzz_history: the two files ws-server reads back at start, history_file
 * (history_load) and its revocations (revoke_load), from arbitrary bytes.
 * Oracles: no crash or leak; a refused file leaves the history empty and
 * the revocation table as it was; an accepted history saves and loads
 * again to the same entries and bytes.
 *
 * The bytes go through a memfd (a regular file to file_read_all) named by
 * /proc/self/fd, so the real loaders run, file reading included. The first
 * input byte picks the loader; the checksum is not forced, so seeds built
 * by tests/fuzz/gen_corpus.py carry valid ones. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "channel.h"
#include "fuzz.h"
#include "history.h"
#include "revoke.h"

static void fhist_id(uint32_t epoch, uint64_t seq, char out[MSG_ID_MAX])
{
    snprintf(out, MSG_ID_MAX, "%x-%llu", (unsigned)epoch, (unsigned long long)seq);
}

static int fhist_file(const uint8_t *p, size_t n, char path[64])
{
    int fd = memfd_create("fuzz_history", 0);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, p, n) == (ssize_t)n);
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

static void fhist_history(const uint8_t *p, size_t n)
{
    char path[64], err[512];
    int fd = fhist_file(p, n, path);
    chan_registry_t *reg = chan_registry_new();
    struct history_limits lim = { 100000, 1L << 30, 0 };
    history_t *h = history_new(reg, &lim);
    uint32_t epoch;
    uint64_t seq;
    if (history_load(h, path, fhist_id, &epoch, &seq, 1000, err, sizeof(err)) < 0) {
        FUZZ_CHECK(history_entries(h) == 0 && history_bytes(h) == 0);
        FUZZ_CHECK(chan_registry_size(reg) == 0);
    } else {
        /* Save to a second memfd and load it into a fresh history. */
        int fd2 = memfd_create("fuzz_history2", 0);
        char path2[64];
        snprintf(path2, sizeof(path2), "/proc/self/fd/%d", fd2);
        if (history_save(h, path2, epoch, seq, 1000, err, sizeof(err)) == 0) {
            chan_registry_t *reg2 = chan_registry_new();
            history_t *h2 = history_new(reg2, &lim);
            uint32_t e2;
            uint64_t s2;
            FUZZ_CHECK(history_load(h2, path2, fhist_id, &e2, &s2, 1000, err, sizeof(err)) == 0);
            FUZZ_CHECK(e2 == epoch && s2 == seq);
            FUZZ_CHECK(history_entries(h2) == history_entries(h));
            FUZZ_CHECK(history_bytes(h2) == history_bytes(h));
            history_free(h2);
            chan_registry_free(reg2);
        }
        close(fd2);
    }
    history_free(h);
    chan_registry_free(reg);
    close(fd);
}

static void fhist_revoke(const uint8_t *p, size_t n)
{
    char path[64], err[512];
    int fd = fhist_file(p, n, path);
    struct revoke_limits lim = { 1000, 100 };
    revoke_t *r = revoke_new(&lim, 77);
    if (revoke_load(r, path, 500, err, sizeof(err)) < 0) {
        FUZZ_CHECK(revoke_count(r) == 0 && revoke_not_before(r) == 77);
    } else {
        FUZZ_CHECK(revoke_count(r) <= lim.max_users);
    }
    revoke_free(r);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        fhist_revoke(data + 1, size - 1);
    else
        fhist_history(data + 1, size - 1);
    return 0;
}
