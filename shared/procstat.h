/* procstat — what Prometheus calls the process metrics (resident memory,
 * CPU time, open descriptors, start time) of one process, read from
 * /proc/<pid> at scrape time. No allocation: the files are read into stack
 * buffers and the fd directory is counted with getdents64.
 */
#ifndef WSPUSH_PROCSTAT_H
#define WSPUSH_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

struct procstat {
    uint64_t rss_bytes;
    double   cpu_seconds;         /* user + system */
    uint64_t open_fds;
    double   start_time;          /* seconds since the Unix epoch */
};

/* Fills p for process pid (0: the calling process). Returns 0, or -errno
 * when a file cannot be read (-ENOENT: no such process; p then holds what
 * could be read, zeros elsewhere). Reading another process's fd directory
 * needs the same user (or CAP_SYS_PTRACE): the caller's own workers. */
int procstat_read(pid_t pid, struct procstat *p);

#endif
