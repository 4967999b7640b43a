/* What callers do with loaded configs, driven by the same schema: free, compare (the
 * master diffs services on OTA with it) and deep-copy. Only fields the schema describes
 * are owned; other members of a struct are copied bytewise and never freed. */
#include "baetyl/config.h"
#include "config_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void free_struct(const bt_cfg_schema *s, char *obj);

static void free_elem(const bt_cfg_field *f, void *p)
{
    if (f->sub)
        free_struct(f->sub, p);
    else if (f->elem == BT_CFG_STRING)
        free(*(char **)p);
}

static void free_value(const bt_cfg_field *f, void *p)
{
    size_t esz = bt_cfg_elem_size(f);
    switch (f->type) {
    case BT_CFG_STRING:
        free(*(char **)p);
        *(char **)p = NULL;
        break;
    case BT_CFG_LIST: {
        bt_cfg_list *l = p;
        for (size_t i = 0; l->items && i < l->n; i++)
            free_elem(f, (char *)l->items + i * esz);
        free(l->items);
        l->items = NULL;
        l->n = 0;
        break;
    }
    case BT_CFG_MAP: {
        bt_cfg_map *m = p;
        for (size_t i = 0; i < m->n; i++) {
            if (m->keys)
                free(m->keys[i]);
            if (m->values)
                free_elem(f, (char *)m->values + i * esz);
        }
        free(m->keys);
        free(m->values);
        m->keys = NULL;
        m->values = NULL;
        m->n = 0;
        break;
    }
    case BT_CFG_STRUCT:
        if (f->sub)
            free_struct(f->sub, p);
        break;
    case BT_CFG_JSON:
        json_decref(*(json_t **)p);
        *(json_t **)p = NULL;
        break;
    default: break;
    }
}

static void free_struct(const bt_cfg_schema *s, char *obj)
{
    for (const bt_cfg_field *f = s->fields; f && f->type; f++)
        free_value(f, obj + f->offset);
}

void bt_cfg_free(const bt_cfg_schema *s, void *obj)
{
    if (!s || !obj)
        return;
    free_struct(s, obj);
    memset(obj, 0, s->size);
}

/* ---- equality ---------------------------------------------------------------------- */

static bool equal_struct(const bt_cfg_schema *s, const char *a, const char *b);

