/* Pieces of HTTP/1.1's grammar shared by the reply and request parsers (http_parse.h). */
#include "http_parse.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

bool bt_http_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

bool bt_http_name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

const char *bt_http_header_split(const char *l, size_t n, size_t *name_len, const char **v,
                                 size_t *vlen)
{
    *name_len = 0;
    if (n > 0 && (l[0] == ' ' || l[0] == '\t'))
        return "folded header line (obsolete)";
    size_t k = 0;
    while (k < n && bt_http_tchar((unsigned char)l[k]))
        k++;
    if (k == 0 || k >= n || l[k] != ':')
        return "bad header line";
    *name_len = k;
    const char *b = l + k + 1, *e = l + n;
    while (b < e && (*b == ' ' || *b == '\t'))
        b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    for (const char *p = b; p < e; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return "control character in header";
    *v = b;
    *vlen = (size_t)(e - b);
    return NULL;
}

int bt_http_length_value(const char *v, size_t n, uint64_t *len)
{
    uint64_t x = 0;
    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *len = x;
    return 0;
}

int bt_http_te_value(const char *v, size_t n)
{
    const char *last = v;
    for (size_t i = 0; i < n; i++)
        if (v[i] == ',')
            last = v + i + 1;
    while (last < v + n && (*last == ' ' || *last == '\t'))
        last++;
    size_t ln = (size_t)(v + n - last);
    if (ln == 7 && strncasecmp(last, "chunked", 7) == 0) {
        /* only identity may come before it */
        for (const char *p = v; p < last;) {
            while (p < last && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            if (p == last)
                break;
            if ((size_t)(last - p) < 8 || strncasecmp(p, "identity", 8) != 0)
                return -1;
            p += 8;
        }
        return 1;
    }
    if (ln == 8 && strncasecmp(last, "identity", 8) == 0 && last == v)
        return 0;
    return -1;
}

int bt_http_chunk_size(const char *l, size_t n, uint64_t *size, bool *too_large)
{
    uint64_t x = 0;
    size_t i = 0;
    *too_large = false;
    for (; i < n && isxdigit((unsigned char)l[i]); i++) {
        if (i >= 15) {
            *too_large = true;
            return -1;
        }
        int c = tolower((unsigned char)l[i]);
        x = x * 16 + (uint64_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
    }
    size_t digits = i;
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;
    if (digits == 0 || (i < n && l[i] != ';'))
        return -1;
    *size = x;
    return 0;
}

bool bt_http_list_has(const char *v, size_t n, const char *want)
{
    size_t wl = strlen(want);
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t b = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - b == wl && strncasecmp(v + b, want, wl) == 0)
            return true;
    }
    return false;
}
