/* PUBLISH from a client (SPEC §11): topic and permission checks, QoS 2 refused; the message
 * then goes to hub_publish (retain, routes, group commit for QoS 1). */
#include <stdio.h>

#include "auth.h"
#include "baetyl/topic.h"
#include "hub.h"

int handle_publish(conn *c, const bt_mqtt_packet *p)
{
    const bt_mqtt_publish *pb = &p->publish;
    if (pb->qos > 1) {
        conn_close(c, "QoS 2 is not supported");
        return -1;
    }
    if (!bt_topic_valid_name(pb->topic.ptr, pb->topic.len)) {
        char why[320];
        snprintf(why, sizeof why, "publish topic (%.*s) invalid", (int)pb->topic.len,
                 pb->topic.ptr);
        conn_close(c, why);
        return -1;
    }
    msg *m = msg_new(pb->topic.ptr, pb->topic.len, pb->payload.ptr, pb->payload.len, pb->qos,
                     pb->retain);
    if (!m) {
        conn_close(c, "out of memory");
        return -1;
    }
    if (!auth_can_pub(c->principal, m->topic)) {
        char why[320];
        snprintf(why, sizeof why, "publish to topic (%s) not permitted", m->topic);
        msg_unref(m);
        conn_close(c, why);
        return -1;
    }
    m->ts_ms = hub_wall_ms();
    int rc = hub_publish(c->h, m, c, pb->packet_id);
    msg_unref(m);
    return rc;
}

/* PUBACK of a QoS 1 delivery: frees its window slot; a session catching up from the log
 * pulls more. */
int handle_puback(conn *c, uint16_t pid)
{
    for (size_t i = 0; i < c->qlen; i++) {
        outq_entry *e = &c->q[(c->qhead + i) % c->qcap];
        if (e->acked || e->pid != pid)
            continue;
        e->acked = true;
        if (!c->clean)
            c->h->offsets_acked = true;
        msg_unref(e->m);
        e->m = NULL;
        if (e->seq) {
            c->qlog--;
            c->h->log_acked = true;
        }
        while (c->qlen && c->q[c->qhead].acked) {
            c->qhead = (c->qhead + 1) % c->qcap;
            c->qlen--;
        }
        if (c->catchup)
            session_pump_later(c);
        return 0;
    }
    return 0; /* an unknown packet id is ignored (MQTT 3.1.1 4.3.2) */
}