static bool equal_str(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool equal_scalar(bt_cfg_type t, const void *a, const void *b)
{
    switch (t) {
    case BT_CFG_STRING: return equal_str(*(char *const *)a, *(char *const *)b);
    case BT_CFG_BOOL: return *(const bool *)a == *(const bool *)b;
    case BT_CFG_INT: return *(const long *)a == *(const long *)b;
    case BT_CFG_FLOAT: return *(const double *)a == *(const double *)b;
    case BT_CFG_DURATION:
    case BT_CFG_SIZE: return *(const int64_t *)a == *(const int64_t *)b;
    default: return true;
    }
}

static bool equal_elem(const bt_cfg_field *f, const void *a, const void *b)
{
    return f->sub ? equal_struct(f->sub, a, b) : equal_scalar(f->elem, a, b);
}

static bool equal_value(const bt_cfg_field *f, const void *a, const void *b)
{
    size_t esz = bt_cfg_elem_size(f);
    switch (f->type) {
    case BT_CFG_LIST: {
        const bt_cfg_list *x = a, *y = b;
        if (x->n != y->n)
            return false;
        for (size_t i = 0; i < x->n; i++)
            if (!equal_elem(f, (const char *)x->items + i * esz, (const char *)y->items + i * esz))
                return false;
        return true;
    }
    case BT_CFG_MAP: {
        const bt_cfg_map *x = a, *y = b;
        if (x->n != y->n)
            return false;
        for (size_t i = 0; i < x->n; i++)
            if (!equal_str(x->keys[i], y->keys[i]) ||
                !equal_elem(f, (const char *)x->values + i * esz,
                            (const char *)y->values + i * esz))
                return false;
        return true;
    }
    case BT_CFG_STRUCT: return !f->sub || equal_struct(f->sub, a, b);
    case BT_CFG_JSON: {
        const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
        return x == y || (x && y && json_equal(x, y));
    }
    default: return equal_scalar(f->type, a, b);
    }
}

static bool equal_struct(const bt_cfg_schema *s, const char *a, const char *b)
{
    for (const bt_cfg_field *f = s->fields; f && f->type; f++)
        if (!equal_value(f, a + f->offset, b + f->offset))
            return false;
    return true;
}

bool bt_cfg_equal(const bt_cfg_schema *s, const void *a, const void *b)
{
    if (!s || !a || !b)
        return a == b;
    return equal_struct(s, a, b);
}

/* ---- copy -------------------------------------------------------------------------- */

/* Clears the owned pointers of a bytewise copy so that it never frees src's memory. */
static void detach_struct(const bt_cfg_schema *s, char *obj)
{
    for (const bt_cfg_field *f = s->fields; f && f->type; f++) {
        void *p = obj + f->offset;
        switch (f->type) {
        case BT_CFG_STRING: *(char **)p = NULL; break;
        case BT_CFG_LIST: memset(p, 0, sizeof(bt_cfg_list)); break;
        case BT_CFG_MAP: memset(p, 0, sizeof(bt_cfg_map)); break;
        case BT_CFG_JSON: *(json_t **)p = NULL; break;
        case BT_CFG_STRUCT:
            if (f->sub)
                detach_struct(f->sub, p);
            break;
        default: break;
        }
    }
}

static int copy_struct(const bt_cfg_schema *s, char *dst, const char *src);

static int copy_str(char **dst, const char *src)
{
    *dst = NULL;
    if (src && !(*dst = strdup(src)))
        return -1;
    return 0;
}

static int copy_elem(const bt_cfg_field *f, void *dst, const void *src)
{
    if (f->sub)
        return copy_struct(f->sub, dst, src);
    if (f->elem == BT_CFG_STRING)
        return copy_str(dst, *(char *const *)src);
    memcpy(dst, src, bt_cfg_scalar_size(f->elem));
    return 0;
}

/* dst was detached: on failure it holds only what was copied so far (safe to free). */
static int copy_value(const bt_cfg_field *f, void *dst, const void *src)
{
    size_t esz = bt_cfg_elem_size(f);
    switch (f->type) {
    case BT_CFG_STRING: return copy_str(dst, *(char *const *)src);
    case BT_CFG_LIST: {
        const bt_cfg_list *s = src;
        bt_cfg_list *d = dst;
        if (!s->n || !s->items)
            return 0;
        if (!(d->items = calloc(s->n, esz)))
            return -1;
        d->n = s->n;
        for (size_t i = 0; i < s->n; i++)
            if (copy_elem(f, (char *)d->items + i * esz, (const char *)s->items + i * esz) < 0)
                return -1;
        return 0;
    }
    case BT_CFG_MAP: {
        const bt_cfg_map *s = src;
        bt_cfg_map *d = dst;
        if (!s->n)
            return 0;
        d->keys = calloc(s->n, sizeof *d->keys);
        d->values = calloc(s->n, esz);
        if (!d->keys || !d->values) {
            free(d->keys);
            free(d->values);
            d->keys = NULL;
            d->values = NULL;
            return -1;
        }
        d->n = s->n;
        for (size_t i = 0; i < s->n; i++)
            if (copy_str(&d->keys[i], s->keys[i]) < 0 ||
                copy_elem(f, (char *)d->values + i * esz, (const char *)s->values + i * esz) < 0)
                return -1;
        return 0;
    }
    case BT_CFG_STRUCT: return f->sub ? copy_struct(f->sub, dst, src) : 0;
    case BT_CFG_JSON: {
        const json_t *s = *(json_t *const *)src;
        if (s && !(*(json_t **)dst = json_deep_copy(s)))
            return -1;
        return 0;
    }
    default: return 0; /* scalars came with the bytewise copy */
    }
}

static int copy_struct(const bt_cfg_schema *s, char *dst, const char *src)
{
    memcpy(dst, src, s->size);
    detach_struct(s, dst);
    for (const bt_cfg_field *f = s->fields; f && f->type; f++)
        if (copy_value(f, dst + f->offset, src + f->offset) < 0)
            return -1;
    return 0;
}

int bt_cfg_copy(const bt_cfg_schema *s, void *dst, const void *src)
{
    if (!s || !dst || !src)
        return -1;
    if (copy_struct(s, dst, src) < 0) {
        bt_cfg_free(s, dst);
        return -1;
    }
    return 0;
}
