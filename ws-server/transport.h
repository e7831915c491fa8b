/* transport — what a session needs from the connection it runs on: a
 * table of functions that the WebSocket transport (conn.c) fills today and
 * Server-Sent Events will fill next. A session never knows which.
 *
 * Every function takes the transport handle the session was opened with.
 */
#ifndef WSPUSH_TRANSPORT_H
#define WSPUSH_TRANSPORT_H

#include <stddef.h>

#include "msg.h"

struct transport_ops {
    /* Queues channel chan of a live message. Returns 1 when queued, 0 when
     * not: the connection is closing, or the message would take its queue
     * past send_buffer_bytes (the transport then closes it with "try
     * again later", 1013, and the page resumes with last_id). */
    int  (*send_msg)(void *t, struct msg *m, int chan);
    /* Queues a replayed message without the send budget check (history
     * bounds what a resume can queue). Returns 1 or 0 as send_msg. */
    int  (*replay_msg)(void *t, struct msg *m, int chan);
    /* Queues a control message, one JSON object ("subscribed", "reset").
     * Returns 0 or -ENOMEM. */
    int  (*send_json)(void *t, const char *json, size_t len);
    /* Ends the connection with a close code (4401: token revoked...). */
    void (*close)(void *t, int code);
};

#endif
