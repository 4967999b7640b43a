/* The config loader: YAML text (size-capped) -> libyaml node tree (config_yaml.c) -> a walk
 * of the schema that fills the caller's struct. The walk follows the schema, not the
 * document, so the depth is bounded by the schema (or by MAX_DEPTH for recursive schemas);
 * the keys of each struct's mapping are then compared with its fields once (config_keys.c)
 * to report unknown ones. Aliases are shared nodes in libyaml, so a small document can stand
 * for a huge tree ("billion laughs"): every value loaded is counted. */
#include "config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DEPTH 64 /* nested structs (recursive schemas) */
#define PATH_LEN BT_CFG_PATH_LEN
#define WHY_LEN 256
#define MAX_NODES BT_CFG_MAX_NODES

static const char *type_name(bt_cfg_type t)
{
    switch (t) {
    case BT_CFG_STRING: return "a string";
    case BT_CFG_BOOL: return "a boolean";
    case BT_CFG_INT: return "an integer";
    case BT_CFG_FLOAT: return "a number";
    case BT_CFG_DURATION: return "a duration";
    case BT_CFG_SIZE: return "a size";
    case BT_CFG_LIST: return "a list";
    case BT_CFG_MAP:
    case BT_CFG_STRUCT: return "a mapping";
    case BT_CFG_JSON: return "a value";
    }
    return "a value";
}

size_t bt_cfg_scalar_size(bt_cfg_type t)
{
    switch (t) {
    case BT_CFG_STRING: return sizeof(char *);
    case BT_CFG_BOOL: return sizeof(bool);
    case BT_CFG_INT: return sizeof(long);
    case BT_CFG_FLOAT: return sizeof(double);
    case BT_CFG_DURATION:
    case BT_CFG_SIZE: return sizeof(int64_t);
    default: return 0;
    }
}

size_t bt_cfg_elem_size(const bt_cfg_field *f)
{
    return f->sub ? f->sub->size : bt_cfg_scalar_size(f->elem);
}

/* ---- loading ---------------------------------------------------------------------- */

static int load_struct(bt_cfg_ctx *c, const bt_cfg_schema *s, char *obj, yaml_node_t *map,
                       const char *path, int line);
static int load_fields(bt_cfg_ctx *c, const bt_cfg_schema *s, char *obj, yaml_node_t *map,
                       const char *path, int line);
static int load_node(bt_cfg_ctx *c, const bt_cfg_field *f, bt_cfg_type t, void *dst, yaml_node_t *n,
                     const char *path, bool elem);

static bool is_scalar_type(bt_cfg_type t)
{
    return bt_cfg_scalar_size(t) != 0;
}

static int check_choices(bt_cfg_ctx *c, const bt_cfg_field *f, const char *v, const char *path,
                         int line)
{
    size_t vl = strlen(v);
    for (const char *p = f->choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && memcmp(p, v, l) == 0)
            return 0;
        if (!bar)
            break;
        p = bar + 1;
    }
    return bt_cfg_fail(c, path, line, "must be one of %s", f->choices);
}

