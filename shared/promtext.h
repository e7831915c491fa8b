/* promtext — reading the Prometheus text exposition (format 0.0.4), one
 * line at a time: what `wspush stats` needs from a scrape of
 * metrics_listen. A pure parser over (buf, len): no I/O, no allocation;
 * what it hands back points into the caller's buffer.
 */
#ifndef WSPUSH_PROMTEXT_H
#define WSPUSH_PROMTEXT_H

#include <stddef.h>
#include <sys/types.h>

#include "str.h"

#define PROM_NEED_MORE   (-2)   /* no '\n' yet: the line is not complete */
#define PROM_E_MALFORMED (-1)

struct prom_sample {
    struct str name;      /* empty for a comment (# ...) or blank line */
    struct str labels;    /* between the braces, without them; empty when none */
    double     value;
};

/* Parses the line at the start of [buf, buf+len): a sample
 * `name[{labels}] value [timestamp]`, a comment or a blank line, ended by
 * '\n'. Returns the bytes of the line, '\n' included (s->name empty for a
 * comment or blank line), PROM_NEED_MORE, or PROM_E_MALFORMED (a name
 * that is not [a-zA-Z_:][a-zA-Z0-9_:]*, unbalanced labels, a value strtod
 * does not take whole). */
ssize_t prom_parse_line(const char *buf, size_t len, struct prom_sample *s);

/* The value of label key in a sample's labels (as written, escapes not
 * decoded). Returns 1 with *value set, 0 when absent, PROM_E_MALFORMED
 * when labels do not parse as key="value" pairs. */
int prom_label(struct str labels, const char *key, struct str *value);

#endif
