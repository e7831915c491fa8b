#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "utf8.h"

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

/* Bytes of the well-formed UTF-8 sequence at p (2..4), or 0 when p[0]
 * starts none (a stray continuation, an overlong form, a surrogate...). */
static size_t log_utf8_len(const unsigned char *p, size_t avail)
{
    size_t n = p[0] >= 0xC2 && p[0] <= 0xDF ? 2 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3
             : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;
    return n && n <= avail && utf8_valid(p, n) ? n : 0;
}

size_t log_escape(const char *in, size_t len, char *out, size_t cap, size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0, i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t n = c >= 0x80 ? log_utf8_len(p + i, len - i) : 1;
        /* C1 controls (U+0080..U+009F, e.g. the 8-bit CSI) act on a
         * terminal like ESC does: escaped, as is any byte that is not
         * well-formed UTF-8. */
        int c1 = n == 2 && c == 0xC2 && p[i + 1] <= 0x9F;
        if (c < 0x20 || c == 0x7f || n == 0 || c1) {
            size_t k = c1 ? 2 : 1;
            if (cap - o < 4 * k)
                break;
            for (size_t j = 0; j < k; j++) {
                out[o++] = '\\';
                out[o++] = 'x';
                out[o++] = hex[p[i + j] >> 4];
                out[o++] = hex[p[i + j] & 15];
            }
            i += k;
        } else if (c == '\\') {
            if (cap - o < 2)
                break;
            out[o++] = '\\';
            out[o++] = '\\';
            i++;
        } else {
            if (cap - o < n)
                break;
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
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
