/* log — one line per event on stderr: "<time> <level> <program>: <text>".
 * The level filter is process-wide state set once at start-up and on reload;
 * it is the one deliberate global (every module logs).
 *
 * The text of a line comes largely from clients (Origin, Referer, Host, user
 * names, channel names), so log_msg escapes it before writing: every byte
 * below 0x20 and 0x7f becomes \xNN (newline included, so one event is one
 * line), a backslash becomes \\ (so "\x1b" in the log always means the
 * byte, never the four characters). Well-formed UTF-8 passes unchanged
 * (names stay readable) except the C1 controls U+0080..U+009F (a terminal
 * obeys the 8-bit CSI as it does ESC), which are escaped byte by byte like
 * every byte that is not well-formed UTF-8. A line is at most LOG_LINE_MAX bytes with its newline;
 * a longer text is cut, never in the middle of an escape. */
#ifndef WSPUSH_LOG_H
#define WSPUSH_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

#define LOG_LINE_MAX 2048

void log_init(const char *program, enum log_level level);
void log_set_level(enum log_level level);
/* Parses "error", "warn", "info", "debug"; -1 on anything else. */
int  log_level_parse(const char *s);
int  log_enabled(enum log_level level);
/* Formats, escapes (above) and writes one line to stderr (unbuffered: one
 * write per line). */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The escaping log_msg applies, as a pure function: writes the escaped form
 * of in[0..len) to out (at most cap bytes, no terminator) and returns the
 * bytes written. Stops before the first byte whose escape would not fit, so
 * the output never ends in a partial escape; *used (if not NULL) gets the
 * input bytes consumed. No I/O, no allocation. */
size_t log_escape(const char *in, size_t len, char *out, size_t cap, size_t *used);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  do { if (log_enabled(LOG_INFO)) log_msg(LOG_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
