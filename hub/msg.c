/* Message buffers: topic and payload in one allocation, shared by reference count so a
 * fan-out to many subscribers copies nothing. */
#include <stdlib.h>
#include <string.h>

#include "hub.h"

msg *msg_new(const char *topic, size_t tlen, const void *payload, size_t plen, uint8_t qos,
             uint8_t retain)
{
    return msg_new_props(topic, tlen, payload, plen, NULL, 0, qos, retain);
}

msg *msg_new_props(const char *topic, size_t tlen, const void *payload, size_t plen,
                   const uint8_t *props, size_t props_len, uint8_t qos, uint8_t retain)
{
    if (tlen > UINT16_MAX || plen > UINT32_MAX || props_len > UINT32_MAX - plen)
        return NULL;
    msg *m = malloc(sizeof *m + tlen + 1 + plen + props_len);
    if (!m)
        return NULL;
    m->refs = 1;
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)tlen;
    m->payload_len = (uint32_t)plen;
    m->seq = 0;
    m->ts_ms = 0;
    m->expiry_s = 0;
    m->from = 0;
    m->origin = NULL;
    memcpy(m->topic, topic, tlen);
    m->topic[tlen] = 0;
    m->payload = (uint8_t *)m->topic + tlen + 1;
    if (plen)
        memcpy(m->payload, payload, plen);
    m->props = props_len ? m->payload + plen : NULL;
    m->props_len = (uint32_t)props_len;
    if (props_len)
        memcpy(m->props, props, props_len);
    return m;
}

store_msg msg_store_view(const msg *m)
{
    return (store_msg){.topic = m->topic,
                       .topic_len = m->topic_len,
                       .payload = m->payload,
                       .payload_len = m->payload_len,
                       .qos = m->qos,
                       .retain = m->retain,
                       .ts_ms = m->ts_ms,
                       .props = m->props,
                       .props_len = m->props_len,
                       .expiry_s = m->expiry_s,
                       .origin = m->origin,
                       .origin_len = m->origin ? strlen(m->origin) : 0};
}

void msg_unref(msg *m)
{
    if (m && --m->refs == 0) {
        free(m->origin);
        free(m);
    }
}

int msg_vec_push(msg_vec *v, msg *m)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        msg **p = realloc(v->v, cap * sizeof *p);
        if (!p)
            return -1;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = m;
    return 0;
}
