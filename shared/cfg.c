#include "cfg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <ini.h>

#include "log.h"

/* The one default list entry. It is not heap memory, so cfg_defaults()
 * allocates nothing and a struct that only ever held defaults needs no
 * cfg_free(); every list helper skips it when freeing. */
static const char cfg_default_listen[] = "127.0.0.1:8081";

enum cfg_type {
    CFG_T_STR,      /* copied verbatim (size = field size) */
    CFG_T_PATH,     /* like STR, relative to the ini file's directory */
    CFG_T_INT,      /* plain decimal int in [min, max] */
    CFG_T_MS,       /* int milliseconds; suffix ms, s, m */
    CFG_T_SEC,      /* int seconds; suffix s, m, h */
    CFG_T_SIZE,     /* int bytes; suffix k/K, m/M */
    CFG_T_LSIZE,    /* long bytes; suffix k/K, m/M */
    CFG_T_MODE,     /* octal file mode */
    CFG_T_LEVEL,    /* log level name */
    CFG_T_AUTH,     /* remote_user | jwt */
    CFG_T_BOOL,     /* on | off */
    CFG_T_MOUNT,    /* URL path prefix, starts with '/' */
    CFG_T_LIST,     /* space separated, repeatable; item checked by `check` */
    CFG_T_ENGINE,   /* memory | redis */
};

enum cfg_check { CFG_C_NONE, CFG_C_ADDR, CFG_C_ORIGIN, CFG_C_ID, CFG_C_PATTERN, CFG_C_PUBLIC,
                 CFG_C_NET };

struct cfg_key {
    const char *section;
    const char *name;
    enum cfg_type type;
    size_t off;
    size_t size;           /* string fields */
    long min, max;         /* numeric fields */
    enum cfg_check check;  /* list items */
};

#define CFG_F(f)  offsetof(struct cfg, f), sizeof(((struct cfg *)0)->f)
#define CFG_MIB   (1024L * 1024L)

