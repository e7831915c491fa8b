/* cfg_load over an ini file holding the input.
 *
 * The input is written after a fixed "[wspush]\nsecret_file = <a real
 * file>\n" prefix so most inputs get past the required key and exercise
 * the rest of the loader (an input starting with '!' is written as is, to
 * reach the missing-secret path too). Oracles: success or -1, never a
 * crash or a leak (libFuzzer's LSan), an error message always set on
 * failure and naming the file, and a config that loads is within the
 * header's bounds and loads again to the same result after cfg_free(). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "fuzz.h"

struct fcfg_paths {
    char dir[64];
    char ini[96];
    char secret[96];
};

/* Written once by LLVMFuzzerInitialize, read-only afterwards. */
static struct fcfg_paths fcfg;

static void fcfg_cleanup(void)
{
    unlink(fcfg.ini);
    unlink(fcfg.secret);
    rmdir(fcfg.dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(fcfg.dir, sizeof(fcfg.dir), "/tmp/wspush-fuzz-cfg-XXXXXX");
    FUZZ_CHECK(mkdtemp(fcfg.dir) != NULL);
    snprintf(fcfg.ini, sizeof(fcfg.ini), "%s/wspush.ini", fcfg.dir);
    snprintf(fcfg.secret, sizeof(fcfg.secret), "%s/secret", fcfg.dir);
    FILE *f = fopen(fcfg.secret, "w");
    FUZZ_CHECK(f != NULL);
    fputs("fuzz-secret-0123456789\n", f);
    fclose(f);
    atexit(fcfg_cleanup);
    return 0;
}

static void fcfg_list_ok(const struct cfg_list *l)
{
    FUZZ_CHECK(l->n >= 0 && l->n <= CFG_MAX_LIST);
    for (int i = 0; i < l->n; i++)
        FUZZ_CHECK(l->items[i] != NULL);
}

static void fcfg_check(const struct cfg *c)
{
    FUZZ_CHECK(c->secret.len > 0 && c->secret.len <= CFG_MAX_SECRET);
    FUZZ_CHECK(c->previous_secret.len <= CFG_MAX_SECRET);
    FUZZ_CHECK(c->secret_file[0] == '/');
    FUZZ_CHECK(c->listen.n > 0 || c->unix_listen[0]);
    FUZZ_CHECK(memchr(c->publish_socket, '\0', sizeof(c->publish_socket)) != NULL);
    FUZZ_CHECK(memchr(c->history_file, '\0', sizeof(c->history_file)) != NULL);
    FUZZ_CHECK(memchr(c->mount, '\0', sizeof(c->mount)) != NULL);
    FUZZ_CHECK(c->max_channels >= 1 && c->max_channels <= WSPUSH_MAX_CHANNELS);
    FUZZ_CHECK(c->auth == CFG_AUTH_REMOTE_USER || c->auth == CFG_AUTH_JWT);
    const struct cfg_list *lists[] = {
        &c->listen, &c->allowed_origins, &c->publish_allow_uids, &c->publish_allow_gids,
        &c->pub_allowed_origins, &c->public_channels, &c->publish, &c->subscribe,
    };
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        fcfg_list_ok(lists[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(fcfg.ini, "w");
    FUZZ_CHECK(f != NULL);
    if (size > 0 && data[0] == '!')
        fwrite(data + 1, 1, size - 1, f);
    else {
        fprintf(f, "[wspush]\nsecret_file = %s\n", fcfg.secret);
        fwrite(data, 1, size, f);
    }
    FUZZ_CHECK(fclose(f) == 0);

    struct cfg *c = calloc(1, sizeof(*c));
    FUZZ_CHECK(c != NULL);
    char err[512];
    int rc = cfg_load(c, fcfg.ini, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc < 0) {
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(strncmp(err, fcfg.ini, strlen(fcfg.ini)) == 0);
    } else {
        fcfg_check(c);
        /* Loading is repeatable on a freed struct (SIGHUP reload). */
        cfg_free(c);
        FUZZ_CHECK(cfg_load(c, fcfg.ini, err, sizeof(err)) == 0);
        fcfg_check(c);
    }
    cfg_free(c);
    free(c);
    return 0;
}
