/* Scalar syntaxes of config values: Go durations ("1m30s") and docker-style sizes ("32k"),
 * plus the bool/int/float readers the loader shares. Each reader accepts the whole text
 * or nothing, so "10x" is an error rather than 10. */
#include "baetyl/config.h"
#include "config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NS_PER_MS 1000000ULL
#define MAX_NS (1ULL << 63) /* exclusive bound, like Go's time.ParseDuration */

/* Reads digits into *v (with overflow flag) and returns the first non-digit. */
static const char *read_uint(const char *p, uint64_t *v, int *overflow, int *any)
{
    *v = 0;
    *any = 0;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (*v > (MAX_NS - d) / 10)
            *overflow = 1;
        else
            *v = *v * 10 + d;
        *any = 1;
        p++;
    }
    return p;
}

/* Unit of a duration component in nanoseconds; 0 when unknown. */
static uint64_t duration_unit(const char *u, size_t n)
{
    static const struct {
        const char *name;
        uint64_t ns;
    } units[] = {
        {"ns", 1ULL},
        {"us", 1000ULL},
        {"\xc2\xb5s", 1000ULL}, /* U+00B5 micro sign */
        {"\xce\xbcs", 1000ULL}, /* U+03BC greek mu */
        {"ms", 1000000ULL},
        {"s", 1000000000ULL},
        {"m", 60ULL * 1000000000ULL},
        {"h", 3600ULL * 1000000000ULL},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].name) == n && memcmp(units[i].name, u, n) == 0)
            return units[i].ns;
    return 0;
}

int bt_parse_duration(const char *s, int64_t *ms)
{
    if (!s || !ms)
        return -1;
    const char *p = s;
    if (*p == '+')
        p++;
    if (!*p)
        return -1;
    uint64_t total = 0;
    int first = 1;
    while (*p) {
        uint64_t v, f = 0;
        double scale = 1;
        int overflow = 0, pre, post = 0;
        p = read_uint(p, &v, &overflow, &pre);
        if (overflow)
            return -1;
        if (*p == '.') {
            p++;
            /* Fraction digits beyond what fits are ignored: they cannot change the ms. */
            while (*p >= '0' && *p <= '9') {
                if (f <= (UINT64_MAX / 10 - 9) && scale < 1e18) {
                    f = f * 10 + (uint64_t)(*p - '0');
                    scale *= 10;
                }
                post = 1;
                p++;
            }
        }
        if (!pre && !post)
            return -1;
        const char *u = p;
        while (*p && *p != '.' && !(*p >= '0' && *p <= '9'))
            p++;
        uint64_t unit;
        if (p == u) {
            /* A bare number is seconds, but only as the whole text ("1m30" is wrong). */
            if (!first || *p)
                return -1;
            unit = 1000000000ULL;
        } else if (!(unit = duration_unit(u, (size_t)(p - u)))) {
            return -1;
        }
        if (v > (MAX_NS - 1) / unit)
            return -1;
        v *= unit;
        if (f > 0) {
            double extra = (double)f * ((double)unit / scale);
            if (extra >= (double)(MAX_NS - 1 - v))
                return -1;
            v += (uint64_t)extra;
        }
        if (v > MAX_NS - 1 - total)
            return -1;
        total += v;
        first = 0;
    }
    *ms = (int64_t)((total + NS_PER_MS / 2) / NS_PER_MS);
    return 0;
}

int bt_parse_size(const char *s, int64_t *bytes)
{
    if (!s || !bytes)
        return -1;
    const char *p = s;
    if (!(*p >= '0' && *p <= '9'))
        return -1;
    long double v = 0;
    while (*p >= '0' && *p <= '9')
        v = v * 10 + (*p++ - '0');
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return -1;
        long double scale = 1;
        while (*p >= '0' && *p <= '9') {
            scale /= 10;
            v += (*p++ - '0') * scale;
        }
    }
    if (*p == ' ')
        p++;
    /* Binary units as docker/go-units RAMInBytes: k, m, g, t, p, each optionally with
     * "i" and/or "b"; "b" alone is bytes. */
    long double mult = 1;
    const char *units = "kmgtp";
    const char *u = *p ? strchr(units, tolower((unsigned char)*p)) : NULL;
    if (u) {
        for (const char *q = units; q <= u; q++)
            mult *= 1024;
        p++;
        if (*p == 'i' || *p == 'I')
            p++;
    }
    if (*p == 'b' || *p == 'B')
        p++;
    if (*p)
        return -1;
    long double r = v * mult;
    if (!(r < 9223372036854775807.0L))
        return -1;
    *bytes = (int64_t)r;
    return 0;
}

int bt_cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int bt_cfg_parse_long(const char *s, long *out)
{
    const char *d = (*s == '-' || *s == '+') ? s + 1 : s;
    if (!(*d >= '0' && *d <= '9'))
        return -1;
    for (const char *q = d; *q; q++)
        if (!(*q >= '0' && *q <= '9'))
            return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno == ERANGE)
        return -2;
    if (*end)
        return -1;
    *out = v;
    return 0;
}

int bt_cfg_parse_double(const char *s, double *out)
{
    /* Plain decimal notation only: strtod alone would also take "nan", "inf", hex. */
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    int digits = 0;
    while (*p >= '0' && *p <= '9')
        p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++, digits++;
    }
    if (!digits)
        return -1;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p)
        return -1;
    errno = 0;
    double v = strtod(s, NULL);
    if (!isfinite(v) || (errno == ERANGE && fabs(v) > 1))
        return -2;
    *out = v;
    return 0;
}
