/* CONNECT (SPEC §11 Connect): credentials, client id rules, will checks, session takeover,
 * clean and persistent sessions.
 *
 * A client id belongs to a principal while it is in use: a persistent session to the
 * username that created it, a connected client to its username. Another username asking
 * for that id is refused (CONNACK 5), so it can neither read the session nor disconnect
 * its client; the same username takes over as MQTT says. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "baetyl/log.h"
#include "baetyl/topic.h"
#include "hub.h"

static int refuse(conn *c, uint8_t code, const char *why)
{
    send_connack(c, code);
    c->h->ctr.conns_refused++;
    char reason[200];
    snprintf(reason, sizeof reason, "connect refused (code %u): %s", code, why);
    conn_close(c, reason);
    return -1;
}

static bool valid_client_id(const char *s, size_t n)
{
    if (n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* True when client_id is held by a username other than user: a persistent session it
 * created, or a client connected under it. */
static bool owned_by_other(hub *h, const char *client_id, const char *user)
{
    psess *ps = psession_get(h, client_id, NULL);
    if (ps && ps->owner && strcmp(ps->owner, user) != 0)
        return true;
    conn *old = map_get(&h->clients, client_id);
    return old && old->principal && strcmp(old->principal->username, user) != 0;
}

/* Subscribes c to its persistent session's filters that pr may still subscribe to (the
 * permits may have changed since); the others are dropped and logged. Returns the number
 * dropped, or -1 when out of memory. */
static int restore_subs(conn *c, const psess *ps, const hub_principal_cfg *pr)
{
    int dropped = 0;
    for (size_t i = 0; i < ps->nsubs; i++) {
        if (!auth_can_sub(pr, ps->subs[i].filter)) {
            bt_logkv(BT_LOG_WARN, "subscription no longer permitted, dropped", "client",
                     c->client_id, "username", pr->username, "filter", ps->subs[i].filter, NULL);
            dropped++;
            continue;
        }
        if (session_subscribe(c, ps->subs[i].filter, ps->subs[i].qos) < 0)
            return -1;
    }
    return dropped;
}

