/* SUBSCRIBE and UNSUBSCRIBE (SPEC §11): per-filter return codes (0x80 for an invalid or
 * forbidden filter), the session's subscription list, and retained messages sent
 * after the SUBACK. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "baetyl/topic.h"
#include "hub.h"

int handle_subscribe(conn *c, const bt_mqtt_packet *p)
{
    const bt_mqtt_sub_list *sl = &p->subscribe;
    size_t n = sl->count;
    uint8_t *codes = malloc(n ? n : 1);
    char **filters = calloc(n ? n : 1, sizeof *filters);
    if (!codes || !filters) {
        free(codes);
        free(filters);
        conn_close(c, "out of memory");
        return -1;
    }
    memset(codes, BT_MQTT_SUBACK_FAILURE, n ? n : 1);
    bt_mqtt_sub_iter it;
    bt_mqtt_sub_iter_init(&it, p);
    bt_mqtt_str t;
    uint8_t q;
    size_t i = 0;
    bool changed = false;
    while (i < n && bt_mqtt_sub_next(&it, &t, &q)) {
        codes[i] = BT_MQTT_SUBACK_FAILURE;
        if (q <= 2 && bt_topic_valid_filter(t.ptr, t.len)) {
            char *f = malloc(t.len + 1);
            if (f) {
                memcpy(f, t.ptr, t.len);
                f[t.len] = 0;
                if (auth_can_sub(c->principal, f) && session_subscribe(c, f, q) == 0) {
                    codes[i] = q;
                    filters[i] = f;
                    changed = true;
                } else {
                    free(f);
                }
            }
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
    free(codes);
    return rc;
}

int handle_unsubscribe(conn *c, const bt_mqtt_packet *p)
{
    bt_mqtt_sub_iter it;
    bt_mqtt_sub_iter_init(&it, p);
    bt_mqtt_str t;
    bool changed = false;
    while (bt_mqtt_sub_next(&it, &t, NULL)) {
        char f[BT_TOPIC_MAX_LEN + 1];
        if (t.len > BT_TOPIC_MAX_LEN)
            continue;
        memcpy(f, t.ptr, t.len);
        f[t.len] = 0;
        if (session_unsubscribe(c, f))
            changed = true;
    }
    if (send_unsuback(c, p->unsubscribe.packet_id) < 0)
        return -1;
    if (changed)
        psession_save_subs(c);
    return 0;
}
