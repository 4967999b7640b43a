/* The YAML side of the config loader: parsing with limits, syntax errors with a line and
 * column, error texts naming the YAML path, and key lookups that honour "<<" merges.
 * Every key compared is counted against the document's budget (aliases can make a small
 * text look up the same mapping millions of times). */
#include "config_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_MERGE_DEPTH 16 /* "<<" merges inside merges */
#define MAX_YAML_DEPTH 256 /* nested collections in the text */
#define MAX_NODES BT_CFG_MAX_NODES
#define MAX_SCANS BT_CFG_MAX_SCANS
#define PATH_LEN BT_CFG_PATH_LEN
#define WHY_LEN 256

/* ---- error text ------------------------------------------------------------------ */

int bt_cfg_fail(bt_cfg_ctx *c, const char *path, int line, const char *fmt, ...)
{
    if (!c->err || c->errlen == 0)
        return -1;
    char msg[WHY_LEN + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *sep = path && *path ? ": " : "";
    if (!path)
        path = "";
    if (line > 0)
        snprintf(c->err, c->errlen, "%s%s%s (line %d)", path, sep, msg, line);
    else
        snprintf(c->err, c->errlen, "%s%s%s", path, sep, msg);
    return -1;
}

void bt_cfg_quote(char *out, size_t n, const char *s, size_t len)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len && o + 6 < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i == 64) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(out + o, n - o, "\\x%02x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
}

void bt_cfg_path_join(char *out, const char *base, const char *name, size_t namelen)
{
    size_t o = 0;
    for (const char *p = base; *p && o < PATH_LEN - 1; p++)
        out[o++] = *p;
    if (o && o < PATH_LEN - 1)
        out[o++] = '.';
    for (size_t i = 0; i < namelen && o < PATH_LEN - 1; i++) {
        unsigned char ch = (unsigned char)name[i];
        out[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    out[o] = '\0';
}

void bt_cfg_path_index(char *out, const char *base, size_t i)
{
    char idx[32];
    int k = snprintf(idx, sizeof idx, "[%zu]", i);
    size_t o = strnlen(base, PATH_LEN - 1);
    memcpy(out, base, o);
    if (o + (size_t)k < PATH_LEN) {
        memcpy(out + o, idx, (size_t)k);
        o += (size_t)k;
    }
    out[o] = '\0';
}

/* ---- document helpers ------------------------------------------------------------- */

int bt_cfg_line(const bt_cfg_ctx *c, const yaml_node_t *n)
{
    if (c->in_default)
        return c->default_line;
    return (int)n->start_mark.line + 1;
}

static bool scalar_is(const yaml_node_t *n, const char *s)
{
    size_t l = strlen(s);
    return n->data.scalar.length == l && memcmp(n->data.scalar.value, s, l) == 0;
}

bool bt_cfg_is_null(const yaml_node_t *n)
{
    if (!n)
        return true;
    if (n->type != YAML_SCALAR_NODE)
        return false;
    if (n->tag && strcmp((const char *)n->tag, YAML_NULL_TAG) == 0)
        return true;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    return n->data.scalar.length == 0 || scalar_is(n, "~") || scalar_is(n, "null") ||
           scalar_is(n, "Null") || scalar_is(n, "NULL");
}

static bool is_merge_key(const yaml_node_t *k)
{
    return k && k->type == YAML_SCALAR_NODE && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           scalar_is(k, "<<");
}

int bt_cfg_too_large(bt_cfg_ctx *c)
{
    if (c->scans > MAX_SCANS)
        return bt_cfg_fail(c, NULL, 0,
                           "yaml: document too large (more than %d key lookups, aliases included)",
                           MAX_SCANS);
    return bt_cfg_fail(
        c, NULL, 0, "yaml: document too large (more than %d values, aliases included)", MAX_NODES);
}

/* Own keys first (the last one wins, as in Go's yaml), then merged mappings in order. A key
 * written in another case ("clientId" for "clientid", as the seed's docs spell some) is
 * taken when no exact one is there, as Go's case-insensitive field matching did. */
int bt_cfg_map_get(bt_cfg_ctx *c, yaml_node_t *map, const char *key, size_t klen, int depth,
                   yaml_node_t **out)
{
    *out = NULL;
    if (depth > MAX_MERGE_DEPTH)
        return 0;
    yaml_node_pair_t *p;
    yaml_node_t *folded = NULL;
    bool merges = false;
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        if (++c->scans > MAX_SCANS)
            return bt_cfg_too_large(c);
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (!k || k->type != YAML_SCALAR_NODE)
            continue;
        if (k->data.scalar.length == klen && memcmp(k->data.scalar.value, key, klen) == 0)
            *out = yaml_document_get_node(c->doc, p->value);
        else if (k->data.scalar.length == klen &&
                 strncasecmp((const char *)k->data.scalar.value, key, klen) == 0)
            folded = yaml_document_get_node(c->doc, p->value);
        else if (is_merge_key(k))
            merges = true;
    }
    if (!*out)
        *out = folded;
    if (*out || !merges)
        return 0;
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (!is_merge_key(k) || !v)
            continue;
        if (v->type == YAML_MAPPING_NODE) {
            if (bt_cfg_map_get(c, v, key, klen, depth + 1, out) < 0)
                return -1;
            if (*out)
                return 0;
        } else if (v->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                yaml_node_t *m = yaml_document_get_node(c->doc, *it);
                if (!m || m->type != YAML_MAPPING_NODE)
                    continue;
                if (bt_cfg_map_get(c, m, key, klen, depth + 1, out) < 0)
                    return -1;
                if (*out)
                    return 0;
            }
        }
    }
    return 0;
}

