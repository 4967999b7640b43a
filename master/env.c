/* The environment of an instance (SPEC §8): the master's own environment, then the
 * service's `env`, then the dynamic env of an API start, then the BAETYL_* variables (and
 * their OPENEDGE_* twins), which nothing before them can override. */
#include "master.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/log.h>

#include <stdlib.h>
#include <string.h>

extern char **environ;

typedef struct {
    char **v;
    size_t n, cap;
} envv;

/* The §8 names without prefix; a variable of either prefix with one of these is the
 * master's to set, never inherited or given by a service. */
static const char *const reserved[] = {
    "HOST_OS",
    "HOST_ID",
    "HOST_SN",
    "MASTER_API",
    "MASTER_API_ADDRESS",
    "MASTER_API_SOCKET",
    "MASTER_API_VERSION",
    "SERVICE_MODE",
    "SERVICE_NAME",
    "SERVICE_TOKEN",
    "SERVICE_INSTANCE_NAME",
    NULL,
};

static bool is_reserved(const char *kv, size_t keylen)
{
    const char *rest;
    if (keylen > 7 && strncmp(kv, "BAETYL_", 7) == 0)
        rest = kv + 7;
    else if (keylen > 9 && strncmp(kv, "OPENEDGE_", 9) == 0)
        rest = kv + 9;
    else
        return false;
    size_t rl = keylen - (size_t)(rest - kv);
    for (const char *const *r = reserved; *r; r++)
        if (strlen(*r) == rl && strncmp(rest, *r, rl) == 0)
            return true;
    return false;
}

/* Sets key=value, replacing an earlier value of the same key. */
static int envv_set(envv *e, const char *key, size_t keylen, const char *value)
{
    char *kv = bt_strdup_printf("%.*s=%s", (int)keylen, key, value);
    if (!kv)
        return -1;
    for (size_t i = 0; i < e->n; i++)
        if (strncmp(e->v[i], kv, keylen + 1) == 0) {
            free(e->v[i]);
            e->v[i] = kv;
            return 0;
        }
    if (e->n + 2 > e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        char **nv = realloc(e->v, cap * sizeof(char *));
        if (!nv) {
            free(kv);
            return -1;
        }
        e->v = nv;
        e->cap = cap;
    }
    e->v[e->n++] = kv;
    e->v[e->n] = NULL;
    return 0;
}

/* BAETYL_<name> and OPENEDGE_<name>. */
static int set_twin(envv *e, const char *name, const char *value)
{
    char k1[96], k2[96];
    snprintf(k1, sizeof k1, "BAETYL_%s", name);
    snprintf(k2, sizeof k2, "OPENEDGE_%s", name);
    return envv_set(e, k1, strlen(k1), value) | envv_set(e, k2, strlen(k2), value);
}

/* What an API start may not set (issue 12.12): variables that make the dynamic linker or an
 * interpreter load code the caller chose. A service token holder could otherwise run its
 * code inside another service's instance. */
static const char *const loader_vars[] = {
    "GCONV_PATH",       "LOCPATH",    "NLSPATH",    "MALLOC_TRACE",  "HOSTALIASES",
    "RESOLV_HOST_CONF", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE",
    "NODE_OPTIONS",     "NODE_PATH",  "PERL5LIB",   "PERL5OPT",      "PERLLIB",
    "RUBYOPT",          "RUBYLIB",    "BASH_ENV",   "ENV",           NULL,
};

static bool is_loader_var(const char *k)
{
    if (strncmp(k, "LD_", 3) == 0)
        return true;
    for (const char *const *v = loader_vars; *v; v++)
        if (!strcmp(k, *v))
            return true;
    return false;
}

static bool valid_key(const char *k)
{
    return *k && !strchr(k, '=');
}

void env_free(char **env)
{
    if (!env)
        return;
    for (char **p = env; *p; p++)
        free(*p);
    free(env);
}

char **env_build(master *m, const m_service *s, const char *instance, bool dynamic, json_t *dyn,
                 char *err, size_t errlen)
{
    envv e = {0};
    int bad = 0;
    /* A container gets only what is meant for it, not the host's PATH, HOME, LD_*… */
    for (char **p = m->engine->isolated_env ? NULL : environ; p && *p; p++) {
        const char *eq = strchr(*p, '=');
        if (!eq || is_reserved(*p, (size_t)(eq - *p)))
            continue;
        bad |= envv_set(&e, *p, (size_t)(eq - *p), eq + 1);
    }
    for (size_t i = 0; i < s->cfg.env.n; i++) {
        const char *k = s->cfg.env.keys[i], *v = ((char **)s->cfg.env.values)[i];
        if (!valid_key(k) || is_reserved(k, strlen(k)))
            continue;
        bad |= envv_set(&e, k, strlen(k), v ? v : "");
    }
    if (dyn) {
        const char *k;
        json_t *v;
        json_object_foreach(dyn, k, v)
        {
            if (!valid_key(k) || is_reserved(k, strlen(k)) || !json_is_string(v))
                continue;
            if (is_loader_var(k)) {
                bt_logkv(BT_LOG_WARN, "dynamic env variable dropped: it could load code", "service",
                         s->name, "instance", instance, "variable", k, NULL);
                continue;
            }
            bad |= envv_set(&e, k, strlen(k), json_string_value(v));
            /* Old runtimes read OPENEDGE_SERVICE_INSTANCE_ADDRESS: twin what has a twin. */
            if (strncmp(k, "BAETYL_", 7) == 0) {
                char twin[256];
                snprintf(twin, sizeof twin, "OPENEDGE_%s", k + 7);
                if (!json_object_get(dyn, twin))
                    bad |= envv_set(&e, twin, strlen(twin), json_string_value(v));
            }
        }
    }
    bad |= set_twin(&e, "HOST_OS", "linux");
    bad |= set_twin(&e, "HOST_ID", m->host_id);
    if (m->host_sn)
        bad |= set_twin(&e, "HOST_SN", m->host_sn);
    bad |= set_twin(&e, "MASTER_API_ADDRESS", m->engine->api_env);
    bad |= envv_set(&e, "OPENEDGE_MASTER_API", 19, m->engine->api_env);
    if (m->api.is_unix)
        bad |= set_twin(&e, "MASTER_API_SOCKET",
                        m->engine->api_socket_env ? m->engine->api_socket_env : m->api.path);
    bad |= set_twin(&e, "MASTER_API_VERSION", "v1");
    bad |= set_twin(&e, "SERVICE_MODE", m->engine->ops->name);
    bad |= set_twin(&e, "SERVICE_NAME", s->name);
    if (!dynamic)
        bad |= set_twin(&e, "SERVICE_TOKEN", s->token);
    bad |= set_twin(&e, "SERVICE_INSTANCE_NAME", instance);
    if (bad || !e.v) {
        env_free(e.v);
        bt_errf(err, errlen, "out of memory");
        return NULL;
    }
    return e.v;
}
