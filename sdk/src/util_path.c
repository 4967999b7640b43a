/* Lexical path cleaning (util.h). Lexical only: callers that must stay inside a directory
 * on disk also resolve symlinks (see the master's volume checks). */
#include "baetyl/util.h"

#include <stdlib.h>
#include <string.h>

int bt_path_clean_rel(const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in);
    if (outlen < n + 1)
        return -1;
    size_t o = 0;
    const char *p = in;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t sl = e ? (size_t)(e - p) : strlen(p);
        if (sl == 1 && p[0] == '.') {
            /* skip */
        } else if (sl == 2 && p[0] == '.' && p[1] == '.') {
            if (o == 0)
                return -1; /* climbs above the root */
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* the separator */
        } else {
            if (o > 0)
                out[o++] = '/';
            memcpy(out + o, p, sl);
            o += sl;
        }
        p += sl;
    }
    out[o] = '\0';
    return o == 0 ? -1 : 0;
}

char *bt_path_clean_inside(const char *in)
{
    if (!in || in[0] == '/')
        return NULL;
    char *out = malloc(strlen(in) + 1), *o = out;
    if (!out)
        return NULL;
    const char *p = in;
    while (*p) {
        size_t l = strcspn(p, "/");
        if (l == 2 && p[0] == '.' && p[1] == '.') {
            free(out);
            return NULL;
        }
        if (l > 0 && !(l == 1 && p[0] == '.')) {
            if (o != out)
                *o++ = '/';
            memcpy(o, p, l);
            o += l;
        }
        p += l;
        while (*p == '/')
            p++;
    }
    *o = '\0';
    return out;
}

char *bt_path_join(const char *a, const char *b)
{
    if (b[0] == '/')
        return strdup(b);
    size_t la = strlen(a);
    return bt_strdup_printf("%s%s%s", a, (la && a[la - 1] == '/') ? "" : "/", b);
}
