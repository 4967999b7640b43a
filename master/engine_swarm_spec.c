/* A service of the application as a Docker swarm service spec (see engine_swarm.h). */
#include "engine_swarm.h"
#include "docker_config.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/json.h>

#include <math.h>
#include "baetyl/ossl.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Swarm names are DNS labels: [A-Za-z0-9] runs joined by '-' or '_', at most 63 bytes. */
int swarm_name(const char *instance, char *out, size_t outlen)
{
    size_t n = strlen(instance), k = 0;
    if (outlen < SWARM_NAME_MAX + 1)
        return -1;
    for (size_t i = 0; i < n && k < SWARM_NAME_MAX; i++) {
        char c = instance[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (k == 0 || out[k - 1] == '-' || out[k - 1] == '_'))
            continue; /* no leading or doubled separator */
        out[k++] = alnum || c == '_' ? c : '-';
    }
    while (k > 0 && (out[k - 1] == '-' || out[k - 1] == '_'))
        k--;
    out[k] = '\0';
    if (k == 0)
        return -1;
    if (k < n || strcmp(out, instance) != 0) {
        /* Changed or cut: a hash of the instance name keeps two names apart. */
        unsigned char md[32];
        if (bt_sha256(instance, n, md, NULL, 0) < 0)
            return -1;
        if (k > SWARM_NAME_MAX - 9)
            k = SWARM_NAME_MAX - 9;
        while (k > 0 && (out[k - 1] == '-' || out[k - 1] == '_'))
            k--;
        snprintf(out + k, outlen - k, "%s%02x%02x%02x%02x", k ? "-" : "", md[0], md[1], md[2],
                 md[3]);
    }
    return 0;
}

static const char *restart_condition(const char *policy)
{
    if (strcmp(policy, "on-failure") == 0)
        return "on-failure";
    return strcmp(policy, "no") == 0 ? "none" : "any";
}

/* ports entries as EndpointSpec.Ports, published in host mode on the node of the task. */
static int add_ports(const app_service *svc, json_t *ports, char *err, size_t errlen)
{
    char why[512];
    json_t *exposed = json_object(), *pb = json_object();
    int rc = exposed && pb ? 0 : bt_errf(err, errlen, "out of memory");
    for (size_t i = 0; rc == 0 && i < svc->ports.n; i++)
        if (docker_add_port(BT_CFG_AT(svc->ports, char *, i), exposed, pb, why, sizeof why) != 0)
            rc = bt_errf(err, errlen, "ports[%zu]: %s", i, why);
    const char *key;
    json_t *list;
    json_object_foreach(pb, key, list)
    {
        unsigned target = 0;
        char proto[8] = "tcp";
        if (rc != 0 || sscanf(key, "%u/%7s", &target, proto) < 1)
            break;
        size_t j;
        json_t *b;
        json_array_foreach(list, j, b)
        {
            const char *hp = json_string_value(json_object_get(b, "HostPort"));
            const char *ip = json_string_value(json_object_get(b, "HostIp"));
            if (ip && *ip) {
                rc = bt_errf(err, errlen,
                             "ports: a swarm publishes on every address of the node: drop the "
                             "address (%s)",
                             ip);
                break;
            }
            if (hp && strchr(hp, '-')) {
                rc = bt_errf(err, errlen, "ports: a swarm cannot publish a host port range (%s)",
                             hp);
                break;
            }
            json_t *p = json_pack("{s:s,s:i,s:s}", "Protocol", proto, "TargetPort", (int)target,
                                  "PublishMode", "host");
            if (p && hp && *hp)
                json_object_set_new(p, "PublishedPort", json_integer(atoi(hp)));
            if (!p || json_array_append_new(ports, p) != 0)
                rc = bt_errf(err, errlen, "out of memory");
        }
    }
    json_decref(exposed);
    json_decref(pb);
    return rc;
}