static int check_pattern(bt_cfg_ctx *c, const bt_cfg_field *f, const char *v, const char *path,
                         int line)
{
    regex_t re;
    if (regcomp(&re, f->pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return bt_cfg_fail(c, path, line, "schema: invalid pattern %s", f->pattern);
    int rc = regexec(&re, v, 0, NULL, 0);
    regfree(&re);
    if (rc == 0)
        return 0;
    char q[96];
    bt_cfg_quote(q, sizeof q, v, strlen(v));
    return bt_cfg_fail(c, path, line, "%s does not match %s", q, f->pattern);
}

/* Parses one scalar text into dst (typed by t); strings are validated here so that list
 * elements get the same checks as single values. */
static int load_scalar(bt_cfg_ctx *c, const bt_cfg_field *f, bt_cfg_type t, void *dst,
                       const char *text, size_t len, const char *path, int line)
{
    char q[96];
    if (memchr(text, '\0', len))
        return bt_cfg_fail(c, path, line, "contains a NUL byte");
    switch (t) {
    case BT_CFG_STRING: {
        char *s = strndup(text, len);
        if (!s)
            return bt_cfg_fail(c, path, line, "out of memory");
        free(*(char **)dst);
        *(char **)dst = s;
        if (c->validate && f->choices && check_choices(c, f, s, path, line) < 0)
            return -1;
        if (c->validate && f->pattern && check_pattern(c, f, s, path, line) < 0)
            return -1;
        return 0;
    }
    case BT_CFG_BOOL:
        if (bt_cfg_parse_bool(text, dst) < 0)
            return bt_cfg_fail(c, path, line, "not a boolean");
        return 0;
    case BT_CFG_INT: {
        int rc = bt_cfg_parse_long(text, dst);
        if (rc == -2)
            return bt_cfg_fail(c, path, line, "integer out of range");
        if (rc < 0)
            return bt_cfg_fail(c, path, line, "not an integer");
        return 0;
    }
    case BT_CFG_FLOAT: {
        int rc = bt_cfg_parse_double(text, dst);
        if (rc == -2)
            return bt_cfg_fail(c, path, line, "number out of range");
        if (rc < 0)
            return bt_cfg_fail(c, path, line, "not a number");
        return 0;
    }
    case BT_CFG_DURATION:
        if (bt_parse_duration(text, dst) < 0) {
            bt_cfg_quote(q, sizeof q, text, len);
            return bt_cfg_fail(c, path, line, "invalid duration %s", q);
        }
        return 0;
    case BT_CFG_SIZE:
        if (bt_parse_size(text, dst) < 0) {
            bt_cfg_quote(q, sizeof q, text, len);
            return bt_cfg_fail(c, path, line, "invalid size %s", q);
        }
        return 0;
    default: return bt_cfg_fail(c, path, line, "schema: not a scalar type");
    }
}

/* One element of a LIST/MAP: a struct (null = all defaults) or a scalar. */
static int load_elem(bt_cfg_ctx *c, const bt_cfg_field *f, void *dst, yaml_node_t *n,
                     const char *path)
{
    if (f->sub) {
        if (++c->nodes > MAX_NODES)
            return bt_cfg_too_large(c);
        if (bt_cfg_is_null(n))
            return load_struct(c, f->sub, dst, NULL, path, bt_cfg_line(c, n));
        if (n->type != YAML_MAPPING_NODE)
            return bt_cfg_fail(c, path, bt_cfg_line(c, n), "not a mapping");
        return load_struct(c, f->sub, dst, n, path, bt_cfg_line(c, n));
    }
    return load_node(c, f, f->elem, dst, n, path, true);
}

static int load_list(bt_cfg_ctx *c, const bt_cfg_field *f, bt_cfg_list *l, yaml_node_t *n,
                     const char *path)
{
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    size_t esz = bt_cfg_elem_size(f);
    if (count > MAX_NODES - c->nodes)
        return bt_cfg_too_large(c);
    l->n = 0;
    l->items = NULL;
    if (count == 0)
        return 0;
    l->items = calloc(count, esz);
    if (!l->items)
        return bt_cfg_fail(c, path, bt_cfg_line(c, n), "out of memory");
    l->n = count; /* zeroed elements are safe to free if a later one fails */
    for (size_t i = 0; i < count; i++) {
        char ipath[PATH_LEN];
        bt_cfg_path_index(ipath, path, i);
        yaml_node_t *item = yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
        if (!item)
            return bt_cfg_fail(c, ipath, bt_cfg_line(c, n), "missing node");
        if (load_elem(c, f, (char *)l->items + i * esz, item, ipath) < 0)
            return -1;
    }
    return 0;
}

static int load_map(bt_cfg_ctx *c, const bt_cfg_field *f, bt_cfg_map *m, yaml_node_t *n,
                    const char *path)
{
    bt_cfg_entry *ents = NULL;
    size_t nents = 0;
    size_t esz = bt_cfg_elem_size(f);
    int rc = -1;
    m->n = 0;
    m->keys = NULL;
    m->values = NULL;
    if (bt_cfg_map_entries(c, n, path, &ents, &nents) < 0)
        goto out;
    if (nents > MAX_NODES - c->nodes) {
        bt_cfg_too_large(c);
        goto out;
    }
    if (nents > 0) {
        m->keys = calloc(nents, sizeof *m->keys);
        m->values = calloc(nents, esz);
        if (!m->keys || !m->values) {
            free(m->keys);
            free(m->values);
            m->keys = NULL;
            m->values = NULL;
            bt_cfg_fail(c, path, bt_cfg_line(c, n), "out of memory");
            goto out;
        }
        m->n = nents;
    }
    for (size_t i = 0; i < nents; i++) {
        yaml_node_t *k = ents[i].key;
        const char *kt = (const char *)k->data.scalar.value;
        size_t kl = k->data.scalar.length;
        char kpath[PATH_LEN];
        bt_cfg_path_join(kpath, path, kt, kl);
        if (memchr(kt, '\0', kl)) {
            bt_cfg_fail(c, kpath, bt_cfg_line(c, k), "key contains a NUL byte");
            goto out;
        }
        if (!(m->keys[i] = strndup(kt, kl))) {
            bt_cfg_fail(c, kpath, bt_cfg_line(c, k), "out of memory");
            goto out;
        }
        if (load_elem(c, f, (char *)m->values + i * esz, ents[i].val, kpath) < 0)
            goto out;
    }
    rc = 0;
out:
    free(ents);
    return rc;
}

/* A plain (unquoted) scalar as YAML 1.1's core schema reads it; quoted ones stay strings. */
static json_t *plain_scalar_json(const char *s, size_t len)
{
    static const char *const nulls[] = {"~", "null", "Null", "NULL", ""};
    static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes",
                                        "YES",  "on",   "On",   "ON"};
    static const char *const falses[] = {"false", "False", "FALSE", "no", "No",
                                         "NO",    "off",   "Off",   "OFF"};
    for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++)
        if (strlen(nulls[i]) == len && !memcmp(s, nulls[i], len))
            return json_null();
    for (size_t i = 0; i < sizeof trues / sizeof *trues; i++)
        if (strlen(trues[i]) == len && !memcmp(s, trues[i], len))
            return json_true();
    for (size_t i = 0; i < sizeof falses / sizeof *falses; i++)
        if (strlen(falses[i]) == len && !memcmp(s, falses[i], len))
            return json_false();
    char buf[64];
    if (len > 0 && len < sizeof buf) {
        memcpy(buf, s, len);
        buf[len] = 0;
        char *end;
        errno = 0;
        long long ll = strtoll(buf, &end, 10);
        if (*end == 0 && errno == 0 &&
            (isdigit((unsigned char)buf[0]) || buf[0] == '-' || buf[0] == '+'))
            return json_integer(ll);
        errno = 0;
        double d = strtod(buf, &end);
        if (*end == 0 && errno == 0 && strspn(buf, "+-0123456789.eE") == len &&
            strpbrk(buf, "0123456789"))
            return json_real(d);
    }
    return json_stringn(s, len);
}

