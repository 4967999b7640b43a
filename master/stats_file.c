/* YAML <-> JSON for application.stats, on libyaml. */
#include "stats_file.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/buf.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64
#define MAX_NODES 200000 /* aliases share nodes: cap what one document may expand to */
#define MAX_FILE (16u << 20)

typedef struct {
    yaml_document_t *doc;
    size_t nodes;
} conv_ctx;

static json_t *scalar_to_json(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return json_stringn(s, len);
    if (len == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
        !strcmp(s, "NULL"))
        return json_null();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return json_true();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return json_false();
    if (strlen(s) == len) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (*end == '\0' && errno == 0)
            return json_integer(v);
        errno = 0;
        double d = strtod(s, &end);
        if (*end == '\0' && errno == 0 && isfinite(d) && strpbrk(s, "0123456789"))
            return json_real(d);
    }
    return json_stringn(s, len);
}

static json_t *node_to_json(conv_ctx *c, yaml_node_t *n, int depth)
{
    if (!n || depth > MAX_DEPTH || ++c->nodes > MAX_NODES)
        return NULL;
    switch (n->type) {
    case YAML_SCALAR_NODE: return scalar_to_json(n);
    case YAML_SEQUENCE_NODE: {
        json_t *a = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            json_t *v = node_to_json(c, yaml_document_get_node(c->doc, *it), depth + 1);
            if (!v) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, v);
        }
        return a;
    }
    case YAML_MAPPING_NODE: {
        json_t *o = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
            if (!k || k->type != YAML_SCALAR_NODE)
                continue;
            json_t *v = node_to_json(c, yaml_document_get_node(c->doc, p->value), depth + 1);
            if (!v) {
                json_decref(o);
                return NULL;
            }
            char *key = strndup((const char *)k->data.scalar.value, k->data.scalar.length);
            if (!key) {
                json_decref(v);
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, key, v);
            free(key);
        }
        return o;
    }
    default: return NULL;
    }
}

json_t *yaml_text_to_json(const char *text, size_t len, char *err, size_t errlen)
{
    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p)) {
        bt_errf(err, errlen, "yaml: out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &doc)) {
        bt_errf(err, errlen, "yaml: %s (line %zu)", p.problem ? p.problem : "invalid document",
                p.problem_mark.line + 1);
        yaml_parser_delete(&p);
        return NULL;
    }
    yaml_parser_delete(&p);
    conv_ctx c = {.doc = &doc};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    json_t *j = root ? node_to_json(&c, root, 0) : json_object();
    yaml_document_delete(&doc);
    if (!j)
        bt_errf(err, errlen, "yaml: document too large or too deep");
    return j;
}

json_t *yaml_file_to_json(const char *path, char *err, size_t errlen)
{
    char *buf;
    size_t n;
    if (bt_read_file(path, MAX_FILE, &buf, &n, err, errlen) != 0)
        return NULL;
    json_t *j = yaml_text_to_json(buf, n, err, errlen);
    free(buf);
    return j;
}

/* libyaml's output handler: 1 = written, 0 = failed. */
static int write_cb(void *data, unsigned char *buffer, size_t size)
{
    return bt_buf_append(data, buffer, size) == 0;
}

static int emit_scalar(yaml_emitter_t *em, const char *s, size_t len, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, 1, 1, style);
    return yaml_emitter_emit(em, &ev);
}

static int emit_json(yaml_emitter_t *em, const json_t *j, int depth)
{
    yaml_event_t ev;
    char num[64];
    if (depth > MAX_DEPTH)
        return 0;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        if (!yaml_emitter_emit(em, &ev))
            return 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            if (!emit_scalar(em, k, strlen(k), YAML_ANY_SCALAR_STYLE) ||
                !emit_json(em, v, depth + 1))
                return 0;
        }
        yaml_mapping_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev);
    }
    case JSON_ARRAY: {
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
        if (!yaml_emitter_emit(em, &ev))
            return 0;
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if (!emit_json(em, v, depth + 1))
                return 0;
        }
        yaml_sequence_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev);
    }
    case JSON_STRING:
        /* Quoted, so "123" or "true" read back as strings. */
        return emit_scalar(em, json_string_value(j), json_string_length(j),
                           YAML_DOUBLE_QUOTED_SCALAR_STYLE);
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        return emit_scalar(em, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
    case JSON_REAL:
        snprintf(num, sizeof num, "%.17g", json_real_value(j));
        if (!strpbrk(num, ".eEn"))
            strcat(num, ".0");
        return emit_scalar(em, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
    case JSON_TRUE: return emit_scalar(em, "true", 4, YAML_PLAIN_SCALAR_STYLE);
    case JSON_FALSE: return emit_scalar(em, "false", 5, YAML_PLAIN_SCALAR_STYLE);
    default: return emit_scalar(em, "null", 4, YAML_PLAIN_SCALAR_STYLE);
    }
}

int json_to_yaml_file(const json_t *j, const char *path, char *err, size_t errlen)
{
    yaml_emitter_t em;
    bt_buf o = {0};
    if (!yaml_emitter_initialize(&em))
        return bt_errf(err, errlen, "yaml: out of memory");
    yaml_emitter_set_output(&em, write_cb, &o);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1);
    yaml_event_t ev;
    int ok = 1;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    ok = ok && yaml_emitter_emit(&em, &ev);
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    ok = ok && yaml_emitter_emit(&em, &ev);
    ok = ok && emit_json(&em, j, 0);
    yaml_document_end_event_initialize(&ev, 1);
    ok = ok && yaml_emitter_emit(&em, &ev);
    yaml_stream_end_event_initialize(&ev);
    ok = ok && yaml_emitter_emit(&em, &ev);
    yaml_emitter_delete(&em);
    int rc = ok ? bt_write_file_atomic(path, o.p, o.len, 0644, err, errlen)
                : bt_errf(err, errlen, "yaml: cannot write %s", path);
    bt_buf_free(&o);
    return rc;
}
