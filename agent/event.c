/* Events of the desire topic (SPEC §15): OTA, and the old UPDATE form that means the same.
 * The payload comes from the network: every field is checked for its type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "baetyl/json.h"

#define TRACE_MAX 256

void agent_volume_free(agent_volume *v)
{
    free(v->name);
    free(v->path);
    free(v->url);
    free(v->md5);
    free(v->version);
    memset(v, 0, sizeof *v);
}

void agent_event_free(agent_ota_event *ev)
{
    free(ev->type);
    free(ev->trace);
    free(ev->version);
    free(ev->error);
    agent_volume_free(&ev->volume);
    memset(ev, 0, sizeof *ev);
}

/* *out = a copy of the string member key of o; absent or null is fine (NULL). */
static int get_str(const json_t *o, const char *key, char **out, const char *where, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "event content invalid: %s%s is not a string", where, key);
        return -1;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        snprintf(err, errlen, "event content invalid: %s%s holds a NUL byte", where, key);
        return -1;
    }
    if (!(*out = strdup(json_string_value(v)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int parse_volume(const json_t *o, agent_volume *v, const char *where, char *err,
                        size_t errlen)
{
    memset(v, 0, sizeof *v);
    if (!json_is_object(o)) {
        snprintf(err, errlen, "event content invalid: %s is not an object", where);
        return -1;
    }
    char w[64];
    snprintf(w, sizeof w, "%s.", where);
    if (get_str(o, "name", &v->name, w, err, errlen) < 0 ||
        get_str(o, "path", &v->path, w, err, errlen) < 0)
        return -1;
    json_t *meta = json_object_get(o, "meta");
    if (meta && !json_is_null(meta)) {
        if (!json_is_object(meta)) {
            snprintf(err, errlen, "event content invalid: %s.meta is not an object", where);
            return -1;
        }
        snprintf(w, sizeof w, "%s.meta.", where);
        if (get_str(meta, "url", &v->url, w, err, errlen) < 0 ||
            get_str(meta, "md5", &v->md5, w, err, errlen) < 0 ||
            get_str(meta, "version", &v->version, w, err, errlen) < 0)
            return -1;
    }
    if (!v->name || !*v->name || !v->path || !*v->path) {
        snprintf(err, errlen, "event content invalid: %s needs a name and a path", where);
        return -1;
    }
    if (!v->url || !*v->url || !v->md5 || !*v->md5) {
        snprintf(err, errlen, "event content invalid: %s.meta needs a url and an md5", where);
        return -1;
    }
    return 0;
}

static int check_trace(const char *t, char *err, size_t errlen)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > TRACE_MAX) {
        snprintf(err, errlen, "event content invalid: trace must have 1 to %d bytes", TRACE_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] < 0x20 || t[i] == 0x7F) {
            snprintf(err, errlen, "event content invalid: trace holds a control character");
            return -1;
        }
    return 0;
}

int agent_event_parse(const void *payload, size_t len, agent_ota_event *ev, char *err,
                      size_t errlen)
{
    memset(ev, 0, sizeof *ev);
    char why[256];
    json_t *root = bt_json_parse_object(payload, len, why, sizeof why);
    if (!root) {
        snprintf(err, errlen, "event invalid: %s", why);
        return -1;
    }
    int rc = -1, fail = -1;
    json_t *type = json_object_get(root, "event");
    json_t *content = json_object_get(root, "content");
    const char *t = json_is_string(type) ? json_string_value(type) : NULL;
    bool ota = t && !strcmp(t, "OTA"), update = t && !strcmp(t, "UPDATE");
    if (!ota && !update) {
        char q[65];
        agent_shown(q, sizeof q, t ? t : (type ? "not a string" : ""));
        snprintf(err, errlen, "event type (%s) unexpected", q);
        goto out;
    }
    if (!json_is_object(content)) {
        snprintf(err, errlen, "event content invalid: content is not an object");
        goto out;
    }
    char verr[256] = "";
    if (get_str(content, "trace", &ev->trace, "", err, errlen) < 0)
        goto out;
    bool bad_version = get_str(content, "version", &ev->version, "", verr, sizeof verr) < 0;
    /* The old form carries no type (always an application) and may carry no trace:
     * decided here, its version stands for the trace then. */
    if (update && (!ev->trace || !*ev->trace) && ev->version) {
        free(ev->trace);
        if (!(ev->trace = strdup(ev->version))) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    if (check_trace(ev->trace, err, errlen) < 0)
        goto out;
    /* From here on the event names its OTA: a failure is the cloud's to see (ota.log). */
    fail = -2;
    if (bad_version) {
        snprintf(err, errlen, "%s", verr);
        goto out;
    }
    if (ota) {
        if (get_str(content, "type", &ev->type, "", err, errlen) < 0 ||
            parse_volume(json_object_get(content, "volume"), &ev->volume, "volume", err, errlen) <
                0)
            goto out;
    } else if (parse_volume(json_object_get(content, "config"), &ev->volume, "config", err,
                            errlen) < 0) {
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    if ((rc == 0 || fail == -2) && (!ev->type || !*ev->type)) {
        free(ev->type);
        if (!(ev->type = strdup("APP"))) {
            snprintf(err, errlen, "out of memory");
            rc = fail = -1;
        }
    }
    if (rc == 0)
        return 0;
    if (fail == -2) {
        /* only what the failure line needs is kept */
        free(ev->version);
        ev->version = NULL;
        agent_volume_free(&ev->volume);
        return -2;
    }
    agent_event_free(ev);
    return -1;
}