/* Converts node n into a JSON value (free-form data). */
static int node_json(bt_cfg_ctx *c, yaml_node_t *n, json_t **out, const char *path, int depth)
{
    int line = bt_cfg_line(c, n);
    if (++c->nodes > MAX_NODES)
        return bt_cfg_too_large(c);
    if (depth > MAX_DEPTH)
        return bt_cfg_fail(c, path, line, "too deeply nested");
    json_t *v = NULL;
    switch (n->type) {
    case YAML_SCALAR_NODE: {
        const char *s = (const char *)n->data.scalar.value;
        size_t len = n->data.scalar.length;
        v = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? plain_scalar_json(s, len)
                                                            : json_stringn(s, len);
        if (!v)
            return bt_cfg_fail(c, path, line, "not valid UTF-8 text");
        break;
    }
    case YAML_SEQUENCE_NODE: {
        v = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             v && it < n->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(c->doc, *it);
            json_t *ev;
            char epath[PATH_LEN];
            snprintf(epath, sizeof epath, "%s[%zu]", path,
                     (size_t)(it - n->data.sequence.items.start));
            if (!e || node_json(c, e, &ev, epath, depth + 1) < 0) {
                json_decref(v);
                return -1;
            }
            json_array_append_new(v, ev);
        }
        break;
    }
    case YAML_MAPPING_NODE: {
        v = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; v && p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
            yaml_node_t *e = yaml_document_get_node(c->doc, p->value);
            if (!k || !e || k->type != YAML_SCALAR_NODE) {
                json_decref(v);
                return bt_cfg_fail(c, path, line, "mapping keys must be text");
            }
            char kbuf[256];
            size_t klen =
                k->data.scalar.length < sizeof kbuf - 1 ? k->data.scalar.length : sizeof kbuf - 1;
            memcpy(kbuf, k->data.scalar.value, klen);
            kbuf[klen] = 0;
            char epath[PATH_LEN];
            bt_cfg_path_join(epath, path, kbuf, klen);
            json_t *ev;
            if (node_json(c, e, &ev, epath, depth + 1) < 0) {
                json_decref(v);
                return -1;
            }
            if (json_object_setn_new_nocheck(v, (const char *)k->data.scalar.value,
                                             k->data.scalar.length, ev) < 0) {
                json_decref(v);
                return bt_cfg_fail(c, epath, line, "invalid key");
            }
        }
        break;
    }
    default: return bt_cfg_fail(c, path, line, "unsupported YAML node");
    }
    if (!v)
        return bt_cfg_fail(c, path, line, "out of memory");
    *out = v;
    return 0;
}

