/* "{{.ENV_NAME}}" substitution in config texts, the subset of Go's text/template that
 * Baetyl 1.0 configs use. Works on raw bytes (the text may hold NULs: the YAML parser
 * rejects those later with a position). */
#include "baetyl/buf.h"
#include "baetyl/config.h"
#include "baetyl/log.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_buf text; /* NUL-terminated */
    int oom;
} strbuf;

static void sb_add(strbuf *b, const char *p, size_t n)
{
    if (!b->oom && n && bt_buf_append_nul(&b->text, p, n) < 0)
        b->oom = 1;
}

static int is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* If text[i..] is "{{ .NAME }}", sets the name span and returns the length of the whole
 * action; else returns 0. */
static size_t match_action(const char *t, size_t len, size_t i, size_t *name, size_t *namelen)
{
    size_t j = i + 2;
    while (j < len && (t[j] == ' ' || t[j] == '\t'))
        j++;
    if (j >= len || t[j] != '.')
        return 0;
    j++;
    if (j >= len || !is_name_start(t[j]))
        return 0;
    *name = j;
    while (j < len && is_name_char(t[j]))
        j++;
    *namelen = j - *name;
    while (j < len && (t[j] == ' ' || t[j] == '\t'))
        j++;
    if (j + 1 >= len || t[j] != '}' || t[j + 1] != '}')
        return 0;
    return j + 2 - i;
}

char *bt_cfg_template(const char *text, size_t len, size_t *outlen)
{
    strbuf b = {0};
    if (!text)
        len = 0;
    size_t i = 0;
    while (i < len && !b.oom) {
        const char *open = memchr(text + i, '{', len - i);
        size_t at = open ? (size_t)(open - text) : len;
        sb_add(&b, text + i, at - i);
        i = at;
        if (i >= len)
            break;
        size_t name = 0, namelen = 0, n = 0;
        if (i + 1 < len && text[i + 1] == '{')
            n = match_action(text, len, i, &name, &namelen);
        if (!n) {
            sb_add(&b, text + i, 1);
            i++;
            continue;
        }
        char *key = strndup(text + name, namelen);
        if (!key) {
            b.oom = 1;
            break;
        }
        const char *val = getenv(key);
        if (val) {
            sb_add(&b, val, strlen(val));
        } else {
            /* Left as written so the YAML still parses and the user sees the name. */
            bt_logf(BT_LOG_WARN, "config: environment variable %.64s%s is not set", key,
                    namelen > 64 ? "..." : "");
            sb_add(&b, text + i, n);
        }
        free(key);
        i += n;
    }
    /* An empty input still yields a valid empty string. */
    if (!b.text.p && !b.oom && bt_buf_append_nul(&b.text, "", 0) < 0)
        b.oom = 1;
    if (b.oom) {
        bt_buf_free(&b.text);
        return NULL;
    }
    if (outlen)
        *outlen = b.text.len;
    return (char *)b.text.p;
}
