/* file — whole-file reads and atomic writes for what ws-server keeps
 * across a restart (history_file and its revocations) and for secrets.
 *
 * Reads open with O_NONBLOCK and insist on a regular file, so a FIFO or a
 * device named by mistake is refused at once instead of blocking the
 * event loop. Writes go to PATH.tmp, then rename(2): a crash mid-write
 * leaves the old file whole.
 */
#ifndef WSPUSH_FILE_H
#define WSPUSH_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

/* Appends the file's bytes (at most max) to out. Returns 0, or -1 with
 * err "PATH: reason" (missing, not a regular file, larger than max, read
 * error, out of memory). */
int file_read_all(const char *path, size_t max, struct buf *out, char *err, size_t errlen);

/* Replaces path with [p, p+n), mode 0600. Returns 0 or -1 with err. */
int file_write_atomic(const char *path, const void *p, size_t n, char *err, size_t errlen);

#endif
