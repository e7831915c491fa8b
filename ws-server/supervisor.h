/* supervisor — ws-server's worker processes (workers > 1): the process
 * systemd (or `make run`) started forks `n` workers and only watches them.
 * It holds no client connection and does no engine work.
 *
 * - A worker that dies (a crash, kill -9, an exit of its own) is started
 *   again in its slot after a pause that doubles with each restart of
 *   that slot within SUP_WINDOW_MS (SUP_FIRST_DELAY_MS, then twice that,
 *   ...). A slot that dies more than SUP_RESTARTS times within the window
 *   is a crash loop: the supervisor logs it as an error, stops every
 *   worker and exits 1 (systemd's Restart= then decides), instead of
 *   forking forever.
 * - SIGHUP: the reload handler runs in the supervisor first (it re-reads
 *   the config, so a worker started later serves the new one); when it
 *   accepts the file, SIGHUP goes on to every worker, which reloads its
 *   own (each logs its "configuration reloaded").
 * - SIGTERM / SIGINT: SIGTERM to every worker, which stops gracefully;
 *   once all are reaped the supervisor exits 0 (1 when one exited
 *   uncleanly, or had to be killed after SUP_STOP_MS).
 * - Workers are forked from the loop's after-pass hook, where no further
 *   event of the supervisor's loop can be dispatched in the child; a
 *   worker gets SIGTERM when the supervisor dies (PR_SET_PDEATHSIG).
 */
#ifndef WSPUSH_SUPERVISOR_H
#define WSPUSH_SUPERVISOR_H

#include <stdint.h>
#include <sys/types.h>

#include "ev.h"

#define SUP_FIRST_DELAY_MS 100
#define SUP_WINDOW_MS      60000
#define SUP_RESTARTS       5
#define SUP_STOP_MS        5000

/* sup_run()'s answer in a new worker process. */
#define SUP_WORKER (-1)

struct sup_handlers {
    /* The worker of slot is running as pid. */
    void (*started)(void *ctx, int slot, pid_t pid);
    /* The worker of slot is gone (reaped) after cpu_us of CPU time. */
    void (*exited)(void *ctx, int slot, uint64_t cpu_us);
    /* SIGHUP: re-read the configuration. Returns 0 when it is accepted
     * (the workers are then told to reload), -1 when refused (logged by
     * the handler; the workers keep theirs). */
    int  (*reload)(void *ctx);
};

/* Runs n workers from loop (a fresh loop of this process, with nothing
 * else registered) until stopped. Returns the supervisor's exit status;
 * in a new worker returns SUP_WORKER with *slot set (0..n-1): the caller
 * frees loop there (closing only this process's copies) and serves. */
int sup_run(ev_loop_t *loop, int n, const struct sup_handlers *h, void *ctx, int *slot);

#endif
