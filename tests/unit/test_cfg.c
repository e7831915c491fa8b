/* cfg: defaults, a full file, every error kind with its "file:line: key",
 * secrets, relative paths, units. Files live in a fresh mkdtemp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"

static char tdir[64];
static char ini[128];       /* tdir/t.ini */
static char secret[128];    /* tdir/secret */

static void tw_write(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void tw_ini(const char *text)
{
    tw_write(ini, text, strlen(text));
}

static int tw_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int tw_setup(void **state)
{
    (void)state;
    snprintf(tdir, sizeof(tdir), "/tmp/test_cfg.XXXXXX");
    if (!mkdtemp(tdir))
        return -1;
    snprintf(ini, sizeof(ini), "%s/t.ini", tdir);
    snprintf(secret, sizeof(secret), "%s/secret", tdir);
    FILE *f = fopen(secret, "w");
    if (!f)
        return -1;
    fputs("s3cret-0123456789-0123456789-0123\n", f);
    fclose(f);
    return 0;
}

static int tw_teardown(void **state)
{
    (void)state;
    return nftw(tdir, tw_rm, 8, FTW_DEPTH | FTW_PHYS);
}

static void test_defaults(void **state)
{
    (void)state;
    struct cfg c;
    cfg_defaults(&c);
    assert_string_equal(c.publish_socket, "/run/wspush/publish.sock");
    assert_string_equal(c.secret_file, "");
    assert_string_equal(c.previous_secret_file, "");
    assert_int_equal(c.log_level, LOG_INFO);
    assert_int_equal(c.listen.n, 1);
    assert_string_equal(c.listen.items[0], "127.0.0.1:8081");
    assert_string_equal(c.unix_listen, "");
    assert_int_equal(c.allowed_origins.n, 0);
    assert_int_equal(c.max_connections, 10000);
    assert_int_equal(c.max_header_bytes, 8192);
    assert_int_equal(c.handshake_timeout_ms, 5000);
    assert_int_equal(c.idle_timeout_ms, 0);
    assert_int_equal(c.ping_interval_ms, 30000);
    assert_int_equal(c.pong_timeout_ms, 10000);
    assert_int_equal(c.close_timeout_ms, 2000);
    assert_int_equal(c.max_channels, 32);
    assert_int_equal(c.max_message_bytes, 65536);
    assert_int_equal(c.max_frame_bytes, 125);
    assert_int_equal(c.send_buffer_bytes, 1 << 20);
    assert_int_equal(c.publish_socket_mode, 0660);
    assert_string_equal(c.publish_socket_group, "");
    assert_int_equal(c.publish_allow_uids.n, 0);
    assert_int_equal(c.publish_allow_gids.n, 0);
    assert_int_equal(c.history_size, 1000);
    assert_int_equal(c.history_bytes, 8L << 20);
    assert_int_equal(c.history_ttl_s, 300);
    assert_string_equal(c.history_file, "");
    assert_int_equal(c.ws_workers, 1);
    assert_int_equal(c.deflate, 1);
    assert_int_equal(c.deflate_min_bytes, 512);
    assert_int_equal(c.deflate_max_bytes, 1024 * 1024);
    assert_int_equal(c.deflate_level, 6);
    assert_string_equal(c.pub_listen, "");
    assert_int_equal(c.pub_workers, 2);
    assert_string_equal(c.mount, "/push");
    assert_int_equal(c.auth, CFG_AUTH_REMOTE_USER);
    assert_string_equal(c.jwt_cookie, "jwt");
    assert_int_equal(c.pub_allowed_origins.n, 0);
    assert_int_equal(c.max_body, 65536);
    assert_int_equal(c.max_params, 256 * 1024);
    assert_int_equal(c.request_timeout_ms, 60000);
    assert_int_equal(c.ack_timeout_ms, 2000);
    assert_int_equal(c.token_ttl_s, 3600);
    assert_int_equal(c.public_channels.n, 0);
    assert_int_equal(c.publish.n, 0);
    assert_int_equal(c.subscribe.n, 0);
    cfg_free(&c);   /* harmless on defaults */
    assert_int_equal(c.listen.n, 0);
}

static void test_minimal(void **state)
{
    (void)state;
    struct cfg c;
    char err[512];
    tw_ini("[wspush]\nsecret_file = secret\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_string_equal(c.path, ini);
    assert_string_equal(c.secret_file, secret);
    assert_int_equal(c.secret.len, 33);
    assert_memory_equal(c.secret.key, "s3cret-0123456789-0123456789-0123", 33);
    assert_int_equal(c.previous_secret.len, 0);
    assert_int_equal(c.listen.n, 1);
    assert_string_equal(c.listen.items[0], "127.0.0.1:8081");
    cfg_free(&c);
    /* The struct may be loaded again. */
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    cfg_free(&c);
}

static void test_full(void **state)
{
    (void)state;
    struct cfg c;
    char err[512], text[4096];
    char prev[160];
    snprintf(prev, sizeof(prev), "%s/old", tdir);
    tw_write(prev, "old-one-0123456789-0123456789-012", 32);
    snprintf(text, sizeof(text),
        "; comment\n"
        "# another\n"
        "[wspush]\n"
        "publish_socket = %s/pub.sock\n"
        "secret_file = %s\n"
        "previous_secret_file = old\n"
        "log_level = debug\n"
        "\n"
        "[ws-server]\n"
        "listen = 0.0.0.0:80 [::]:443\n"
        "listen = localhost:9000 ; inline comment\n"
        "unix_listen = /run/ws.sock\n"
        "tls_listen = 0.0.0.0:8443\n"
        "tls_certificate = tls/fullchain.pem\n"
        "tls_certificate_key = /etc/k.pem\n"
        "allowed_origins = https://a.example http://b.example:8080\n"
        "allowed_origins = https://c.example\n"
        "max_connections = 50\n"
        "max_header_bytes = 4k\n"
        "handshake_timeout = 1500\n"
        "idle_timeout = 2m\n"
        "ping_interval = 20s\n"
        "pong_timeout = 700ms\n"
        "close_timeout = 1s\n"
        "max_channels = 8\n"
        "max_message_bytes = 1M\n"
        "max_frame_bytes = 200\n"
        "send_buffer_bytes = 2m\n"
        "publish_socket_mode = 600\n"
        "publish_socket_group = www-data\n"
        "publish_allow_uids = 0 33\n"
        "publish_allow_uids = 1000\n"
        "publish_allow_gids = 33\n"
        "history_size = 0\n"
        "history_bytes = 16K\n"
        "history_ttl = 1h\n"
        "history_file = hist/h.dat\n"
        "workers = 1\n"
        "\n"
        "[publisher]\n"
        "listen = 127.0.0.1:9001\n"
        "workers = 8\n"
        "mount = /rt\n"
        "auth = jwt\n"
        "jwt_cookie = session\n"
        "allowed_origins = https://site.example\n"
        "max_body = 10k\n"
        "ack_timeout = 3s\n"
        "token_ttl = 10m\n"
        "\n"
        "[channels]\n"
        "public = news public/*\n"
        "publish = user/{user}/*\n"
        "publish = news\n"
        "  team/[ab]/?\n"
        "  [cd]/x\n"
        "subscribe = user/{user}/* news\n",
        tdir, secret);
    tw_ini(text);
    int r = cfg_load(&c, ini, err, sizeof(err));
    assert_string_equal(err, "");
    assert_int_equal(r, 0);

    char want[256];
    snprintf(want, sizeof(want), "%s/pub.sock", tdir);
    assert_string_equal(c.publish_socket, want);
    assert_string_equal(c.secret_file, secret);
    assert_string_equal(c.previous_secret_file, prev);
    assert_int_equal(c.previous_secret.len, 32);
    assert_memory_equal(c.previous_secret.key, "old-one-0123456789-0123456789-012", 32);
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_int_equal(c.listen.n, 3);
    assert_string_equal(c.listen.items[0], "0.0.0.0:80");
    assert_string_equal(c.listen.items[1], "[::]:443");
    assert_string_equal(c.listen.items[2], "localhost:9000");
    assert_string_equal(c.unix_listen, "/run/ws.sock");
    assert_int_equal(c.tls_listen.n, 1);
    assert_string_equal(c.tls_listen.items[0], "0.0.0.0:8443");
    snprintf(want, sizeof(want), "%s/tls/fullchain.pem", tdir);
    assert_string_equal(c.tls_certificate, want);
    assert_string_equal(c.tls_certificate_key, "/etc/k.pem");
    assert_int_equal(c.allowed_origins.n, 3);
    assert_string_equal(c.allowed_origins.items[2], "https://c.example");
    assert_int_equal(c.max_connections, 50);
    assert_int_equal(c.max_header_bytes, 4096);
    assert_int_equal(c.handshake_timeout_ms, 1500);
    assert_int_equal(c.idle_timeout_ms, 120000);
    assert_int_equal(c.ping_interval_ms, 20000);
    assert_int_equal(c.pong_timeout_ms, 700);
    assert_int_equal(c.close_timeout_ms, 1000);
    assert_int_equal(c.max_channels, 8);
    assert_int_equal(c.max_message_bytes, 1 << 20);
    assert_int_equal(c.max_frame_bytes, 200);
    assert_int_equal(c.send_buffer_bytes, 2 << 20);
    assert_int_equal(c.publish_socket_mode, 0600);
    assert_string_equal(c.publish_socket_group, "www-data");
    assert_int_equal(c.publish_allow_uids.n, 3);
    assert_string_equal(c.publish_allow_uids.items[0], "0");
    assert_string_equal(c.publish_allow_uids.items[2], "1000");
    assert_int_equal(c.publish_allow_gids.n, 1);
    assert_int_equal(c.history_size, 0);
    assert_int_equal(c.history_bytes, 16384);
    assert_int_equal(c.history_ttl_s, 3600);
    snprintf(want, sizeof(want), "%s/hist/h.dat", tdir);
    assert_string_equal(c.history_file, want);
    assert_int_equal(c.ws_workers, 1);
    assert_string_equal(c.pub_listen, "127.0.0.1:9001");
    assert_int_equal(c.pub_workers, 8);
    assert_string_equal(c.mount, "/rt");
    assert_int_equal(c.auth, CFG_AUTH_JWT);
    assert_string_equal(c.jwt_cookie, "session");
    assert_int_equal(c.pub_allowed_origins.n, 1);
    assert_string_equal(c.pub_allowed_origins.items[0], "https://site.example");
    assert_int_equal(c.max_body, 10240);
    assert_int_equal(c.ack_timeout_ms, 3000);
    assert_int_equal(c.token_ttl_s, 600);
    assert_int_equal(c.public_channels.n, 2);
    assert_string_equal(c.public_channels.items[1], "public/*");
    /* The indented line continues `publish` and appends to it. */
    assert_int_equal(c.publish.n, 4);
    assert_string_equal(c.publish.items[0], "user/{user}/*");
    assert_string_equal(c.publish.items[1], "news");
    assert_string_equal(c.publish.items[2], "team/[ab]/?");
    assert_string_equal(c.publish.items[3], "[cd]/x");
    assert_int_equal(c.subscribe.n, 2);
    cfg_free(&c);
}

/* The shipped example loads once its secret_file points at a real file. */
static void test_example_file(void **state)
{
    (void)state;
    FILE *f = fopen("conf/wspush.ini", "r");
    assert_non_null(f);
    char text[16384];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *at = strstr(text, "\nsecret_file = /etc/wspush/secret\n");
    assert_non_null(at);
    char out[17000];
    snprintf(out, sizeof(out), "%.*s\nsecret_file = secret\n%s", (int)(at - text), text,
             at + strlen("\nsecret_file = /etc/wspush/secret\n"));
    tw_ini(out);

    struct cfg c;
    char err[512];
    int r = cfg_load(&c, ini, err, sizeof(err));
    assert_string_equal(err, "");
    assert_int_equal(r, 0);
    struct cfg d;
    cfg_defaults(&d);
    assert_string_equal(c.publish_socket, "/run/wspush/publish.sock");
    assert_int_equal(c.listen.n, 2);
    assert_string_equal(c.listen.items[0], "127.0.0.1:8081");
    assert_string_equal(c.listen.items[1], "[::1]:8081");
    /* Values the example spells with units equal the defaults. */
    assert_int_equal(c.handshake_timeout_ms, d.handshake_timeout_ms);
    assert_int_equal(c.ping_interval_ms, d.ping_interval_ms);
    assert_int_equal(c.pong_timeout_ms, d.pong_timeout_ms);
    assert_int_equal(c.close_timeout_ms, d.close_timeout_ms);
    assert_int_equal(c.max_message_bytes, d.max_message_bytes);
    assert_int_equal(c.send_buffer_bytes, d.send_buffer_bytes);
    assert_int_equal(c.history_bytes, d.history_bytes);
    assert_int_equal(c.history_ttl_s, d.history_ttl_s);
    assert_int_equal(c.max_body, d.max_body);
    assert_int_equal(c.ack_timeout_ms, d.ack_timeout_ms);
    assert_int_equal(c.token_ttl_s, d.token_ttl_s);
    assert_int_equal(c.public_channels.n, 1);
    assert_string_equal(c.public_channels.items[0], "public/*");
    assert_int_equal(c.publish.n, 2);
    assert_string_equal(c.publish.items[0], "public/*");
    assert_string_equal(c.publish.items[1], "user/{user}/*");
    assert_int_equal(c.subscribe.n, 1);
    assert_string_equal(c.subscribe.items[0], "user/{user}/*");
    cfg_free(&c);
}

/* Each unit suffix, for each kind of key. */
static void test_units(void **state)
{
    (void)state;
    static const struct { const char *section, *line; size_t off; long want; int is_long; } t[] = {
        { "ws-server", "handshake_timeout = 250", offsetof(struct cfg, handshake_timeout_ms), 250, 0 },
        { "ws-server", "handshake_timeout = 250ms", offsetof(struct cfg, handshake_timeout_ms), 250, 0 },
        { "ws-server", "handshake_timeout = 30s", offsetof(struct cfg, handshake_timeout_ms), 30000, 0 },
        { "ws-server", "handshake_timeout = 2m", offsetof(struct cfg, handshake_timeout_ms), 120000, 0 },
        { "ws-server", "idle_timeout = 0", offsetof(struct cfg, idle_timeout_ms), 0, 0 },
        { "ws-server", "ping_interval = 1s", offsetof(struct cfg, ping_interval_ms), 1000, 0 },
        { "ws-server", "pong_timeout = 5s", offsetof(struct cfg, pong_timeout_ms), 5000, 0 },
        { "ws-server", "close_timeout = 100ms", offsetof(struct cfg, close_timeout_ms), 100, 0 },
        { "publisher", "ack_timeout = 1m", offsetof(struct cfg, ack_timeout_ms), 60000, 0 },
        { "ws-server", "history_ttl = 30", offsetof(struct cfg, history_ttl_s), 30, 0 },
        { "ws-server", "history_ttl = 30s", offsetof(struct cfg, history_ttl_s), 30, 0 },
        { "ws-server", "history_ttl = 5m", offsetof(struct cfg, history_ttl_s), 300, 0 },
        { "ws-server", "history_ttl = 2h", offsetof(struct cfg, history_ttl_s), 7200, 0 },
        { "publisher", "token_ttl = 24h", offsetof(struct cfg, token_ttl_s), 86400, 0 },
        { "ws-server", "max_header_bytes = 2000", offsetof(struct cfg, max_header_bytes), 2000, 0 },
        { "ws-server", "max_header_bytes = 16k", offsetof(struct cfg, max_header_bytes), 16384, 0 },
        { "ws-server", "max_header_bytes = 16K", offsetof(struct cfg, max_header_bytes), 16384, 0 },
        { "ws-server", "max_message_bytes = 1m", offsetof(struct cfg, max_message_bytes), 1048576, 0 },
        { "ws-server", "max_message_bytes = 3M", offsetof(struct cfg, max_message_bytes), 3145728, 0 },
        { "ws-server", "send_buffer_bytes = 64k", offsetof(struct cfg, send_buffer_bytes), 65536, 0 },
        { "ws-server", "max_frame_bytes = 125", offsetof(struct cfg, max_frame_bytes), 125, 0 },
        { "ws-server", "max_frame_bytes = 1k", offsetof(struct cfg, max_frame_bytes), 1024, 0 },
        { "publisher", "max_body = 1M", offsetof(struct cfg, max_body), 1048576, 0 },
        { "publisher", "max_params = 8k", offsetof(struct cfg, max_params), 8192, 0 },
        { "ws-server", "history_bytes = 0", offsetof(struct cfg, history_bytes), 0, 1 },
        { "ws-server", "history_bytes = 64M", offsetof(struct cfg, history_bytes), 64L << 20, 1 },
        { "ws-server", "publish_socket_mode = 0", offsetof(struct cfg, publish_socket_mode), 0, 0 },
        { "ws-server", "publish_socket_mode = 0777", offsetof(struct cfg, publish_socket_mode), 0777, 0 },
        { "ws-server", "publish_socket_mode = 640", offsetof(struct cfg, publish_socket_mode), 0640, 0 },
        { "ws-server", "max_channels = 1", offsetof(struct cfg, max_channels), 1, 0 },
        { "wspush", "log_level = error", offsetof(struct cfg, log_level), LOG_ERROR, 0 },
        { "wspush", "log_level = warn", offsetof(struct cfg, log_level), LOG_WARN, 0 },
        { "publisher", "auth = remote_user", offsetof(struct cfg, auth), CFG_AUTH_REMOTE_USER, 0 },
        { "ws-server", "deflate = off", offsetof(struct cfg, deflate), 0, 0 },
        { "ws-server", "deflate = on", offsetof(struct cfg, deflate), 1, 0 },
        { "ws-server", "deflate_min_bytes = 0", offsetof(struct cfg, deflate_min_bytes), 0, 0 },
        { "ws-server", "deflate_min_bytes = 2k", offsetof(struct cfg, deflate_min_bytes), 2048, 0 },
        { "ws-server", "deflate_max_bytes = 0", offsetof(struct cfg, deflate_max_bytes), 0, 0 },
        { "ws-server", "deflate_max_bytes = 64M", offsetof(struct cfg, deflate_max_bytes), 64 << 20, 0 },
        { "ws-server", "deflate_level = 1", offsetof(struct cfg, deflate_level), 1, 0 },
        { "ws-server", "deflate_level = 9", offsetof(struct cfg, deflate_level), 9, 0 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char text[512], err[512];
        struct cfg c;
        snprintf(text, sizeof(text), "[wspush]\nsecret_file = secret\n[%s]\n%s\n",
                 t[i].section, t[i].line);
        tw_ini(text);
        int r = cfg_load(&c, ini, err, sizeof(err));
        if (r != 0)
            fail_msg("%s: %s", t[i].line, err);
        long got = t[i].is_long ? *(long *)((char *)&c + t[i].off)
                                : *(int *)((char *)&c + t[i].off);
        if (got != t[i].want)
            fail_msg("%s: got %ld want %ld", t[i].line, got, t[i].want);
        cfg_free(&c);
    }
}

/* Every error: the exact "FILE:LINE: key 'K': " prefix and a reason. */
static void test_errors(void **state)
{
    (void)state;
    static const struct { const char *text; int line; const char *key; const char *why; } t[] = {
        { "[nope]\nx = 1\n", 1, NULL, "section 'nope': unknown section" },
        { "[wspush]\nsecret_file = secret\n[empty]\n", 3, NULL, "section 'empty': unknown section" },
        { "x = 1\n", 1, "x", "outside any [section]" },
        { "[wspush]\nsecret_file = secret\nbogus = 1\n", 3, "bogus", "unknown key in [wspush]" },
        { "[ws-server]\nsecret_file = secret\n", 2, "secret_file", "unknown key in [ws-server]" },
        { "[ws-server]\nmax_connections = many\n", 2, "max_connections", "is not a number" },
        { "[ws-server]\nmax_connections =\n", 2, "max_connections", "is not a number" },
        { "[ws-server]\nmax_connections = 10x\n", 2, "max_connections", "is not a number" },
        { "[ws-server]\nmax_connections = 10s\n", 2, "max_connections", "is not a number" },
        { "[ws-server]\nmax_connections = -5\n", 2, "max_connections", "must not be negative" },
        { "[ws-server]\nmax_connections = +5\n", 2, "max_connections", "is not a number" },
        { "[ws-server]\nmax_connections = 0\n", 2, "max_connections", "out of range (min 1)" },
        { "[ws-server]\nmax_connections = 99999999999999999999999\n", 2, "max_connections", "out of range" },
        { "[ws-server]\n\nhandshake_timeout = 5h\n", 3, "handshake_timeout", "with a known unit" },
        { "[ws-server]\nhandshake_timeout = 5 s\n", 2, "handshake_timeout", "with a known unit" },
        { "[ws-server]\nhandshake_timeout = 0\n", 2, "handshake_timeout", "out of range (min 1)" },
        { "[ws-server]\nhandshake_timeout = 999999999m\n", 2, "handshake_timeout", "out of range (max" },
        { "[ws-server]\nping_interval = 1.5s\n", 2, "ping_interval", "with a known unit" },
        { "[ws-server]\nhistory_ttl = 10ms\n", 2, "history_ttl", "with a known unit" },
        { "[publisher]\ntoken_ttl = 0\n", 2, "token_ttl", "out of range (min 1)" },
        { "[ws-server]\nmax_frame_bytes = 124\n", 2, "max_frame_bytes", "out of range (min 125)" },
        { "[ws-server]\nmax_message_bytes = 1G\n", 2, "max_message_bytes", "with a known unit" },
        { "[ws-server]\nmax_message_bytes = 65M\n", 2, "max_message_bytes", "out of range (max" },
        { "[ws-server]\nmax_channels = 33\n", 2, "max_channels", "out of range (max 32)" },
        { "[ws-server]\nworkers = 0\n", 2, "workers", "out of range (min 1)" },
        { "[publisher]\nmax_params = 512\n", 2, "max_params", "out of range (min 1024)" },
        { "[ws-server]\nworkers = 257\n", 2, "workers", "out of range (max 256)" },
        { "[ws-server]\nworkers = 2\n", 2, "workers", "2 needs engine = redis: with the memory "
          "engine each worker process would keep its own message ids and history" },
        { "[ws-server]\nengine = memory\n\nworkers = 4\n", 4, "workers", "4 needs engine = redis" },
        { "[ws-server]\npublish_socket_mode = 0890\n", 2, "publish_socket_mode", "not an octal mode" },
        { "[ws-server]\npublish_socket_mode = 1000\n", 2, "publish_socket_mode", "not an octal mode" },
        { "[ws-server]\npublish_socket_mode = rw\n", 2, "publish_socket_mode", "not an octal mode" },
        { "[ws-server]\npublish_socket_mode = -1\n", 2, "publish_socket_mode", "not an octal mode" },
        { "[publisher]\nauth = basic\n", 2, "auth", "'basic' is not remote_user or jwt" },
        { "[ws-server]\ndeflate = yes\n", 2, "deflate", "'yes' is not on or off" },
        { "[ws-server]\ndeflate = On\n", 2, "deflate", "'On' is not on or off" },
        { "[ws-server]\ndeflate_level = 0\n", 2, "deflate_level", "out of range (min 1)" },
        { "[ws-server]\ndeflate_level = 10\n", 2, "deflate_level", "out of range (max 9)" },
        { "[ws-server]\ndeflate_min_bytes = -1\n", 2, "deflate_min_bytes", "must not be negative" },
        { "[ws-server]\ndeflate_max_bytes = 65M\n", 2, "deflate_max_bytes", "out of range (max" },
        { "[wspush]\nlog_level = verbose\n", 2, "log_level", "'verbose' is not one of" },
        { "[publisher]\nmount = push\n", 2, "mount", "must start with '/'" },
        { "[ws-server]\npublish_socket_group = "
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
          2, "publish_socket_group", "value longer than 63 bytes" },
        { "[wspush]\nlog_level = info\nlog_level = info\n", 3, "log_level",
          "set again (first on line 2)" },
        { "[wspush]\nlog_level = info\n  debug\n", 3, "log_level", "set again" },
        { "[ws-server]\nlisten = 127.0.0.1\n", 2, "listen", "'127.0.0.1' is not host:port" },
        { "[ws-server]\nlisten = ::1:80\n", 2, "listen", "needs brackets" },
        { "[ws-server]\nlisten = []:80\n", 2, "listen", "is not host:port" },
        { "[ws-server]\nlisten = a:0\n", 2, "listen", "bad port" },
        { "[ws-server]\nlisten = a:65536\n", 2, "listen", "bad port" },
        { "[ws-server]\nlisten = a:http\n", 2, "listen", "bad port" },
        { "[ws-server]\nallowed_origins = site.example\n", 2, "allowed_origins", "is not an origin" },
        { "[publisher]\nallowed_origins = https://a/b\n", 2, "allowed_origins", "is not an origin" },
        { "[ws-server]\npublish_allow_uids = www-data\n", 2, "publish_allow_uids", "not a numeric id" },
        { "[ws-server]\npublish_allow_gids = 1 -2\n", 2, "publish_allow_gids", "'-2' is not a numeric id" },
        { "[ws-server]\npublish_allow_gids = 4294967295\n", 2, "publish_allow_gids", "out of range" },
        { "[channels]\npublic = user/{user}\n", 2, "public", "public channels have no user" },
        { "[channels]\npublish = a/{usr}\n", 2, "publish", "'{' not starting {user}" },
        { "[channels]\nsubscribe = a,b\n", 2, "subscribe", "byte not allowed" },
        { "[ws-server]\nlisten =\n", 2, "listen", "empty and no unix_listen" },
        { "[ws-server]\ntls_listen = 8443\n", 2, "tls_listen", "is not host:port" },
        { "[ws-server]\ntls_listen = 127.0.0.1:8443\n", 2, "tls_certificate", "not set, but tls_listen is" },
        { "[ws-server]\ntls_listen = 127.0.0.1:8443\ntls_certificate = c.pem\n", 2, "tls_certificate_key",
          "not set, but tls_listen is" },
        { "[ws-server]\n\ntls_certificate_key = k.pem\n", 3, "tls_certificate",
          "not set, but tls_certificate_key is" },
        { "[wspush]\n[ws-server]\nhandshake_timeout\n", 3, NULL,
          "syntax error: expected [section] or key = value" },
        { "[ws-server]\nengine = disk\n", 2, "engine", "'disk' is not memory or redis" },
        { "[redis]\nprobe_interval = 5ms\n", 2, "probe_interval", "out of range (min 10)" },
        { "[redis]\nmax_held_bytes = 100\n", 2, "max_held_bytes", "out of range (min 1024)" },
        { "[ws-server]\nengine = redis\n[redis]\nmax_held_bytes = 4k\n", 4, "max_held_bytes",
          "below max_message_bytes" },
        { "[redis]\nsentinels = 127.0.0.1\n", 2, "sentinels", "is not host:port" },
        { "[wspush]\nsecret_file = secret\n[ws-server]\nengine = redis\n[redis]\n"
          "sentinels = 127.0.0.1:26379\n", 6, "master_name", "not set, but sentinels is" },
        { "[wspush]\nsecret_file = secret\n[ws-server]\nengine = redis\n[redis]\n"
          "address = 127.0.0.1\n", 6, "address", "is not host:port, [v6]:port or a Unix" },
        { "[wspush]\nsecret_file = secret\n[ws-server]\nengine = redis\n[redis]\n"
          "password_file = nosuch\n", 6, "password_file", "No such file" },
        /* A syntax error before a bad value is the one reported. */
        { "[wspush]\nnot a pair\nbogus = 1\n", 2, NULL, "syntax error" },
        { "[wspush]\nbogus = 1\nnot a pair\n", 2, "bogus", "unknown key" },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char text[512], want[256], err[512];
        struct cfg c;
        /* The secret is appended after the tested line so it never
         * shifts line numbers. */
        snprintf(text, sizeof(text), "%s[wspush]\nprevious_secret_file = secret\n", t[i].text);
        tw_ini(text);
        int r = cfg_load(&c, ini, err, sizeof(err));
        if (r != -1)
            fail_msg("case %zu loaded: %s", i, t[i].text);
        if (t[i].key)
            snprintf(want, sizeof(want), "%s:%d: key '%s': ", ini, t[i].line, t[i].key);
        else
            snprintf(want, sizeof(want), "%s:%d: ", ini, t[i].line);
        if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, t[i].why))
            fail_msg("case %zu: got \"%s\", want \"%s...%s\"", i, err, want, t[i].why);
        cfg_free(&c);
    }
}

static void test_list_limits(void **state)
{
    (void)state;
    char text[2048], err[512], want[256];
    struct cfg c;
    /* 32 entries over 4 lines are fine; the 33rd is an error on its line. */
    size_t n = (size_t)snprintf(text, sizeof(text), "[wspush]\nsecret_file = secret\n[channels]\n");
    for (int line = 0; line < 4; line++) {
        n += (size_t)snprintf(text + n, sizeof(text) - n, "public =");
        for (int j = 0; j < 8; j++)
            n += (size_t)snprintf(text + n, sizeof(text) - n, " c%d", line * 8 + j);
        n += (size_t)snprintf(text + n, sizeof(text) - n, "\n");
    }
    tw_ini(text);
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    assert_int_equal(c.public_channels.n, 32);
    assert_string_equal(c.public_channels.items[31], "c31");
    cfg_free(&c);

    snprintf(text + n, sizeof(text) - n, "public = c32\n");
    tw_ini(text);
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:8: key 'public': more than 32 entries", ini);
    assert_string_equal(err, want);
    cfg_free(&c);

    /* A line inih would cut short is refused. */
    memset(text, 0, sizeof(text));
    n = (size_t)snprintf(text, sizeof(text), "[wspush]\nsecret_file = secret\n[channels]\npublic =");
    while (n < 300)
        n += (size_t)snprintf(text + n, sizeof(text) - n, " abcdefgh");
    snprintf(text + n, sizeof(text) - n, "\n");
    tw_ini(text);
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:4: line longer than", ini);
    assert_memory_equal(err, want, strlen(want));
    cfg_free(&c);

    /* The longest line allowed (197 bytes + newline) loads. */
    memset(text, 0, sizeof(text));
    n = (size_t)snprintf(text, sizeof(text), "[wspush]\nsecret_file = secret\n[channels]\n");
    size_t start = n;
    n += (size_t)snprintf(text + n, sizeof(text) - n, "public = ");
    while (n - start < 197)
        text[n++] = 'a';
    text[n++] = '\n';
    tw_ini(text);
    int r = cfg_load(&c, ini, err, sizeof(err));
    assert_string_equal(err, "");
    assert_int_equal(r, 0);
    assert_int_equal(strlen(c.public_channels.items[0]), 197 - strlen("public = "));
    cfg_free(&c);
}

static void test_secrets(void **state)
{
    (void)state;
    char path[160], text[512], err[512], want[512];
    struct cfg c;

    /* Not set at all: no line to name. */
    tw_ini("[wspush]\nlog_level = info\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: key 'secret_file': not set (required)", ini);
    assert_string_equal(err, want);
    cfg_free(&c);

    tw_ini("[wspush]\nsecret_file =\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2: key 'secret_file': not set (required)", ini);
    assert_string_equal(err, want);
    cfg_free(&c);

    /* Missing, empty, too long: the key's line, the resolved path, why. */
    static const struct { const char *name; const char *data; size_t len; const char *why; } bad[] = {
        { "missing", NULL, 0, "No such file or directory" },
        { "empty", "", 0, "file is empty" },
        { "newline", "\n", 1, "file is empty" },
        { "crlf", "\r\n", 2, "file is empty" },
        { "short", "0123456789abcdef0123456789abcde\n", 32,
          "31 bytes, shorter than 32 (make one with: head -c 32 /dev/urandom | base64 > FILE)" },
        { "fifo", NULL, 0, "not a regular file" },
        { "dir", NULL, 0, "not a regular file" },
        { "long", NULL, CFG_MAX_SECRET + 1, "file is longer than 256 bytes" },
        { "longnl", NULL, CFG_MAX_SECRET + 2, "file is longer than 256 bytes" },
        { "huge", NULL, 5000, "file is longer than 256 bytes" },
    };
    char big[5000];
    memset(big, 'x', sizeof(big));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tdir, bad[i].name);
        if (strcmp(bad[i].name, "fifo") == 0)
            assert_int_equal(mkfifo(path, 0600), 0);   /* must not block the load */
        else if (strcmp(bad[i].name, "dir") == 0)
            assert_int_equal(mkdir(path, 0700), 0);
        else if (bad[i].data)
            tw_write(path, bad[i].data, bad[i].len);
        else if (bad[i].len) {
            tw_write(path, big, bad[i].len);
            if (strcmp(bad[i].name, "longnl") == 0) {
                big[bad[i].len - 1] = '\n';
                tw_write(path, big, bad[i].len);
                big[bad[i].len - 1] = 'x';
            }
        }
        snprintf(text, sizeof(text), "[wspush]\n\nsecret_file = %s\n", bad[i].name);
        tw_ini(text);
        assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), -1);
        snprintf(want, sizeof(want), "%s:3: key 'secret_file': %s: %s", ini, path, bad[i].why);
        assert_string_equal(err, want);
        cfg_free(&c);
    }

    /* Exactly 256 bytes plus one newline is the largest secret. */
    snprintf(path, sizeof(path), "%s/max", tdir);
    big[CFG_MAX_SECRET] = '\n';
    tw_write(path, big, CFG_MAX_SECRET + 1);
    big[CFG_MAX_SECRET] = 'x';
    tw_ini("[wspush]\nsecret_file = max\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    assert_int_equal(c.secret.len, CFG_MAX_SECRET);
    cfg_free(&c);

    /* Only one trailing newline is stripped; other bytes are kept. */
    snprintf(path, sizeof(path), "%s/two", tdir);
    tw_write(path, "0123456789abcdef0123456789abcdef \n\n", 35);
    tw_ini("[wspush]\nsecret_file = two\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    assert_int_equal(c.secret.len, 34);
    assert_memory_equal(c.secret.key, "0123456789abcdef0123456789abcdef \n", 34);
    cfg_free(&c);

    /* An absolute path is kept as is. */
    snprintf(text, sizeof(text), "[wspush]\nsecret_file = %s\n", secret);
    tw_ini(text);
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    assert_string_equal(c.secret_file, secret);
    cfg_free(&c);

    /* A bad previous secret is named as such. */
    tw_ini("[wspush]\nsecret_file = secret\nprevious_secret_file = gone\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:3: key 'previous_secret_file': %s/gone: "
             "No such file or directory", ini, tdir);
    assert_string_equal(err, want);
    cfg_free(&c);
}

/* Relative paths follow the ini file, wherever the process runs from. */
static void test_relative_dir(void **state)
{
    (void)state;
    char sub[160], subini[200], sec[200], err[512], cwd[512], want[300];
    struct cfg c;
    snprintf(sub, sizeof(sub), "%s/etc", tdir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(subini, sizeof(subini), "%s/w.ini", sub);
    snprintf(sec, sizeof(sec), "%s/key", sub);
    tw_write(sec, "k123456789abcdef0123456789abcdef", 32);
    static const char body[] = "[wspush]\nsecret_file = key\n[ws-server]\nhistory_file = ../h\n";
    tw_write(subini, body, strlen(body));

    assert_int_equal(cfg_load(&c, subini, err, sizeof(err)), 0);
    assert_string_equal(c.secret_file, sec);
    snprintf(want, sizeof(want), "%s/../h", sub);
    assert_string_equal(c.history_file, want);
    cfg_free(&c);

    /* A relative ini path gives an absolute secret path. */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tdir), 0);
    int r = cfg_load(&c, "etc/w.ini", err, sizeof(err));
    int r2 = -1;
    struct cfg d;
    if (r == 0) {
        assert_int_equal(chdir(sub), 0);
        r2 = cfg_load(&d, "w.ini", err, sizeof(err));
    }
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(r, 0);
    assert_int_equal(r2, 0);
    assert_string_equal(c.path, "etc/w.ini");
    /* tdir may sit behind a symlink; compare the tail only. */
    assert_true(c.secret_file[0] == '/');
    assert_non_null(strstr(c.secret_file, "/etc/key"));
    assert_string_equal(c.secret_file, d.secret_file);
    assert_int_equal(c.secret.len, 32);
    cfg_free(&c);
    cfg_free(&d);
}