/* ---- MAP entries ------------------------------------------------------------------ */

typedef struct {
    bt_cfg_entry *v;
    size_t n, cap;
} entries_t;

static int entries_add(bt_cfg_ctx *c, entries_t *e, yaml_node_t *k, yaml_node_t *v, bool own)
{
    if (++c->scans > MAX_SCANS || e->n >= MAX_NODES)
        return bt_cfg_too_large(c);
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        bt_cfg_entry *nv = realloc(e->v, cap * sizeof *nv);
        if (!nv)
            return bt_cfg_fail(c, NULL, 0, "out of memory");
        e->v = nv;
        e->cap = cap;
    }
    e->v[e->n] = (bt_cfg_entry){k, v, e->n, own};
    e->n++;
    return 0;
}

static int entries_collect(bt_cfg_ctx *c, entries_t *e, yaml_node_t *map, int depth,
                           const char *path)
{
    if (depth > MAX_MERGE_DEPTH)
        return 0;
    yaml_node_pair_t *p;
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (++c->scans > MAX_SCANS)
            return bt_cfg_too_large(c);
        if (!k || !v)
            continue;
        if (k->type != YAML_SCALAR_NODE)
            return bt_cfg_fail(c, path, bt_cfg_line(c, k), "key is not a string");
        if (is_merge_key(k))
            continue;
        if (entries_add(c, e, k, v, depth == 0) < 0)
            return -1;
    }
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (!is_merge_key(k) || !v)
            continue;
        if (v->type == YAML_MAPPING_NODE) {
            if (entries_collect(c, e, v, depth + 1, path) < 0)
                return -1;
        } else if (v->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                yaml_node_t *m = yaml_document_get_node(c->doc, *it);
                if (m && m->type == YAML_MAPPING_NODE &&
                    entries_collect(c, e, m, depth + 1, path) < 0)
                    return -1;
            }
        } else {
            return bt_cfg_fail(c, path, bt_cfg_line(c, v), "\"<<\" must merge a mapping");
        }
    }
    return 0;
}

static int key_cmp(const yaml_node_t *a, const yaml_node_t *b)
{
    size_t la = a->data.scalar.length, lb = b->data.scalar.length;
    int r = memcmp(a->data.scalar.value, b->data.scalar.value, la < lb ? la : lb);
    if (r)
        return r;
    return la == lb ? 0 : la < lb ? -1 : 1;
}

static int entry_by_key(const void *a, const void *b)
{
    const bt_cfg_entry *x = a, *y = b;
    int r = key_cmp(x->key, y->key);
    if (r)
        return r;
    return x->rank < y->rank ? -1 : (x->rank > y->rank);
}

static int entry_by_rank(const void *a, const void *b)
{
    const bt_cfg_entry *x = a, *y = b;
    return x->rank < y->rank ? -1 : (x->rank > y->rank);
}