static int add_mounts(const char *pwd, const app_config *app, const app_service *svc, json_t *cs,
                      char *err, size_t errlen)
{
    json_t *mounts = json_array();
    if (!mounts || json_object_set_new(cs, "Mounts", mounts) != 0)
        return bt_errf(err, errlen, "out of memory");
    for (size_t i = 0; i < svc->mounts.n; i++) {
        const app_mount *m = APP_MOUNT(svc, i);
        char *src = docker_mount_source(pwd, app, m, err, errlen);
        if (!src)
            return -1;
        size_t lm = strlen(m->path) + 1;
        char *dst = malloc(lm + 1);
        int rc = 0;
        if (!dst)
            rc = bt_errf(err, errlen, "out of memory");
        else if (bt_path_clean_rel(m->path, dst + 1, lm) != 0)
            rc = bt_errf(err, errlen, "mount (%s): path (%s) escapes the container's root", m->name,
                         m->path);
        if (rc == 0) {
            dst[0] = '/';
            json_t *j = json_pack("{s:s,s:s,s:s,s:b}", "Type", "bind", "Source", src, "Target", dst,
                                  "ReadOnly", m->readonly);
            if (!j || json_array_append_new(mounts, j) != 0)
                rc = bt_errf(err, errlen, "out of memory");
        }
        free(src);
        free(dst);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* How a changed service is updated in place, and rolled back by the swarm when its new task
 * fails within the monitor period. A new task starts before the old one stops, except when
 * they would share a host port or a writable bind (two hubs on one store). */
static json_t *update_config(const app_service *svc, const char *on_failure)
{
    bool exclusive = svc->ports.n > 0;
    for (size_t i = 0; i < svc->mounts.n; i++)
        exclusive |= !APP_MOUNT(svc, i)->readonly;
    const char *order = exclusive ? "stop-first" : "start-first";
    return json_pack("{s:i,s:s,s:I,s:f,s:s}", "Parallelism", 1, "FailureAction", on_failure,
                     "Monitor", (json_int_t)SWARM_MONITOR_NS, "MaxFailureRatio", 0.0, "Order",
                     order);
}

static json_t *labels(const char *master_id, const char *svc)
{
    return json_pack("{s:s,s:s,s:s}", "baetyl", "baetyl", "service", svc, DOCKER_MASTER_LABEL,
                     master_id);
}

json_t *swarm_service_spec(const swarm_ctx *ctx, const app_config *app, const app_service *svc,
                           char *err, size_t errlen)
{
    if (svc->devices.n) {
        bt_errf(err, errlen,
                "devices: swarm services cannot map devices (Docker 20.10): run this service "
                "in mode docker, or drop devices[0] (%s)",
                BT_CFG_AT(svc->devices, char *, 0));
        return NULL;
    }
    const app_restart *rp = &svc->restart;
    json_t *spec = json_object(), *cs = json_object(), *tt = json_object(), *ports = json_array();
    json_t *res = json_object(), *lim = json_object(), *place = json_object();
    int bad = !spec || !cs || !tt || !ports || !res || !lim || !place;
    if (!bad) {
        bad |= json_object_set_new(cs, "Image", json_string(svc->image));
        bad |= json_object_set_new(cs, "Labels", labels(ctx->master_id, svc->name));
        bad |= json_object_set_new(cs, "StopGracePeriod",
                                   json_integer((json_int_t)ctx->grace_ms * 1000000));
        if (svc->args.n) {
            json_t *args = json_array();
            for (size_t i = 0; args && i < svc->args.n; i++)
                bad |= json_array_append_new(args, json_string(BT_CFG_AT(svc->args, char *, i)));
            bad |= json_object_set_new(cs, "Args", args);
        }
    }
    int rc = bad ? bt_errf(err, errlen, "out of memory") : 0;
    if (rc == 0)
        rc = add_mounts(ctx->pwd, app, svc, cs, err, errlen);
    if (rc == 0)
        rc = add_ports(svc, ports, err, errlen);
    if (rc == 0) {
        const app_resources *r = &svc->resources;
        if (r->cpus > 0)
            bad |= json_object_set_new(lim, "NanoCPUs",
                                       json_integer((json_int_t)llround(r->cpus * 1e9)));
        if (r->memory_limit > 0)
            bad |= json_object_set_new(lim, "MemoryBytes", json_integer(r->memory_limit));
        bad |= json_object_set(res, "Limits", lim);
        json_t *cons = json_array();
        for (size_t i = 0; cons && i < svc->placement.constraints.n; i++)
            bad |= json_array_append_new(
                cons, json_string(BT_CFG_AT(svc->placement.constraints, char *, i)));
        bad |= json_object_set_new(place, "Constraints", cons);
        if (svc->placement.spread)
            bad |= json_object_set_new(
                place, "Preferences",
                json_pack("[{s:{s:s}}]", "Spread", "SpreadDescriptor", svc->placement.spread));
        /* Swarm waits a fixed delay between restarts: the backoff's first step; retry.max
         * bounds the attempts as in the other engines. */
        bad |= json_object_set_new(tt, "RestartPolicy",
                                   json_pack("{s:s,s:I,s:I}", "Condition",
                                             restart_condition(rp->policy), "Delay",
                                             (json_int_t)rp->backoff_min * 1000000, "MaxAttempts",
                                             (json_int_t)rp->retry_max));
        bad |= json_object_set(tt, "ContainerSpec", cs);
        bad |= json_object_set(tt, "Resources", res);
        bad |= json_object_set(tt, "Placement", place);
        bad |= json_object_set_new(
            tt, "Networks",
            json_pack("[{s:s,s:[s]}]", "Target", ctx->network, "Aliases", svc->name));
        bad |= json_object_set_new(spec, "Labels", labels(ctx->master_id, svc->name));
        bad |= json_object_set(spec, "TaskTemplate", tt);
        bad |=
            json_object_set_new(spec, "Mode", json_pack("{s:{s:i}}", "Replicated", "Replicas", 1));
        bad |= json_object_set_new(spec, "UpdateConfig", update_config(svc, "rollback"));
        bad |= json_object_set_new(spec, "RollbackConfig", update_config(svc, "pause"));
        /* The kernels of small gateways often lack IPVS: DNS round robin, no virtual IP. */
        bad |= json_object_set_new(spec, "EndpointSpec",
                                   json_pack("{s:s,s:O}", "Mode", "dnsrr", "Ports", ports));
        if (bad)
            rc = bt_errf(err, errlen, "out of memory");
    }
    json_decref(cs);
    json_decref(tt);
    json_decref(ports);
    json_decref(res);
    json_decref(lim);
    json_decref(place);
    if (rc != 0) {
        json_decref(spec);
        return NULL;
    }
    return spec;
}

int swarm_instance_spec(json_t *spec, const char *name, const char *instance, char *const env[])
{
    json_t *cs = json_object_get(json_object_get(spec, "TaskTemplate"), "ContainerSpec");
    json_t *jenv = json_array();
    int bad = !cs || !jenv;
    for (char *const *v = env; !bad && *v; v++)
        bad |= json_array_append_new(jenv, json_string(*v));
    bad |= json_object_set_new(spec, "Name", json_string(name));
    bad |= json_object_set_new(json_object_get(spec, "Labels"), SWARM_INSTANCE_LABEL,
                               json_string(instance));
    bad |= json_object_set_new(json_object_get(cs, "Labels"), SWARM_INSTANCE_LABEL,
                               json_string(instance));
    bad |= json_object_set_new(cs, "Env", jenv);
    /* The instance answers by its own name too (the function-manager dials it). */
    json_t *aliases = bt_json_get(spec, "TaskTemplate.Networks.0.Aliases");
    if (aliases && strcmp(instance, json_string_value(json_array_get(aliases, 0))) != 0)
        bad |= json_array_append_new(aliases, json_string(instance));
    return bad ? -1 : 0;
}

int swarm_spec_hash(const json_t *spec, char *out, size_t outlen)
{
    char *s = json_dumps(spec, JSON_SORT_KEYS | JSON_COMPACT);
    unsigned char md[32];
    int ok = s && bt_sha256(s, strlen(s), md, NULL, 0) == 0 && outlen > 32;
    free(s);
    if (!ok)
        return -1;
    for (unsigned i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}
