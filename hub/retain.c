/* Retained messages (SPEC §11 Delivery): one per topic, in memory and in the store; sent
 * with RETAIN=1 after a SUBACK to matching filters. */
#include "baetyl/log.h"
#include "baetyl/topic.h"
#include "hub.h"

void retain_set(hub *h, msg *m)
{
    char err[160];
    if (m->payload_len == 0) {
        msg_unref(map_del(&h->retained, m->topic));
        if (h->st && store_del_retained(h->st, m->topic, err, sizeof err) < 0)
            bt_logkv(BT_LOG_ERROR, "deleting retained message failed", "topic", m->topic, "error",
                     err, NULL);
        return;
    }
    /* A copy of its own: the published message gets a log seq, the retained one must not. */
    msg *r = msg_new_props(m->topic, m->topic_len, m->payload, m->payload_len, m->props,
                           m->props_len, m->qos, 1);
    if (!r)
        return;
    r->ts_ms = m->ts_ms;
    r->expiry_s = m->expiry_s;
    void *old = NULL;
    if (map_put(&h->retained, r->topic, r, &old) < 0) {
        msg_unref(r);
        return;
    }
    msg_unref(old);
    if (h->st) {
        store_msg sm = msg_store_view(r); /* r->retain is 1 */
        if (store_put_retained(h->st, &sm, err, sizeof err) < 0)
            bt_logkv(BT_LOG_ERROR, "storing retained message failed", "topic", r->topic, "error",
                     err, NULL);
    }
}

typedef struct {
    conn *c;
    const char *filter;
    uint8_t q;
} rd_ctx;

static void rd_each(const char *topic, void *value, void *arg)
{
    rd_ctx *x = arg;
    msg *m = value;
    if (bt_topic_match(x->filter, topic))
        session_deliver(x->c, m, m->qos < x->q ? m->qos : x->q, true);
}

void retain_deliver(hub *h, conn *c, const char *filter, uint8_t q)
{
    rd_ctx x = {c, filter, q};
    map_each(&h->retained, rd_each, &x);
}

static int retain_load_cb(const store_msg *sm, void *arg)
{
    hub *h = arg;
    msg *m = msg_new_props(sm->topic, sm->topic_len, sm->payload, sm->payload_len, sm->props,
                           sm->props_len, sm->qos > 2 ? 2 : sm->qos, 1);
    if (!m)
        return -1;
    m->ts_ms = sm->ts_ms;
    m->expiry_s = sm->expiry_s;
    void *old = NULL;
    if (map_put(&h->retained, m->topic, m, &old) < 0) {
        msg_unref(m);
        return -1;
    }
    msg_unref(old);
    return 0;
}

int retain_load(hub *h, char *err, size_t errlen)
{
    if (!h->st)
        return 0;
    return store_load_retained(h->st, retain_load_cb, h, err, errlen);
}
