/* addr — listening sockets from config strings. */
#ifndef WSPUSH_ADDR_H
#define WSPUSH_ADDR_H

#include <stddef.h>
#include <sys/types.h>

/* Opens a non-blocking, close-on-exec listening socket for spec:
 *   "host:port", "[v6addr]:port", "*:port" (all IPv4), or a Unix socket path
 *   (starting with '/' or '.'; a stale socket file, one nothing answers on,
 *   is replaced; one where a process still accepts is refused: a second
 *   instance with the same config must not steal a live socket).
 * For a Unix path, mode (e.g. 0660) is applied and, when group is non-empty,
 * the socket's group is changed. reuseport sets SO_REUSEPORT (several
 * processes sharing a port). Returns the fd, or -1 with err filled. */
int addr_listen(const char *spec, int backlog, int reuseport, mode_t mode,
                const char *group, char *err, size_t errlen);

/* 1 if spec names a Unix socket path. */
int addr_is_unix(const char *spec);

/* Which file a Unix socket path named when we bound it, so that only a
 * socket this process still owns is ever removed: a second instance, or
 * an operator, may have put another one there since. */
struct addr_unix_id {
    dev_t dev;
    ino_t ino;
    int   valid;
};

/* The identity of the socket file at path now (valid = 0 when absent). */
struct addr_unix_id addr_unix_identity(const char *path);
/* Unlinks path if it is still the file id names. Returns 1 if removed. */
int addr_unlink_owned(const char *path, const struct addr_unix_id *id);

#endif
