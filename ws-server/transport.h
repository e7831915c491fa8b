/* transport — what a session needs from the connection it runs on: a
 * table of functions that conn.c fills for both of its kinds, WebSocket
 * and Server-Sent Events. A session never knows which.
 *
 * Every function takes the transport handle the session was opened with.
 *
 * The send budget (send_buffer_bytes for WebSocket) bounds what one
 * connection may hold queued, live and replayed messages alike. A resume
 * streams through it: the session asks the engine for a slice of about
 * room() bytes, queues it with replay_msg() until a message does not fit,
 * calls want_drained() and goes on when the transport reports, through
 * the drained handler it was given by whoever created it (conn_handlers
 * for conn.c), that everything queued has been written.
 *
 * send_json()'s object starts with its "type" member ({"type":"reset",...}):
 * SSE names the event after it.
 */
#ifndef WSPUSH_TRANSPORT_H
#define WSPUSH_TRANSPORT_H

#include <stddef.h>

#include "msg.h"
#include "str.h"

struct transport_ops {
    /* Queues channel chan of a live message. Returns 1 when queued, 0 when
     * not: the connection is closing, or the message would take its queue
     * past send_buffer_bytes (the transport then closes it with "try
     * again later", 1013, and the page resumes with last_id). */
    int    (*send_msg)(void *t, struct msg *m, int chan);
    /* Queues message m of a resume for its channels chans[0..n) (the
     * visits of one message on the page's channels, 1..WSPUSH_MAX_CHANNELS),
     * all or none, held to the send budget: returns 1 when queued; 0 when
     * they do not fit now (nothing queued, the connection unchanged: the
     * session asks for drained and goes on from this message); -EPIPE when
     * the connection is closing; -ENOMEM (then it is closed with 1011). A
     * message always fits an empty queue, so a resume moves on whatever
     * the budget. */
    int    (*replay_msg)(void *t, struct msg *m, const int *chans, int n);
    /* Bytes that may still be queued within the send budget (0 when the
     * queue is at or over it, or the connection is closing). */
    size_t (*room)(void *t);
    /* Asks for one call of the transport's drained handler once its queue
     * is empty (at the next flush when it already is). Only while the
     * connection is open: a closing one never reports. */
    void   (*want_drained)(void *t);
    /* 1 while the connection can still take messages, 0 once it is
     * closing (its close frame queued) or gone. */
    int    (*is_open)(void *t);
    /* Queues a control message, one JSON object ("subscribed", "reset").
     * id, when not empty, is the message id a reader that keeps one (SSE's
     * lastEventId, sent back as Last-Event-ID) resumes after from now on;
     * WebSocket ignores it. Returns 0 (also when the connection is
     * closing: nothing is queued then) or -ENOMEM. */
    int    (*send_json)(void *t, const char *json, size_t len, struct str id);
    /* Ends the connection with a close code (4401: token revoked...). */
    void   (*close)(void *t, int code);
};

#endif