/* Loads node n (not null for fields; maybe null for list elements) as type t. */
static int load_node(bt_cfg_ctx *c, const bt_cfg_field *f, bt_cfg_type t, void *dst, yaml_node_t *n,
                     const char *path, bool elem)
{
    int line = bt_cfg_line(c, n);
    if (++c->nodes > MAX_NODES)
        return bt_cfg_too_large(c);
    if (is_scalar_type(t)) {
        if (n->type != YAML_SCALAR_NODE)
            return bt_cfg_fail(c, path, line, "not %s", type_name(t));
        const char *text = (const char *)n->data.scalar.value;
        size_t len = n->data.scalar.length;
        if (elem && t == BT_CFG_STRING && bt_cfg_is_null(n))
            text = "", len = 0; /* "- ~" in a list of strings is "" rather than "~" */
        return load_scalar(c, f, t, dst, text, len, path, line);
    }
    if (t == BT_CFG_LIST || t == BT_CFG_MAP) {
        if (elem || (!f->sub && !is_scalar_type(f->elem)))
            return bt_cfg_fail(c, path, line,
                               "schema: list/map elements must be scalars or structs");
        if (t == BT_CFG_LIST) {
            if (n->type != YAML_SEQUENCE_NODE)
                return bt_cfg_fail(c, path, line, "not a list");
            return load_list(c, f, dst, n, path);
        }
        if (n->type != YAML_MAPPING_NODE)
            return bt_cfg_fail(c, path, line, "not a mapping");
        return load_map(c, f, dst, n, path);
    }
    if (t == BT_CFG_STRUCT && f->sub && !elem) {
        if (n->type != YAML_MAPPING_NODE)
            return bt_cfg_fail(c, path, line, "not a mapping");
        return load_struct(c, f->sub, dst, n, path, line);
    }
    if (t == BT_CFG_JSON && !elem) {
        json_decref(*(json_t **)dst);
        *(json_t **)dst = NULL;
        return node_json(c, n, (json_t **)dst, path, 0);
    }
    return bt_cfg_fail(c, path, line, "schema: unsupported type %d", (int)t);
}

