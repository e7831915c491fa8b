/* cfg — the one ini file both programs read (conf/wspush.ini), through inih.
 *
 * cfg_load() fills a struct cfg once; afterwards it is read-only. A reload
 * builds a new struct and swaps it in, so nothing ever mutates a live config.
 * Every key but secret_file has a default (cfg_defaults), so a file naming
 * only secret_file is a valid config.
 * An unknown section or key, a bad value, or a missing secret file is an
 * error naming file, line and key.
 *
 * Sections:
 *   [wspush]      keys both programs use (publish_socket, secrets, log level)
 *   [ws-server]   the WebSocket server
 *   [publisher]   fcgi-publisher
 *   [channels]    channel patterns: public, publish, subscribe
 *   [redis]       the Redis engine's server (ws-server, engine = redis)
 * Ini keys are the field names, except: the *_timeout_ms / *_interval_ms
 * fields drop "_ms" and the *_s fields drop "_s" (history_ttl, token_ttl);
 * [ws-server] workers -> ws_workers; [publisher] listen, workers,
 * allowed_origins -> pub_listen, pub_workers, pub_allowed_origins;
 * [channels] public -> public_channels; [redis] K -> redis_K.
 * conf/wspush.ini documents each.
 * Lists (listen, allowed_origins, patterns, publish_allow_uids/gids) are
 * space separated and may also repeat, each line adding to the list; the
 * file's first line for a list replaces that list's default. A scalar key
 * set twice is an error. Durations take a unit suffix (ms, s, m for the
 * millisecond keys; s, m, h for the second keys), sizes take k/K, m/M
 * (KiB, MiB). Relative secret_file, previous_secret_file and history_file
 * paths are resolved against the ini file's directory (the stored path is
 * absolute). Comments: a line starting with ; or #, or " ;" after a value.
 * Lines are limited to 197 bytes (inih's buffer); split long lists over
 * several lines of the same key.
 */
#ifndef WSPUSH_CFG_H
#define WSPUSH_CFG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wspush.h"

#define CFG_MAX_LIST     32    /* entries per list key */
#define CFG_MAX_SECRET   256   /* bytes of a secret file */
#define CFG_MIN_SECRET   32    /* HS256 wants a key of at least its hash size */
#define CFG_PATH_MAX     256

struct cfg_list {
    int   n;
    char *items[CFG_MAX_LIST];   /* owned NUL-terminated strings */
};

struct cfg_secret {
    size_t len;                  /* 0 = not set */
    unsigned char key[CFG_MAX_SECRET];
};

struct cfg {
    char path[CFG_PATH_MAX];     /* the file this came from */

    /* [wspush] */
    char publish_socket[CFG_PATH_MAX];      /* default /run/wspush/publish.sock */
    char secret_file[CFG_PATH_MAX];         /* required by both programs */
    char previous_secret_file[CFG_PATH_MAX];/* optional, during rotation */
    int  log_level;                         /* enum log_level, default info */
    struct cfg_secret secret, previous_secret;  /* contents, loaded by cfg_load */

    /* [ws-server] */
    struct cfg_list listen;           /* "host:port", "[v6]:port"; default 127.0.0.1:8081 */
    char   unix_listen[CFG_PATH_MAX]; /* optional Unix socket for a reverse proxy */
    char   metrics_listen[CFG_PATH_MAX]; /* host:port or Unix path of /metrics; "" = off */
    struct cfg_list tls_listen;       /* "host:port" served over TLS; default none */
    char   tls_certificate[CFG_PATH_MAX];     /* PEM, leaf first, then the chain */
    char   tls_certificate_key[CFG_PATH_MAX]; /* PEM private key of that certificate */
    struct cfg_list allowed_origins;  /* empty = any Origin accepted */
    int    max_connections;           /* 10000; past it: HTTP 503 */
    int    max_connections_per_ip;    /* 0 = off; per client address (IPv6: per /64) */
    struct cfg_list trusted_proxies;  /* addresses / CIDR prefixes never counted per address */
    int    max_header_bytes;          /* 8192: handshake request size */
    int    handshake_timeout_ms;      /* 5000 (ini key handshake_timeout, ms) */
    int    idle_timeout_ms;           /* 0 = off; closes a connection with no traffic */
    int    ping_interval_ms;          /* 30000 */
    int    pong_timeout_ms;           /* 10000 */
    int    close_timeout_ms;          /* 2000: wait for the client's close */
    int    max_channels;              /* 32 channels per connection */
    int    max_message_bytes;         /* 65536: published data size */
    int    max_frame_bytes;           /* 125: largest client frame (only control frames are legal) */
    int    send_buffer_bytes;         /* 1 MiB queued per connection, then 1013 */
    int    publish_socket_mode;       /* 0660 (octal in the ini) */
    char   publish_socket_group[64];  /* optional group name */
    struct cfg_list publish_allow_uids;  /* numeric uids; empty with gids empty = any peer */
    struct cfg_list publish_allow_gids;
    int    history_size;              /* messages kept for last_id (1000) */
    long   history_bytes;             /* 8 MiB */
    int    history_ttl_s;             /* 300 */
    char   history_file[CFG_PATH_MAX];/* optional: saved on SIGTERM, loaded at start */
    int    ws_workers;                /* 1 */
    int    max_token_lifetime_s;      /* 24 h: longest exp - iat of a subscribe token */
    int    max_revocations;           /* 100000 users remembered by disconnect */
    int    deflate;                   /* 1: accept permessage-deflate offers (on|off) */
    int    deflate_min_bytes;         /* 512: smaller messages go uncompressed */
    int    deflate_max_bytes;         /* 1 MiB: larger messages go uncompressed */
    int    deflate_level;             /* 6: zlib level 1..9 */
    int    engine;                    /* enum cfg_engine, default memory; restart to change */

