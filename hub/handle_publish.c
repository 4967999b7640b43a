/* PUBLISH from a client (SPEC §11): topic and permission checks, a QoS 2 packet id already
 * received (and not released) is not published again; the message then goes to hub_publish
 * (retain, routes, group commit for QoS 1 and 2). */
#include <stdio.h>

#include "auth.h"
#include "baetyl/topic.h"
#include "hub.h"

int handle_publish(conn *c, const bt_mqtt_packet *p)
{
    const bt_mqtt_publish *pb = &p->publish;
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
    if (pb->qos == 2) {
        if (pid_set_has(&c->rx2, pb->packet_id)) {
            /* Resent: PUBREC again, unless the first one still waits for its commit. */
            msg_unref(m);
            for (size_t i = 0; i < c->h->npend; i++)
                if (c->h->pend[i].c == c && c->h->pend[i].pid == pb->packet_id)
                    return 0;
            return send_ack(c, BT_MQTT_PUBREC, pb->packet_id);
        }
        if (pid_set_add(&c->rx2, pb->packet_id) < 0) {
            msg_unref(m);
            conn_close(c, "out of memory");
            return -1;
        }
        psession_qos2_record(c, 'i', pb->packet_id, true);
    }
    m->ts_ms = hub_wall_ms();
    int rc = hub_publish(c->h, m, c, pb->packet_id);
    msg_unref(m);
    return rc;
}

/* PUBACK of a QoS 1 delivery: frees its window slot; a session catching up from the log
 * pulls more. An unknown packet id (or one of a QoS 2 delivery) is ignored (MQTT 3.1.1
 * §4.3.2). */
int handle_puback(conn *c, uint16_t pid)
{
    outq_entry *e = session_find(c, pid);
    if (!e || e->qos != 1)
        return 0;
    e->acked = true;
    if (!c->clean)
        c->h->offsets_acked = true;
    msg_unref(e->m);
    e->m = NULL;
    if (e->seq) {
        c->qlog--;
        c->h->log_acked = true;
    }
    session_acked(c);
    return 0;
}