static const struct cfg_key cfg_keys[] = {
    { "wspush", "publish_socket", CFG_T_STR, CFG_F(publish_socket), 0, 0, 0 },
    { "wspush", "secret_file", CFG_T_PATH, CFG_F(secret_file), 0, 0, 0 },
    { "wspush", "previous_secret_file", CFG_T_PATH, CFG_F(previous_secret_file), 0, 0, 0 },
    { "wspush", "log_level", CFG_T_LEVEL, CFG_F(log_level), 0, 0, 0 },

    { "ws-server", "listen", CFG_T_LIST, CFG_F(listen), 0, 0, CFG_C_ADDR },
    { "ws-server", "unix_listen", CFG_T_STR, CFG_F(unix_listen), 0, 0, 0 },
    { "ws-server", "metrics_listen", CFG_T_STR, CFG_F(metrics_listen), 0, 0, 0 },
    { "ws-server", "tls_listen", CFG_T_LIST, CFG_F(tls_listen), 0, 0, CFG_C_ADDR },
    { "ws-server", "tls_certificate", CFG_T_PATH, CFG_F(tls_certificate), 0, 0, 0 },
    { "ws-server", "tls_certificate_key", CFG_T_PATH, CFG_F(tls_certificate_key), 0, 0, 0 },
    { "ws-server", "allowed_origins", CFG_T_LIST, CFG_F(allowed_origins), 0, 0, CFG_C_ORIGIN },
    { "ws-server", "max_connections", CFG_T_INT, CFG_F(max_connections), 1, 10000000, 0 },
    { "ws-server", "max_connections_per_ip", CFG_T_INT, CFG_F(max_connections_per_ip), 0, 10000000, 0 },
    { "ws-server", "trusted_proxies", CFG_T_LIST, CFG_F(trusted_proxies), 0, 0, CFG_C_NET },
    { "ws-server", "max_header_bytes", CFG_T_SIZE, CFG_F(max_header_bytes), 1024, 32768, 0 },
    { "ws-server", "handshake_timeout", CFG_T_MS, CFG_F(handshake_timeout_ms), 1, INT_MAX, 0 },
    { "ws-server", "idle_timeout", CFG_T_MS, CFG_F(idle_timeout_ms), 0, INT_MAX, 0 },
    { "ws-server", "ping_interval", CFG_T_MS, CFG_F(ping_interval_ms), 1, INT_MAX, 0 },
    { "ws-server", "pong_timeout", CFG_T_MS, CFG_F(pong_timeout_ms), 1, INT_MAX, 0 },
    { "ws-server", "close_timeout", CFG_T_MS, CFG_F(close_timeout_ms), 1, INT_MAX, 0 },
    { "ws-server", "max_channels", CFG_T_INT, CFG_F(max_channels), 1, WSPUSH_MAX_CHANNELS, 0 },
    { "ws-server", "max_message_bytes", CFG_T_SIZE, CFG_F(max_message_bytes), 1, 64 * CFG_MIB, 0 },
    { "ws-server", "max_frame_bytes", CFG_T_SIZE, CFG_F(max_frame_bytes), 125, CFG_MIB, 0 },
    { "ws-server", "send_buffer_bytes", CFG_T_SIZE, CFG_F(send_buffer_bytes), 1024, 1024 * CFG_MIB, 0 },
    { "ws-server", "publish_socket_mode", CFG_T_MODE, CFG_F(publish_socket_mode), 0, 0777, 0 },
    { "ws-server", "publish_socket_group", CFG_T_STR, CFG_F(publish_socket_group), 0, 0, 0 },
    { "ws-server", "publish_allow_uids", CFG_T_LIST, CFG_F(publish_allow_uids), 0, 0, CFG_C_ID },
    { "ws-server", "publish_allow_gids", CFG_T_LIST, CFG_F(publish_allow_gids), 0, 0, CFG_C_ID },
    { "ws-server", "history_size", CFG_T_INT, CFG_F(history_size), 0, 10000000, 0 },
    { "ws-server", "history_bytes", CFG_T_LSIZE, CFG_F(history_bytes), 0, 64L * 1024 * CFG_MIB, 0 },
    { "ws-server", "history_ttl", CFG_T_SEC, CFG_F(history_ttl_s), 0, INT_MAX, 0 },
    { "ws-server", "history_file", CFG_T_PATH, CFG_F(history_file), 0, 0, 0 },
    { "ws-server", "workers", CFG_T_INT, CFG_F(ws_workers), 1, 256, 0 },
    { "ws-server", "max_token_lifetime", CFG_T_SEC, CFG_F(max_token_lifetime_s), 1, INT_MAX, 0 },
    { "ws-server", "max_revocations", CFG_T_INT, CFG_F(max_revocations), 1, 10000000, 0 },
    { "ws-server", "deflate", CFG_T_BOOL, CFG_F(deflate), 0, 0, 0 },
    { "ws-server", "deflate_min_bytes", CFG_T_SIZE, CFG_F(deflate_min_bytes), 0, 64 * CFG_MIB, 0 },
    { "ws-server", "deflate_max_bytes", CFG_T_SIZE, CFG_F(deflate_max_bytes), 0, 64 * CFG_MIB, 0 },
    { "ws-server", "deflate_level", CFG_T_INT, CFG_F(deflate_level), 1, 9, 0 },
    { "ws-server", "engine", CFG_T_ENGINE, CFG_F(engine), 0, 0, 0 },

    { "publisher", "listen", CFG_T_STR, CFG_F(pub_listen), 0, 0, 0 },
    { "publisher", "workers", CFG_T_INT, CFG_F(pub_workers), 1, 1024, 0 },
    { "publisher", "metrics_listen", CFG_T_STR, CFG_F(pub_metrics_listen), 0, 0, 0 },
    { "publisher", "mount", CFG_T_MOUNT, CFG_F(mount), 0, 0, 0 },
    { "publisher", "auth", CFG_T_AUTH, CFG_F(auth), 0, 0, 0 },
    { "publisher", "jwt_cookie", CFG_T_STR, CFG_F(jwt_cookie), 0, 0, 0 },
    { "publisher", "allowed_origins", CFG_T_LIST, CFG_F(pub_allowed_origins), 0, 0, CFG_C_ORIGIN },
    { "publisher", "max_body", CFG_T_SIZE, CFG_F(max_body), 1, 64 * CFG_MIB, 0 },
    { "publisher", "max_params", CFG_T_SIZE, CFG_F(max_params), 1024, 16 * CFG_MIB, 0 },
    { "publisher", "ack_timeout", CFG_T_MS, CFG_F(ack_timeout_ms), 1, INT_MAX, 0 },
    { "publisher", "request_timeout", CFG_T_MS, CFG_F(request_timeout_ms), 1, INT_MAX, 0 },
    { "publisher", "token_ttl", CFG_T_SEC, CFG_F(token_ttl_s), 1, INT_MAX, 0 },

    { "channels", "public", CFG_T_LIST, CFG_F(public_channels), 0, 0, CFG_C_PUBLIC },
    { "channels", "publish", CFG_T_LIST, CFG_F(publish), 0, 0, CFG_C_PATTERN },
    { "channels", "subscribe", CFG_T_LIST, CFG_F(subscribe), 0, 0, CFG_C_PATTERN },

    { "redis", "address", CFG_T_STR, CFG_F(redis_address), 0, 0, 0 },
    { "redis", "password_file", CFG_T_PATH, CFG_F(redis_password_file), 0, 0, 0 },
    { "redis", "db", CFG_T_INT, CFG_F(redis_db), 0, 1000000, 0 },
    { "redis", "prefix", CFG_T_STR, CFG_F(redis_prefix), 0, 0, 0 },
    { "redis", "connect_timeout", CFG_T_MS, CFG_F(redis_connect_timeout_ms), 1, 3600000, 0 },
    { "redis", "command_timeout", CFG_T_MS, CFG_F(redis_command_timeout_ms), 1, 3600000, 0 },
    { "redis", "sentinels", CFG_T_LIST, CFG_F(redis_sentinels), 0, 0, CFG_C_ADDR },
    { "redis", "master_name", CFG_T_STR, CFG_F(redis_master_name), 0, 0, 0 },
    { "redis", "channel_history_size", CFG_T_INT, CFG_F(redis_channel_history_size), 0, 10000000, 0 },
    { "redis", "channel_history_ttl", CFG_T_SEC, CFG_F(redis_channel_history_ttl_s), 1, INT_MAX / 1000, 0 },
    { "redis", "wait_replicas", CFG_T_INT, CFG_F(redis_wait_replicas), 0, 1000, 0 },
    { "redis", "probe_interval", CFG_T_MS, CFG_F(redis_probe_interval_ms), 10, 3600000, 0 },
    { "redis", "max_held_bytes", CFG_T_SIZE, CFG_F(redis_max_held_bytes), 1024, 1024 * CFG_MIB, 0 },
};

