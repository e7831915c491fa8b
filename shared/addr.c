#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int addr_is_unix(const char *spec) { return spec[0] == '/' || spec[0] == '.'; }

/* 1 when a process may accept on the socket at path. A stale file answers
 * ECONNREFUSED; a live one accepts, or says EAGAIN with a full backlog. */
static int addr_unix_answers(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sun.sun_path))
        return 0;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    /* Only "nobody listens" (ECONNREFUSED) or "no such file" make a file
     * stale; any other answer (EACCES on another user's socket...) may be
     * a live one, which is not ours to replace. */
    int live = rc == 0 || (errno != ECONNREFUSED && errno != ENOENT);
    close(fd);
    return live;
}

struct addr_unix_id addr_unix_identity(const char *path)
{
    struct addr_unix_id id = { 0 };
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        id.dev = st.st_dev;
        id.ino = st.st_ino;
        id.valid = 1;
    }
    return id;
}

int addr_unlink_owned(const char *path, const struct addr_unix_id *id)
{
    struct addr_unix_id now = addr_unix_identity(path);
    if (!id->valid || !now.valid || now.dev != id->dev || now.ino != id->ino)
        return 0;
    return unlink(path) == 0;
}

/* The socket is bound under a temporary name and renamed into place once
 * it listens: a client that sees the path never meets a refused connect,
 * and a stale file from a crashed run is simply replaced. */
static int addr_listen_unix(const char *path, int backlog, mode_t mode, const char *group,
                            char *err, size_t errlen)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s.%d.tmp", path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "%s: socket path too long", path);
        return -1;
    }
    const char *tmp = sun.sun_path;
    /* Only a leftover socket may be replaced, never a regular file. */
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s: exists and is not a socket", path);
        return -1;
    }
    if (addr_unix_answers(path)) {
        snprintf(err, errlen, "%s: another process is listening on it (a second instance "
                 "with the same configuration?); refusing to replace it", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    unlink(tmp);
    /* Bind under a tight umask so the socket is never briefly wider than
     * `mode`. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (rc < 0) {
        snprintf(err, errlen, "bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (group && group[0]) {
        struct group *gr = getgrnam(group);
        if (!gr) {
            snprintf(err, errlen, "%s: unknown group '%s'", path, group);
            goto fail;
        }
        if (chown(tmp, (uid_t)-1, gr->gr_gid) < 0) {
            snprintf(err, errlen, "chown %s: %s", path, strerror(errno));
            goto fail;
        }
    }
    if (chmod(tmp, mode) < 0) {
        snprintf(err, errlen, "chmod %s: %s", path, strerror(errno));
        goto fail;
    }
    if (listen(fd, backlog) < 0) {
        snprintf(err, errlen, "listen %s: %s", path, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) < 0) {
        snprintf(err, errlen, "rename to %s: %s", path, strerror(errno));
        goto fail;
    }
    return fd;
fail:
    unlink(tmp);
    close(fd);
    return -1;
}

int addr_listen(const char *spec, int backlog, int reuseport, mode_t mode,
                const char *group, char *err, size_t errlen)
{
    if (addr_is_unix(spec))
        return addr_listen_unix(spec, backlog, mode, group, err, errlen);

    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || strlen(colon + 1) == 0) {
        snprintf(err, errlen, "'%s': expected host:port, [v6]:port or a socket path", spec);
        return -1;
    }
    size_t hl = (size_t)(colon - spec);
    if (spec[0] == '[') {
        if (hl < 3 || spec[hl - 1] != ']') {
            snprintf(err, errlen, "'%s': bad IPv6 address", spec);
            return -1;
        }
        hl -= 2;
        spec++;
    }
    if (hl >= sizeof(host)) {
        snprintf(err, errlen, "'%s': host too long", spec);
        return -1;
    }
    memcpy(host, spec, hl);
    host[hl] = '\0';
    const char *node = strcmp(host, "*") == 0 ? NULL : host;

    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(node, colon + 1, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "'%s': %s", spec, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        goto fail;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    /* "[::]:port" should not also claim IPv4: that is a separate listen line. */
    if (res->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        snprintf(err, errlen, "bind %s: %s", spec, strerror(errno));
        goto fail;
    }
    if (listen(fd, backlog) < 0) {
        snprintf(err, errlen, "listen %s: %s", spec, strerror(errno));
        goto fail;
    }
    freeaddrinfo(res);
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return -1;
}