/* A LIST/MAP default is YAML text ("[a, b]", "{k: v}") loaded like a value. */
static int load_default_tree(bt_cfg_ctx *c, const bt_cfg_field *f, void *dst, const char *path,
                             int line)
{
    yaml_document_t doc;
    char why[WHY_LEN];
    if (bt_cfg_parse(f->def, strlen(f->def), &doc, why, sizeof why) < 0)
        return bt_cfg_fail(c, path, line, "schema: invalid default %s: %s", f->def, why);
    bt_cfg_ctx saved = *c;
    c->doc = &doc;
    c->in_default = true;
    c->default_line = line;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = bt_cfg_is_null(root) ? 0 : load_node(c, f, f->type, dst, root, path, false);
    c->doc = saved.doc;
    c->in_default = saved.in_default;
    c->default_line = saved.default_line;
    yaml_document_delete(&doc);
    return rc;
}

/* Looks a (maybe dotted) name up from map. *encl becomes the line of the deepest mapping
 * reached (the place a missing key belongs to). */
static int find_field(bt_cfg_ctx *c, yaml_node_t *map, const char *base, const char *name,
                      yaml_node_t **val, int *encl)
{
    yaml_node_t *node = map;
    const char *comp = name;
    *val = NULL;
    for (;;) {
        const char *dot = strchr(comp, '.');
        size_t clen = dot ? (size_t)(dot - comp) : strlen(comp);
        if (!node)
            return 0;
        if (node->type != YAML_MAPPING_NODE) {
            char ppath[PATH_LEN];
            if (comp > name)
                bt_cfg_path_join(ppath, base, name, (size_t)(comp - name) - 1);
            else
                bt_cfg_path_join(ppath, "", base, strlen(base));
            return bt_cfg_fail(c, ppath, bt_cfg_line(c, node), "not a mapping");
        }
        yaml_node_t *child;
        if (bt_cfg_map_get(c, node, comp, clen, 0, &child) < 0)
            return -1;
        if (!dot) {
            *val = bt_cfg_is_null(child) ? NULL : child;
            return 0;
        }
        if (bt_cfg_is_null(child)) {
            node = NULL;
        } else {
            node = child;
            *encl = bt_cfg_line(c, child);
        }
        comp = dot + 1;
    }
}

static int check_field(bt_cfg_ctx *c, const bt_cfg_field *f, const void *v, const char *path,
                       int line)
{
    if (f->flags & BT_CFG_RANGE) {
        double x;
        bool count = false;
        switch (f->type) {
        case BT_CFG_INT: x = (double)*(const long *)v; break;
        case BT_CFG_FLOAT: x = *(const double *)v; break;
        case BT_CFG_DURATION:
        case BT_CFG_SIZE: x = (double)*(const int64_t *)v; break;
        case BT_CFG_LIST:
            x = (double)((const bt_cfg_list *)v)->n;
            count = true;
            break;
        case BT_CFG_MAP:
            x = (double)((const bt_cfg_map *)v)->n;
            count = true;
            break;
        default: return bt_cfg_fail(c, path, line, "schema: range on a non-numeric field");
        }
        if (x < f->min || x > f->max) {
            if (count)
                return bt_cfg_fail(c, path, line, "must have between %g and %g entries", f->min,
                                   f->max);
            return bt_cfg_fail(c, path, line, "must be between %g and %g", f->min, f->max);
        }
    }
    if (f->check) {
        char why[WHY_LEN] = "";
        if (f->check(v, why, sizeof why) < 0)
            return bt_cfg_fail(c, path, line, "%s", why[0] ? why : "invalid");
    }
    return 0;
}

static int load_field(bt_cfg_ctx *c, const bt_cfg_field *f, char *dst, yaml_node_t *val,
                      const char *path, int encl)
{
    int line;
    if (val) {
        if (load_node(c, f, f->type, dst, val, path, false) < 0)
            return -1;
        if (f->seen)
            *(bool *)(dst - f->offset + f->seen - 1) = true;
        line = bt_cfg_line(c, val);
        if (c->validate && f->type == BT_CFG_STRING && (f->flags & BT_CFG_REQUIRED) &&
            **(char **)dst == '\0')
            return bt_cfg_fail(c, path, line, "required");
    } else if (f->def && f->type != BT_CFG_STRUCT) {
        line = encl;
        int rc = (f->type == BT_CFG_LIST || f->type == BT_CFG_MAP || f->type == BT_CFG_JSON)
                     ? load_default_tree(c, f, dst, path, line)
                     : load_scalar(c, f, f->type, dst, f->def, strlen(f->def), path, line);
        if (rc < 0)
            return -1;
    } else {
        if (c->validate && (f->flags & BT_CFG_REQUIRED))
            return bt_cfg_fail(c, path, encl, "required");
        if (f->type == BT_CFG_STRUCT) {
            if (!f->sub)
                return bt_cfg_fail(c, path, encl, "schema: struct without sub-schema");
            return load_struct(c, f->sub, dst, NULL, path, encl);
        }
        if (f->type == BT_CFG_STRING)
            return 0; /* NULL: nothing a check could look at */
        line = encl;  /* zero, false or empty: still a value, still validated */
    }
    return c->validate ? check_field(c, f, dst, path, line) : 0;
}