    /* [redis] (engine = redis; restart to change). Host names are resolved
     * by cfg_load into redis_host / redis_sentinel_host (numeric), so the
     * event loop never calls a blocking getaddrinfo. */
    char   redis_address[CFG_PATH_MAX];   /* host:port, [v6]:port or a Unix path; 127.0.0.1:6379 */
    char   redis_host[64];                /* numeric address of redis_address ("" for a Unix path) */
    int    redis_port;
    char   redis_password_file[CFG_PATH_MAX]; /* optional AUTH password file */
    char   redis_password[CFG_MAX_SECRET + 1];/* its contents, NUL-terminated */
    int    redis_db;                      /* SELECT, 0 */
    char   redis_prefix[64];              /* key prefix, "wspush:" */
    int    redis_connect_timeout_ms;      /* 1000 */
    int    redis_command_timeout_ms;      /* 1000: a publish unanswered in time -> 504 */
    struct cfg_list redis_sentinels;      /* host:port of Sentinels; then master_name is required */
    char   redis_sentinel_host[CFG_MAX_LIST][64]; /* numeric, one per sentinel */
    int    redis_sentinel_port[CFG_MAX_LIST];
    char   redis_master_name[64];         /* Sentinel's name of the master */
    int    redis_channel_history_size;    /* 100 entries per channel stream; 0 = none */
    int    redis_channel_history_ttl_s;   /* 300: stream expiry after its last publish */
    int    redis_wait_replicas;           /* 0 = off: WAIT this many replicas before acking */
    int    redis_probe_interval_ms;       /* 1000: PUB/SUB liveness probe period */
    int    redis_max_held_bytes;          /* 16M: copies held while catch-ups are read */

    /* [publisher] */
    char   pub_listen[CFG_PATH_MAX];  /* Unix path or host:port; empty = fd 0 */
    int    pub_workers;               /* 2 event-loop processes */
    char   pub_metrics_listen[CFG_PATH_MAX]; /* host:port or Unix path of /metrics; "" = off */
    char   mount[64];                 /* "/push" */
    int    auth;                      /* enum cfg_auth */
    char   jwt_cookie[64];            /* cookie carrying the site's JWT (auth=jwt) */
    struct cfg_list pub_allowed_origins; /* empty = the request's own scheme+host */
    int    max_body;                  /* 65536 */
    int    max_params;                /* 256 KiB: FastCGI params of one request */
    int    ack_timeout_ms;            /* 2000 */
    int    request_timeout_ms;        /* 60000: a request received only in part */
    int    token_ttl_s;               /* 3600 */

    /* [channels] */
    struct cfg_list public_channels;  /* patterns readable without a token */
    struct cfg_list publish;          /* patterns a user may publish to ({user}) */
    struct cfg_list subscribe;        /* patterns a user may get tokens for ({user}) */
};

enum cfg_auth { CFG_AUTH_REMOTE_USER = 0, CFG_AUTH_JWT = 1 };
enum cfg_engine { CFG_ENGINE_MEMORY = 0, CFG_ENGINE_REDIS = 1 };

#define CFG_DEFAULT_PATH "/etc/wspush/wspush.ini"

/* The command line both servers share: [-c FILE] [-t] [-h]. Sets *path
 * (CFG_DEFAULT_PATH unless -c) and *check_only (-t). On -h prints the
 * usage to stdout and returns 0 (exit 0); on a bad option prints it to
 * stderr and returns -1 (exit 2); else returns 1. about, when not NULL, is
 * the program's own lines after the common ones. */
int  cfg_args(int argc, char **argv, const char *program, const char *about, const char **path,
              int *check_only);

/* Fills c with every default. Allocates nothing (the default `listen`
 * entry is static): a struct holding only defaults needs no cfg_free(). */
void cfg_defaults(struct cfg *c);

/* Fills c with the defaults (c must not hold allocated lists: cfg_free it
 * first), loads `path` over them and then reads the secret files.
 * On success returns 0. On failure returns -1 and writes a one-line
 * message "FILE:LINE: key 'K': reason" (or "FILE: reason") into err;
 * c is then in an unspecified but freeable state. */
int  cfg_load(struct cfg *c, const char *path, char *err, size_t errlen);

/* The first key of those that say where channels live — [ws-server]
 * engine and [redis] address, sentinels, master_name, db, prefix — whose
 * value differs between a and b ("[redis] prefix"), or
 * NULL. A reload cannot move a running node to another store: it would
 * split it from the nodes still on the old one. */
const char *cfg_store_key_changed(const struct cfg *a, const struct cfg *b);

/* Frees the list strings; the struct may be loaded again. */
void cfg_free(struct cfg *c);

#endif