#define CFG_NKEYS ((int)(sizeof(cfg_keys) / sizeof(cfg_keys[0])))

static const char *const cfg_sections[] = { "wspush", "ws-server", "publisher", "channels",
                                            "redis" };

/* Parse state. inih numbers lines itself but (as built by Debian) does not
 * hand the number to the handler, so our reader counts them too. */
struct cfg_ctx {
    struct cfg *c;
    FILE *f;
    const char *file;
    char dir[CFG_PATH_MAX];   /* the ini file's directory, absolute */
    int lineno;
    int err_line;             /* first error (0 = none) */
    char err[384];
    int seen[CFG_NKEYS];      /* line a key was first set on */
};

void cfg_defaults(struct cfg *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->publish_socket, sizeof(c->publish_socket), "%s", "/run/wspush/publish.sock");
    c->log_level = LOG_INFO;

    c->listen.items[0] = (char *)cfg_default_listen;
    c->listen.n = 1;
    c->max_connections = 10000;
    c->max_connections_per_ip = 0;
    c->max_header_bytes = 8192;
    c->handshake_timeout_ms = 5000;
    c->idle_timeout_ms = 0;
    c->ping_interval_ms = 30000;
    c->pong_timeout_ms = 10000;
    c->close_timeout_ms = 2000;
    c->max_channels = 32;
    c->max_message_bytes = 65536;
    c->max_frame_bytes = 125;
    c->send_buffer_bytes = 1024 * 1024;
    c->publish_socket_mode = 0660;
    c->history_size = 1000;
    c->history_bytes = 8 * CFG_MIB;
    c->history_ttl_s = 300;
    c->ws_workers = 1;
    c->max_token_lifetime_s = 24 * 3600;
    c->max_revocations = 100000;
    c->deflate = 1;
    c->deflate_min_bytes = 512;
    c->deflate_max_bytes = CFG_MIB;
    c->deflate_level = 6;

    c->pub_workers = 2;
    snprintf(c->mount, sizeof(c->mount), "%s", "/push");
    c->auth = CFG_AUTH_REMOTE_USER;
    snprintf(c->jwt_cookie, sizeof(c->jwt_cookie), "%s", "jwt");
    c->max_body = 65536;
    c->max_params = 256 * 1024;
    c->request_timeout_ms = 60000;
    c->ack_timeout_ms = 2000;
    c->token_ttl_s = 3600;

    c->engine = CFG_ENGINE_MEMORY;
    snprintf(c->redis_address, sizeof(c->redis_address), "%s", "127.0.0.1:6379");
    snprintf(c->redis_prefix, sizeof(c->redis_prefix), "%s", "wspush:");
    c->redis_connect_timeout_ms = 1000;
    c->redis_command_timeout_ms = 1000;
    c->redis_channel_history_size = 100;
    c->redis_channel_history_ttl_s = 300;
    c->redis_probe_interval_ms = 1000;
    c->redis_max_held_bytes = 16 * CFG_MIB;
}

static void cfg_list_clear(struct cfg_list *l)
{
    for (int i = 0; i < l->n; i++)
        if (l->items[i] != cfg_default_listen)
            free(l->items[i]);
    memset(l, 0, sizeof(*l));
}

void cfg_free(struct cfg *c)
{
    for (int i = 0; i < CFG_NKEYS; i++)
        if (cfg_keys[i].type == CFG_T_LIST)
            cfg_list_clear((struct cfg_list *)((char *)c + cfg_keys[i].off));
}

const char *cfg_store_key_changed(const struct cfg *a, const struct cfg *b)
{
    if (a->engine != b->engine)
        return "[ws-server] engine";
    if (a->engine != CFG_ENGINE_REDIS)
        return NULL;
    if (strcmp(a->redis_host, b->redis_host) != 0 || a->redis_port != b->redis_port ||
        (!a->redis_host[0] && strcmp(a->redis_address, b->redis_address) != 0))
        return "[redis] address";
    int sentinels = a->redis_sentinels.n != b->redis_sentinels.n;
    for (int i = 0; !sentinels && i < a->redis_sentinels.n; i++)
        sentinels = strcmp(a->redis_sentinel_host[i], b->redis_sentinel_host[i]) != 0 ||
                    a->redis_sentinel_port[i] != b->redis_sentinel_port[i];
    if (sentinels)
        return "[redis] sentinels";
    if (strcmp(a->redis_master_name, b->redis_master_name) != 0)
        return "[redis] master_name";
    if (a->redis_db != b->redis_db)
        return "[redis] db";
    if (strcmp(a->redis_prefix, b->redis_prefix) != 0)
        return "[redis] prefix";
    return NULL;
}

/* Records the first error only: later ones are usually its consequences. */
__attribute__((format(printf, 3, 4)))
static int cfg_fail(struct cfg_ctx *x, const char *key, const char *fmt, ...)
{
    if (x->err_line)
        return 0;
    x->err_line = x->lineno > 0 ? x->lineno : -1;
    int n = snprintf(x->err, sizeof(x->err), "key '%s': ", key);
    if (n < 0 || (size_t)n >= sizeof(x->err))
        return 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->err + n, sizeof(x->err) - (size_t)n, fmt, ap);
    va_end(ap);
    return 0;
}

