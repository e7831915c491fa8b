/* addr — listening sockets from config strings. */
#ifndef WSPUSH_ADDR_H
#define WSPUSH_ADDR_H

#include <stddef.h>
#include <sys/types.h>

/* Opens a non-blocking, close-on-exec listening socket for spec:
 *   "host:port", "[v6addr]:port", "*:port" (all IPv4), or a Unix socket path
 *   (starting with '/' or '.'; a stale socket file is replaced).
 * For a Unix path, mode (e.g. 0660) is applied and, when group is non-empty,
 * the socket's group is changed. reuseport sets SO_REUSEPORT (several
 * processes sharing a port). Returns the fd, or -1 with err filled. */
int addr_listen(const char *spec, int backlog, int reuseport, mode_t mode,
                const char *group, char *err, size_t errlen);

/* 1 if spec names a Unix socket path. */
int addr_is_unix(const char *spec);

#endif
