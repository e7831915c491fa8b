#include "payload.h"

#include <jansson.h>

#include "pattern.h"
#include "utf8.h"
#include "wspush.h"

int payload_check_data(const char *p, size_t len)
{
    if (!utf8_valid((const unsigned char *)p, len))
        return PAYLOAD_E_UTF8;
    json_error_t jerr;
    /* INT_AS_REAL: an integer past 64 bits is valid JSON; only its text
     * travels on, so the double jansson keeps does not matter. */
    json_t *v = json_loadb(p, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
    if (v) {
        json_decref(v);
        return PAYLOAD_OK;
    }
    return json_error_code(&jerr) == json_error_numeric_overflow ? PAYLOAD_E_RANGE : PAYLOAD_E_JSON;
}

int payload_check_channels(const struct str *names, int n)
{
    if (n < 1 || n > WSPUSH_MAX_CHANNELS)
        return PAYLOAD_E_COUNT;
    for (int i = 0; i < n; i++) {
        if (!pat_channel_valid(names[i].p, names[i].len))
            return PAYLOAD_E_CHANNEL;
        for (int j = 0; j < i; j++)
            if (str_eq(names[j], names[i]))
                return PAYLOAD_E_REPEATED;
    }
    return PAYLOAD_OK;
}

const char *payload_strerror(int code)
{
    switch (code) {
    case PAYLOAD_OK:         return "ok";
    case PAYLOAD_E_JSON:     return "data is not one JSON value";
    case PAYLOAD_E_RANGE:    return "data holds a number beyond a double's range (quote it)";
    case PAYLOAD_E_UTF8:     return "data is not valid UTF-8";
    case PAYLOAD_E_CHANNEL:  return "invalid channel name";
    case PAYLOAD_E_REPEATED: return "channel listed twice";
    case PAYLOAD_E_COUNT:    return "no channel, or too many";
    default:                 return "invalid message";
    }
}
