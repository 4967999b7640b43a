/* A service as a container create body (see docker_config.h). The syntax of `ports` and
 * `devices` is Docker's own (`docker run -p`, `--device`), so a user's compose habits work. */
#include "docker_config.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include "baetyl/ossl.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "a" or "a-b" with 1 <= a <= b <= 65535. */
static int parse_range(const char *s, size_t n, unsigned *lo, unsigned *hi)
{
    unsigned v[2] = {0, 0};
    int k = 0;
    size_t digits = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= '0' && ch <= '9') {
            if (++digits > 5)
                return -1;
            v[k] = v[k] * 10 + (unsigned)(ch - '0');
        } else if (ch == '-' && k == 0 && digits > 0) {
            k = 1;
            digits = 0;
        } else {
            return -1;
        }
    }
    if (digits == 0)
        return -1;
    *lo = v[0];
    *hi = k ? v[1] : v[0];
    return *lo >= 1 && *hi <= 65535 && *lo <= *hi ? 0 : -1;
}

int docker_add_port(const char *spec, json_t *exposed, json_t *bindings, char *err, size_t errlen)
{
    size_t n = strlen(spec);
    if (n == 0 || n > 128)
        return bt_errf(err, errlen, "port (%s) is empty or too long", spec);
    char buf[130];
    memcpy(buf, spec, n + 1);
    const char *proto = "tcp";
    char *slash = strrchr(buf, '/');
    if (slash) {
        *slash = '\0';
        proto = slash + 1;
        if (strcmp(proto, "tcp") != 0 && strcmp(proto, "udp") != 0 && strcmp(proto, "sctp") != 0)
            return bt_errf(err, errlen, "port (%s): protocol must be tcp, udp or sctp", spec);
    }
    /* Split into ip, host and container parts; an IPv6 address comes in brackets. */
    char ip[64] = "";
    char *rest = buf;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || close[1] != ':' || (size_t)(close - buf - 1) >= sizeof ip)
            return bt_errf(err, errlen, "port (%s): bad IPv6 address (use [addr]:host:container)",
                           spec);
        memcpy(ip, buf + 1, (size_t)(close - buf - 1));
        ip[close - buf - 1] = '\0';
        rest = close + 2;
        if (!strchr(rest, ':'))
            return bt_errf(err, errlen, "port (%s): an address needs host:container after it",
                           spec);
    }
    char *parts[3];
    int np = 0;
    parts[np++] = rest;
    for (char *p = rest; *p; p++)
        if (*p == ':') {
            if (np == 3)
                return bt_errf(err, errlen,
                               "port (%s): too many ':' (write an IPv6 address in brackets)", spec);
            *p = '\0';
            parts[np++] = p + 1;
        }
    const char *host = "", *ctr;
    if (ip[0]) {
        if (np != 2)
            return bt_errf(err, errlen, "port (%s): expected [addr]:host:container", spec);
        host = parts[0];
        ctr = parts[1];
    } else if (np == 3) {
        snprintf(ip, sizeof ip, "%s", parts[0]);
        if (strlen(parts[0]) >= sizeof ip)
            return bt_errf(err, errlen, "port (%s): address too long", spec);
        host = parts[1];
        ctr = parts[2];
    } else if (np == 2) {
        host = parts[0];
        ctr = parts[1];
    } else {
        ctr = parts[0];
    }
    if (ip[0]) {
        unsigned char a[16];
        if (inet_pton(AF_INET, ip, a) != 1 && inet_pton(AF_INET6, ip, a) != 1)
            return bt_errf(err, errlen, "port (%s): (%s) is not an IP address", spec, ip);
    }
    unsigned clo, chi, hlo = 0, hhi = 0;
    if (parse_range(ctr, strlen(ctr), &clo, &chi) != 0)
        return bt_errf(err, errlen,
                       "port (%s): container port (%s) is not a port or range in 1-65535", spec,
                       ctr);
    if (*host && parse_range(host, strlen(host), &hlo, &hhi) != 0)
        return bt_errf(err, errlen, "port (%s): host port (%s) is not a port or range in 1-65535",
                       spec, host);
    bool host_range = *host && hhi != hlo;
    if (chi != clo && *host && (!host_range || hhi - hlo != chi - clo))
        return bt_errf(err, errlen, "port (%s): host and container ranges differ in size", spec);
    for (unsigned p = clo; p <= chi; p++) {
        char key[24], hp[16];
        snprintf(key, sizeof key, "%u/%s", p, proto);
        if (!*host)
            hp[0] = '\0';
        else if (chi != clo)
            snprintf(hp, sizeof hp, "%u", hlo + (p - clo));
        else if (host_range)
            snprintf(hp, sizeof hp, "%u-%u", hlo, hhi); /* the engine picks one free port in it */
        else
            snprintf(hp, sizeof hp, "%u", hlo);
        json_t *list = json_object_get(bindings, key);
        if (!list) {
            list = json_array();
            if (!list || json_object_set_new(bindings, key, list) != 0)
                return bt_errf(err, errlen, "out of memory");
        }
        if (json_object_set_new(exposed, key, json_object()) != 0 ||
            json_array_append_new(list, json_pack("{s:s,s:s}", "HostIp", ip, "HostPort", hp)) != 0)
            return bt_errf(err, errlen, "out of memory");
    }
    return 0;
}

