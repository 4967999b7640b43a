/* Unknown keys of a config: a misspelled key used to be ignored silently (a "servics:"
 * application stopped everything). Each key of a struct's mapping is compared with the
 * field names of its schema; one that matches none is a warning naming the closest known
 * key, or an error at the top level when the caller asks for it (application.yml). */
#include "config_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "baetyl/log.h"

#define MAX_WARNINGS 20    /* per load; then one line saying more were left out */
#define MAX_MERGE_DEPTH 16 /* "<<" merges inside merges */
#define KEY_SHOWN 64       /* bytes of a key shown in a message */
#define MAX_KEY_DIST 64    /* longer keys get no suggestion */
#define MSG_LEN (BT_CFG_PATH_LEN + 256)

size_t bt_cfg_distance(const char *a, size_t la, const char *b, size_t lb, size_t limit)
{
    if (la > MAX_KEY_DIST || lb > MAX_KEY_DIST || (la > lb ? la - lb : lb - la) > limit)
        return limit + 1;
    /* Optimal string alignment: three rows of the Levenshtein table. */
    size_t rows[3][MAX_KEY_DIST + 1];
    size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        size_t best = cur[0];
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t cost = ca == cb ? 0 : 1;
            size_t d = prev[j - 1] + cost;
            if (prev[j] + 1 < d)
                d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && pp[j - 2] + 1 < d)
                d = pp[j - 2] + 1;
            cur[j] = d;
            if (d < best)
                best = d;
        }
        if (best > limit)
            return limit + 1;
        size_t *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* How far a suggestion may be from what was written: one edit for short keys. */
static size_t dist_limit(size_t la, size_t lb)
{
    size_t m = la > lb ? la : lb;
    return m <= 4 ? 1 : m <= 8 ? 2 : 3;
}

/* The component of name after the plen bytes of prefix it shares (prefix ends with '.', or
 * is empty); *len is its length, *more whether more components follow. NULL when name
 * does not start with the prefix. */
static const char *component(const char *name, const char *prefix, size_t plen, size_t *len,
                             bool *more)
{
    if (!name || (plen && strncmp(name, prefix, plen) != 0))
        return NULL;
    const char *comp = name + plen;
    const char *dot = strchr(comp, '.');
    *len = dot ? (size_t)(dot - comp) : strlen(comp);
    *more = dot != NULL;
    return comp;
}

typedef struct {
    const char *key;
    size_t klen;
    const char *prefix; /* a field name starting with the current prefix */
    size_t plen;
    bool known;
    const char *nested; /* a field name going deeper through this key, if any */
    bool whole;         /* a field takes this key's whole value (its keys are its own) */
    bool suggest;       /* look for the closest component too (only for a key reported) */
    const char *best;   /* closest component, for the suggestion */
    size_t best_len, best_dist;
} match_t;

/* Compares m's key with every field name at m's prefix; each comparison counts against the
 * document's lookup budget (aliases can make a small text check the same keys millions of
 * times). Returns 0 or -1 (budget exhausted). */
static int match_fields(bt_cfg_ctx *c, const bt_cfg_schema *s, match_t *m, int depth)
{
    if (depth > 64)
        return 0;
    for (const bt_cfg_field *f = s->fields; f && f->type; f++) {
        if (++c->scans > BT_CFG_MAX_SCANS)
            return bt_cfg_too_large(c);
        if (f->flags & BT_CFG_INLINE) {
            if (f->sub && match_fields(c, f->sub, m, depth + 1) < 0)
                return -1;
            continue;
        }
        size_t clen;
        bool more;
        const char *comp = component(f->name, m->prefix, m->plen, &clen, &more);
        if (!comp || clen == 0)
            continue;
        if (clen == m->klen && strncasecmp(comp, m->key, clen) == 0) {
            m->known = true;
            if (more && !m->nested)
                m->nested = f->name;
            else if (!more)
                m->whole = true;
            continue;
        }
        if (!m->suggest)
            continue;
        size_t lim = dist_limit(m->klen, clen);
        if (lim >= clen)
            lim = clen - 1; /* never suggest a key sharing nothing with what was written */
        size_t d = bt_cfg_distance(m->key, m->klen, comp, clen, lim);
        if (d <= lim && d < m->best_dist) {
            m->best = comp;
            m->best_len = clen;
            m->best_dist = d;
        }
    }
    return 0;
}

