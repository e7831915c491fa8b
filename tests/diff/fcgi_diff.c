#include "fcgi_diff.h"

#include <errno.h>
#include <fcntl.h>
#include <fcgiapp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "ev.h"
#include "front.h"
#include "log.h"

/* How long one side may take on one stream before the harness gives up
 * (each finishes in well under a millisecond when all is well). */
#define FDIFF_WAIT_MS 10000

/* Record types and roles, spelled here rather than taken from fcgi.h: the
 * stream scan below is the harness's own reading of the protocol. */
enum { FD_BEGIN = 1, FD_PARAMS = 4, FD_STDIN = 5, FD_GET_VALUES = 9 };

struct fdiff {
    char dir[64];
    char lib_path[96], front_path[96];
    unsigned predict;         /* fdiff_predict */
};

/* What one side made of the stream. */
struct fdiff_side {
    int served;               /* else refused */
    int truncated;            /* front: params over the limits */
    struct buf params;        /* "name=value\0" for each, in order */
    size_t nparams;
    struct buf body;
};

/* A buffer's bytes; an empty buffer may hold no memory at all. */
static const char *fdiff_bytes(const struct buf *b) { return b->data ? buf_head(b) : ""; }

static void fdiff_side_free(struct fdiff_side *s)
{
    buf_free(&s->params);
    buf_free(&s->body);
}

static const char *const fdiff_names[FDIFF_VERDICTS] = {
    [FDIFF_SAME_SERVED] = "same-served",
    [FDIFF_SAME_REFUSED] = "same-refused",
    [FDIFF_SKIP_ROLE] = "skip-role",
    [FDIFF_SKIP_BEGIN_ID0] = "skip-begin-id0",
    [FDIFF_SKIP_BEGIN_AGAIN] = "skip-begin-again",
    [FDIFF_SKIP_OUT_OF_ORDER] = "skip-out-of-order",
    [FDIFF_SKIP_EMPTY_NAME] = "skip-empty-name",
    [FDIFF_SKIP_MAX_PARAMS] = "skip-max-params",
    [FDIFF_SKIP_GET_VALUES] = "skip-get-values",
    [FDIFF_SKIP_GET_VALUES_4] = "skip-get-values-4",
    [FDIFF_SKIP_LIB_HUGE] = "skip-lib-huge",
    [FDIFF_SKIP_LIB_PADDING] = "skip-lib-padding",
    [FDIFF_SKIP_LIB_MGMT_DATA] = "skip-lib-mgmt-data",
    [FDIFF_SKIP_LIB_SKIP_NEXT] = "skip-lib-skip-next",
    [FDIFF_SKIP_PADDING_CUT] = "skip-padding-cut",
    [FDIFF_DIFFERENT] = "different",
    [FDIFF_ERROR] = "error",
};

const char *fdiff_verdict_name(enum fdiff_verdict v)
{
    return (unsigned)v < FDIFF_VERDICTS ? fdiff_names[v] : "?";
}

/* ---- the stream as libfcgi reads it ------------------------------------ */

/* A pair list decoded the way libfcgi's ReadParams does (no limit but the
 * bytes there are; an empty name allowed). */
struct fdiff_pairs {
    size_t count;
    size_t known;             /* names GET_VALUES answers (cut as libfcgi cuts them) */
    int    empty_name;
    int    huge;              /* a pair's two lengths, once read, add up past
                                 FDIFF_MAX_INPUT, the pair cut or not */
    int    whole;             /* ends exactly after a pair */
};

static int fdiff_length(const uint8_t *p, size_t n, size_t *off, size_t *out)
{
    if (*off >= n)
        return 0;
    if (!(p[*off] & 0x80)) {
        *out = p[(*off)++];
        return 1;
    }
    if (n - *off < 4)
        return 0;
    *out = buf_get_u32(p + *off) & 0x7fffffffu;
    *off += 4;
    return 1;
}

static void fdiff_pairs(const uint8_t *p, size_t n, struct fdiff_pairs *out)
{
    static const char *const known[] = { "FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS" };
    size_t off = 0;
    memset(out, 0, sizeof *out);
    while (off < n) {
        size_t nl, vl;
        if (!fdiff_length(p, n, &off, &nl) || !fdiff_length(p, n, &off, &vl))
            return;
        /* libfcgi allocates for the pair as soon as it has both lengths. */
        out->huge |= nl + vl > FDIFF_MAX_INPUT;
        if (n - off < nl || n - off - nl < vl)
            return;
        const uint8_t *name = p + off;
        /* libfcgi keeps "name=value" as a C string and finds the name
         * again up to its first '=' (or the string's end). */
        size_t cut = 0;
        while (cut < nl && name[cut] != '=' && name[cut] != '\0')
            cut++;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            if (cut == strlen(known[k]) && memcmp(name, known[k], cut) == 0)
                out->known++;
        out->empty_name |= nl == 0;
        out->count++;
        off += nl + vl;
    }
    out->whole = 1;
}

