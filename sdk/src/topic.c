/* MQTT topic names and filters (SPEC §11 "Topics" and "Authorisation").
 * Everything here walks the strings in place: matching runs once per message per
 * subscription on the hub's hot path, so it never allocates. */
#include "baetyl/topic.h"

#include <string.h>

/* Shared checks of names and filters: length, NUL, '$' and separator count. Wildcard
 * rules are applied per level by the caller through `wild`. */
static bool topic_valid(const char *s, size_t len, bool wild)
{
    if (!s || len == 0 || len > BT_TOPIC_MAX_LEN || s[0] == '$')
        return false;
    int seps = 0;
    size_t level = 0; /* start of the current level */
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? s[i] : '/'; /* the end closes the last level */
        if (i < len && c == '\0')
            return false;
        if (c == '+' || c == '#') {
            if (!wild)
                return false;
            /* A wildcard is a whole level on its own... */
            if (i != level || (i + 1 < len && s[i + 1] != '/'))
                return false;
            /* ...and '#' is the last one. */
            if (c == '#' && i + 1 != len)
                return false;
        } else if (c == '/') {
            if (i < len && ++seps > BT_TOPIC_MAX_SEPARATORS)
                return false;
            level = i + 1;
        }
    }
    return true;
}

bool bt_topic_valid_name(const char *s, size_t len)
{
    return topic_valid(s, len, false);
}

bool bt_topic_valid_filter(const char *s, size_t len)
{
    return topic_valid(s, len, true);
}

/* True when the level starting at p is exactly the one character c. */
static inline bool level_is(const char *p, char c)
{
    return p[0] == c && (p[1] == '\0' || p[1] == '/');
}

/* Length of the level starting at p. */
static inline size_t level_len(const char *p)
{
    const char *e = p;
    while (*e && *e != '/')
        e++;
    return (size_t)(e - p);
}

bool bt_topic_match(const char *f, const char *n)
{
    if (!f || !n)
        return false;
    /* MQTT 4.7.2: wildcards in the first level do not match '$' topics. */
    if (n[0] == '$' && (level_is(f, '+') || level_is(f, '#')))
        return false;
    for (;;) {
        if (level_is(f, '#'))
            return true;
        if (level_is(f, '+')) {
            f++;
            while (*n && *n != '/')
                n++;
        } else {
            while (*f && *f != '/') {
                if (*f != *n)
                    return false;
                f++;
                n++;
            }
            if (*n && *n != '/')
                return false;
        }
        /* Both sit at the end of a level. */
        if (*f == '\0')
            return *n == '\0';
        if (*n == '\0') /* "a/#" matches "a": '#' also stands for the parent level */
            return level_is(f + 1, '#') && f[2] == '\0';
        f++;
        n++;
    }
}

bool bt_topic_permit(const char *p, const char *t)
{
    if (!p || !t)
        return false;
    for (;;) {
        if (level_is(p, '#'))
            return true;
        size_t pl = level_len(p), tl = level_len(t);
        if (level_is(p, '+')) {
            /* '+' covers one level of any kind, but a '#' level spans several. */
            if (level_is(t, '#'))
                return false;
        } else {
            /* A literal permit level never covers a wildcard level of the topic. */
            if (level_is(t, '+') || level_is(t, '#'))
                return false;
            if (pl != tl || memcmp(p, t, pl) != 0)
                return false;
        }
        p += pl;
        t += tl;
        if (*p == '\0')
            return *t == '\0';
        if (*t == '\0')
            return level_is(p + 1, '#') && p[2] == '\0';
        p++;
        t++;
    }
}
