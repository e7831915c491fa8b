#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *log_program = "wspush";
static enum log_level log_threshold = LOG_INFO;
static const char *const log_names[] = { "error", "warn", "info", "debug" };

/* The formatted text before escaping; longer texts are cut here. */
#define LOG_TEXT_MAX 1024

void log_init(const char *program, enum log_level level)
{
    log_program = program;
    log_threshold = level;
}

void log_set_level(enum log_level level) { log_threshold = level; }

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, log_names[i]) == 0)
            return i;
    return -1;
}

int log_enabled(enum log_level level) { return level <= log_threshold; }

size_t log_escape(const char *in, size_t len, char *out, size_t cap, size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c < 0x20 || c == 0x7f) {
            if (cap - o < 4)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else if (c == '\\') {
            if (cap - o < 2)
                break;
            out[o++] = '\\';
            out[o++] = '\\';
        } else {
            if (cap - o < 1)
                break;
            out[o++] = (char)c;
        }
    }
    if (used)
        *used = i;
    return o;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char text[LOG_TEXT_MAX];
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     log_names[level], log_program);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    /* The prefix is ours (program names are compile-time strings); only the
     * text is escaped. */
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    size_t tlen = m < 0 ? 0 : (size_t)m;
    if (tlen > sizeof(text) - 1)
        tlen = sizeof(text) - 1;
    size_t len = (size_t)n;
    len += log_escape(text, tlen, line + len, sizeof(line) - len - 1, NULL);
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}
