/* wspush: command-line client of the publish socket, for cron jobs, site
 * backends and logout handlers. See cli_usage() for the interface. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "cli_stats.h"
#include "ev.h"
#include "ipc.h"
#include "log.h"
#include "pattern.h"
#include "payload.h"
#include "pubclient.h"

#define CLI_EXIT_OK          0
#define CLI_EXIT_REFUSED     1   /* ws-server answered with an error */
#define CLI_EXIT_USAGE       2
#define CLI_EXIT_UNAVAILABLE 3
#define CLI_EXIT_TIMEOUT     4
#define CLI_EXIT_OTHER       5

/* The event loop failed: no PUBC_E_ code, so exit status "other". */
#define CLI_E_LOOP (-100)

#define CLI_STDIN_MAX (64L * 1024 * 1024)

static void cli_usage(FILE *f)
{
    fprintf(f,
        "usage: wspush [-c FILE] [-s SOCKET] [-T MS] publish CHANNEL[,CHANNEL...] DATA\n"
        "       wspush [-c FILE] [-s SOCKET] [-T MS] disconnect USER\n"
        "       wspush [-c FILE] [-m ADDR] [-i SECONDS] [-T MS] stats [--json]\n"
        "\n"
        "Talks to ws-server's publish socket directly (no web server involved;\n"
        "the socket's file permissions decide who may use it).\n"
        "  -c FILE    read publish_socket from this config (default\n"
        "             /etc/wspush/wspush.ini; unused when -s is given)\n"
        "  -s SOCKET  the publish socket path\n"
        "  -T MS      answer timeout in milliseconds (default 5000)\n"
        "  -m ADDR    ws-server's metrics_listen (host:port or Unix path; default:\n"
        "             metrics_listen of the config)\n"
        "  -i SECONDS stats: time between the two scrapes (default 3)\n"
        "publish     sends DATA to every channel listed; DATA is sent as JSON, byte\n"
        "            for byte, when it is one JSON value (big integers and \\u0000\n"
        "            included), else as a JSON string; '-' reads stdin. A number\n"
        "            beyond a double's range (1e400) is refused (exit 2): quote it.\n"
        "            Prints: id=<message id> subscribers=<n>\n"
        "disconnect  closes every WebSocket whose token sub is USER (logout).\n"
        "            Prints: disconnected=<n>\n"
        "stats       scrapes ws-server's metrics twice and prints connections,\n"
        "            channels, subscriptions, messages/s and deliveries/s over the\n"
        "            interval, refusals and closes by reason; --json: one object\n"
        "exit status: 0 done, 1 refused by ws-server, 2 usage or bad argument,\n"
        "             3 ws-server (or its Redis) unreachable, 4 no answer in time\n"
        "             (from ws-server or its Redis), 5 other error\n");
}

/* A refusal for want of the engine's store (Redis down, or silent) exits
 * like the socket's own unavailability / timeout: scripts retry on 3 and 4. */
static int cli_exit_code(int rc, const struct pubc_result *res)
{
    switch (rc) {
    case PUBC_E_REFUSED:
        return res->code == IPC_ERR_UNAVAILABLE ? CLI_EXIT_UNAVAILABLE
             : res->code == IPC_ERR_TIMEOUT ? CLI_EXIT_TIMEOUT : CLI_EXIT_REFUSED;
    case PUBC_E_INVALID:     return CLI_EXIT_USAGE;
    case PUBC_E_UNAVAILABLE: return CLI_EXIT_UNAVAILABLE;
    case PUBC_E_TIMEOUT:     return CLI_EXIT_TIMEOUT;
    default:                 return CLI_EXIT_OTHER;
    }
}

static char *cli_read_stdin(size_t *len)
{
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    while (p) {
        if (n == cap) {
            if (cap >= (size_t)CLI_STDIN_MAX) {
                free(p);
                errno = EFBIG;
                return NULL;
            }
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                return NULL;
            }
            p = q;
            cap *= 2;
        }
        ssize_t r = read(0, p + n, cap - n);
        if (r == 0)
            break;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            free(p);
            return NULL;
        }
        n += (size_t)r;
    }
    if (p)
        *len = n;
    return p;
}

/* cli_data_json's refusal of valid JSON that ws-server would refuse. */
#define CLI_E_RANGE (-1)

/* Turns the DATA argument into one JSON value text (malloc'ed): DATA
 * itself, less surrounding whitespace, when it is one JSON value as
 * ws-server reads it (payload.h: big integers and \u0000 are fine), else
 * DATA as a JSON string. Valid JSON that ws-server would
 * refuse, a number beyond a double's range, is neither: turning 1e400 into
 * the string "1e400" would publish something else than what was written,
 * so it is refused (NULL, *err = CLI_E_RANGE). NULL with *err = 0: out of
 * memory or DATA not UTF-8. */
