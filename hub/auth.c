/* Authentication of CONNECT and authorisation of publish/subscribe from principals. */
#include "auth.h"

#include <stdio.h>
#include <string.h>

#include "baetyl/topic.h"

int auth_validate(const bt_cfg_list *principals, char *err, size_t errlen)
{
    for (size_t i = 0; i < principals->n; i++) {
        const hub_principal_cfg *p = &BT_CFG_AT(*principals, hub_principal_cfg, i);
        for (size_t j = 0; j < i; j++) {
            const hub_principal_cfg *q = &BT_CFG_AT(*principals, hub_principal_cfg, j);
            if (strcmp(p->username, q->username) == 0) {
                snprintf(err, errlen, "principals[%zu].username: duplicate username (%s)", i,
                         p->username);
                return -1;
            }
        }
        for (size_t k = 0; k < p->permissions.n; k++) {
            const hub_permission_cfg *pm = &BT_CFG_AT(p->permissions, hub_permission_cfg, k);
            for (size_t m = 0; m < pm->permit.n; m++) {
                const char *f = BT_CFG_AT(pm->permit, char *, m);
                if (!f || !bt_topic_valid_filter(f, strlen(f))) {
                    snprintf(err, errlen, "principals[%zu].permissions[%zu]: %s topic(%s) invalid",
                             i, k, pm->action, f ? f : "");
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* Compares without an early exit so timing does not reveal the matching prefix. */
static bool secret_equal(const char *want, const char *got, size_t got_len)
{
    size_t wl = strlen(want);
    unsigned char d = (unsigned char)(wl != got_len);
    for (size_t i = 0; i < got_len; i++)
        d |= (unsigned char)(want[i < wl ? i : 0] ^ got[i]);
    return d == 0 && wl == got_len;
}

const hub_principal_cfg *auth_login(const bt_cfg_list *principals, const char *username,
                                    const char *password, size_t password_len, bool has_password,
                                    bool cert_verified)
{
    if (!username)
        return NULL;
    /* Decided here, like Baetyl 1.0: an empty password is no password (MQTT.fx and other
     * clients send one with certificate logins), so it never matches on its own. */
    if (has_password && password_len == 0)
        has_password = false;
    for (size_t i = 0; i < principals->n; i++) {
        const hub_principal_cfg *p = &BT_CFG_AT(*principals, hub_principal_cfg, i);
        if (strcmp(p->username, username) != 0)
            continue;
        if (has_password) {
            if (p->password && secret_equal(p->password, password, password_len))
                return p;
            return NULL;
        }
        if (cert_verified && (!p->password || !p->password[0]))
            return p;
        return NULL;
    }
    return NULL;
}

static bool permitted(const hub_principal_cfg *p, const char *action, const char *t)
{
    if (!p)
        return false;
    for (size_t k = 0; k < p->permissions.n; k++) {
        const hub_permission_cfg *pm = &BT_CFG_AT(p->permissions, hub_permission_cfg, k);
        if (strcmp(pm->action, action) != 0)
            continue;
        for (size_t m = 0; m < pm->permit.n; m++)
            if (bt_topic_permit(BT_CFG_AT(pm->permit, char *, m), t))
                return true;
    }
    return false;
}

bool auth_can_pub(const hub_principal_cfg *p, const char *t)
{
    return permitted(p, "pub", t);
}

bool auth_can_sub(const hub_principal_cfg *p, const char *f)
{
    return permitted(p, "sub", f);
}