/* Digits then an optional unit from `units` (name -> multiplier). Sign,
 * blanks and anything past the unit are refused. */
struct cfg_unit { const char *name; long mul; };

static int cfg_number(struct cfg_ctx *x, const struct cfg_key *k, const char *v,
                      const struct cfg_unit *units, long *out)
{
    if (*v == '-')
        return cfg_fail(x, k->name, "'%s' must not be negative", v);
    if (*v < '0' || *v > '9')
        return cfg_fail(x, k->name, "'%s' is not a number", v);
    errno = 0;
    char *end;
    long n = strtol(v, &end, 10);
    if (errno == ERANGE)
        return cfg_fail(x, k->name, "'%s' is out of range (max %ld)", v, k->max);
    long mul = 1;
    if (*end) {
        int found = 0;
        for (const struct cfg_unit *u = units; u && u->name; u++)
            if (strcmp(end, u->name) == 0) {
                mul = u->mul;
                found = 1;
                break;
            }
        if (!found)
            return cfg_fail(x, k->name, "'%s' is not a number%s", v,
                            units ? " with a known unit" : "");
    }
    if (n > LONG_MAX / mul || n * mul > k->max)
        return cfg_fail(x, k->name, "'%s' is out of range (max %ld)", v, k->max);
    if (n * mul < k->min)
        return cfg_fail(x, k->name, "'%s' is out of range (min %ld)", v, k->min);
    *out = n * mul;
    return 1;
}

static const struct cfg_unit cfg_units_ms[] = {
    { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { NULL, 0 } };
static const struct cfg_unit cfg_units_sec[] = {
    { "s", 1 }, { "m", 60 }, { "h", 3600 }, { NULL, 0 } };
static const struct cfg_unit cfg_units_size[] = {
    { "k", 1024 }, { "K", 1024 }, { "m", CFG_MIB }, { "M", CFG_MIB }, { NULL, 0 } };

static int cfg_set_str(struct cfg_ctx *x, const struct cfg_key *k, char *dst, const char *v)
{
    int n = snprintf(dst, k->size, "%s", v);
    if (n < 0 || (size_t)n >= k->size)
        return cfg_fail(x, k->name, "value longer than %zu bytes", k->size - 1);
    return 1;
}

static int cfg_set_path(struct cfg_ctx *x, const struct cfg_key *k, char *dst, const char *v)
{
    if (*v == '\0' || *v == '/')
        return cfg_set_str(x, k, dst, v);
    int n = snprintf(dst, k->size, "%s/%s", x->dir, v);
    if (n < 0 || (size_t)n >= k->size)
        return cfg_fail(x, k->name, "path '%s/%s' longer than %zu bytes", x->dir, v, k->size - 1);
    return 1;
}

static int cfg_valid_port(const char *p)
{
    if (*p < '1' || *p > '9' || strlen(p) > 5)
        return 0;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return 0;
    return atoi(p) <= 65535;
}

/* Returns NULL when item is acceptable, else the reason. */
static const char *cfg_check_item(enum cfg_check check, const char *s)
{
    switch (check) {
    case CFG_C_ADDR: {
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s)
            return "is not host:port or [v6]:port";
        if (s[0] == '[' && (colon[-1] != ']' || colon - s < 3))
            return "is not host:port or [v6]:port";
        if (s[0] != '[' && memchr(s, ':', (size_t)(colon - s)))
            return "needs brackets around an IPv6 address";
        if (!cfg_valid_port(colon + 1))
            return "has a bad port";
        return NULL;
    }
    case CFG_C_ORIGIN: {
        const char *rest = strncmp(s, "https://", 8) == 0 ? s + 8
                         : strncmp(s, "http://", 7) == 0 ? s + 7 : NULL;
        if (!rest || !*rest || strchr(rest, '/'))
            return "is not an origin (scheme://host[:port], no path)";
        return NULL;
    }
    case CFG_C_ID: {
        if (!*s || strlen(s) > 10)
            return "is not a numeric id";
        for (const char *q = s; *q; q++)
            if (*q < '0' || *q > '9')
                return "is not a numeric id";
        if (strtoul(s, NULL, 10) >= 0xffffffffUL)
            return "is out of range";
        return NULL;
    }
    case CFG_C_NET: {
        /* An IPv4 or IPv6 address, optionally /PREFIX (0..32, 0..128). */
        char addr[64];
        unsigned char bin[16];
        const char *slash = strchr(s, '/');
        size_t alen = slash ? (size_t)(slash - s) : strlen(s);
        if (alen == 0 || alen >= sizeof(addr))
            return "is not an IP address or ADDR/PREFIX";
        memcpy(addr, s, alen);
        addr[alen] = '\0';
        int max = inet_pton(AF_INET, addr, bin) == 1 ? 32 : inet_pton(AF_INET6, addr, bin) == 1 ? 128 : -1;
        if (max < 0)
            return "is not an IP address or ADDR/PREFIX";
        if (slash && (!slash[1] || strlen(slash + 1) > 3 ||
                      strspn(slash + 1, "0123456789") != strlen(slash + 1) || atoi(slash + 1) > max))
            return "has a bad prefix length";
        return NULL;
    }
    case CFG_C_PATTERN:
    case CFG_C_PUBLIC:
        for (const char *q = s; *q; q++) {
            if (*q == '{') {
                if (strncmp(q, "{user}", 6) != 0)
                    return "has '{' not starting {user}";
                if (check == CFG_C_PUBLIC)
                    return "uses {user}, but public channels have no user";
                q += 5;
                continue;
            }
            if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789_-.:/@*?[]!^\\", *q))
                return "has a byte not allowed in a channel pattern";
        }
        return NULL;
    case CFG_C_NONE:
        break;
    }
    return NULL;
}

