#include "procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Reads path into out (NUL-terminated, truncated to fit). Returns the
 * length or -errno. */
static ssize_t procstat_read_file(const char *path, char *out, size_t outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, out + len, outlen - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (n == 0 || (len += (size_t)n) == outlen - 1)
            break;
    }
    close(fd);
    out[len] = '\0';
    return (ssize_t)len;
}

/* Entries of a /proc/<pid>/fd directory, counted with getdents64 into a stack buffer
 * (opendir would allocate). For /proc/self the descriptor used to
 * count is left out. */
static int procstat_count_fds(const char *dir, int self, uint64_t *n)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char dbuf[4096];
    uint64_t count = 0;
    for (;;) {
        long r = syscall(SYS_getdents64, fd, dbuf, sizeof(dbuf));
        if (r < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (r == 0)
            break;
        for (long off = 0; off < r;) {
            unsigned short reclen;
            memcpy(&reclen, dbuf + off + 16, sizeof(reclen));
            const char *name = dbuf + off + 19;
            if (name[0] != '.')
                count++;
            off += reclen;
        }
    }
    close(fd);
    *n = self && count ? count - 1 : count;
    return 0;
}

/* The "btime" line of /proc/stat (boot time, seconds since the epoch).
 * The file grows with the CPU count (the intr line alone may be kilobytes),
 * so it is scanned in chunks of buf, the tail of each carried over.
 * Returns the time or -errno. */
static long long procstat_boot_time(char *buf, size_t buflen)
{
    int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t keep = 0;
    long long btime = -ENOENT;
    for (;;) {
        ssize_t n = read(fd, buf + keep, buflen - 1 - keep);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t len = keep + (size_t)n;
        buf[len] = '\0';
        const char *bt = strstr(buf, "\nbtime ");
        if (bt && strchr(bt + 7, '\n')) {
            btime = strtoll(bt + 7, NULL, 10);
            break;
        }
        /* A line cut at the chunk's end is looked at again with the next. */
        keep = len < 64 ? len : 64;
        memmove(buf, buf + len - keep, keep);
    }
    close(fd);
    return btime;
}

int procstat_read(pid_t pid, struct procstat *p)
{
    memset(p, 0, sizeof(*p));
    char text[4096];
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (ticks <= 0)
        ticks = 100;
    if (page <= 0)
        page = 4096;
    char path[64];
    if (pid > 0)
        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    else
        snprintf(path, sizeof(path), "/proc/self/fd");
    int rc = procstat_count_fds(path, pid <= 0, &p->open_fds);
    if (pid > 0)
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    else
        snprintf(path, sizeof(path), "/proc/self/stat");
    ssize_t n = procstat_read_file(path, text, sizeof(text));
    if (n < 0)
        return (int)n;
    /* Fields after the command name, which is in parentheses and may hold
     * spaces: field 3 (state) starts two bytes after the last ')'. */
    char *q = strrchr(text, ')');
    if (!q)
        return -EINVAL;
    unsigned long long utime = 0, stime = 0, start = 0, rss = 0;
    int field = 3;
    for (char *s = q + 2; *s && field <= 24; field++) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (field == 14) utime = v;
        else if (field == 15) stime = v;
        else if (field == 22) start = v;
        else if (field == 24) rss = v;
        s = strchr(s, ' ');
        if (!s)
            break;
        s++;
    }
    p->cpu_seconds = (double)(utime + stime) / (double)ticks;
    p->rss_bytes = (uint64_t)rss * (uint64_t)page;
    long long btime = procstat_boot_time(text, sizeof(text));
    if (btime < 0)
        return (int)btime;
    p->start_time = (double)btime + (double)start / (double)ticks;
    return rc;
}