static void test_missing_file(void **state)
{
    (void)state;
    char path[160], err[512], want[300];
    struct cfg c;
    snprintf(path, sizeof(path), "%s/none.ini", tdir);
    assert_int_equal(cfg_load(&c, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: No such file or directory", path);
    assert_string_equal(err, want);
    cfg_free(&c);
}

/* A list key given in the file replaces its default, once. */
/* [redis]: defaults, a resolved address, the password read from its file,
 * a Unix path left alone, and no resolution at all with engine = memory. */
static void test_redis(void **state)
{
    (void)state;
    char err[512], pw[160];
    struct cfg c;
    snprintf(pw, sizeof(pw), "%s/pw", tdir);
    tw_write(pw, "hunter2\n", 8);
    tw_ini("[wspush]\nsecret_file = secret\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    assert_int_equal(c.engine, CFG_ENGINE_MEMORY);
    assert_string_equal(c.redis_address, "127.0.0.1:6379");
    assert_string_equal(c.redis_host, "");
    assert_string_equal(c.redis_prefix, "wspush:");
    assert_int_equal(c.redis_command_timeout_ms, 1000);
    assert_int_equal(c.redis_channel_history_size, 100);
    assert_int_equal(c.redis_channel_history_ttl_s, 300);
    assert_int_equal(c.redis_max_held_bytes, 16 * 1024 * 1024);
    cfg_free(&c);

    tw_ini("[wspush]\nsecret_file = secret\n[ws-server]\nengine = redis\n[redis]\n"
           "address = localhost:6390\npassword_file = pw\ndb = 3\nprefix = a:\n"
           "command_timeout = 2s\nwait_replicas = 1\nchannel_history_ttl = 1m\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    assert_int_equal(c.engine, CFG_ENGINE_REDIS);
    assert_true(strcmp(c.redis_host, "127.0.0.1") == 0 || strcmp(c.redis_host, "::1") == 0);
    assert_int_equal(c.redis_port, 6390);
    assert_string_equal(c.redis_password, "hunter2");
    assert_int_equal(c.redis_db, 3);
    assert_string_equal(c.redis_prefix, "a:");
    assert_int_equal(c.redis_command_timeout_ms, 2000);
    assert_int_equal(c.redis_wait_replicas, 1);
    assert_int_equal(c.redis_channel_history_ttl_s, 60);
    cfg_free(&c);

    /* Several workers are nodes of one Redis. */
    tw_ini("[wspush]\nsecret_file = secret\n[ws-server]\nengine = redis\nworkers = 4\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    assert_int_equal(c.ws_workers, 4);
    cfg_free(&c);

    tw_ini("[wspush]\nsecret_file = secret\n[ws-server]\nengine = redis\n[redis]\n"
           "address = /run/redis.sock\nsentinels = 127.0.0.1:1 [::1]:2\nmaster_name = m\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    assert_int_equal(c.redis_sentinels.n, 2);
    assert_string_equal(c.redis_sentinel_host[1], "::1");
    assert_int_equal(c.redis_sentinel_port[1], 2);
    cfg_free(&c);

    /* A memory node never resolves: a name that does not exist is fine. */
    tw_ini("[wspush]\nsecret_file = secret\n[redis]\naddress = nosuch.invalid:1\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    cfg_free(&c);
}

static void test_list_replaces_default(void **state)
{
    (void)state;
    char err[512];
    struct cfg c;
    tw_ini("[wspush]\nsecret_file = secret\n[ws-server]\nlisten = [::1]:1\nlisten = 10.0.0.1:2\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    assert_int_equal(c.listen.n, 2);
    assert_string_equal(c.listen.items[0], "[::1]:1");
    assert_string_equal(c.listen.items[1], "10.0.0.1:2");
    cfg_free(&c);

    tw_ini("[wspush]\nsecret_file = secret\n[ws-server]\nlisten =\nunix_listen = /tmp/x.sock\n");
    assert_int_equal(cfg_load(&c, ini, err, sizeof(err)), 0);
    assert_int_equal(c.listen.n, 0);
    assert_string_equal(c.unix_listen, "/tmp/x.sock");
    cfg_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_minimal),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_list_limits),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_relative_dir),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_list_replaces_default),
        cmocka_unit_test(test_redis),
    };
    return cmocka_run_group_tests(tests, tw_setup, tw_teardown);
}