static int cfg_set_list(struct cfg_ctx *x, const struct cfg_key *k, struct cfg_list *l,
                        const char *v)
{
    const char *p = v;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            return 1;
        size_t n = strcspn(p, " \t");
        if (l->n >= CFG_MAX_LIST)
            return cfg_fail(x, k->name, "more than %d entries", CFG_MAX_LIST);
        char *item = strndup(p, n);
        if (!item)
            return cfg_fail(x, k->name, "out of memory");
        const char *why = cfg_check_item(k->check, item);
        if (why) {
            cfg_fail(x, k->name, "'%s' %s", item, why);
            free(item);
            return 0;
        }
        l->items[l->n++] = item;
        p += n;
    }
}

/* Stores value into the field of key k (first: the file's first line for
 * this key). Returns inih's 1 to go on, or cfg_fail's 0. */
static int cfg_set_value(struct cfg_ctx *x, const struct cfg_key *k, const char *value, int first)
{
    const char *name = k->name;
    void *field = (char *)x->c + k->off;
    long n = 0;
    switch (k->type) {
    case CFG_T_STR:
        return cfg_set_str(x, k, field, value);
    case CFG_T_PATH:
        return cfg_set_path(x, k, field, value);
    case CFG_T_MOUNT:
        if (value[0] != '/')
            return cfg_fail(x, name, "'%s' must start with '/'", value);
        return cfg_set_str(x, k, field, value);
    case CFG_T_INT:
        if (!cfg_number(x, k, value, NULL, &n))
            return 0;
        *(int *)field = (int)n;
        return 1;
    case CFG_T_MS:
    case CFG_T_SEC:
    case CFG_T_SIZE:
        if (!cfg_number(x, k, value, k->type == CFG_T_MS ? cfg_units_ms
                                     : k->type == CFG_T_SEC ? cfg_units_sec : cfg_units_size, &n))
            return 0;
        *(int *)field = (int)n;
        return 1;
    case CFG_T_LSIZE:
        if (!cfg_number(x, k, value, cfg_units_size, &n))
            return 0;
        *(long *)field = n;
        return 1;
    case CFG_T_MODE: {
        char *end;
        if (!*value || strspn(value, "01234567") != strlen(value) || strlen(value) > 4)
            return cfg_fail(x, name, "'%s' is not an octal mode", value);
        n = strtol(value, &end, 8);
        if (n > k->max)
            return cfg_fail(x, name, "'%s' is not an octal mode (max 0777)", value);
        *(int *)field = (int)n;
        return 1;
    }
    case CFG_T_LEVEL: {
        int lv = log_level_parse(value);
        if (lv < 0)
            return cfg_fail(x, name, "'%s' is not one of error, warn, info, debug", value);
        *(int *)field = lv;
        return 1;
    }
    case CFG_T_AUTH:
        if (strcmp(value, "remote_user") == 0)
            *(int *)field = CFG_AUTH_REMOTE_USER;
        else if (strcmp(value, "jwt") == 0)
            *(int *)field = CFG_AUTH_JWT;
        else
            return cfg_fail(x, name, "'%s' is not remote_user or jwt", value);
        return 1;
    case CFG_T_BOOL:
        if (strcmp(value, "on") == 0)
            *(int *)field = 1;
        else if (strcmp(value, "off") == 0)
            *(int *)field = 0;
        else
            return cfg_fail(x, name, "'%s' is not on or off", value);
        return 1;
    case CFG_T_ENGINE:
        if (strcmp(value, "memory") == 0)
            *(int *)field = CFG_ENGINE_MEMORY;
        else if (strcmp(value, "redis") == 0)
            *(int *)field = CFG_ENGINE_REDIS;
        else
            return cfg_fail(x, name, "'%s' is not memory or redis", value);
        return 1;
    case CFG_T_LIST:
        /* The file's first line for a list replaces the default. */
        if (first)
            cfg_list_clear(field);
        return cfg_set_list(x, k, field, value);
    }
    return 1;
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
    struct cfg_ctx *x = user;
    if (x->err_line)
        return 1;   /* keep inih's first-error line equal to ours */

    int ki = -1, section_known = 0;
    for (int i = 0; i < CFG_NKEYS; i++) {
        if (strcmp(cfg_keys[i].section, section) != 0)
            continue;
        section_known = 1;
        if (strcmp(cfg_keys[i].name, name) == 0) {
            ki = i;
            break;
        }
    }
    if (!section_known)
        return *section ? cfg_fail(x, name, "unknown section [%s]", section)
                        : cfg_fail(x, name, "outside any [section]");
    if (ki < 0)
        return cfg_fail(x, name, "unknown key in [%s]", section);

    const struct cfg_key *k = &cfg_keys[ki];
    int first = x->seen[ki] == 0;
    if (!first && k->type != CFG_T_LIST)
        return cfg_fail(x, name, "set again (first on line %d); only list keys repeat",
                        x->seen[ki]);
    if (first)
        x->seen[ki] = x->lineno;
    return cfg_set_value(x, k, value, first);
}

