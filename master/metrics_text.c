/* Prometheus text exposition 0.0.4: families, escaping, rendering. */
#include "metrics_text.h"

#include <baetyl/buf.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MT_NAME_MAX 200
#define MT_LABELS_MAX 16
#define MT_VALUE_MAX 256 /* label values and help texts are cut there */

typedef struct {
    char *name, *type, *help;
    bt_buf body; /* the sample lines */
} family;

struct mt_set {
    family *f;
    size_t n, cap;
    json_t *index; /* name -> position in f */
};

mt_set *mt_new(void)
{
    mt_set *s = calloc(1, sizeof *s);
    if (s && !(s->index = json_object())) {
        free(s);
        s = NULL;
    }
    return s;
}

void mt_free(mt_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->f[i].name);
        free(s->f[i].type);
        free(s->f[i].help);
        bt_buf_free(&s->f[i].body);
    }
    free(s->f);
    json_decref(s->index);
    free(s);
}

static bool name_char(char c, bool first, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
           (!first && c >= '0' && c <= '9');
}

bool mt_valid_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > MT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char(name[i], i == 0, true))
            return false;
    return true;
}

bool mt_valid_label(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > MT_NAME_MAX || !strncmp(name, "__", 2))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char(name[i], i == 0, false))
            return false;
    return true;
}

static bool valid_type(const char *t)
{
    return t && (!strcmp(t, "counter") || !strcmp(t, "gauge") || !strcmp(t, "histogram"));
}

static bool valid_suffix(const char *type, const char *sfx)
{
    if (!*sfx)
        return strcmp(type, "histogram") != 0;
    return !strcmp(type, "histogram") &&
           (!strcmp(sfx, "_bucket") || !strcmp(sfx, "_sum") || !strcmp(sfx, "_count"));
}

/* Appends s escaped: backslash and newline always, the double quote inside label values. */
static int put_escaped(bt_buf *b, const char *s, bool quote)
{
    int rc = 0;
    for (size_t i = 0; s[i] && i < MT_VALUE_MAX && rc == 0; i++) {
        char c = s[i];
        if (c == '\\')
            rc = bt_buf_append(b, "\\\\", 2);
        else if (c == '\n')
            rc = bt_buf_append(b, "\\n", 2);
        else if (c == '"' && quote)
            rc = bt_buf_append(b, "\\\"", 2);
        else
            rc = bt_buf_append(b, &c, 1);
    }
    return rc;
}

static int put_str(bt_buf *b, const char *s)
{
    return bt_buf_append(b, s, strlen(s));
}

static int put_value(bt_buf *b, double v)
{
    char t[40];
    if (isnan(v))
        snprintf(t, sizeof t, "NaN");
    else if (isinf(v))
        snprintf(t, sizeof t, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9e15)
        snprintf(t, sizeof t, "%.0f", v);
    else
        snprintf(t, sizeof t, "%.17g", v);
    return put_str(b, t);
}

static family *family_get(mt_set *s, const char *name, const char *type, const char *help)
{
    json_t *at = json_object_get(s->index, name);
    if (at) {
        family *f = &s->f[json_integer_value(at)];
        return strcmp(f->type, type) ? NULL : f;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 32;
        family *nf = realloc(s->f, nc * sizeof *nf);
        if (!nf)
            return NULL;
        s->f = nf;
        s->cap = nc;
    }
    family *f = &s->f[s->n];
    *f = (family){.name = strdup(name), .type = strdup(type), .help = strdup(help ? help : "")};
    if (!f->name || !f->type || !f->help ||
        json_object_set_new(s->index, name, json_integer((json_int_t)s->n)) != 0) {
        free(f->name);
        free(f->type);
        free(f->help);
        return NULL;
    }
    s->n++;
    return f;
}