/* The key as shown: control characters as '?', cut after KEY_SHOWN bytes. */
static void show_key(char *out, size_t n, const char *k, size_t kl)
{
    size_t o = 0;
    for (size_t i = 0; i < kl && o + 4 < n; i++) {
        if (i == KEY_SHOWN) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char ch = (unsigned char)k[i];
        out[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    out[o] = '\0';
}

static void emit(bt_cfg_ctx *c, const char *text)
{
    if (c->opts && c->opts->warn)
        c->opts->warn(c->opts->warn_arg, text);
    else if (c->file)
        bt_logkv(BT_LOG_WARN, text, "file", c->file, NULL);
    else
        bt_logkv(BT_LOG_WARN, text, NULL);
}

static int unknown(bt_cfg_ctx *c, const match_t *m, const char *path, int line, bool top)
{
    char key[KEY_SHOWN + 8], msg[MSG_LEN];
    show_key(key, sizeof key, m->key, m->klen);
    if (m->best)
        snprintf(msg, sizeof msg, "unknown key %s (did you mean %.*s?)", key, (int)m->best_len,
                 m->best);
    else
        snprintf(msg, sizeof msg, "unknown key %s", key);
    if (top && c->opts && c->opts->strict_top)
        return bt_cfg_fail(c, path, line, "%s", msg);
    if (++c->warnings > MAX_WARNINGS) {
        if (c->warnings == MAX_WARNINGS + 1)
            emit(c, "more unknown keys not shown");
        return 0;
    }
    char text[MSG_LEN + BT_CFG_PATH_LEN + 32];
    const char *sep = *path ? ": " : "";
    if (line > 0)
        snprintf(text, sizeof text, "%s%s%s (line %d)", path, sep, msg, line);
    else
        snprintf(text, sizeof text, "%s%s%s", path, sep, msg);
    emit(c, text);
    return 0;
}

/* Whether an unknown key here would be shown (the suggestion costs an edit distance per
 * field: not spent on keys past the warning cap of a hostile document). */
static bool reported(const bt_cfg_ctx *c, bool top)
{
    return (top && c->opts && c->opts->strict_top) || c->warnings < MAX_WARNINGS;
}

static bool is_merge(const yaml_node_t *k)
{
    return k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && k->data.scalar.length == 2 &&
           memcmp(k->data.scalar.value, "<<", 2) == 0;
}

/* Checks the keys of map at the dotted prefix (plen bytes of a field name) of schema s. */
static int check_map(bt_cfg_ctx *c, const bt_cfg_schema *s, yaml_node_t *map, const char *path,
                     const char *prefix, size_t plen, int depth)
{
    if (depth > MAX_MERGE_DEPTH || map->type != YAML_MAPPING_NODE)
        return 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        if (++c->scans > BT_CFG_MAX_SCANS)
            return bt_cfg_too_large(c);
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE)
            continue;
        if (is_merge(k)) {
            if (v->type == YAML_MAPPING_NODE) {
                if (check_map(c, s, v, path, prefix, plen, depth + 1) < 0)
                    return -1;
            } else if (v->type == YAML_SEQUENCE_NODE) {
                for (yaml_node_item_t *it = v->data.sequence.items.start;
                     it < v->data.sequence.items.top; it++) {
                    yaml_node_t *mm = yaml_document_get_node(c->doc, *it);
                    if (mm && check_map(c, s, mm, path, prefix, plen, depth + 1) < 0)
                        return -1;
                }
            }
            continue;
        }
        match_t m = {.key = (const char *)k->data.scalar.value,
                     .klen = k->data.scalar.length,
                     .prefix = prefix,
                     .plen = plen,
                     .best_dist = (size_t)-1};
        if (match_fields(c, s, &m, 0) < 0)
            return -1;
        if (!m.known && reported(c, plen == 0 && !*path)) {
            m.suggest = true;
            if (match_fields(c, s, &m, 0) < 0)
                return -1;
        }
        if (!m.known) {
            if (unknown(c, &m, path, bt_cfg_line(c, k), plen == 0 && !*path) < 0)
                return -1;
            continue;
        }
        if (m.nested && !m.whole && v->type == YAML_MAPPING_NODE) {
            char kpath[BT_CFG_PATH_LEN];
            bt_cfg_path_join(kpath, path, m.key, m.klen);
            if (check_map(c, s, v, kpath, m.nested, plen + m.klen + 1, 0) < 0)
                return -1;
        }
    }
    return 0;
}

int bt_cfg_check_keys(bt_cfg_ctx *c, const bt_cfg_schema *s, yaml_node_t *map, const char *path)
{
    if (!map || c->in_default || !c->validate)
        return 0;
    return check_map(c, s, map, path, "", 0, 0);
}