static char *cli_data_json(const char *s, size_t len, size_t *outlen, int *err)
{
    *err = 0;
    while (len > 0 && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n' ||
                       s[len - 1] == '\r'))
        len--;
    int rc = payload_check_data(s, len);
    if (rc == PAYLOAD_E_RANGE) {
        *err = CLI_E_RANGE;
        return NULL;
    }
    if (rc == PAYLOAD_OK) {
        /* Passed on as written, so numbers keep every digit. */
        char *p = malloc(len + 1);
        if (p) {
            memcpy(p, s, len);
            p[len] = '\0';
            *outlen = len;
        }
        return p;
    }
    json_t *v = json_stringn(s, len);
    if (!v)
        return NULL;
    char *p = json_dumps(v, JSON_ENCODE_ANY);
    json_decref(v);
    if (p)
        *outlen = strlen(p);
    return p;
}

/* The one request's run: the loop goes until its callback, the only
 * caller of ev_stop(). */
struct cli_run {
    struct ev_hook after;
    ev_loop_t         *loop;
    pubc_t            *pc;
    int                rc;
    struct pubc_result res;
};

static void cli_done(void *ctx, int rc, const struct pubc_result *res)
{
    struct cli_run *run = ctx;
    run->rc = rc;
    run->res = *res;
    ev_stop(run->loop);
}

static void cli_after_pass(ev_loop_t *loop, void *data)
{
    (void)loop;
    struct cli_run *run = data;
    pubc_flush(run->pc);
}

/* Runs the loop until the queued request completes; returns its rc with
 * run->res filled, or CLI_E_LOOP. The first pass must not wait: only its
 * after hook sends the request. */
static int cli_wait(struct cli_run *run)
{
    ev_poll_now(run->loop);
    int rc = ev_run(run->loop);
    if (rc < 0) {
        fprintf(stderr, "wspush: event loop: %s\n", strerror(-rc));
        return CLI_E_LOOP;
    }
    return run->rc;
}

static int cli_publish(struct cli_run *run, int timeout_ms, const char *chans, const char *data)
{
    struct str names[WSPUSH_MAX_CHANNELS];
    int n = pat_split_channels(chans, strlen(chans), names, WSPUSH_MAX_CHANNELS);
    if (n < 0) {
        fprintf(stderr, "wspush: invalid channel list '%s'\n", chans);
        return CLI_EXIT_USAGE;
    }
    size_t rawlen = strlen(data), jlen = 0;
    char *raw = NULL;
    if (strcmp(data, "-") == 0) {
        raw = cli_read_stdin(&rawlen);
        if (!raw) {
            fprintf(stderr, "wspush: reading stdin: %s\n", strerror(errno));
            return CLI_EXIT_OTHER;
        }
        data = raw;
    }
    int err;
    char *json = cli_data_json(data, rawlen, &jlen, &err);
    free(raw);
    if (!json && err == CLI_E_RANGE) {
        fprintf(stderr, "wspush: DATA holds a number beyond a double's range (about 1.8e308), "
                        "which ws-server refuses; to send it as text, quote it as a JSON string\n");
        return CLI_EXIT_USAGE;
    }
    if (!json) {
        fprintf(stderr, "wspush: DATA is neither JSON nor valid UTF-8 text\n");
        return CLI_EXIT_USAGE;
    }
    uint64_t ticket;
    int rc = pubc_publish(run->pc, names, n, json, jlen, timeout_ms, cli_done, run, &ticket);
    if (rc == 0)
        rc = cli_wait(run);
    free(json);
    const struct pubc_result *res = &run->res;
    if (rc < 0) {
        fprintf(stderr, "wspush: publish failed: %s%s%s\n", pubc_strerror(rc),
                res->text[0] ? ": " : "", res->text);
        return cli_exit_code(rc, res);
    }
    printf("id=%s subscribers=%u\n", res->id, (unsigned)res->count);
    return CLI_EXIT_OK;
}

static int cli_disconnect(struct cli_run *run, int timeout_ms, const char *user)
{
    uint64_t ticket;
    int rc = pubc_disconnect(run->pc, user, timeout_ms, cli_done, run, &ticket);
    if (rc == 0)
        rc = cli_wait(run);
    const struct pubc_result *res = &run->res;
    if (rc < 0) {
        fprintf(stderr, "wspush: disconnect failed: %s%s%s\n", pubc_strerror(rc),
                res->text[0] ? ": " : "", res->text);
        return cli_exit_code(rc, res);
    }
    printf("disconnected=%u\n", (unsigned)res->count);
    return CLI_EXIT_OK;
}

