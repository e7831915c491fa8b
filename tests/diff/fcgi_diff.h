/* fcgi_diff — libfcgi as the oracle of fcgi-publisher's FastCGI side.
 *
 * One FastCGI byte stream (what a web server would send on one
 * connection, then end of file) goes to both:
 *  - front (fcgi-publisher/front.c over fcgi.c): a real front_t on a real
 *    event loop, accepting on a Unix socket; its first request handed to
 *    on_request is the result, or "refused" when the connection closes
 *    without one; a request whose params passed the limits (the 431 of
 *    max_params) counts as refused;
 *  - libfcgi: FCGX_Accept_r on a Unix socket, every param of the envp
 *    array and the body read with FCGX_GetStr to its end; "refused" when
 *    FCGX_Accept_r gives up (it closes a bad connection and finds no
 *    other) or the body ends in an error.
 * Both sockets live in a private temporary directory, made by the
 * harness (FCGX_OpenSocket would exit() on a failed bind); libfcgi's is
 * non-blocking, so once it has closed the one connection it finds no
 * other instead of waiting. libfcgi runs in a forked child per stream:
 * it blocks on its reads (the stream is written whole and the write side
 * shut down first, so it sees the end), it allocates whatever a 4-byte
 * pair length says, and it can abort; the child sends its result back
 * through a pipe while the parent drains what libfcgi writes to the web
 * server (its writes block too) and what the child writes to its stderr
 * (a death is told apart by it: libfcgi's failed allocation is a skip,
 * anything else an error, with that stderr shown).
 *
 * "The same" is: both served, with the same params in the same order
 * (each as libfcgi keeps it, "name=value" cut at its first NUL byte;
 * libfcgi's own FCGI_ROLE entry left out) and the same body bytes; or
 * both refused. Where the two disagree by design (docs/design.md, "libfcgi
 * as the oracle"), the verdict is a skip naming the reason, and only when
 * the stream holds what that reason is about and the results really
 * differ: a skip never covers an agreement, nor a stream without its
 * cause. Anything else is FDIFF_DIFFERENT.
 */
#ifndef WSPUSH_FCGI_DIFF_H
#define WSPUSH_FCGI_DIFF_H

#include <stddef.h>

/* The longest stream compared: written whole into the socket before
 * either side reads, it must fit the socket's buffer. */
#define FDIFF_MAX_INPUT (64 * 1024)

enum fdiff_verdict {
    FDIFF_SAME_SERVED,
    FDIFF_SAME_REFUSED,
    /* The intended differences, in the order of docs/design.md's table. */
    FDIFF_SKIP_ROLE,            /* the first BEGIN_REQUEST's role is not RESPONDER */
    FDIFF_SKIP_BEGIN_ID0,       /* a BEGIN_REQUEST with request id 0 */
    FDIFF_SKIP_BEGIN_AGAIN,     /* a BEGIN_REQUEST for the request under way */
    FDIFF_SKIP_OUT_OF_ORDER,    /* a record of the request that is not the next of its
                                   streams: STDIN, DATA, ABORT, another type before
                                   PARAMS ended; anything but STDIN after */
    FDIFF_SKIP_EMPTY_NAME,      /* a param with an empty name */
    FDIFF_SKIP_MAX_PARAMS,      /* params over the limit in bytes or FRONT_PARAMS_COUNT_MAX */
    FDIFF_SKIP_GET_VALUES,      /* a GET_VALUES that is not a whole list of pairs */
    /* libfcgi's own faults (2.4.2; most still in 2.4.7): */
    FDIFF_SKIP_GET_VALUES_4,    /* a GET_VALUES asking for 4 or more known names:
                                   libfcgi's 64-byte answer overflows; not run */
    FDIFF_SKIP_LIB_HUGE,        /* a pair whose lengths add up past FDIFF_MAX_INPUT:
                                   libfcgi allocates that, or aborts; not run where
                                   the harness predicts it and front refuses
                                   (fdiff_predict); a libfcgi child dead of its own
                                   failed allocation counts as having refused */
    FDIFF_SKIP_LIB_PADDING,     /* padding after the BEGIN_REQUEST or the empty PARAMS
                                   record: libfcgi reads it as the next header */
    FDIFF_SKIP_LIB_MGMT_DATA,   /* a management record other than GET_VALUES with
                                   content: libfcgi reads that as the stream's data */
    FDIFF_SKIP_LIB_SKIP_NEXT,   /* an empty record of another request, then a record
                                   with content libfcgi reads: it drops that content
                                   (its skip flag stays set past an empty record) */
    FDIFF_SKIP_PADDING_CUT,     /* the stream ends inside the padding of the empty
                                   STDIN record: libfcgi has its end, front waits for
                                   the whole record and then sees the connection end */
    FDIFF_DIFFERENT,
    FDIFF_ERROR,                /* the harness failed (sockets, fork, a stream too long),
                                   or libfcgi died (but of a failed allocation, or
                                   after a fault that desynchronises its reading) or
                                   hung; its stderr is then copied to ours */
    FDIFF_VERDICTS
};

struct fdiff_report {
    enum fdiff_verdict verdict;
    char why[256];              /* for DIFFERENT and ERROR: what differed or failed */
};

typedef struct fdiff fdiff_t;

/* A harness with its temporary directory; NULL with errno set. */
fdiff_t *fdiff_new(void);
/* Removes the directory. */
void     fdiff_free(fdiff_t *d);

/* Which of the streams the harness predicts libfcgi cannot take it keeps
 * from libfcgi: FDIFF_PREDICT_ALL by default. A GET_VALUES_4 stream is
 * not run (libfcgi would smash its stack). A huge pair: front runs first,
 * and its refusal settles it (libfcgi would refuse too); where front
 * serves, libfcgi runs after all. Without FDIFF_SKIP_LIB_HUGE, libfcgi
 * runs them all: it allocates up to 2 GiB and finds the pair cut, or dies
 * of its failed allocation (its Malloc's assertion, or the sanitizer's
 * report of a malloc called from libfcgi): FDIFF_SKIP_LIB_HUGE, front
 * judged against libfcgi refusing. Without FDIFF_SKIP_GET_VALUES_4 it
 * smashes its stack: FDIFF_ERROR, as any other death. Tests turn them
 * off to exercise those deaths. */
#define FDIFF_PREDICT(v)  (1u << (v))
#define FDIFF_PREDICT_ALL (FDIFF_PREDICT(FDIFF_SKIP_GET_VALUES_4) | FDIFF_PREDICT(FDIFF_SKIP_LIB_HUGE))
void     fdiff_predict(fdiff_t *d, unsigned which);

/* Feeds [buf, buf+len) to both sides, front with max_params = params_limit
 * (its body limit is above FDIFF_MAX_INPUT, so every body is kept whole),
 * and fills *r. Returns r->verdict. */
enum fdiff_verdict fdiff_run(fdiff_t *d, const void *buf, size_t len, size_t params_limit,
                             struct fdiff_report *r);

/* A short stable name for a verdict ("same-served", "skip-role", ...). */
const char *fdiff_verdict_name(enum fdiff_verdict v);

#endif