static bool valid_perms(const char *s)
{
    if (!*s || strlen(s) > 3)
        return false;
    for (const char *p = s; *p; p++)
        if ((*p != 'r' && *p != 'w' && *p != 'm') || strchr(p + 1, *p))
            return false;
    return true;
}

json_t *docker_device(const char *spec, char *err, size_t errlen)
{
    size_t n = strlen(spec);
    if (n == 0 || n > 4096) {
        bt_errf(err, errlen, "device (%s) is empty or too long", spec);
        return NULL;
    }
    char *buf = strdup(spec);
    if (!buf) {
        bt_errf(err, errlen, "out of memory");
        return NULL;
    }
    char *parts[3];
    int np = 0;
    parts[np++] = buf;
    for (char *p = buf; *p; p++)
        if (*p == ':') {
            if (np == 3) {
                free(buf);
                bt_errf(err, errlen, "device (%s): expected host[:container][:perms]", spec);
                return NULL;
            }
            *p = '\0';
            parts[np++] = p + 1;
        }
    const char *host = parts[0], *ctr = parts[0], *perms = "mrw";
    if (np == 3) {
        ctr = parts[1];
        perms = parts[2];
        if (!valid_perms(perms)) {
            bt_errf(err, errlen, "device (%s): permissions (%s) must be made of r, w and m", spec,
                    perms);
            free(buf);
            return NULL;
        }
    } else if (np == 2) {
        if (valid_perms(parts[1]))
            perms = parts[1];
        else
            ctr = parts[1];
    }
    json_t *d = NULL;
    if (host[0] != '/' || ctr[0] != '/')
        bt_errf(err, errlen, "device (%s): device paths must be absolute", spec);
    else if (!(d = json_pack("{s:s,s:s,s:s}", "PathOnHost", host, "PathInContainer", ctr,
                             "CgroupPermissions", perms)))
        bt_errf(err, errlen, "out of memory");
    free(buf);
    return d;
}

char *docker_mount_source(const char *pwd, const app_config *app, const app_mount *m, char *err,
                          size_t errlen)
{
    const app_volume *v = app_find_volume(app, m->name);
    if (!v) {
        bt_errf(err, errlen, "volume (%s) not found", m->name);
        return NULL;
    }
    size_t lv = strlen(v->path) + 1;
    char *rel = malloc(lv), *src = NULL;
    if (!rel)
        bt_errf(err, errlen, "out of memory");
    else if (bt_path_clean_rel(v->path, rel, lv) != 0)
        bt_errf(err, errlen, "volume (%s): path (%s) escapes the work dir", v->name, v->path);
    else if (!(src = bt_path_join(pwd, rel)))
        bt_errf(err, errlen, "out of memory");
    else if (strchr(src, ':')) {
        bt_errf(err, errlen, "volume (%s): a bind source cannot contain ':' (%s)", v->name, src);
        free(src);
        src = NULL;
    }
    free(rel);
    return src;
}

