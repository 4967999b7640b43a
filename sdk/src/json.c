/* jansson helpers: parse with an error text, compact dump, dotted-path lookup. */
#include "baetyl/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *bt_json_parse(const char *buf, size_t len, char *err, size_t errlen)
{
    if (!buf) {
        snprintf(err, errlen, "no JSON text");
        return NULL;
    }
    json_error_t je;
    json_t *v = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v)
        snprintf(err, errlen, "line %d column %d: %s", je.line, je.column, je.text);
    return v;
}

json_t *bt_json_parse_object(const char *buf, size_t len, char *err, size_t errlen)
{
    json_t *v = bt_json_parse(buf, len, err, errlen);
    if (v && !json_is_object(v)) {
        snprintf(err, errlen, "not a JSON object");
        json_decref(v);
        return NULL;
    }
    return v;
}

char *bt_json_dump(const json_t *v)
{
    if (!v)
        return NULL;
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* One path segment as an array index: canonical decimal only ("0", "12", not "01"). */
static int parse_index(const char *s, size_t n, size_t *idx)
{
    if (n == 0 || n > 9 || (n > 1 && s[0] == '0'))
        return -1;
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    *idx = v;
    return 0;
}

json_t *bt_json_get(const json_t *v, const char *path)
{
    if (!v || !path)
        return NULL;
    json_t *cur = (json_t *)v; /* jansson's getters take non-const pointers */
    const char *p = path;
    while (*p && cur) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, p, n);
        } else if (json_is_array(cur)) {
            size_t idx;
            cur = parse_index(p, n, &idx) == 0 ? json_array_get(cur, idx) : NULL;
        } else {
            cur = NULL;
        }
        if (!dot)
            break;
        p = dot + 1;
        if (!*p) /* "a." names nothing */
            cur = NULL;
    }
    return cur;
}

const char *bt_json_get_str(const json_t *v, const char *path)
{
    return json_string_value(bt_json_get(v, path));
}

long long bt_json_get_int(const json_t *v, const char *path, long long def)
{
    json_t *x = bt_json_get(v, path);
    return json_is_integer(x) ? (long long)json_integer_value(x) : def;
}

bool bt_json_get_bool(const json_t *v, const char *path, bool def)
{
    json_t *x = bt_json_get(v, path);
    return json_is_boolean(x) ? json_is_true(x) : def;
}
