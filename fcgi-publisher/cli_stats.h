/* cli_stats — `wspush stats`: scrapes ws-server's metrics_listen twice,
 * interval seconds apart, and prints a summary: connections by transport,
 * channels, subscriptions, messages/s and deliveries/s over the interval,
 * refusals and closes by reason (totals since start, and how many in the
 * interval). With json, one JSON object instead (docs/operations.md shows
 * both). Blocking I/O: it is a command, not a server.
 */
#ifndef WSPUSH_CLI_STATS_H
#define WSPUSH_CLI_STATS_H

/* addr: host:port, [v6]:port or a Unix socket path. Returns the exit
 * status: 0, 3 (ws-server's metrics unreachable, or an answer that is not
 * a 200 exposition), 4 (no answer within timeout_ms), 5 (out of memory). */
int cli_stats(const char *addr, double interval_s, int timeout_ms, int json);

#endif