int handle_connect(conn *c, const bt_mqtt_packet *p)
{
    hub *h = c->h;
    const bt_mqtt_connect *k = &p->connect;
    if (k->protocol_level != 3 && k->protocol_level != 4)
        return refuse(c, BT_MQTT_CONNACK_BAD_PROTOCOL, "unsupported protocol level");
    if (!valid_client_id(k->client_id.ptr, k->client_id.len))
        return refuse(c, BT_MQTT_CONNACK_BAD_CLIENT_ID, "client id invalid");
    if (k->client_id.len == 0 && !k->clean_session)
        return refuse(c, BT_MQTT_CONNACK_BAD_CLIENT_ID, "empty client id needs clean session");
    if (!k->has_username || k->username.len == 0)
        return refuse(c, BT_MQTT_CONNACK_BAD_CREDENTIALS, "username missing");
    char *user = dupn(k->username.ptr, k->username.len);
    if (!user)
        return refuse(c, BT_MQTT_CONNACK_UNAVAILABLE, "out of memory");
    const hub_principal_cfg *pr =
        auth_login(&h->cfg->principals, user, (const char *)k->password.ptr, k->password.len,
                   k->has_password, c->tr->cert_verified);
    free(user);
    if (!pr)
        return refuse(c, BT_MQTT_CONNACK_BAD_CREDENTIALS, "username or password not permitted");
    c->principal = pr;

    msg *will = NULL;
    if (k->will_flag) {
        if (!bt_topic_valid_name(k->will_topic.ptr, k->will_topic.len))
            return refuse(c, BT_MQTT_CONNACK_NOT_AUTHORIZED, "will topic invalid");
        will = msg_new(k->will_topic.ptr, k->will_topic.len, k->will_payload.ptr,
                       k->will_payload.len, k->will_qos, k->will_retain);
        if (!will)
            return refuse(c, BT_MQTT_CONNACK_UNAVAILABLE, "out of memory");
        if (!auth_can_pub(pr, will->topic)) {
            msg_unref(will);
            return refuse(c, BT_MQTT_CONNACK_NOT_AUTHORIZED, "will topic not permitted");
        }
    }

    char idbuf[40];
    const char *id;
    size_t idlen;
    if (k->client_id.len) {
        id = k->client_id.ptr;
        idlen = k->client_id.len;
    } else {
        /* Decided here: a generated id that no client can choose (contains '.'). */
        snprintf(idbuf, sizeof idbuf, "auto.%llx.%llx", (unsigned long long)h->random_ids,
                 (unsigned long long)++h->next_conn_id);
        id = idbuf;
        idlen = strlen(idbuf);
    }
    c->client_id = dupn(id, idlen);
    if (!c->client_id) {
        msg_unref(will);
        return refuse(c, BT_MQTT_CONNACK_UNAVAILABLE, "out of memory");
    }
    if (owned_by_other(h, c->client_id, pr->username)) {
        msg_unref(will);
        return refuse(c, BT_MQTT_CONNACK_NOT_AUTHORIZED, "client id in use by another username");
    }
    c->clean = k->clean_session;
    c->level = k->protocol_level;
    c->keepalive = k->keepalive;

    /* Takeover: the old connection ends (its will fires) and leaves its session state. */
    conn *old = map_get(&h->clients, c->client_id);
    if (old && old != c)
        conn_close(old, "session taken over by a new connection");
    if (map_put(&h->clients, c->client_id, c, NULL) < 0) {
        msg_unref(will);
        return refuse(c, BT_MQTT_CONNACK_UNAVAILABLE, "out of memory");
    }

    if (c->clean) {
        psession_drop(h, c->client_id);
    } else {
        bool existed = psession_get(h, c->client_id, NULL) != NULL;
        psess *ps = psession_get(h, c->client_id, pr->username);
        bool claimed = ps && !ps->owner; /* a session stored before owners were kept */
        if (claimed && !(ps->owner = strdup(pr->username)))
            ps = NULL;
        if (!ps) {
            msg_unref(will);
            return refuse(c, BT_MQTT_CONNACK_UNAVAILABLE, "out of memory");
        }
        psession_set_online(h, ps, c);
        int r = restore_subs(c, ps, pr);
        if (r < 0) {
            msg_unref(will);
            return refuse(c, BT_MQTT_CONNACK_UNAVAILABLE, "out of memory");
        }
        /* The owner is stored with the session from its start; dropped filters go too. */
        if (!existed || claimed || r > 0)
            psession_save_subs(c);
        /* Messages published while away come from the log. */
        c->catchup = true;
        c->next_seq = ps->offset + 1;
    }

    c->will = will;
    if (will && h->st) {
        char err[160];
        store_msg sm = {will->topic, will->topic_len, will->payload, will->payload_len,
                        will->qos,   will->retain,    hub_wall_ms()};
        if (store_put_will(h->st, c->client_id, &sm, err, sizeof err) < 0)
            bt_logkv(BT_LOG_ERROR, "storing will failed", "client", c->client_id, "error", err,
                     NULL);
    }
    c->state = CONN_ACTIVE;
    if (send_connack(c, BT_MQTT_CONNACK_ACCEPTED) < 0)
        return -1;
    bt_logkv(BT_LOG_DEBUG, "client connected", "client", c->client_id, "username", pr->username,
             NULL);
    if (!c->clean) {
        /* Unacknowledged deliveries that are not in the log go out again first, as resends. */
        psess *ps = psession_get(h, c->client_id, NULL);
        if (ps) {
            for (size_t i = 0; i < ps->nheld; i++)
                session_resend(c, ps->held[i], ps->held_qos[i]);
            psession_release_held(ps);
            psession_take_qos2(ps, c);
        }
    }
    if (c->catchup)
        session_pump(c);
    return 0;
}