/* Sorting keeps this O(n log n) on hostile maps with many keys. */
static int entries_dedupe(bt_cfg_ctx *c, entries_t *e, const char *path)
{
    if (e->n < 2)
        return 0;
    qsort(e->v, e->n, sizeof *e->v, entry_by_key);
    size_t o = 0;
    for (size_t i = 0; i < e->n; i++) {
        if (o > 0 && key_cmp(e->v[o - 1].key, e->v[i].key) == 0) {
            if (e->v[i].own) {
                char q[96];
                bt_cfg_quote(q, sizeof q, (const char *)e->v[i].key->data.scalar.value,
                             e->v[i].key->data.scalar.length);
                return bt_cfg_fail(c, path, bt_cfg_line(c, e->v[i].key), "key %s duplicated", q);
            }
            continue; /* a merged key under an own or earlier one */
        }
        e->v[o++] = e->v[i];
    }
    e->n = o;
    qsort(e->v, e->n, sizeof *e->v, entry_by_rank);
    return 0;
}

int bt_cfg_map_entries(bt_cfg_ctx *c, yaml_node_t *map, const char *path, bt_cfg_entry **out,
                       size_t *n)
{
    entries_t e = {0};
    *out = NULL;
    *n = 0;
    if (entries_collect(c, &e, map, 0, path) < 0 || entries_dedupe(c, &e, path) < 0) {
        free(e.v);
        return -1;
    }
    *out = e.v;
    *n = e.n;
    return 0;
}

/* ---- parsing ---------------------------------------------------------------------- */

/* A syntax error of libyaml, with a line and column even for reader errors (those only
 * carry a byte offset). */
static void yaml_error(const yaml_parser_t *p, const char *text, size_t len, char *err,
                       size_t errlen)
{
    if (!err || !errlen)
        return;
    const char *problem = p->problem ? p->problem : "invalid document";
    if (p->error == YAML_MEMORY_ERROR) {
        snprintf(err, errlen, "yaml: out of memory");
        return;
    }
    size_t line, col;
    if (p->error == YAML_READER_ERROR) {
        size_t off = p->problem_offset < len ? p->problem_offset : len;
        line = 1;
        size_t start = 0;
        for (size_t i = 0; i < off; i++)
            if (text[i] == '\n') {
                line++;
                start = i + 1;
            }
        col = off - start + 1;
    } else {
        line = p->problem_mark.line + 1;
        col = p->problem_mark.column + 1;
    }
    snprintf(err, errlen, "yaml: %s (line %zu, column %zu)", problem, line, col);
}

/* libyaml's scanner re-checks every open flow level at each token, so "[[[[...]]]]" costs
 * depth x length: a first pass over the events refuses deep documents before the loader
 * builds them. Syntax errors are reported by that pass already. */
static int check_depth(const char *text, size_t len, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    int depth = 0, rc = -1;
    if (!yaml_parser_initialize(&parser)) {
        if (err && errlen)
            snprintf(err, errlen, "yaml: out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    for (;;) {
        if (!yaml_parser_parse(&parser, &ev)) {
            yaml_error(&parser, text, len, err, errlen);
            break;
        }
        yaml_event_type_t t = ev.type;
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > MAX_YAML_DEPTH) {
                if (err && errlen)
                    snprintf(err, errlen,
                             "yaml: nested deeper than %d levels (line %zu, column %zu)",
                             MAX_YAML_DEPTH, ev.start_mark.line + 1, ev.start_mark.column + 1);
                yaml_event_delete(&ev);
                break;
            }
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        yaml_event_delete(&ev);
        /* Only the first document is loaded, so only it is checked. */
        if (t == YAML_DOCUMENT_END_EVENT || t == YAML_STREAM_END_EVENT) {
            rc = 0;
            break;
        }
    }
    yaml_parser_delete(&parser);
    return rc;
}

int bt_cfg_parse(const char *text, size_t len, yaml_document_t *doc, char *err, size_t errlen)
{
    yaml_parser_t parser;
    if (check_depth(text, len, err, errlen) < 0)
        return -1;
    if (!yaml_parser_initialize(&parser)) {
        if (err && errlen)
            snprintf(err, errlen, "yaml: out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0;
    if (!yaml_parser_load(&parser, doc)) {
        yaml_error(&parser, text, len, err, errlen);
        rc = -1;
    }
    yaml_parser_delete(&parser);
    return rc;
}