/* "<src>:/<mount.path>[:ro]" for one mount. */
static char *bind_of(const docker_ctx *ctx, const app_config *app, const app_mount *m, char *err,
                     size_t errlen)
{
    char *src = docker_mount_source(ctx->pwd, app, m, err, errlen);
    if (!src)
        return NULL;
    size_t lm = strlen(m->path) + 1;
    char *dst = malloc(lm), *b = NULL;
    if (!dst)
        bt_errf(err, errlen, "out of memory");
    else if (bt_path_clean_rel(m->path, dst, lm) != 0)
        bt_errf(err, errlen, "mount (%s): path (%s) escapes the container's root", m->name,
                m->path);
    else if (strchr(dst, ':'))
        bt_errf(err, errlen, "mount (%s): a bind target cannot contain ':' (%s)", m->name, m->path);
    else if (!(b = bt_strdup_printf("%s:/%s%s", src, dst, m->readonly ? ":ro" : "")))
        bt_errf(err, errlen, "out of memory");
    free(src);
    free(dst);
    return b;
}

static int add_resources(const app_resources *r, json_t *hc, char *err, size_t errlen)
{
    int bad = 0;
    if (r->cpus > 0) {
        double nano = r->cpus * 1e9;
        if (!(nano < 9e18))
            return bt_errf(err, errlen, "resources.cpu.cpus (%g) is too large", r->cpus);
        bad |= json_object_set_new(hc, "NanoCpus", json_integer((json_int_t)llround(nano)));
    }
    if (r->setcpus && *r->setcpus)
        bad |= json_object_set_new(hc, "CpusetCpus", json_string(r->setcpus));
    if (r->memory_limit > 0)
        bad |= json_object_set_new(hc, "Memory", json_integer(r->memory_limit));
    if (r->memory_swap != 0)
        bad |= json_object_set_new(hc, "MemorySwap", json_integer(r->memory_swap));
    if (r->pids_limit != 0)
        bad |= json_object_set_new(hc, "PidsLimit", json_integer(r->pids_limit));
    return bad ? bt_errf(err, errlen, "out of memory") : 0;
}

