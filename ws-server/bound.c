#include "bound.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"

/* Backlogs as the single-process server uses them (server.c, pubsock.c,
 * metrics_http.c). */
#define BOUND_BACKLOG          1024
#define BOUND_PUBLISH_BACKLOG  128
#define BOUND_METRICS_BACKLOG  64

/* One listen address: a TCP address holds nworkers sockets (fd[slot]), a
 * Unix one a single shared socket in fd[0]. */
struct bound_addr {
    char                 spec[CFG_PATH_MAX];
    int                  is_unix;
    struct addr_unix_id  id;      /* the socket file we made, when is_unix */
    int                 *fd;      /* -1: closed or taken in this process */
};

/* A named socket file of the set: a Unix listen address, the publish or
 * metrics socket. */
struct bound_file {
    char                spec[CFG_PATH_MAX];
    struct addr_unix_id id;
    int                 fd;
};

struct bound {
    int                nworkers;
    int                naddrs;
    struct bound_addr  addrs[2 * CFG_MAX_LIST + 1];  /* listen, tls_listen, unix_listen */
    struct bound_file  publish;
    struct bound_file  metrics;
};

static void bound_close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* A Unix address or one TCP address probed then bound once per slot. */
static int bound_addr_open(struct bound *b, const char *spec, char *err, size_t errlen)
{
    struct bound_addr *a = &b->addrs[b->naddrs];
    snprintf(a->spec, sizeof(a->spec), "%s", spec);
    a->is_unix = addr_is_unix(spec);
    int n = a->is_unix ? 1 : b->nworkers;
    a->fd = malloc((size_t)n * sizeof(*a->fd));
    if (!a->fd) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++)
        a->fd[i] = -1;
    b->naddrs++;
    if (a->is_unix) {
        a->fd[0] = addr_listen(spec, BOUND_BACKLOG, 0, 0666, NULL, err, errlen);
        a->id = addr_unix_identity(spec);
        return a->fd[0] < 0 ? -1 : 0;
    }
    /* Without SO_REUSEPORT first: an address someone already listens on
     * (with or without it) fails here rather than sharing its connections. */
    int probe = addr_listen(spec, 1, 0, 0, NULL, err, errlen);
    if (probe < 0)
        return -1;
    close(probe);
    for (int i = 0; i < n; i++) {
        a->fd[i] = addr_listen(spec, BOUND_BACKLOG, 1, 0, NULL, err, errlen);
        if (a->fd[i] < 0)
            return -1;
    }
    return 0;
}

static int bound_file_open(struct bound_file *f, const char *spec, int backlog, mode_t mode,
                           const char *group, char *err, size_t errlen)
{
    snprintf(f->spec, sizeof(f->spec), "%s", spec);
    f->fd = addr_listen(spec, backlog, 0, mode, group, err, errlen);
    if (f->fd < 0)
        return -1;
    f->id = addr_unix_identity(spec);
    return 0;
}

bound_t *bound_open(const struct cfg *cfg, int nworkers, char *err, size_t errlen)
{
    struct bound *b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->nworkers = nworkers;
    b->publish.fd = -1;
    b->metrics.fd = -1;
    for (int i = 0; i < cfg->listen.n; i++)
        if (bound_addr_open(b, cfg->listen.items[i], err, errlen) < 0)
            goto fail;
    if (cfg->unix_listen[0] && bound_addr_open(b, cfg->unix_listen, err, errlen) < 0)
        goto fail;
    for (int i = 0; i < cfg->tls_listen.n; i++)
        if (bound_addr_open(b, cfg->tls_listen.items[i], err, errlen) < 0)
            goto fail;
    if (bound_file_open(&b->publish, cfg->publish_socket, BOUND_PUBLISH_BACKLOG,
                        (mode_t)cfg->publish_socket_mode, cfg->publish_socket_group, err,
                        errlen) < 0)
        goto fail;
    if (cfg->metrics_listen[0]) {
        char why[256];
        if (bound_file_open(&b->metrics, cfg->metrics_listen, BOUND_METRICS_BACKLOG, 0660, NULL,
                            why, sizeof(why)) < 0) {
            snprintf(err, errlen, "metrics_listen: %s", why);
            goto fail;
        }
    }
    return b;
fail:
    bound_free(b, 1);
    return NULL;
}

void bound_keep(bound_t *b, int slot)
{
    for (int i = 0; i < b->naddrs; i++) {
        if (b->addrs[i].is_unix)
            continue;
        for (int w = 0; w < b->nworkers; w++)
            if (w != slot)
                bound_close_fd(&b->addrs[i].fd[w]);
    }
}

int bound_take(bound_t *b, const char *spec, int slot)
{
    for (int i = 0; i < b->naddrs; i++) {
        struct bound_addr *a = &b->addrs[i];
        if (strcmp(a->spec, spec) != 0)
            continue;
        int *p = &a->fd[a->is_unix ? 0 : slot];
        int fd = *p;
        *p = -1;
        return fd;
    }
    return -1;
}

int bound_take_publish(bound_t *b)
{
    int fd = b->publish.fd;
    b->publish.fd = -1;
    return fd;
}

int bound_take_metrics(bound_t *b)
{
    int fd = b->metrics.fd;
    b->metrics.fd = -1;
    return fd;
}

void bound_free(bound_t *b, int unlink)
{
    if (!b)
        return;
    for (int i = 0; i < b->naddrs; i++) {
        struct bound_addr *a = &b->addrs[i];
        int n = a->is_unix ? 1 : b->nworkers;
        for (int w = 0; a->fd && w < n; w++)
            bound_close_fd(&a->fd[w]);
        if (unlink && a->is_unix)
            addr_unlink_owned(a->spec, &a->id);
        free(a->fd);
    }
    bound_close_fd(&b->publish.fd);
    bound_close_fd(&b->metrics.fd);
    if (unlink) {
        addr_unlink_owned(b->publish.spec, &b->publish.id);
        if (b->metrics.spec[0] && addr_is_unix(b->metrics.spec))
            addr_unlink_owned(b->metrics.spec, &b->metrics.id);
    }
    free(b);
}