int mt_add(mt_set *s, const char *name, const char *type, const char *help, const char *suffix,
           const char *const *labels, double v)
{
    if (!mt_valid_name(name) || !valid_type(type) || !valid_suffix(type, suffix ? suffix : ""))
        return -1;
    family *f = family_get(s, name, type, help);
    if (!f)
        return -1;
    bt_buf *b = &f->body;
    size_t mark = b->len;
    int rc = put_str(b, name) | put_str(b, suffix ? suffix : "");
    bool any = false;
    for (size_t i = 0; labels && labels[i] && labels[i + 1] && i < 2 * (MT_LABELS_MAX + 2);
         i += 2) {
        if (!mt_valid_label(labels[i]))
            continue;
        rc |= put_str(b, any ? "," : "{") | put_str(b, labels[i]) | put_str(b, "=\"");
        rc |= put_escaped(b, labels[i + 1], true) | put_str(b, "\"");
        any = true;
    }
    if (any)
        rc |= put_str(b, "}");
    rc |= put_str(b, " ") | put_value(b, v) | put_str(b, "\n");
    if (rc != 0) {
        b->len = mark;
        return -1;
    }
    return 0;
}

/* One reported sample [suffix, {labels}, value]. */
static int add_one(mt_set *s, const char *name, const char *type, const char *help, json_t *smp,
                   const char *service, const char *instance)
{
    json_t *jsfx = json_array_get(smp, 0), *jl = json_array_get(smp, 1);
    json_t *jv = json_array_get(smp, 2);
    if (json_array_size(smp) != 3 || !json_is_string(jsfx) || !json_is_number(jv) ||
        (jl && !json_is_object(jl) && !json_is_null(jl)))
        return -1;
    const char *labels[2 * (MT_LABELS_MAX + 2) + 1] = {"service", service, "instance_name",
                                                       instance};
    size_t n = 4;
    const char *k;
    json_t *v;
    json_object_foreach(jl, k, v)
    {
        if (n >= 2 * (MT_LABELS_MAX + 2))
            break;
        if (!json_is_string(v) || !strcmp(k, "service") || !strcmp(k, "instance_name") ||
            !strcmp(k, "instance"))
            continue;
        labels[n++] = k;
        labels[n++] = json_string_value(v);
    }
    labels[n] = NULL;
    return mt_add(s, name, type, help, json_string_value(jsfx), labels, json_number_value(jv));
}

size_t mt_add_reported(mt_set *s, json_t *families, const char *service, const char *instance,
                       size_t max_samples)
{
    size_t taken = 0;
    const char *name;
    json_t *fam;
    json_object_foreach(families, name, fam)
    {
        const char *type = json_string_value(json_object_get(fam, "type"));
        const char *help = json_string_value(json_object_get(fam, "help"));
        json_t *samples = json_object_get(fam, "samples");
        if (!json_is_array(samples) || !valid_type(type) || !mt_valid_name(name))
            continue;
        size_t i;
        json_t *smp;
        json_array_foreach(samples, i, smp)
        {
            if (taken >= max_samples)
                return taken;
            if (add_one(s, name, type, help, smp, service, instance) == 0)
                taken++;
        }
    }
    return taken;
}

char *mt_render(mt_set *s, size_t *len)
{
    bt_buf out = {0};
    int rc = 0;
    for (size_t i = 0; i < s->n && rc == 0; i++) {
        family *f = &s->f[i];
        if (bt_buf_size(&f->body) == 0)
            continue;
        rc |= put_str(&out, "# HELP ") | put_str(&out, f->name) | put_str(&out, " ");
        rc |= put_escaped(&out, f->help, false) | put_str(&out, "\n# TYPE ");
        rc |= put_str(&out, f->name) | put_str(&out, " ") | put_str(&out, f->type);
        rc |= put_str(&out, "\n");
        rc |= bt_buf_append(&out, f->body.p + f->body.off, bt_buf_size(&f->body));
    }
    if (rc != 0 || bt_buf_append_nul(&out, "", 0) != 0) {
        bt_buf_free(&out);
        return NULL;
    }
    if (len)
        *len = bt_buf_size(&out);
    return (char *)out.p;
}