/* libfcgi's skip flag (FillBuffProc, 2.4.2 to 2.4.7): it skips the
 * content of a record of another request (or of a BEGIN_REQUEST once it
 * has one) by setting a flag that only the end of skipped content clears.
 * After an empty such record the flag stays set, and the next record with
 * content, whatever it is, loses it: libfcgi's own PARAMS or STDIN, a
 * management record (a GET_VALUES then reads as empty), its first
 * BEGIN_REQUEST (it closes). SetReaderType clears it when a request
 * begins and when its params end; the caller does that. Returns whether
 * libfcgi drops the content of this record; *flag is the flag. */
static int fdiff_lib_drops(int *flag, unsigned type, unsigned rid, unsigned id, size_t clen)
{
    if (type == FD_BEGIN && (rid == 0 || clen != 8))
        return 0;                            /* it closes before any content */
    int skipped = type == FD_BEGIN ? id != 0 : rid != 0 && rid != id;
    if (clen == 0) {
        if (skipped)
            *flag = 1;
        return 0;
    }
    int drop = *flag && !skipped;
    *flag = 0;
    return drop;
}

/* What the stream holds that the two treat differently on purpose, found
 * by walking its records in order up to the end of the first request. */
struct fdiff_scan {
    enum fdiff_verdict cause;  /* the first skip reason met, FDIFF_SAME_SERVED if none */
    int    empty_name;         /* in the first request's params */
    size_t params_bytes;       /* the first request's PARAMS content */
    size_t params_count;       /* and the pairs in it, once it has ended */
};

static void fdiff_scan(const uint8_t *p, size_t n, struct fdiff_scan *s)
{
    enum { WAIT_BEGIN, IN_PARAMS, IN_STDIN } state = WAIT_BEGIN;
    unsigned id = 0;
    int lib_skip = 0;
    struct buf params = { 0 };
    size_t off = 0;
    memset(s, 0, sizeof *s);
    s->cause = FDIFF_SAME_SERVED;
    while (n - off >= 8 && p[off] == 1) {
        const uint8_t *h = p + off, *c = h + 8;
        unsigned type = h[1], rid = buf_get_u16(h + 2);
        size_t clen = buf_get_u16(h + 4), rest = n - off - 8;
        if (rest < clen + h[6]) {
            if (state == IN_STDIN && rid == id && type == FD_STDIN && clen == 0)
                s->cause = FDIFF_SKIP_PADDING_CUT;
            /* The content is whole and only its padding is cut: after the
             * BEGIN_REQUEST or the empty PARAMS record libfcgi reads that
             * padding as the next header all the same (its fault, below). */
            else if (rest >= clen && h[6] > 0 &&
                     ((type == FD_BEGIN && state == WAIT_BEGIN && rid != 0 && clen == 8 &&
                       buf_get_u16(c) == 1) ||
                      (type == FD_PARAMS && state == IN_PARAMS && rid == id && clen == 0)))
                s->cause = FDIFF_SKIP_LIB_PADDING;
            break;
        }
        off += 8 + clen + h[6];
        if (fdiff_lib_drops(&lib_skip, type, rid, id, clen)) {
            s->cause = FDIFF_SKIP_LIB_SKIP_NEXT;
            break;
        }
        if (type == FD_BEGIN) {
            if (rid == 0) {
                s->cause = FDIFF_SKIP_BEGIN_ID0;
                break;
            }
            if (clen != 8)
                break;                       /* both close the connection */
            if (state == WAIT_BEGIN) {
                if (buf_get_u16(c) != 1) {
                    s->cause = FDIFF_SKIP_ROLE;
                    break;
                }
                if (h[6] > 0) {
                    s->cause = FDIFF_SKIP_LIB_PADDING;
                    break;
                }
                state = IN_PARAMS;
                id = rid;
                lib_skip = 0;
            } else if (rid == id) {
                s->cause = FDIFF_SKIP_BEGIN_AGAIN;
                break;
            }
            continue;
        }
        if (rid == 0) {
            struct fdiff_pairs pv;
            if (type == FD_GET_VALUES && (fdiff_pairs(c, clen, &pv), !pv.whole)) {
                s->cause = FDIFF_SKIP_GET_VALUES;
                break;
            }
            if (type != FD_GET_VALUES && clen > 0) {
                s->cause = FDIFF_SKIP_LIB_MGMT_DATA;
                break;
            }
            continue;
        }
        if (state == WAIT_BEGIN || rid != id)
            continue;
        if (type != (state == IN_PARAMS ? FD_PARAMS : FD_STDIN)) {
            s->cause = FDIFF_SKIP_OUT_OF_ORDER;
            break;
        }
        if (state == IN_STDIN && clen == 0)
            break;                           /* the request is complete */
        if (state == IN_STDIN)
            continue;
        if (clen == 0 && h[6] > 0) {
            s->cause = FDIFF_SKIP_LIB_PADDING;
            break;
        }
        if (clen == 0) {
            struct fdiff_pairs pp;
            fdiff_pairs((const uint8_t *)fdiff_bytes(&params), buf_used(&params), &pp);
            s->empty_name = pp.empty_name;
            s->params_count = pp.count;
            state = IN_STDIN;
            lib_skip = 0;
            continue;
        }
        s->params_bytes += clen;
        if (buf_append(&params, c, clen) < 0)
            break;
    }
    buf_free(&params);
}

