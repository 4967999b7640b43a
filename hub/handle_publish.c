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
        hub_conn_close(c, "QoS 2 is not supported");
        return -1;
    }
    if (!bt_topic_valid_name(pb->topic.ptr, pb->topic.len)) {
        char why[320];
        snprintf(why, sizeof why, "publish topic (%.*s) invalid", (int)pb->topic.len, pb->topic.ptr);
        hub_conn_close(c, why);
        return -1;
    }
    msg *m = msg_new(pb->topic.ptr, pb->topic.len, pb->payload.ptr, pb->payload.len, pb->qos, pb->retain);
    if (!m) {
        hub_conn_close(c, "out of memory");
        return -1;
    }
    if (!hub_auth_can_pub(c->principal, m->topic)) {
        char why[320];
        snprintf(why, sizeof why, "publish to topic (%s) not permitted", m->topic);
        msg_unref(m);
        hub_conn_close(c, why);
        return -1;
    }
    m->ts_ms = hub_wall_ms();
    int rc = hub_publish(c->h, m, c, pb->packet_id);
    msg_unref(m);
    return rc;
}
