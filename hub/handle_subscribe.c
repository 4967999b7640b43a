/* SUBSCRIBE and UNSUBSCRIBE (SPEC §11): per-filter return codes (0x80 for an invalid or
 * forbidden filter; 5.0: the reason code), the session's subscription list, and retained
 * messages sent after the SUBACK (5.0: as the retain handling option says; never on a
 * shared subscription). */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "baetyl/topic.h"
#include "hub.h"

/* The SUBACK code of one filter (and *f, its copy, when granted). In 5.0 the refusal says
 * why. A shared subscription "$share/<group>/<filter>" is checked on its filter. */
static uint8_t sub_one(conn *c, bt_mqtt_str t, uint8_t opts, bool v5, uint32_t id, char **f,
                       bool *existed)
{
    uint8_t q = BT_MQTT_SUBOPT_QOS(opts);
    bool shared = t.len >= 7 && !memcmp(t.ptr, "$share/", 7);
    if (q > 2 || (shared ? !shared_filter(t.ptr, t.len) : !bt_topic_valid_filter(t.ptr, t.len)))
        return v5 ? BT_MQTT_RC_TOPIC_FILTER_INVALID : BT_MQTT_SUBACK_FAILURE;
    char *copy = malloc(t.len + 1);
    if (!copy)
        return BT_MQTT_SUBACK_FAILURE;
    memcpy(copy, t.ptr, t.len);
    copy[t.len] = 0;
    /* a shared subscription is permitted by its filter (the group name is free) */
    const char *inner = shared ? shared_filter(copy, t.len) : copy;
    if (shared)
        opts &= (uint8_t)~BT_MQTT_SUBOPT_NO_LOCAL; /* not allowed on shared ones (§3.8.3.1) */
    if (!auth_can_sub(c->principal, inner)) {
        free(copy);
        return v5 ? BT_MQTT_RC_NOT_AUTHORIZED : BT_MQTT_SUBACK_FAILURE;
    }
    int r = session_subscribe(c, copy, q, v5 ? opts : 0, id);
    if (r < 0) {
        free(copy);
        return BT_MQTT_SUBACK_FAILURE;
    }
    *existed = r == 1;
    *f = copy;
    return q;
}

int handle_subscribe(conn *c, const bt_mqtt_packet *p)
{
    const bt_mqtt_sub_list *sl = &p->subscribe;
    bool v5 = p->version == BT_MQTT_V5;
    bt_mqtt_prop idp = {0};
    if (v5)
        bt_mqtt_props_get(&sl->props, BT_MQTT_PROP_SUBSCRIPTION_ID, &idp);
    size_t n = sl->count;
    uint8_t *codes = malloc(n ? n : 1);
    uint8_t *opts = malloc(n ? n : 1);
    char **filters = calloc(n ? n : 1, sizeof *filters);
    if (!codes || !opts || !filters) {
        free(codes);
        free(opts);
        free(filters);
        conn_close(c, "out of memory");
        return -1;
    }
    bt_mqtt_sub_iter it;
    bt_mqtt_sub_iter_init(&it, p);
    bt_mqtt_str t;
    uint8_t o;
    size_t i = 0;
    bool changed = false;
    while (i < n && bt_mqtt_sub_next(&it, &t, &o)) {
        bool existed = false;
        codes[i] = sub_one(c, t, o, v5, idp.num, &filters[i], &existed);
        changed = changed || filters[i];
        /* 5.0 retain handling: 1 sends the retained messages to a new subscription only,
         * 2 never */
        opts[i] = BT_MQTT_SUBOPT_RETAIN_HANDLING(o);
        /* no retained messages on a shared subscription (MQTT 5.0 §4.8.2) */
        bool shared = filters[i] && shared_filter(filters[i], strlen(filters[i]));
        if (shared || (v5 && (opts[i] == 2 || (opts[i] == 1 && existed)))) {
            free(filters[i]);
            filters[i] = NULL;
        }
        i++;
    }
    int rc = send_suback(c, sl->packet_id, codes, n);
    if (rc == 0 && changed)
        psession_save_subs(c);
    for (size_t k = 0; k < n; k++) {
        if (rc == 0 && filters[k] && c->state == CONN_ACTIVE)
            retain_deliver(c->h, c, filters[k], codes[k]);
        free(filters[k]);
    }
    free(filters);
    free(opts);
    free(codes);
    return rc;
}

int handle_unsubscribe(conn *c, const bt_mqtt_packet *p)
{
    bool v5 = p->version == BT_MQTT_V5;
    size_t n = p->unsubscribe.count;
    uint8_t *codes = v5 ? malloc(n ? n : 1) : NULL;
    if (v5 && !codes) {
        conn_close(c, "out of memory");
        return -1;
    }
    bt_mqtt_sub_iter it;
    bt_mqtt_sub_iter_init(&it, p);
    bt_mqtt_str t;
    bool changed = false;
    for (size_t i = 0; i < n && bt_mqtt_sub_next(&it, &t, NULL); i++) {
        char f[BT_TOPIC_MAX_LEN + 1];
        bool gone = false;
        if (t.len <= BT_TOPIC_MAX_LEN) {
            memcpy(f, t.ptr, t.len);
            f[t.len] = 0;
            gone = session_unsubscribe(c, f);
        }
        changed = changed || gone;
        if (codes)
            codes[i] = gone ? BT_MQTT_RC_SUCCESS : BT_MQTT_RC_NO_SUBSCRIPTION_EXISTED;
    }
    int rc = v5 ? send_unsuback5(c, p->unsubscribe.packet_id, codes, n)
                : send_unsuback(c, p->unsubscribe.packet_id);
    free(codes);
    if (rc < 0)
        return -1;
    if (changed)
        psession_save_subs(c);
    return 0;
}
