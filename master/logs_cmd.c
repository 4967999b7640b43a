/* `baetyl logs <service> [-n N] [-f]`: a service's output through the master API
 * (GET /v1/services/{s}/instances/{i}/logs), so it works alike in native and docker mode. */
#include "cli.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/api.h>

#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FOLLOW_FETCH 1000 /* lines asked for while following: what a second may bring */
#define MATCH_LINES 20    /* lines of overlap that tie a new fetch to the previous one */

typedef struct {
    char *name;
    json_t *seen; /* the lines of the previous fetch */
    bool gone;    /* no longer answered for */
} inst_t;

/* The names of the service's instances in inspect (the service name alone when it has none
 * listed: an instance that exited for good still has its output). 1: no such service. */
static int instance_names(bt_api_client *cl, const char *service, json_t **names, char *err,
                          size_t errlen)
{
    json_t *j = NULL;
    if (bt_api_inspect(cl, &j, NULL, err, errlen) != 0)
        return -1;
    *names = json_array();
    json_t *svcs = json_object_get(j, "services"), *s;
    size_t i;
    int found = 1;
    json_array_foreach(svcs, i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "name")) ?: "", service) != 0)
            continue;
        found = 0;
        json_t *in;
        size_t k;
        json_array_foreach(json_object_get(s, "instances"), k, in)
        {
            json_t *n = json_object_get(in, "name");
            if (json_is_string(n))
                json_array_append(*names, n);
        }
    }
    if (!found && json_array_size(*names) == 0)
        json_array_append_new(*names, json_string(service));
    json_decref(j);
    return found;
}

/* GET the logs of one instance: its lines array (new reference), or NULL with err. */
static json_t *fetch(bt_api_client *cl, const char *service, const char *inst, long n, char *err,
                     size_t errlen)
{
    char *es = bt_api_escape(service), *ei = bt_api_escape(inst);
    char *path = es && ei
                     ? bt_strdup_printf("/v1/services/%s/instances/%s/logs?lines=%ld", es, ei, n)
                     : NULL;
    char *body = NULL;
    json_t *lines = NULL;
    if (!path)
        bt_errf(err, errlen, "out of memory");
    else if (bt_api_request(cl, "GET", path, NULL, 0, &body, NULL, err, errlen) == 0) {
        json_t *j = json_loads(body, 0, NULL);
        lines = json_incref(json_object_get(j, "lines"));
        if (!json_is_array(lines)) {
            json_decref(lines);
            lines = NULL;
            bt_errf(err, errlen, "the master's answer has no lines");
        }
        json_decref(j);
    }
    free(body);
    free(path);
    free(es);
    free(ei);
    return lines;
}

static void print_lines(json_t *lines, size_t from, const char *prefix)
{
    for (size_t i = from; i < json_array_size(lines); i++) {
        const char *l = json_string_value(json_array_get(lines, i));
        if (prefix)
            printf("[%s] %s\n", prefix, l ? l : "");
        else
            printf("%s\n", l ? l : "");
    }
    fflush(stdout);
}

static bool same_at(json_t *a, size_t ia, json_t *b, size_t ib, size_t k)
{
    for (size_t i = 0; i < k; i++)
        if (!json_equal(json_array_get(a, ia + i), json_array_get(b, ib + i)))
            return false;
    return true;
}

/* How many lines at the end of cur are new since prev: the fewest whose removal leaves cur
 * ending like prev (on up to MATCH_LINES lines). When nothing matches (the file was cut or
 * started again), all of cur. */
static size_t new_lines(json_t *prev, json_t *cur)
{
    size_t np = json_array_size(prev), nc = json_array_size(cur);
    if (np == 0)
        return nc;
    for (size_t a = 0; a < nc; a++) {
        size_t k = nc - a;
        if (k > np)
            k = np;
        if (k > MATCH_LINES)
            k = MATCH_LINES;
        if (same_at(prev, np - k, cur, nc - a - k, k))
            return a;
    }
    return nc;
}

static inst_t *find_inst(inst_t *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].name, name))
            return &v[i];
    return NULL;
}

int cmd_logs(const char *conf_path, const char *service, long lines, bool follow)
{
    bt_api_client *cl;
    int rc = cli_api_connect(conf_path, &cl, NULL);
    if (rc != 0)
        return rc;
    char err[1024];
    inst_t *v = NULL;
    size_t nv = 0;
    rc = 1;
    for (bool first = true;; first = false) {
        json_t *names = NULL;
        int r = instance_names(cl, service, &names, err, sizeof err);
        if (r != 0) {
            if (r < 0)
                fprintf(stderr, "baetyl: %s\n", err);
            else
                fprintf(stderr, "baetyl: service (%s) not found\n", service);
            json_decref(names);
            break;
        }
        size_t i;
        json_t *jn;
        json_array_foreach(names, i, jn)
        {
            const char *name = json_string_value(jn);
            if (find_inst(v, nv, name))
                continue;
            inst_t *nvv = realloc(v, (nv + 1) * sizeof *v);
            if (!nvv)
                break;
            v = nvv;
            v[nv++] = (inst_t){.name = strdup(name), .seen = json_array()};
        }
        bool many = nv > 1, any = false;
        json_decref(names);
        for (size_t k = 0; k < nv; k++) {
            inst_t *in = &v[k];
            json_t *got =
                fetch(cl, service, in->name, first ? lines : FOLLOW_FETCH, err, sizeof err);
            if (!got) {
                if (!in->gone && !follow)
                    fprintf(stderr, "baetyl: instance (%s): %s\n", in->name, err);
                in->gone = true;
                continue;
            }
            any = true;
            in->gone = false;
            size_t add = first ? json_array_size(got) : new_lines(in->seen, got);
            print_lines(got, json_array_size(got) - add, many ? in->name : NULL);
            json_decref(in->seen);
            in->seen = got;
        }
        if (!follow) {
            rc = any ? 0 : 1;
            break;
        }
        if (!any && !first) {
            fprintf(stderr, "baetyl: %s\n", err);
            break;
        }
        poll(NULL, 0, 1000); /* Ctrl-C ends it, as it ends tail -f */
    }
    for (size_t k = 0; k < nv; k++) {
        free(v[k].name);
        json_decref(v[k].seen);
    }
    free(v);
    bt_api_free(cl);
    return rc;
}