json_t *docker_service_config(const docker_ctx *ctx, const app_config *app, const app_service *svc,
                              char *err, size_t errlen)
{
    json_t *cfg = json_object(), *hc = json_object(), *binds = json_array(),
           *exposed = json_object();
    json_t *pb = json_object(), *devs = json_array();
    char why[512];
    int rc = 0;
    if (!cfg || !hc || !binds || !exposed || !pb || !devs)
        rc = bt_errf(err, errlen, "out of memory");
    for (size_t i = 0; rc == 0 && i < svc->mounts.n; i++) {
        char *b = bind_of(ctx, app, APP_MOUNT(svc, i), err, errlen);
        if (!b || json_array_append_new(binds, json_string(b)) != 0)
            rc = b ? bt_errf(err, errlen, "out of memory") : -1;
        free(b);
    }
    if (rc == 0 && ctx->api_socket) {
        char *b = bt_strdup_printf("%s:%s:ro", ctx->api_socket, DOCKER_API_SOCKET);
        if (!b)
            rc = bt_errf(err, errlen, "out of memory");
        else if (strchr(ctx->api_socket, ':'))
            rc = bt_errf(err, errlen, "the API socket path (%s) cannot contain ':' in a bind",
                         ctx->api_socket);
        else if (json_array_append_new(binds, json_string(b)) != 0)
            rc = bt_errf(err, errlen, "out of memory");
        free(b);
    }
    for (size_t i = 0; rc == 0 && i < svc->ports.n; i++)
        if (docker_add_port(BT_CFG_AT(svc->ports, char *, i), exposed, pb, why, sizeof why) != 0)
            rc = bt_errf(err, errlen, "ports[%zu]: %s", i, why);
    for (size_t i = 0; rc == 0 && i < svc->devices.n; i++) {
        json_t *d = docker_device(BT_CFG_AT(svc->devices, char *, i), why, sizeof why);
        if (!d)
            rc = bt_errf(err, errlen, "devices[%zu]: %s", i, why);
        else
            json_array_append_new(devs, d);
    }
    if (rc == 0)
        rc = add_resources(&svc->resources, hc, err, errlen);
    if (rc == 0) {
        int bad = 0;
        bad |= json_object_set(hc, "Binds", binds);
        bad |= json_object_set(hc, "PortBindings", pb);
        bad |= json_object_set(hc, "Devices", devs);
        bad |= json_object_set_new(hc, "RestartPolicy",
                                   json_pack("{s:s,s:i}", "Name", "no", "MaximumRetryCount", 0));
        bad |= json_object_set_new(hc, "NetworkMode", json_string(ctx->network));
        /* The host by name: a tcp API there, or a broker on it (remote-mqtt, chapter 10). */
        if (!ctx->api_socket || ctx->host_gateway)
            bad |= json_object_set_new(hc, "ExtraHosts",
                                       json_pack("[s]", DOCKER_HOST_GATEWAY ":host-gateway"));
        bad |= json_object_set_new(cfg, "Image", json_string(svc->image));
        if (svc->args.n) {
            json_t *cmd = json_array();
            for (size_t i = 0; cmd && i < svc->args.n; i++)
                bad |= json_array_append_new(cmd, json_string(BT_CFG_AT(svc->args, char *, i)));
            bad |= json_object_set_new(cfg, "Cmd", cmd);
        }
        json_t *labels = json_pack("{s:s,s:s}", "baetyl", "baetyl", "service", svc->name);
        if (labels && ctx->master_id)
            bad |= json_object_set_new(labels, DOCKER_MASTER_LABEL, json_string(ctx->master_id));
        bad |= json_object_set_new(cfg, "Labels", labels);
        bad |= json_object_set(cfg, "ExposedPorts", exposed);
        bad |= json_object_set(cfg, "HostConfig", hc);
        bad |= json_object_set_new(
            cfg, "NetworkingConfig",
            json_pack("{s:{s:{s:[s]}}}", "EndpointsConfig", ctx->network, "Aliases", svc->name));
        if (bad)
            rc = bt_errf(err, errlen, "out of memory");
    }
    json_decref(hc);
    json_decref(binds);
    json_decref(exposed);
    json_decref(pb);
    json_decref(devs);
    if (rc != 0) {
        json_decref(cfg);
        return NULL;
    }
    return cfg;
}

int docker_check_app(const app_config *app, char *err, size_t errlen)
{
    char why[512];
    json_t *exposed = json_object(), *pb = json_object();
    int rc = exposed && pb ? 0 : bt_errf(err, errlen, "out of memory");
    for (size_t i = 0; rc == 0 && i < app->services.n; i++) {
        const app_service *s = APP_SERVICE(app, i);
        for (size_t j = 0; rc == 0 && j < s->ports.n; j++)
            if (docker_add_port(BT_CFG_AT(s->ports, char *, j), exposed, pb, why, sizeof why) != 0)
                rc = bt_errf(err, errlen, "services[%zu].ports[%zu]: %s", i, j, why);
        for (size_t j = 0; rc == 0 && j < s->devices.n; j++) {
            json_t *d = docker_device(BT_CFG_AT(s->devices, char *, j), why, sizeof why);
            if (!d)
                rc = bt_errf(err, errlen, "services[%zu].devices[%zu]: %s", i, j, why);
            json_decref(d);
        }
        json_object_clear(exposed);
        json_object_clear(pb);
    }
    json_decref(exposed);
    json_decref(pb);
    return rc;
}

int docker_master_id(const char *pwd, char *out, char *err, size_t errlen)
{
    char real[PATH_MAX];
    if (!realpath(pwd, real))
        return bt_errf(err, errlen, "work dir (%s): %s", pwd, strerror(errno));
    unsigned char md[32];
    char why[200];
    if (bt_sha256(real, strlen(real), md, why, sizeof why) < 0)
        return bt_errf(err, errlen, "sha256 of the work dir: %s", why);
    for (size_t i = 0; i < DOCKER_MASTER_ID_LEN / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}
