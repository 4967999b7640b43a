/* `baetyl check`: the certificate files an application's services name exist.
 *
 * The master does not know the modules' config schemas, so it reads each service's
 * service.yml (in the volume mounted at etc/baetyl) as plain YAML and takes every mapping
 * that has a `ca` or `cert` key as a TLS block (hub listeners' `certificate`, remote-mqtt's
 * remotes, the function-manager's and agent's hub/remote clients all look like that). A
 * path is resolved the way the service sees it: through the mount whose path is its
 * longest prefix, to the volume's directory in the work dir. A path no mount covers lives in
 * the image (docker) or elsewhere on the host (native) and is left to the service. */
#include "check_certs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include <baetyl/error.h>
#include <baetyl/util.h>

#define SERVICE_YML_MAX (4u << 20)
#define WALK_DEPTH_MAX 64

typedef struct {
    const app_config *app;
    const app_service *svc;
    char *err;
    size_t errlen;
    int missing;
} cert_walk;

static bool key_is(const yaml_node_t *k, const char *s)
{
    return k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(s) &&
           memcmp(k->data.scalar.value, s, k->data.scalar.length) == 0;
}

/* The host path of a file the service names, or NULL when no mount covers it. */
static char *host_path(const cert_walk *w, const char *file)
{
    size_t n = strlen(file) + 1;
    char *rel = malloc(n), *mp = NULL, *out = NULL;
    size_t best = 0;
    const app_volume *vol = NULL;
    if (!rel || bt_path_clean_rel(file, rel, n) != 0)
        goto done;
    for (size_t i = 0; i < w->svc->mounts.n; i++) {
        const app_mount *m = APP_MOUNT(w->svc, i);
        size_t ml = strlen(m->path) + 1;
        char *c = malloc(ml);
        if (c && bt_path_clean_rel(m->path, c, ml) == 0) {
            size_t cl = strlen(c);
            if (cl > best && !strncmp(rel, c, cl) && (rel[cl] == '/' || !rel[cl])) {
                const app_volume *v = app_find_volume(w->app, m->name);
                if (v) {
                    best = cl;
                    vol = v;
                    free(mp);
                    mp = c;
                    c = NULL;
                }
            }
        }
        free(c);
    }
    if (vol) {
        const char *rest = rel + best + (rel[best] == '/');
        char *dir = bt_path_join(".", vol->path);
        out = dir && *rest ? bt_path_join(dir, rest) : dir;
        if (out != dir)
            free(dir);
    }
done:
    free(rel);
    free(mp);
    return out;
}

static void check_file(cert_walk *w, const yaml_node_t *v, const char *what)
{
    if (!v || v->type != YAML_SCALAR_NODE || !v->data.scalar.length)
        return;
    char *file = strndup((const char *)v->data.scalar.value, v->data.scalar.length);
    char *path = file ? host_path(w, file) : NULL;
    if (path && !bt_is_regular_file(path) && w->missing++ == 0)
        bt_errf(w->err, w->errlen, "service (%s): %s file %s not found (looked for %s)",
                w->svc->name, what, file, path);
    free(path);
    free(file);
}

static void walk(cert_walk *w, yaml_document_t *doc, yaml_node_t *n, int depth)
{
    if (!n || depth > WALK_DEPTH_MAX)
        return;
    if (n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
             i++)
            walk(w, doc, yaml_document_get_node(doc, *i), depth + 1);
        return;
    }
    if (n->type != YAML_MAPPING_NODE)
        return;
    yaml_node_pair_t *p;
    bool tls = false;
    for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        tls |= key_is(k, "ca") || key_is(k, "cert");
    }
    for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        if (tls && (key_is(k, "ca") || key_is(k, "cert") || key_is(k, "key")))
            check_file(w, v, (const char *)k->data.scalar.value);
        else
            walk(w, doc, v, depth + 1);
    }
}

/* Checks one service's service.yml; a missing or unreadable one is the service's business
 * (it fails with its own message), so only the files it names are checked here. */
static void check_service(cert_walk *w)
{
    char *conf = host_path(w, "etc/baetyl/service.yml"), *text = NULL;
    size_t len = 0;
    char ignored[256];
    if (!conf || bt_read_file(conf, SERVICE_YML_MAX, &text, &len, ignored, sizeof ignored) != 0) {
        free(conf);
        return;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (yaml_parser_initialize(&parser)) {
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
        if (yaml_parser_load(&parser, &doc)) {
            walk(w, &doc, yaml_document_get_root_node(&doc), 0);
            yaml_document_delete(&doc);
        }
        yaml_parser_delete(&parser);
    }
    free(text);
    free(conf);
}

int app_check_certs(const app_config *app, char *err, size_t errlen)
{
    cert_walk w = {.app = app, .err = err, .errlen = errlen};
    for (size_t i = 0; i < app->services.n && !w.missing; i++) {
        w.svc = APP_SERVICE(app, i);
        check_service(&w);
    }
    return w.missing ? -1 : 0;
}
