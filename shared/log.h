/* log — one line per event on stderr: "<time> <level> <program>: <text>".
 * The level filter is process-wide state set once at start-up and on reload;
 * it is the one deliberate global (every module logs). */
#ifndef WSPUSH_LOG_H
#define WSPUSH_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_init(const char *program, enum log_level level);
void log_set_level(enum log_level level);
/* Parses "error", "warn", "info", "debug"; -1 on anything else. */
int  log_level_parse(const char *s);
int  log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  do { if (log_enabled(LOG_INFO)) log_msg(LOG_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
