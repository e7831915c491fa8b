/* fcgi-publisher's FastCGI side against libfcgi (tests/diff/fcgi_diff.h):
 * each input is a byte stream a web server might send on one connection;
 * front (front.c over fcgi.c, on its event loop) and libfcgi's
 * FCGX_Accept_r (in a forked child) read it from Unix sockets, and must
 * serve the same params and body or both refuse, but for the intended
 * differences docs/design.md lists (skips). A difference, a harness
 * failure, libfcgi dying (but of its own failed allocation, or after one
 * of its listed faults that desynchronise its reading) or either side
 * hanging is a crash. The libfcgi child dies by SIGABRT's default, not
 * through libFuzzer's handler: what it wrote to stderr tells the harness
 * why, and only the verdict of this process makes a crash and an
 * artifact.
 *
 * max_params is 2048 here, so short inputs reach the 431 of a request
 * head over the limit. Inputs over FDIFF_MAX_INPUT are ignored (the
 * stream is written whole into the socket before either side reads).
 *
 * libfcgi runs in a forked child of this process, and its allocations go
 * through the sanitizer's malloc, which libFuzzer caps at -malloc_limit_mb
 * (by default -rss_limit_mb, 2048): past it, the child would report an
 * out-of-memory of its own and write an artifact. Where the harness
 * predicts a pair longer than a stream can hold (fcgi_diff.c), front is
 * run first, and libfcgi only if front serves (its real answer then
 * decides). But after one of its faults (tests/diff/fcgi_diff.h: it
 * reads padding as a header...) libfcgi can read any length the harness
 * did not see and allocate it (their int sum, up to 2 GiB) before finding
 * the stream too short; where that sum overflows it asks for a size near
 * 2^64, which the sanitizer refuses (NULL here: the fuzz stage sets
 * allocator_may_return_null=1), and its Malloc asserts: a skip
 * (FDIFF_SKIP_LIB_HUGE, front judged against libfcgi refusing, as it
 * would have). LLVMFuzzerInitialize raises the cap to 5 GiB: that memory
 * is only reserved, never touched, and -rss_limit_mb still bounds what
 * is used. FUZZ_VERBOSE=1 prints each verdict.
 *
 * The input is the record stream itself, no selector byte. */
#include <stdlib.h>
#include <string.h>

#include "../diff/fcgi_diff.h"
#include "fuzz.h"

#define FFL_PARAMS_LIMIT 2048

int LLVMFuzzerInitialize(int *argc, char ***argv);

static fdiff_t *ffl_harness;

static void ffl_cleanup(void) { fdiff_free(ffl_harness); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* Appended last, so it wins over an earlier -malloc_limit_mb. */
    static char limit[] = "-malloc_limit_mb=5120";
    char **args = calloc((size_t)*argc + 2, sizeof *args);
    FUZZ_CHECK(args != NULL);
    memcpy(args, *argv, (size_t)*argc * sizeof *args);
    args[(*argc)++] = limit;
    *argv = args;
    ffl_harness = fdiff_new();
    FUZZ_CHECK(ffl_harness != NULL);
    atexit(ffl_cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fdiff_report r;
    if (size > FDIFF_MAX_INPUT)
        return 0;
    enum fdiff_verdict v = fdiff_run(ffl_harness, data, size, FFL_PARAMS_LIMIT, &r);
    if (getenv("FUZZ_VERBOSE") || v == FDIFF_DIFFERENT || v == FDIFF_ERROR)
        fprintf(stderr, "fuzz_fcgi_libfcgi: %s%s%s\n", fdiff_verdict_name(v), r.why[0] ? ": " : "",
                r.why);
    FUZZ_CHECK(v != FDIFF_DIFFERENT);
    FUZZ_CHECK(v != FDIFF_ERROR);
    return 0;
}