/* Whether libfcgi must not be given the stream, and why:
 *  - FDIFF_SKIP_GET_VALUES_4: a GET_VALUES names 4 or more of the
 *    variables libfcgi answers, and its answer, built in a 64-byte array
 *    on the stack, overruns it (libfcgi 2.4.2 to 2.4.7);
 *  - FDIFF_SKIP_LIB_HUGE: a pair of a GET_VALUES or of the first request's
 *    params whose lengths add up past FDIFF_MAX_INPUT: libfcgi allocates
 *    their sum before reading the bytes (up to 2 GiB), and where the int
 *    sum overflows it aborts (Debian's 2.4.2-2+deb12u1; fixed in 2.4.7).
 *    No stream here can hold such a pair.
 * Records are read as libfcgi does, a cut one as far as it goes, the
 * content its skip flag drops left out (fdiff_lib_drops); 0 when the
 * stream is safe to give. Where libfcgi's reading leaves the records'
 * bounds (FDIFF_SKIP_LIB_PADDING) this cannot follow it: its death then
 * is that fault's, and any other death of a failed allocation is caught
 * after the fact (fdiff_lib_died_of_malloc). */
static enum fdiff_verdict fdiff_lib_unsafe(const uint8_t *p, size_t n, unsigned predict)
{
    struct buf params = { 0 };
    struct fdiff_pairs pv;
    enum fdiff_verdict why = 0;
    unsigned id = 0;
    int params_open = 0, lib_skip = 0;
    size_t off = 0;
    while (!why && n - off >= 8 && p[off] == 1) {
        const uint8_t *h = p + off;
        unsigned type = h[1], rid = buf_get_u16(h + 2);
        size_t clen = buf_get_u16(h + 4), rest = n - off - 8;
        size_t have = rest < clen ? rest : clen;
        if (fdiff_lib_drops(&lib_skip, type, rid, id, clen)) {
            /* its content is skipped, not read */
        } else if (type == FD_GET_VALUES && rid == 0) {
            fdiff_pairs(h + 8, have, &pv);
            if (pv.huge)
                why = FDIFF_SKIP_LIB_HUGE;
            else if (pv.whole && have == clen && pv.known >= 4)
                why = FDIFF_SKIP_GET_VALUES_4;
            if (!(predict & FDIFF_PREDICT(why)))
                why = 0;
        } else if (type == FD_BEGIN && rid != 0 && !id) {
            id = rid;
            params_open = 1;
            lib_skip = 0;
        } else if (type == FD_PARAMS && rid == id && params_open) {
            params_open = clen > 0;
            lib_skip &= params_open;
            if (buf_append(&params, h + 8, have) < 0)
                why = FDIFF_SKIP_LIB_HUGE;  /* cannot tell: do not risk it */
        } else if (rid == 0 && type != FD_GET_VALUES && clen > 0 && params_open) {
            /* libfcgi reads such a record's content as the stream's data
             * (FDIFF_SKIP_LIB_MGMT_DATA): here as params, pairs and all. */
            if (buf_append(&params, h + 8, have) < 0)
                why = FDIFF_SKIP_LIB_HUGE;
        }
        if (rest < clen + h[6])
            break;
        off += 8 + clen + h[6];
    }
    if (!why && (predict & FDIFF_PREDICT(FDIFF_SKIP_LIB_HUGE))) {
        fdiff_pairs((const uint8_t *)fdiff_bytes(&params), buf_used(&params), &pv);
        if (pv.huge)
            why = FDIFF_SKIP_LIB_HUGE;
    }
    buf_free(&params);
    return why;
}

/* ---- sockets ----------------------------------------------------------- */