static int load_fields(bt_cfg_ctx *c, const bt_cfg_schema *s, char *obj, yaml_node_t *map,
                       const char *path, int line)
{
    int rc = -1;
    if (++c->depth > MAX_DEPTH) {
        bt_cfg_fail(c, path, line, "too deeply nested");
        goto out;
    }
    for (const bt_cfg_field *f = s->fields; f && f->type; f++) {
        if (f->flags & BT_CFG_INLINE) {
            if (f->type != BT_CFG_STRUCT || !f->sub) {
                bt_cfg_fail(c, path, line, "schema: inline field is not a struct");
                goto out;
            }
            if (load_fields(c, f->sub, obj + f->offset, map, path, line) < 0)
                goto out;
            continue;
        }
        if (!f->name || !*f->name) {
            bt_cfg_fail(c, path, line, "schema: field without a name");
            goto out;
        }
        char fpath[PATH_LEN];
        bt_cfg_path_join(fpath, path, f->name, strlen(f->name));
        yaml_node_t *val;
        int encl = line;
        if (find_field(c, map, path, f->name, &val, &encl) < 0)
            goto out;
        if (load_field(c, f, obj + f->offset, val, fpath, encl) < 0)
            goto out;
    }
    if (c->validate && s->check) {
        char why[WHY_LEN] = "";
        if (s->check(obj, why, sizeof why) < 0) {
            bt_cfg_fail(c, path, line, "%s", why[0] ? why : "invalid");
            goto out;
        }
    }
    rc = 0;
out:
    c->depth--;
    return rc;
}

/* A struct from its own mapping. Unknown keys are reported first: a misspelled key is
 * often why a field then fails as required. */
static int load_struct(bt_cfg_ctx *c, const bt_cfg_schema *s, char *obj, yaml_node_t *map,
                       const char *path, int line)
{
    if (bt_cfg_check_keys(c, s, map, path) < 0)
        return -1;
    return load_fields(c, s, obj, map, path, line);
}

/* ---- entry points ----------------------------------------------------------------- */

static const bt_cfg_opts no_opts;

int64_t bt_cfg_max_size(const bt_cfg_opts *opts)
{
    if (opts && opts->max_size > 0)
        return opts->max_size;
    const char *env = getenv(BT_CFG_MAX_SIZE_ENV);
    int64_t v;
    if (env && *env && bt_parse_size(env, &v) == 0 && v > 0)
        return v;
    return BT_CFG_DEFAULT_MAX_SIZE;
}

static int too_big(const char *what, int64_t size, int64_t max, char *err, size_t errlen)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: file too large (%lld bytes, limit %lld; see %s)", what,
                 (long long)size, (long long)max, BT_CFG_MAX_SIZE_ENV);
    return -1;
}

static int load_doc(const bt_cfg_schema *s, void *obj, const char *text, size_t len,
                    const bt_cfg_opts *opts, const char *file, char *err, size_t errlen)
{
    yaml_document_t doc;
    if (bt_cfg_parse(text, len, &doc, err, errlen) < 0)
        return -1;
    bt_cfg_ctx c = {
        .doc = &doc, .err = err, .errlen = errlen, .validate = true, .opts = opts, .file = file};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc;
    if (bt_cfg_is_null(root))
        rc = load_struct(&c, s, obj, NULL, "", 0);
    else if (root->type != YAML_MAPPING_NODE)
        rc = bt_cfg_fail(&c, NULL, bt_cfg_line(&c, root), "config is not a mapping");
    else
        rc = load_struct(&c, s, obj, root, "", 0);
    yaml_document_delete(&doc);
    return rc;
}