/* fgets-style reader that counts lines and refuses what inih would
 * silently cut: a line longer than its buffer, or an unknown [section]
 * (which inih never reports when it holds no keys). */
static char *cfg_reader(char *str, int num, void *stream)
{
    struct cfg_ctx *x = stream;
    if (x->err_line)
        return NULL;
    if (!fgets(str, num, x->f))
        return NULL;
    x->lineno++;
    size_t len = strlen(str);
    if (len == (size_t)num - 1 && str[len - 1] != '\n') {
        int ch = getc(x->f);
        if (ch != EOF) {
            x->err_line = x->lineno;
            snprintf(x->err, sizeof(x->err), "line longer than %d bytes", num - 3);
            return NULL;
        }
    }
    /* Only a flush-left line: an indented "[ab]" after a key is inih's
     * continuation of that key's value (a glob, say). */
    const char *p = str;
    if (x->lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    if (*p == '[') {
        size_t n = strcspn(p + 1, "]");
        if (p[1 + n] == ']') {
            int known = 0;
            for (size_t i = 0; i < sizeof(cfg_sections) / sizeof(cfg_sections[0]); i++)
                if (strlen(cfg_sections[i]) == n && memcmp(cfg_sections[i], p + 1, n) == 0)
                    known = 1;
            if (!known) {
                x->err_line = x->lineno;
                snprintf(x->err, sizeof(x->err), "section '%.*s': unknown section",
                         (int)(n > 64 ? 64 : n), p + 1);
                return NULL;
            }
        }
    }
    return str;
}

/* Reads a secret file into s. Returns NULL or a reason. */
static const char *cfg_read_secret(const char *path, struct cfg_secret *s, size_t min_len,
                                   char *why, size_t wlen)
{
    unsigned char tmp[CFG_MAX_SECRET + 3];
    size_t len = 0;
    const char *ret = NULL;
    /* O_NONBLOCK: a FIFO named by mistake must not hang -t or a reload. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        snprintf(why, wlen, "%s", strerror(errno));
        return why;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        ret = "not a regular file";
        goto out;
    }
    if (st.st_mode & S_IROTH)
        log_warn("%s: the secret is readable by every user (mode %03o): chmod o-r it",
                 path, (unsigned)(st.st_mode & 0777));
    while (len < sizeof(tmp)) {
        ssize_t r = read(fd, tmp + len, sizeof(tmp) - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, wlen, "%s", strerror(errno));
            ret = why;
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len > 0 && tmp[len - 1] == '\n') {
        len--;
        if (len > 0 && tmp[len - 1] == '\r')
            len--;
    }
    if (len == 0) {
        ret = "file is empty";
        goto out;
    }
    if (len < min_len) {
        snprintf(why, wlen, "%zu bytes, shorter than %zu (make one with: head -c 32 /dev/urandom "
                 "| base64 > FILE)", len, min_len);
        ret = why;
        goto out;
    }
    if (len > CFG_MAX_SECRET) {
        snprintf(why, wlen, "file is longer than %d bytes", CFG_MAX_SECRET);
        ret = why;
        goto out;
    }
    memcpy(s->key, tmp, len);
    s->len = len;
out:
    explicit_bzero(tmp, sizeof(tmp));
    close(fd);
    return ret;
}

static int cfg_key_index(const char *section, const char *name)
{
    for (int i = 0; i < CFG_NKEYS; i++)
        if (strcmp(cfg_keys[i].section, section) == 0 && strcmp(cfg_keys[i].name, name) == 0)
            return i;
    return -1;
}

/* "FILE:LINE: " when the key came from a line of the file, else "FILE: ". */
static void cfg_where(const struct cfg_ctx *x, int line, char *out, size_t olen)
{
    if (line > 0)
        snprintf(out, olen, "%s:%d: ", x->file, line);
    else
        snprintf(out, olen, "%s: ", x->file);
}

static int cfg_load_secrets(struct cfg_ctx *x, char *err, size_t errlen)
{
    struct cfg *c = x->c;
    char where[CFG_PATH_MAX + 32], why[128];
    int si = cfg_key_index("wspush", "secret_file");
    int pi = cfg_key_index("wspush", "previous_secret_file");

    cfg_where(x, x->seen[si], where, sizeof(where));
    if (!c->secret_file[0]) {
        snprintf(err, errlen, "%skey 'secret_file': not set (required)", where);
        return -1;
    }
    const char *r = cfg_read_secret(c->secret_file, &c->secret, CFG_MIN_SECRET, why, sizeof(why));
    if (r) {
        snprintf(err, errlen, "%skey 'secret_file': %s: %s", where, c->secret_file, r);
        return -1;
    }
    if (!c->previous_secret_file[0])
        return 0;
    cfg_where(x, x->seen[pi], where, sizeof(where));
    r = cfg_read_secret(c->previous_secret_file, &c->previous_secret, CFG_MIN_SECRET, why, sizeof(why));
    if (r) {
        snprintf(err, errlen, "%skey 'previous_secret_file': %s: %s", where,
                 c->previous_secret_file, r);
        return -1;
    }
    return 0;
}

/* Resolves "host:port" / "[v6]:port" to a numeric host and a port, here
 * at load time: the event loop must never wait on a blocking getaddrinfo.
 * Returns NULL or the reason. */
static const char *cfg_resolve(const char *spec, char *host, size_t hostlen, int *port,
                               char *why, size_t wlen)
{
    if (cfg_check_item(CFG_C_ADDR, spec))
        return "is not host:port, [v6]:port or a Unix socket path (starting with '/')";
    const char *colon = strrchr(spec, ':');
    char name[CFG_PATH_MAX];
    const char *h = spec;
    size_t hlen = (size_t)(colon - spec);
    if (spec[0] == '[') {
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof(name))
        return "host name too long";
    memcpy(name, h, hlen);
    name[hlen] = '\0';
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG }, *res;
    int rc = getaddrinfo(name, colon + 1, &hints, &res);
    if (rc != 0) {
        snprintf(why, wlen, "cannot resolve '%.64s': %s", name, gai_strerror(rc));
        return why;
    }
    rc = getnameinfo(res->ai_addr, res->ai_addrlen, host, (socklen_t)hostlen, NULL, 0,
                     NI_NUMERICHOST);
    freeaddrinfo(res);
    if (rc != 0) {
        snprintf(why, wlen, "cannot resolve '%.64s': %s", name, gai_strerror(rc));
        return why;
    }
    *port = atoi(colon + 1);
    return NULL;
}

/* The [redis] keys that span keys or need the outside world: the address
 * (resolved), the Sentinels with their master name, the password file.
 * Only with engine = redis: a memory node must not wait on DNS. */
static int cfg_check_redis(struct cfg_ctx *x, char *err, size_t errlen)
{
    struct cfg *c = x->c;
    char where[CFG_PATH_MAX + 32], why[160];
    const char *r;
    if (c->engine != CFG_ENGINE_REDIS)
        return 0;
    if (c->redis_sentinels.n > 0) {
        if (!c->redis_master_name[0]) {
            cfg_where(x, x->seen[cfg_key_index("redis", "sentinels")], where, sizeof(where));
            snprintf(err, errlen, "%skey 'master_name': not set, but sentinels is", where);
            return -1;
        }
        for (int i = 0; i < c->redis_sentinels.n; i++) {
            r = cfg_resolve(c->redis_sentinels.items[i], c->redis_sentinel_host[i],
                            sizeof(c->redis_sentinel_host[i]), &c->redis_sentinel_port[i],
                            why, sizeof(why));
            if (r) {
                cfg_where(x, x->seen[cfg_key_index("redis", "sentinels")], where, sizeof(where));
                snprintf(err, errlen, "%skey 'sentinels': '%s' %s", where,
                         c->redis_sentinels.items[i], r);
                return -1;
            }
        }
    } else if (c->redis_address[0] != '/') {
        r = cfg_resolve(c->redis_address, c->redis_host, sizeof(c->redis_host), &c->redis_port,
                        why, sizeof(why));
        if (r) {
            cfg_where(x, x->seen[cfg_key_index("redis", "address")], where, sizeof(where));
            snprintf(err, errlen, "%skey 'address': '%s' %s", where, c->redis_address, r);
            return -1;
        }
    }
    if (c->redis_password_file[0]) {
        struct cfg_secret pw;
        memset(&pw, 0, sizeof(pw));
        r = cfg_read_secret(c->redis_password_file, &pw, 1, why, sizeof(why));
        if (!r && memchr(pw.key, '\0', pw.len))
            r = "holds a NUL byte";
        if (r) {
            cfg_where(x, x->seen[cfg_key_index("redis", "password_file")], where, sizeof(where));
            snprintf(err, errlen, "%skey 'password_file': %s: %s", where, c->redis_password_file, r);
            explicit_bzero(&pw, sizeof(pw));
            return -1;
        }
        memcpy(c->redis_password, pw.key, pw.len);
        c->redis_password[pw.len] = '\0';
        explicit_bzero(&pw, sizeof(pw));
    }
    return 0;
}

/* Checks that span keys. */
static int cfg_validate(struct cfg_ctx *x, char *err, size_t errlen)
{
    struct cfg *c = x->c;
    char where[CFG_PATH_MAX + 32];
    if (c->listen.n == 0 && !c->unix_listen[0] && c->tls_listen.n == 0) {
        cfg_where(x, x->seen[cfg_key_index("ws-server", "listen")], where, sizeof(where));
        snprintf(err, errlen, "%skey 'listen': empty and no unix_listen or tls_listen: "
                 "ws-server would accept nothing", where);
        return -1;
    }
    /* Each worker process is a node of its own: with ids and history in
     * each process's memory, a page reconnecting to another worker would
     * miss messages or see them twice. Only Redis shares them. */
    /* One message held during a catch-up must fit, or every catch-up
     * would be given up (and its channels reset) at the first big one. */
    if (c->engine == CFG_ENGINE_REDIS && c->redis_max_held_bytes < c->max_message_bytes) {
        cfg_where(x, x->seen[cfg_key_index("redis", "max_held_bytes")], where, sizeof(where));
        snprintf(err, errlen, "%skey 'max_held_bytes': %d is below max_message_bytes (%d): one "
                 "message held during a catch-up would give up every catch-up", where,
                 c->redis_max_held_bytes, c->max_message_bytes);
        return -1;
    }
    if (c->ws_workers > 1 && c->engine != CFG_ENGINE_REDIS) {
        cfg_where(x, x->seen[cfg_key_index("ws-server", "workers")], where, sizeof(where));
        snprintf(err, errlen, "%skey 'workers': %d needs engine = redis: with the memory engine "
                 "each worker process would keep its own message ids and history, and a page "
                 "landing on another worker would miss messages", where, c->ws_workers);
        return -1;
    }
    /* The pair itself (readable, matching, in date) is checked by
     * ws-server's TLS module, which -t runs too. */
    static const char *const tls_keys[] = { "tls_certificate", "tls_certificate_key" };
    const char *tls_vals[] = { c->tls_certificate, c->tls_certificate_key };
    for (int i = 0; i < 2; i++) {
        if (tls_vals[i][0] || (c->tls_listen.n == 0 && !tls_vals[1 - i][0]))
            continue;
        int seen = x->seen[cfg_key_index("ws-server", c->tls_listen.n ? "tls_listen" : tls_keys[1 - i])];
        cfg_where(x, seen, where, sizeof(where));
        snprintf(err, errlen, "%skey '%s': not set, but %s is", where, tls_keys[i],
                 c->tls_listen.n ? "tls_listen" : tls_keys[1 - i]);
        return -1;
    }
    if (c->token_ttl_s > c->max_token_lifetime_s) {
        cfg_where(x, x->seen[cfg_key_index("publisher", "token_ttl")], where, sizeof(where));
        snprintf(err, errlen, "%skey 'token_ttl': %d s is over [ws-server] max_token_lifetime "
                 "(%d s): ws-server would refuse every token fcgi-publisher issues", where,
                 c->token_ttl_s, c->max_token_lifetime_s);
        return -1;
    }
    return 0;
}

static int cfg_set_dir(struct cfg_ctx *x, const char *path)
{
    const char *slash = strrchr(path, '/');
    char cwd[CFG_PATH_MAX];
    int n;
    if (slash == path)
        n = snprintf(x->dir, sizeof(x->dir), "/");
    else if (slash && path[0] == '/')
        n = snprintf(x->dir, sizeof(x->dir), "%.*s", (int)(slash - path), path);
    else if (!getcwd(cwd, sizeof(cwd)))
        return -1;
    else if (slash)
        n = snprintf(x->dir, sizeof(x->dir), "%s/%.*s", cwd, (int)(slash - path), path);
    else
        n = snprintf(x->dir, sizeof(x->dir), "%s", cwd);
    return n < 0 || (size_t)n >= sizeof(x->dir) ? -1 : 0;
}

int cfg_load(struct cfg *c, const char *path, char *err, size_t errlen)
{
    struct cfg_ctx x;
    int ret = -1;
    memset(&x, 0, sizeof(x));
    x.c = c;
    x.file = path;
    cfg_defaults(c);
    snprintf(err, errlen, "%s", "");

    if (strlen(path) >= sizeof(c->path)) {
        snprintf(err, errlen, "%s: path longer than %d bytes", path, CFG_PATH_MAX - 1);
        return -1;
    }
    memcpy(c->path, path, strlen(path) + 1);
    if (cfg_set_dir(&x, path) < 0) {
        snprintf(err, errlen, "%s: cannot resolve the file's directory", path);
        return -1;
    }
    x.f = fopen(path, "re");
    if (!x.f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }

    int r = ini_parse_stream(cfg_reader, &x, cfg_handler, &x);
    if (ferror(x.f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto out;
    }
    if (r > 0 && (x.err_line <= 0 || r < x.err_line)) {
        snprintf(err, errlen, "%s:%d: syntax error: expected [section] or key = value",
                 path, r);
        goto out;
    }
    if (r == -2) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (x.err_line) {
        char where[CFG_PATH_MAX + 32];
        cfg_where(&x, x.err_line, where, sizeof(where));
        snprintf(err, errlen, "%s%s", where, x.err);
        goto out;
    }
    if (cfg_validate(&x, err, errlen) < 0 || cfg_load_secrets(&x, err, errlen) < 0 ||
        cfg_check_redis(&x, err, errlen) < 0)
        goto out;
    ret = 0;
out:
    fclose(x.f);
    return ret;
}

static void cfg_usage(FILE *f, const char *program, const char *about)
{
    fprintf(f, "usage: %s [-c FILE] [-t]\n"
               "  -c FILE  configuration (default " CFG_DEFAULT_PATH ")\n"
               "  -t       check the configuration and exit\n%s",
            program, about ? about : "");
}

int cfg_args(int argc, char **argv, const char *program, const char *about, const char **path,
             int *check_only)
{
    int opt;
    *path = CFG_DEFAULT_PATH;
    *check_only = 0;
    while ((opt = getopt(argc, argv, "c:th")) != -1) {
        switch (opt) {
        case 'c': *path = optarg; break;
        case 't': *check_only = 1; break;
        case 'h': cfg_usage(stdout, program, about); return 0;
        default: cfg_usage(stderr, program, about); return -1;
        }
    }
    return 1;
}