static int fdiff_listen(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    unlink(path);
    /* Non-blocking: once libfcgi has closed the one connection it looks
     * for another, and must find none instead of waiting for it. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Connects to path, writes the whole stream and shuts the write side:
 * the server reads it all and then the end. The client stays
 * non-blocking, to be drained of the server's answers. */
static int fdiff_client(const char *path, const void *buf, size_t len)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int sz = 4 * FDIFF_MAX_INPUT;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        goto fail;
    const char *q = buf;
    while (len > 0) {
        ssize_t k = send(fd, q, len, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            goto fail;                       /* EAGAIN: over the socket's buffer */
        q += k;
        len -= (size_t)k;
    }
    if (shutdown(fd, SHUT_WR) < 0)
        goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

/* Reads and drops what is there; 1 at the end of the stream or on an
 * error, 0 when it would block. */
static int fdiff_drain(int fd)
{
    char trash[4096];
    for (;;) {
        ssize_t k = recv(fd, trash, sizeof trash, 0);
        if (k > 0)
            continue;
        if (k < 0 && errno == EINTR)
            continue;
        return k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : 1;
    }
}

static uint64_t fdiff_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- libfcgi, in a child ----------------------------------------------- */

static int fdiff_put_str(struct buf *b, const void *p, size_t n)
{
    unsigned char len[4];
    buf_put_u32(len, (uint32_t)n);
    return buf_append(b, len, 4) < 0 || buf_append(b, p, n) < 0 ? -1 : 0;
}

/* The child: accepts, reads, and writes to out
 *   'R'                                   refused
 *   'S' u32 n, n x (u32 len, bytes), u32 len, body   served
 * then exits without running the parent's exit handlers. Its stderr is
 * err; an abort kills it (SIGABRT's default), instead of reaching the
 * fuzzer's handler, which would report the child's death as a crash of
 * its own and write the input out before the parent has judged it. */
static void fdiff_child(int listen_fd, int out, int err)
{
    FCGX_Request req;
    struct buf res = { 0 }, body = { 0 };
    char c = 'R';
    signal(SIGABRT, SIG_DFL);
    if (dup2(err, STDERR_FILENO) < 0)
        _exit(2);
    if (FCGX_Init() != 0 || FCGX_InitRequest(&req, listen_fd, 0) != 0)
        _exit(2);
    if (FCGX_Accept_r(&req) == 0) {
        char chunk[4096];
        int k;
        while ((k = FCGX_GetStr(chunk, sizeof chunk, req.in)) > 0)
            if (buf_append(&body, chunk, (size_t)k) < 0)
                _exit(2);
        if (FCGX_GetError(req.in) == 0) {
            uint32_t n = 0;
            for (char **e = req.envp; *e; e++)
                n++;
            unsigned char nb[4];
            buf_put_u32(nb, n);
            c = 'S';
            if (buf_append(&res, &c, 1) < 0 || buf_append(&res, nb, 4) < 0)
                _exit(2);
            for (char **e = req.envp; *e; e++)
                if (fdiff_put_str(&res, *e, strlen(*e)) < 0)
                    _exit(2);
            if (fdiff_put_str(&res, fdiff_bytes(&body), buf_used(&body)) < 0)
                _exit(2);
        }
    }
    if (c == 'R' && buf_append(&res, &c, 1) < 0)
        _exit(2);
    const char *q = buf_head(&res);
    size_t left = buf_used(&res);
    while (left > 0) {
        ssize_t k = write(out, q, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            _exit(2);
        q += k;
        left -= (size_t)k;
    }
    _exit(0);
}

static int fdiff_get_str(const struct buf *b, size_t *off, const char **p, size_t *n)
{
    if (buf_used(b) - *off < 4)
        return -1;
    *n = buf_get_u32((const unsigned char *)buf_head(b) + *off);
    *off += 4;
    if (buf_used(b) - *off < *n)
        return -1;
    *p = buf_head(b) + *off;
    *off += *n;
    return 0;
}

/* Decodes the child's answer into s; libfcgi's own first param (the role
 * it was asked for, FCGI_ROLE=...) is left out. Returns 0, or -1 when the
 * answer is cut. */
static int fdiff_lib_result(const struct buf *res, struct fdiff_side *s)
{
    static const char nul = '\0', role[] = "FCGI_ROLE=";
    if (buf_used(res) == 1 && buf_head(res)[0] == 'R')
        return 0;
    if (buf_used(res) < 5 || buf_head(res)[0] != 'S')
        return -1;
    uint32_t n = buf_get_u32((const unsigned char *)buf_head(res) + 1);
    size_t off = 5;
    for (uint32_t i = 0; i < n; i++) {
        const char *p;
        size_t len;
        if (fdiff_get_str(res, &off, &p, &len) < 0)
            return -1;
        if (i == 0) {
            if (len < sizeof role - 1 || memcmp(p, role, sizeof role - 1) != 0)
                return -1;
            continue;
        }
        if (buf_append(&s->params, p, len) < 0 || buf_append(&s->params, &nul, 1) < 0)
            return -1;
        s->nparams++;
    }
    const char *body;
    size_t blen;
    if (fdiff_get_str(res, &off, &body, &blen) < 0 || buf_append(&s->body, body, blen) < 0)
        return -1;
    s->served = 1;
    return off == buf_used(res) ? 0 : -1;
}

/* What the child wrote to its stderr is kept up to this much. */
#define FDIFF_STDERR_MAX (16 * 1024)

/* Whether the child, dead with status, died of libfcgi's own failed
 * allocation, by what it wrote to its stderr (err, a C string):
 *  - libfcgi's Malloc asserting that malloc gave memory (glibc's message
 *    names the function and the expression), and the abort that follows:
 *    malloc returned NULL, as the sanitizer's allocator does for a size
 *    past its maximum with allocator_may_return_null=1 (the fuzz stage's
 *    setting), and as glibc does when the kernel refuses the memory;
 *  - a sanitizer's report of a malloc it would not serve (a size past its
 *    maximum, out of memory, libFuzzer's -malloc_limit_mb), where the
 *    frame calling malloc is in libfcgi.
 * The only sizes libfcgi takes from the stream are a pair's two lengths
 * (ReadParams: their int sum, negative when it overflows, so a size near
 * 2^64); the rest are constants. */
static int fdiff_lib_died_of_malloc(int status, const char *err)
{
    static const char *const reports[] = {
        "AddressSanitizer: requested allocation size", /* allocation-size-too-big */
        "AddressSanitizer: out of memory",
        "AddressSanitizer: allocator is out of memory",
        "libFuzzer: out-of-memory (malloc(",
    };
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(err, "fcgiapp.c:") &&
        strstr(err, ": Malloc: Assertion `size == 0 || result != "))
        return 1;
    for (size_t i = 0; i < sizeof reports / sizeof reports[0]; i++) {
        const char *at = strstr(err, reports[i]), *in_malloc;
        if (!at)
            continue;
        /* The stack trace: the frame in malloc (its interceptor's name
         * with gcc, malloc's with clang), then its caller's. */
        if (!(in_malloc = strstr(at, " in malloc ")) &&
            !(in_malloc = strstr(at, " in __interceptor_malloc ")))
            continue;
        const char *caller = strchr(in_malloc, '\n'), *end, *lib;
        if (!caller)
            continue;
        end = strchr(caller + 1, '\n');
        lib = strstr(caller + 1, "libfcgi.so");
        if (lib && (!end || lib < end))
            return 1;
    }
    return 0;
}

/* Runs libfcgi on the stream into s. Returns 0; -2 when the child died
 * (what it wrote to its stderr is then in *said, a C string), -3 when it
 * died of libfcgi's own failed allocation (fdiff_lib_died_of_malloc); -1
 * on another failure (r->why says). */
static int fdiff_libfcgi(fdiff_t *d, const void *buf, size_t len, struct fdiff_side *s,
                         struct buf *said, struct fdiff_report *r)
{
    int lfd = -1, cfd = -1, pfd[2] = { -1, -1 }, efd[2] = { -1, -1 }, rc = -1;
    pid_t pid = -1;
    struct buf res = { 0 }, err = { 0 };
    if ((lfd = fdiff_listen(d->lib_path)) < 0 || (cfd = fdiff_client(d->lib_path, buf, len)) < 0 ||
        pipe2(pfd, O_CLOEXEC) < 0 || pipe2(efd, O_CLOEXEC) < 0) {
        snprintf(r->why, sizeof r->why, "libfcgi side: sockets: %s", strerror(errno));
        goto out;
    }
    pid = fork();
    if (pid < 0) {
        snprintf(r->why, sizeof r->why, "fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0) {
        close(pfd[0]);
        close(efd[0]);
        fdiff_child(lfd, pfd[1], efd[1]);
    }
    close(pfd[1]);
    close(efd[1]);
    pfd[1] = efd[1] = -1;
    /* The child's answers to the web server (END_REQUEST, UNKNOWN_TYPE...)
     * are drained meanwhile: libfcgi writes them blocking; so is its
     * stderr, to its end (a sanitizer's report is written before it dies). */
    uint64_t until = fdiff_ms() + FDIFF_WAIT_MS;
    int pipe_open = 1, sock_open = 1, err_open = 1;
    while (pipe_open || err_open) {
        uint64_t now = fdiff_ms();
        if (now >= until) {
            snprintf(r->why, sizeof r->why, "libfcgi took over %d ms", FDIFF_WAIT_MS);
            kill(pid, SIGKILL);
            goto out;
        }
        struct pollfd fds[3] = { { pipe_open ? pfd[0] : -1, POLLIN, 0 },
                                 { err_open ? efd[0] : -1, POLLIN, 0 },
                                 { sock_open ? cfd : -1, POLLIN, 0 } };
        if (poll(fds, 3, (int)(until - now)) < 0 && errno != EINTR)
            goto out;
        if (fds[2].revents && fdiff_drain(cfd))
            sock_open = 0;
        if (fds[1].revents) {
            char chunk[4096];
            ssize_t k = read(efd[0], chunk, sizeof chunk);
            size_t keep = k > 0 && buf_used(&err) < FDIFF_STDERR_MAX ? (size_t)k : 0;
            if (keep > FDIFF_STDERR_MAX - buf_used(&err))
                keep = FDIFF_STDERR_MAX - buf_used(&err);
            if (keep > 0 && buf_append(&err, chunk, keep) < 0)
                goto out;
            if (k == 0 || (k < 0 && errno != EINTR))
                err_open = 0;
        }
        if (fds[0].revents) {
            if (buf_reserve(&res, 4096) < 0)
                goto out;
            ssize_t k = read(pfd[0], res.data + res.len, res.cap - res.len);
            if (k > 0)
                res.len += (size_t)k;
            else if (k == 0 || errno != EINTR)
                pipe_open = 0;
        }
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    pid = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        static const char nul = '\0';
        if (buf_append(&err, &nul, 1) < 0)
            goto out;
        snprintf(r->why, sizeof r->why, "the libfcgi child died (%s %d)%s",
                 WIFSIGNALED(status) ? "signal" : "status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                 buf_used(&err) > 1 ? ", its stderr above" : "");
        rc = fdiff_lib_died_of_malloc(status, buf_head(&err)) ? -3 : -2;
        if (rc == -3)
            snprintf(r->why, sizeof r->why, "the libfcgi child died of a failed allocation");
        *said = err;
        err = (struct buf){ 0 };
        goto out;
    }
    if (fdiff_lib_result(&res, s) < 0) {
        snprintf(r->why, sizeof r->why, "libfcgi side: a cut answer from the child");
        goto out;
    }
    rc = 0;
out:
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    if (lfd >= 0)
        close(lfd);
    if (cfd >= 0)
        close(cfd);
    if (pfd[0] >= 0)
        close(pfd[0]);
    if (pfd[1] >= 0)
        close(pfd[1]);
    if (efd[0] >= 0)
        close(efd[0]);
    if (efd[1] >= 0)
        close(efd[1]);
    buf_free(&res);
    buf_free(&err);
    return rc;
}

/* ---- front, on its event loop ------------------------------------------ */

struct fdiff_front {
    ev_loop_t       *loop;
    front_t         *front;
    struct fdiff_side *side;
    struct ev_io     client;
    struct ev_timer  deadline;
    struct ev_hook   flush;
    int              done, failed, timed_out;
};

static void fdiff_on_request(void *ctx, struct front_req *req)
{
    struct fdiff_front *f = ctx;
    static const char nul = '\0';
    if (f->done)
        return;                              /* only the first request counts */
    for (int i = 0; i < front_param_count(req); i++) {
        const char *name, *value;
        size_t nl, vl;
        front_param_at(req, i, &name, &nl, &value, &vl);
        /* libfcgi's form of the pair, cut at the first NUL byte. */
        size_t start = buf_used(&f->side->params);
        if (buf_append(&f->side->params, name, nl) < 0 || buf_append(&f->side->params, "=", 1) < 0 ||
            buf_append(&f->side->params, value, vl) < 0) {
            f->failed = 1;
            break;
        }
        size_t cut = strnlen(buf_head(&f->side->params) + start, nl + 1 + vl);
        f->side->params.len = f->side->params.off + start + cut;
        if (buf_append(&f->side->params, &nul, 1) < 0)
            f->failed = 1;
        f->side->nparams++;
    }
    size_t kept, sent;
    const char *body = front_body(req, &kept, &sent);
    if (kept != sent || buf_append(&f->side->body, body, kept) < 0)
        f->failed = 1;
    f->side->served = 1;
    f->side->truncated = front_req_truncated(req);
    f->done = 1;
    ev_stop(f->loop);
}

static void fdiff_on_cancel(void *ctx, struct front_req *req)
{
    (void)ctx;
    (void)req;
}

/* The web server's end: front's answers are read and dropped; the end of
 * the stream is front closing the connection. */
static void fdiff_client_io(ev_loop_t *loop, struct ev_io *io, unsigned events)
{
    (void)events;
    struct fdiff_front *f = ev_container_of(io, struct fdiff_front, client);
    if (fdiff_drain(io->fd)) {
        ev_io_stop(loop, io);
        f->done = 1;
        ev_stop(loop);
    }
}

static void fdiff_deadline(ev_loop_t *loop, struct ev_timer *t)
{
    struct fdiff_front *f = ev_container_of(t, struct fdiff_front, deadline);
    f->timed_out = 1;
    ev_stop(loop);
}

static void fdiff_flush(ev_loop_t *loop, void *data)
{
    (void)loop;
    struct fdiff_front *f = data;
    front_flush(f->front);
}

static int fdiff_front(fdiff_t *d, const void *buf, size_t len, size_t params_limit,
                       struct fdiff_side *s, struct fdiff_report *r)
{
    char err[128];
    int lfd = -1, cfd = -1, rc = -1;
    struct fdiff_front f = { .side = s };
    struct front_limits lim = { .body = FDIFF_MAX_INPUT + 1, .params = params_limit,
                                .stall_ms = FDIFF_WAIT_MS };
    struct front_handlers h = { fdiff_on_request, fdiff_on_cancel, &f };
    if (!(f.loop = ev_loop_new(err, sizeof err))) {
        snprintf(r->why, sizeof r->why, "front side: %s", err);
        return -1;
    }
    if ((lfd = fdiff_listen(d->front_path)) < 0 || (cfd = fdiff_client(d->front_path, buf, len)) < 0 ||
        !(f.front = front_new(f.loop, lfd, &lim, &h)) ||
        ev_io_start(f.loop, &f.client, cfd, EV_READ, fdiff_client_io) < 0 ||
        ev_timer_start(f.loop, &f.deadline, FDIFF_WAIT_MS, fdiff_deadline) < 0) {
        snprintf(r->why, sizeof r->why, "front side: setting up: %s", strerror(errno));
        goto out;
    }
    ev_after_add(f.loop, &f.flush, fdiff_flush, &f);
    while (!f.done && !f.timed_out)
        if (ev_run(f.loop) < 0)
            break;
    ev_after_remove(f.loop, &f.flush);
    if (f.timed_out || !f.done) {
        snprintf(r->why, sizeof r->why, "front neither served nor closed in %d ms", FDIFF_WAIT_MS);
        goto out;
    }
    if (f.failed) {
        snprintf(r->why, sizeof r->why, "front side: out of memory, or a body not kept whole");
        goto out;
    }
    rc = 0;
out:
    if (f.client.events)
        ev_io_stop(f.loop, &f.client);
    ev_timer_stop(f.loop, &f.deadline);
    front_free(f.front);
    if (lfd >= 0)
        close(lfd);
    if (cfd >= 0)
        close(cfd);
    ev_loop_free(f.loop);
    return rc;
}

/* ---- the comparison ---------------------------------------------------- */

/* The first difference between two served results, into why; 0 if none. */
static int fdiff_compare(const struct fdiff_side *fr, const struct fdiff_side *lib, char *why,
                         size_t n)
{
    const char *a = fdiff_bytes(&fr->params), *b = fdiff_bytes(&lib->params);
    size_t i;
    for (i = 0; i < fr->nparams && i < lib->nparams; i++) {
        if (strcmp(a, b) != 0) {
            snprintf(why, n, "param %zu: front \"%.80s\", libfcgi \"%.80s\"", i, a, b);
            return 1;
        }
        a += strlen(a) + 1;
        b += strlen(b) + 1;
    }
    if (fr->nparams != lib->nparams) {
        snprintf(why, n, "front has %zu params, libfcgi %zu", fr->nparams, lib->nparams);
        return 1;
    }
    if (buf_used(&fr->body) != buf_used(&lib->body) ||
        (buf_used(&fr->body) > 0 &&
         memcmp(buf_head(&fr->body), buf_head(&lib->body), buf_used(&fr->body)) != 0)) {
        snprintf(why, n, "body: front %zu bytes, libfcgi %zu", buf_used(&fr->body),
                 buf_used(&lib->body));
        return 1;
    }
    return 0;
}

static enum fdiff_verdict fdiff_judge(const struct fdiff_scan *sc, size_t params_limit,
                                      const struct fdiff_side *fr, const struct fdiff_side *lib,
                                      struct fdiff_report *r)
{
    int fr_served = fr->served && !fr->truncated;
    if (fr_served && lib->served) {
        if (!fdiff_compare(fr, lib, r->why, sizeof r->why))
            return FDIFF_SAME_SERVED;
    } else if (!fr_served && !lib->served) {
        return FDIFF_SAME_REFUSED;
    } else {
        snprintf(r->why, sizeof r->why, "front %s, libfcgi %s",
                 fr->truncated ? "refused (431)" : fr_served ? "served" : "refused",
                 lib->served ? "served" : "refused");
    }
    /* They differ: by design only when the stream holds the cause. */
    if (fr->truncated && lib->served &&
        (sc->params_bytes > params_limit || sc->params_count > FRONT_PARAMS_COUNT_MAX))
        return FDIFF_SKIP_MAX_PARAMS;
    if (sc->cause != FDIFF_SAME_SERVED)
        return sc->cause;
    if (sc->empty_name && !fr->served && lib->served)
        return FDIFF_SKIP_EMPTY_NAME;
    return FDIFF_DIFFERENT;
}

enum fdiff_verdict fdiff_run(fdiff_t *d, const void *buf, size_t len, size_t params_limit,
                             struct fdiff_report *r)
{
    struct fdiff_side fr = { 0 }, lib = { 0 };
    struct fdiff_scan sc;
    struct buf lib_said = { 0 };
    r->why[0] = '\0';
    r->verdict = FDIFF_ERROR;
    if (len > FDIFF_MAX_INPUT) {
        snprintf(r->why, sizeof r->why, "a stream of %zu bytes, over %d", len, FDIFF_MAX_INPUT);
        return r->verdict;
    }
    fdiff_scan(buf, len, &sc);
    enum fdiff_verdict unsafe = fdiff_lib_unsafe(buf, len, d->predict);
    int lib_rc = 0, lib_huge = 0, front_rc = 1;
    if (unsafe == FDIFF_SKIP_LIB_HUGE) {
        /* libfcgi would refuse: allocate up to 2 GiB (slow under a
         * sanitizer) and find the pair cut, or die of the allocation. So
         * front runs first, and refusing too settles it; serving, it needs
         * libfcgi's real answer (the prediction may see a pair libfcgi
         * never reads, after the request or past one of its faults). */
        if ((front_rc = fdiff_front(d, buf, len, params_limit, &fr, r)) < 0)
            goto out;
        if (!fr.served || fr.truncated) {
            r->verdict = unsafe;
            goto out;
        }
        unsafe = 0;
    }
    /* libfcgi before front where it can: its child must not inherit
     * front's loop and sockets (fdiff_front closes them all on return). */
    if (!unsafe)
        lib_rc = fdiff_libfcgi(d, buf, len, &lib, &lib_said, r);
    if (lib_rc < -1 && (sc.cause == FDIFF_SKIP_LIB_PADDING || sc.cause == FDIFF_SKIP_LIB_MGMT_DATA)) {
        /* libfcgi read bytes as headers or pairs that are not: whatever it
         * then did, even dying, is that fault's. */
        unsafe = sc.cause;
        lib_rc = 0;
    } else if (lib_rc == -3) {
        /* libfcgi died allocating for a pair longer than the stream: had
         * it got the memory, it would have found the pair cut, and closed
         * (ReadParams fails, in the params or in a GET_VALUES): it refused. */
        lib_huge = 1;
        lib_rc = 0;
    }
    if (lib_rc == 0 && front_rc > 0)
        front_rc = fdiff_front(d, buf, len, params_limit, &fr, r);
    if (lib_rc == 0 && front_rc == 0) {
        if (unsafe)
            r->verdict = unsafe;
        else
            r->verdict = fdiff_judge(&sc, params_limit, &fr, &lib, r);
        if (lib_huge && r->verdict == FDIFF_SAME_REFUSED)
            r->verdict = FDIFF_SKIP_LIB_HUGE;
        else if (lib_huge && r->verdict == FDIFF_DIFFERENT)
            snprintf(r->why + strlen(r->why), sizeof r->why - strlen(r->why),
                     " (libfcgi died allocating for a pair past the stream's end)");
    }
out:
    if (r->verdict == FDIFF_ERROR && buf_used(&lib_said) > 1)
        fprintf(stderr, "fcgi_diff: the libfcgi child's stderr:\n%s\n", buf_head(&lib_said));
    buf_free(&lib_said);
    fdiff_side_free(&fr);
    fdiff_side_free(&lib);
    return r->verdict;
}

/* ---- the harness ------------------------------------------------------- */

fdiff_t *fdiff_new(void)
{
    fdiff_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    const char *tmp = getenv("TMPDIR");
    snprintf(d->dir, sizeof d->dir, "%s/wspush-fdiff-XXXXXX",
             tmp && *tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    if (!mkdtemp(d->dir)) {
        free(d);
        return NULL;
    }
    /* front's warnings about the streams it refuses would be most of the
     * output; its errors still show. */
    log_set_level(LOG_ERROR);
    d->predict = FDIFF_PREDICT_ALL;
    snprintf(d->lib_path, sizeof d->lib_path, "%s/libfcgi.sock", d->dir);
    snprintf(d->front_path, sizeof d->front_path, "%s/front.sock", d->dir);
    return d;
}

void fdiff_predict(fdiff_t *d, unsigned which) { d->predict = which; }

void fdiff_free(fdiff_t *d)
{
    if (!d)
        return;
    unlink(d->lib_path);
    unlink(d->front_path);
    rmdir(d->dir);
    free(d);
}