static int load_text(const bt_cfg_schema *s, void *obj, const char *yaml, size_t len,
                     const bt_cfg_opts *opts, const char *file, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!s || !obj) {
        if (err && errlen)
            snprintf(err, errlen, "invalid argument");
        return -1;
    }
    memset(obj, 0, s->size);
    if (!yaml && len) {
        if (err && errlen)
            snprintf(err, errlen, "invalid argument");
        return -1;
    }
    if (!opts)
        opts = &no_opts;
    int64_t max = bt_cfg_max_size(opts);
    if ((uint64_t)len > (uint64_t)max)
        return too_big(file ? file : "config", (int64_t)len, max, err, errlen);
    size_t tlen = 0;
    char *text = bt_cfg_template(yaml, len, &tlen);
    if (!text) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = load_doc(s, obj, text, tlen, opts, file, err, errlen);
    free(text);
    if (rc < 0)
        bt_cfg_free(s, obj);
    return rc;
}

int bt_cfg_load_string_opts(const bt_cfg_schema *s, void *obj, const char *yaml, size_t len,
                            const bt_cfg_opts *opts, char *err, size_t errlen)
{
    return load_text(s, obj, yaml, len, opts, NULL, err, errlen);
}

int bt_cfg_load_string(const bt_cfg_schema *s, void *obj, const char *yaml, size_t len, char *err,
                       size_t errlen)
{
    return load_text(s, obj, yaml, len, NULL, NULL, err, errlen);
}

/* Reads a whole file, refusing one over max before reading it (and while reading, for
 * files whose size stat does not tell). */
static char *read_capped(const char *path, int64_t max, size_t *outlen, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (err && errlen)
            snprintf(err, errlen, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > max) {
        too_big(path, (int64_t)st.st_size, max, err, errlen);
        fclose(fp);
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            if ((int64_t)cap > max) {
                too_big(path, (int64_t)len, max, err, errlen);
                goto fail;
            }
            cap = cap ? cap * 2 : 4096;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                if (err && errlen)
                    snprintf(err, errlen, "read %s: out of memory", path);
                goto fail;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (n == 0) {
            if (ferror(fp)) {
                if (err && errlen)
                    snprintf(err, errlen, "read %s: %s", path, strerror(errno));
                goto fail;
            }
            break;
        }
    }
    if ((int64_t)len > max) {
        too_big(path, (int64_t)len, max, err, errlen);
        goto fail;
    }
    fclose(fp);
    *outlen = len;
    return buf;
fail:
    free(buf);
    fclose(fp);
    return NULL;
}

int bt_cfg_load_file_opts(const bt_cfg_schema *s, void *obj, const char *path,
                          const bt_cfg_opts *opts, char *err, size_t errlen)
{
    if (s && obj)
        memset(obj, 0, s->size);
    if (!path) {
        if (err && errlen)
            snprintf(err, errlen, "invalid argument");
        return -1;
    }
    size_t len = 0;
    char *buf = read_capped(path, bt_cfg_max_size(opts), &len, err, errlen);
    if (!buf)
        return -1;
    int rc = load_text(s, obj, buf, len, opts, path, err, errlen);
    free(buf);
    return rc;
}

int bt_cfg_load_file(const bt_cfg_schema *s, void *obj, const char *path, char *err, size_t errlen)
{
    return bt_cfg_load_file_opts(s, obj, path, NULL, err, errlen);
}

int bt_cfg_defaults(const bt_cfg_schema *s, void *obj, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!s || !obj)
        return -1;
    memset(obj, 0, s->size);
    bt_cfg_ctx c = {.doc = NULL, .err = err, .errlen = errlen, .validate = false};
    int rc = load_struct(&c, s, obj, NULL, "", 0);
    if (rc < 0)
        bt_cfg_free(s, obj);
    return rc;
}
