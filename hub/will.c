/* Wills (SPEC §11): published when a connection ends without DISCONNECT (abnormal close,
 * takeover, keep-alive timeout, hub shutdown); kept in the store while the client is
 * connected so a crashed hub publishes them at its next start. */
#include <stdlib.h>
#include <string.h>

#include "baetyl/log.h"
#include "hub.h"

void will_discard(conn *c)
{
    if (!c->will)
        return;
    msg_unref(c->will);
    c->will = NULL;
    char err[160];
    if (c->h->st && c->client_id && store_del_will(c->h->st, c->client_id, err, sizeof err) < 0)
        bt_logkv(BT_LOG_ERROR, "deleting will failed", "client", c->client_id, "error", err, NULL);
}

/* 5.0 will delay: the will waits, while the session lives, for the delay or the end of the
 * session, whichever comes first; it stays in the store meanwhile (a restarted hub
 * publishes it at once). 0 when it was taken, -1 when it goes now. */
static int will_delay(conn *c, msg *m)
{
    hub *h = c->h;
    if (!c->will_delay || c->clean || c->expire_on_close || !c->client_id)
        return -1;
    uint32_t secs = c->will_delay < c->session_expiry ? c->will_delay : c->session_expiry;
    char *id = strdup(c->client_id);
    if (h->ndelayed == h->capdelayed) {
        size_t cap = h->capdelayed ? h->capdelayed * 2 : 8;
        struct delayed_will *v = realloc(h->delayed, cap * sizeof *v);
        if (!v) {
            free(id);
            return -1;
        }
        h->delayed = v;
        h->capdelayed = cap;
    }
    if (!id)
        return -1;
    h->delayed[h->ndelayed++] = (struct delayed_will){id, m, hub_wall_ms() + (int64_t)secs * 1000};
    return 0;
}

void will_cancel_delayed(hub *h, const char *client_id, bool publish)
{
    for (size_t i = 0; i < h->ndelayed; i++)
        if (!strcmp(h->delayed[i].client_id, client_id)) {
            msg *m = h->delayed[i].m;
            m->ts_ms = hub_wall_ms();
            if (!publish || msg_vec_push(&h->wills, m) < 0)
                msg_unref(m);
            free(h->delayed[i].client_id);
            h->delayed[i] = h->delayed[--h->ndelayed];
            char err[160];
            if (h->st && store_del_will(h->st, client_id, err, sizeof err) < 0)
                bt_logkv(BT_LOG_ERROR, "deleting will failed", "client", client_id, "error", err,
                         NULL);
            return;
        }
}

void will_free_delayed(hub *h)
{
    for (size_t i = 0; i < h->ndelayed; i++) {
        msg_unref(h->delayed[i].m);
        free(h->delayed[i].client_id);
    }
    free(h->delayed);
    h->delayed = NULL;
    h->ndelayed = h->capdelayed = 0;
}

/* Moves the delayed wills that are due to the queue. */
static void delayed_due(hub *h)
{
    int64_t now = hub_wall_ms();
    for (size_t i = 0; i < h->ndelayed;) {
        struct delayed_will *d = &h->delayed[i];
        if (now < d->due_ms) {
            i++;
            continue;
        }
        msg *m = d->m;
        m->ts_ms = now;
        char err[160];
        if (h->st && store_del_will(h->st, d->client_id, err, sizeof err) < 0)
            bt_logkv(BT_LOG_ERROR, "deleting will failed", "client", d->client_id, "error", err,
                     NULL);
        free(d->client_id);
        *d = h->delayed[--h->ndelayed];
        if (msg_vec_push(&h->wills, m) < 0)
            msg_unref(m);
    }
}

void will_fire(conn *c)
{
    msg *m = c->will;
    if (!m)
        return;
    c->will = NULL;
    hub *h = c->h;
    if (will_delay(c, m) == 0)
        return;
    bt_logkv(BT_LOG_DEBUG, "publishing will", "client", c->client_id, "topic", m->topic, NULL);
    m->ts_ms = hub_wall_ms();
    /* Deferred: a close can happen in the middle of a dispatch. */
    if (msg_vec_push(&h->wills, m) < 0) {
        msg_unref(m);
        return;
    }
    char err[160];
    if (h->st && c->client_id && store_del_will(h->st, c->client_id, err, sizeof err) < 0)
        bt_logkv(BT_LOG_ERROR, "deleting will failed", "client", c->client_id, "error", err, NULL);
}

void will_publish_queued(hub *h)
{
    if (h->ndelayed)
        delayed_due(h);
    while (h->wills.n) {
        msg_vec w = h->wills; /* publishing may queue more */
        h->wills = (msg_vec){0};
        for (size_t i = 0; i < w.n; i++) {
            hub_publish(h, w.v[i], NULL, 0);
            msg_unref(w.v[i]);
        }
        free(w.v);
    }
}

typedef struct {
    char **ids;
    msg **msgs;
    size_t n, cap;
} will_list;

static int collect(const char *client_id, const store_msg *sm, void *arg)
{
    will_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **ids = realloc(l->ids, cap * sizeof *ids);
        if (!ids)
            return -1;
        l->ids = ids;
        msg **ms = realloc(l->msgs, cap * sizeof *ms);
        if (!ms)
            return -1;
        l->msgs = ms;
        l->cap = cap;
    }
    msg *m = msg_new_props(sm->topic, sm->topic_len, sm->payload, sm->payload_len, sm->props,
                           sm->props_len, sm->qos > 2 ? 2 : sm->qos, sm->retain);
    char *id = strdup(client_id);
    if (!m || !id) {
        msg_unref(m);
        free(id);
        return -1;
    }
    m->expiry_s = sm->expiry_s; /* counted from the will's publication */
    l->ids[l->n] = id;
    l->msgs[l->n++] = m;
    return 0;
}

int will_recover(hub *h, char *err, size_t errlen)
{
    if (!h->st)
        return 0;
    will_list l = {0};
    /* Collect first: the store's read transaction must end before we write. */
    int rc = store_load_wills(h->st, collect, &l, err, errlen);
    for (size_t i = 0; i < l.n; i++) {
        if (rc == 0) {
            bt_logkv(BT_LOG_INFO, "publishing will left by a previous run", "client", l.ids[i],
                     "topic", l.msgs[i]->topic, NULL);
            l.msgs[i]->ts_ms = hub_wall_ms();
            hub_publish(h, l.msgs[i], NULL, 0);
        }
        msg_unref(l.msgs[i]);
    }
    if (rc == 0)
        hub_commit(h);
    for (size_t i = 0; i < l.n; i++) {
        char e2[160];
        if (rc == 0 && store_del_will(h->st, l.ids[i], e2, sizeof e2) < 0)
            bt_logkv(BT_LOG_ERROR, "deleting will failed", "client", l.ids[i], "error", e2, NULL);
        free(l.ids[i]);
    }
    free(l.ids);
    free(l.msgs);
    return rc;
}
