/* server — ws-server's process-wide context: the loop, the live config,
 * the listeners, every connection, the channel registry, the broker and the
 * publish socket. Internal to ws-server: conn.c, pubsock.c and main.c see
 * the fields; nothing else does.
 */
#ifndef WSPUSH_SERVER_H
#define WSPUSH_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "cfg.h"
#include "channel.h"
#include "ev.h"

#define SERVER_MAX_LISTENERS (CFG_MAX_LIST + 1)
#define SERVER_READ_CHUNK    65536

struct conn;
struct pubsock;

struct server_listener {
    struct ev_io    io;
    struct server  *srv;
    char            spec[CFG_PATH_MAX];
};

/* Intrusive doubly linked list of connections. */
struct conn_list { struct conn *head; size_t n; };

struct server {
    ev_loop_t       *loop;
    struct ev_hook   after;
    struct cfg      *cfg;          /* live config; replaced whole on SIGHUP */
    char             cfg_path[CFG_PATH_MAX];
    struct server_listener listeners[SERVER_MAX_LISTENERS];
    int              nlisteners;
    struct conn_list conns;        /* every connection, any state */
    struct conn     *dirty;        /* singly linked: queued frames to flush this pass */
    struct conn     *dead;         /* singly linked: to free after this pass */
    chan_registry_t *channels;
    broker_t        *broker;
    struct pubsock  *pubsock;
    int              shutting_down;
    uint64_t         shutdown_deadline;
    struct ev_timer  shutdown_timer;
    int              exit_code;
    /* One read buffer for every socket: a connection only keeps bytes of a
     * frame that arrived in pieces, so idle connections hold no buffer. */
    unsigned char    scratch[SERVER_READ_CHUNK];
    /* URL-decoded query values during a handshake (channels, token). */
    char             decoded[SERVER_READ_CHUNK];
};

/* Starts listening, opens the publish socket and installs signal handling.
 * Returns 0, or -1 with err filled. */
int  server_init(struct server *srv, ev_loop_t *loop, struct cfg *cfg, const char *cfg_path,
                 char *err, size_t errlen);
void server_free(struct server *srv);

/* Closes every connection whose token `sub` equals user (close 1008...
 * see conn_disconnect_user). Returns how many. */
uint32_t server_disconnect_user(struct server *srv, const char *user, size_t len);

#endif