/* `stats`: the address from -m, else metrics_listen of the config. */
static int cli_stats_main(const char *cfg_path, const char *addr, double interval_s, int timeout_ms,
                          int json)
{
    char from_cfg[CFG_PATH_MAX];
    if (!addr) {
        struct cfg *c = malloc(sizeof *c);
        char err[512];
        if (!c || cfg_load(c, cfg_path, err, sizeof err) < 0) {
            fprintf(stderr, "wspush: %s (or give the address with -m)\n", c ? err : "out of memory");
            if (c)
                cfg_free(c);
            free(c);
            return CLI_EXIT_USAGE;
        }
        snprintf(from_cfg, sizeof from_cfg, "%s", c->metrics_listen);
        cfg_free(c);
        free(c);
        if (!from_cfg[0]) {
            fprintf(stderr, "wspush: %s sets no metrics_listen in [ws-server] (or give -m ADDR)\n",
                    cfg_path);
            return CLI_EXIT_USAGE;
        }
        addr = from_cfg;
    }
    return cli_stats(addr, interval_s, timeout_ms, json);
}

int main(int argc, char **argv)
{
    const char *cfg_path = "/etc/wspush/wspush.ini", *sock = NULL, *metrics = NULL;
    int timeout_ms = 5000, opt, rc = CLI_EXIT_USAGE;
    double interval_s = 3;
    char path[CFG_PATH_MAX];
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        cli_usage(stdout);
        return 0;
    }
    while ((opt = getopt(argc, argv, "+c:s:T:m:i:h")) != -1) {
        switch (opt) {
        case 'c': cfg_path = optarg; break;
        case 's': sock = optarg; break;
        case 'm': metrics = optarg; break;
        case 'i': {
            char *end;
            interval_s = strtod(optarg, &end);
            if (*end || !(interval_s >= 0.1 && interval_s <= 3600)) {
                fprintf(stderr, "wspush: bad -i value '%s' (0.1 to 3600 seconds)\n", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'T': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 3600000) {
                fprintf(stderr, "wspush: bad -T value '%s'\n", optarg);
                return CLI_EXIT_USAGE;
            }
            timeout_ms = (int)v;
            break;
        }
        case 'h': cli_usage(stdout); return 0;
        default: cli_usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    const char *cmd = nargs > 0 ? argv[optind] : "";
    int stats = strcmp(cmd, "stats") == 0 &&
                (nargs == 1 || (nargs == 2 && strcmp(argv[optind + 1], "--json") == 0));
    if (!((strcmp(cmd, "publish") == 0 && nargs == 3) ||
          (strcmp(cmd, "disconnect") == 0 && nargs == 2) || stats)) {
        cli_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    log_init("wspush", LOG_WARN);
    if (stats)
        return cli_stats_main(cfg_path, metrics, interval_s, timeout_ms, nargs == 2);
    if (!sock) {
        struct cfg *c = malloc(sizeof *c);
        char err[512];
        if (!c || cfg_load(c, cfg_path, err, sizeof err) < 0) {
            fprintf(stderr, "wspush: %s (or give the socket with -s)\n", c ? err : "out of memory");
            if (c)
                cfg_free(c);
            free(c);
            return CLI_EXIT_USAGE;
        }
        snprintf(path, sizeof path, "%s", c->publish_socket);
        cfg_free(c);
        free(c);
        sock = path;
    }
    size_t socklen = strlen(sock);
    if (socklen == 0 || socklen >= PUBC_PATH_MAX) {
        fprintf(stderr, "wspush: socket path '%s' too long\n", sock);
        return CLI_EXIT_USAGE;
    }
    char err[256];
    struct cli_run run = { .loop = ev_loop_new(err, sizeof err) };
    if (!run.loop) {
        fprintf(stderr, "wspush: %s\n", err);
        return CLI_EXIT_OTHER;
    }
    run.pc = pubc_new(run.loop, sock);
    if (!run.pc) {
        fprintf(stderr, "wspush: out of memory\n");
        ev_loop_free(run.loop);
        return CLI_EXIT_OTHER;
    }
    ev_after_add(run.loop, &run.after, cli_after_pass, &run);
    if (strcmp(cmd, "publish") == 0)
        rc = cli_publish(&run, timeout_ms, argv[optind + 1], argv[optind + 2]);
    else
        rc = cli_disconnect(&run, timeout_ms, argv[optind + 1]);
    pubc_free(run.pc);
    ev_loop_free(run.loop);
    return rc;
}
