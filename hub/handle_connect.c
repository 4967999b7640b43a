/* CONNECT (SPEC §11 Connect): credentials, client id rules, will checks, session takeover,
 * clean and persistent sessions; MQTT 5.0 (level 5): its properties, session expiry and
 * CONNACK with properties and reason codes.
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

/* The 5.0 reason code of a 3.1.1 CONNACK return code. */
static uint8_t connack_rc5(uint8_t code)
{
    static const uint8_t rc[] = {0,
                                 BT_MQTT_RC_UNSUPPORTED_VERSION,
                                 BT_MQTT_RC_BAD_CLIENT_ID,
                                 BT_MQTT_RC_SERVER_UNAVAILABLE,
                                 BT_MQTT_RC_BAD_USERNAME_PASSWORD,
                                 BT_MQTT_RC_NOT_AUTHORIZED};
    return code < sizeof rc ? rc[code] : code;
}

static int refuse(conn *c, uint8_t code, const char *why)
{
    if (c->level == BT_MQTT_V5) {
        bt_mqtt_prop pr = {.id = BT_MQTT_PROP_REASON_STRING,
                           .bin = {(const uint8_t *)why, strlen(why)}};
        send_connack5(c, false, connack_rc5(code), &pr, c->problem_info ? 1 : 0);
    } else {
        send_connack(c, code);
    }
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
        const char *f = ps->subs[i].filter, *inner = shared_filter(f, strlen(f));
        if (!auth_can_sub(pr, inner ? inner : f)) {
            bt_logkv(BT_LOG_WARN, "subscription no longer permitted, dropped", "client",
                     c->client_id, "username", pr->username, "filter", ps->subs[i].filter, NULL);
            dropped++;
            continue;
        }
        if (session_subscribe(c, ps->subs[i].filter, ps->subs[i].qos, ps->subs[i].opts,
                              ps->subs[i].id) < 0)
            return -1;
    }
    return dropped;
}

/* 5.0 CONNECT properties: the client's limits and session expiry; refusals by reason. */
static int connect_props5(conn *c, const bt_mqtt_connect *k)
{
    c->problem_info = true;
    c->session_expiry = 0;
    bt_mqtt_props_iter it;
    bt_mqtt_prop pr;
    bt_mqtt_props_iter_init(&it, &k->props);
    while (bt_mqtt_props_next(&it, &pr)) {
        switch (pr.id) {
        case BT_MQTT_PROP_SESSION_EXPIRY: c->session_expiry = pr.num; break;
        case BT_MQTT_PROP_RECEIVE_MAXIMUM: c->recv_max = (uint16_t)pr.num; break;
        case BT_MQTT_PROP_MAXIMUM_PACKET_SIZE: c->max_packet = pr.num; break;
        case BT_MQTT_PROP_REQUEST_PROBLEM_INFO: c->problem_info = pr.num != 0; break;
        case BT_MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
            c->alias_out_max =
                pr.num < TOPIC_ALIAS_OUT_MAX ? (uint16_t)pr.num : TOPIC_ALIAS_OUT_MAX;
            break;
        default: break;
        }
    }
    if (bt_mqtt_props_get(&k->props, BT_MQTT_PROP_AUTH_METHOD, NULL)) {
        send_connack5(c, false, BT_MQTT_RC_BAD_AUTH_METHOD, NULL, 0);
        c->h->ctr.conns_refused++;
        conn_close(c, "connect refused: enhanced authentication is not supported");
        return -1;
    }
    if (k->will_flag && bt_mqtt_props_get(&k->will_props, BT_MQTT_PROP_PAYLOAD_FORMAT, &pr) &&
        pr.num == 1 &&
        bt_mqtt_utf8_check((const char *)k->will_payload.ptr, k->will_payload.len) != 0) {
        send_connack5(c, false, BT_MQTT_RC_PAYLOAD_FORMAT_INVALID, NULL, 0);
        c->h->ctr.conns_refused++;
        conn_close(c, "connect refused: will payload is not UTF-8");
        return -1;
    }
    return 0;
}

/* The will of a 5.0 CONNECT keeps its properties (message expiry apart). */
static msg *will_msg5(const bt_mqtt_connect *k)
{
    uint8_t *props = malloc(k->will_props.raw.len ? k->will_props.raw.len : 1);
    if (!props)
        return NULL;
    uint64_t drop = (uint64_t)1 << BT_MQTT_PROP_MESSAGE_EXPIRY | (uint64_t)1
                                                                     << BT_MQTT_PROP_WILL_DELAY;
    ssize_t n = bt_mqtt_props_filter(&k->will_props, drop, props, k->will_props.raw.len);
    msg *m =
        n < 0 ? NULL
              : msg_new_props(k->will_topic.ptr, k->will_topic.len, k->will_payload.ptr,
                              k->will_payload.len, props, (size_t)n, k->will_qos, k->will_retain);
    free(props);
    bt_mqtt_prop pr;
    if (m && bt_mqtt_props_get(&k->will_props, BT_MQTT_PROP_MESSAGE_EXPIRY, &pr))
        m->expiry_s = pr.num;
    return m;
}

/* CONNACK 0 of a 5.0 client: what the hub allows, the id it chose. */
static int accept5(conn *c, bool present, bool assigned)
{
    hub *h = c->h;
    uint32_t lmax = (uint32_t)h->cfg->length_max;
    bt_mqtt_prop props[] = {
        {.id = BT_MQTT_PROP_RECEIVE_MAXIMUM, .num = (uint32_t)h->cfg->in_qos1_size},
        {.id = BT_MQTT_PROP_MAXIMUM_PACKET_SIZE,
         .num = lmax + 2 + (lmax >= 128) + (lmax >= 16384) + (lmax >= 2097152)},
        {.id = BT_MQTT_PROP_TOPIC_ALIAS_MAXIMUM, .num = TOPIC_ALIAS_MAX},
        {.id = BT_MQTT_PROP_SUB_ID_AVAILABLE, .num = 1},
        {.id = BT_MQTT_PROP_SHARED_SUB_AVAILABLE, .num = 1},
        {.id = BT_MQTT_PROP_ASSIGNED_CLIENT_ID,
         .bin = {(const uint8_t *)c->client_id, strlen(c->client_id)}},
    };
    size_t n = sizeof props / sizeof props[0] - (assigned ? 0 : 1);
    if (props[0].num > 65535)
        props[0].num = 65535;
    return send_connack5(c, present, 0, props, n);
}

int handle_connect(conn *c, const bt_mqtt_packet *p)
{
    hub *h = c->h;
    const bt_mqtt_connect *k = &p->connect;
    c->level = k->protocol_level;
    if (k->protocol_level != 3 && k->protocol_level != 4 && k->protocol_level != BT_MQTT_V5)
        return refuse(c, BT_MQTT_CONNACK_BAD_PROTOCOL, "unsupported protocol level");
    bool v5 = k->protocol_level == BT_MQTT_V5;
    if (v5 && connect_props5(c, k) < 0)
        return -1;
    bt_mqtt_prop wd;
    if (v5 && k->will_flag && bt_mqtt_props_get(&k->will_props, BT_MQTT_PROP_WILL_DELAY, &wd))
        c->will_delay = wd.num;
    if (!valid_client_id(k->client_id.ptr, k->client_id.len))
        return refuse(c, BT_MQTT_CONNACK_BAD_CLIENT_ID, "client id invalid");
    /* 5.0 assigns an id whatever the session (MQTT 5.0 §3.1.3.1) */
    if (k->client_id.len == 0 && !k->clean_session && !v5)
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
    h->ctr.auth_failed += !pr;
    if (!pr)
        return refuse(c, BT_MQTT_CONNACK_BAD_CREDENTIALS, "username or password not permitted");
    c->principal = pr;

    msg *will = NULL;
    if (k->will_flag) {
        if (!bt_topic_valid_name(k->will_topic.ptr, k->will_topic.len))
            return refuse(c, BT_MQTT_CONNACK_NOT_AUTHORIZED, "will topic invalid");
        will = v5 ? will_msg5(k)
                  : msg_new(k->will_topic.ptr, k->will_topic.len, k->will_payload.ptr,
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
    /* 5.0: clean start drops a stored session; the session outlives the connection when
     * its expiry interval is not 0 (for that long: conn_close); expiry 0 resumes a stored
     * one but ends with the connection. */
    c->clean = v5 ? k->clean_session && c->session_expiry == 0 : k->clean_session;
    c->expire_on_close = v5 && !k->clean_session && c->session_expiry == 0;
    if (v5 && k->clean_session && !c->clean)
        psession_drop(h, c->client_id);
    c->keepalive = k->keepalive;

    /* Takeover: the old connection ends (its will fires) and leaves its session state. */
    conn *old = map_get(&h->clients, c->client_id);
    if (old && old != c)
        conn_close(old, "session taken over by a new connection");
    if (map_put(&h->clients, c->client_id, c, NULL) < 0) {
        msg_unref(will);
        return refuse(c, BT_MQTT_CONNACK_UNAVAILABLE, "out of memory");
    }

    will_cancel_delayed(h, c->client_id, k->clean_session);
    /* a session past its 5.0 expiry is gone even before the next tick drops it */
    psess *old_ps = psession_get(h, c->client_id, NULL);
    if (old_ps && !old_ps->online && old_ps->expire_at && hub_wall_ms() >= old_ps->expire_at)
        psession_drop(h, c->client_id);
    bool existed = false;
    if (c->clean) {
        psession_drop(h, c->client_id);
    } else {
        existed = psession_get(h, c->client_id, NULL) != NULL;
        psess *ps = psession_get(h, c->client_id, pr->username);
        bool claimed = ps && !ps->owner; /* a session stored before owners were kept */
        if (claimed && !(ps->owner = strdup(pr->username)))
            ps = NULL;
        if (!ps) {
            msg_unref(will);
            return refuse(c, BT_MQTT_CONNACK_UNAVAILABLE, "out of memory");
        }
        psession_set_online(h, ps, c);
        psession_set_expiry(h, ps, c->client_id, 0);
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
        store_msg sm = msg_store_view(will);
        sm.ts_ms = hub_wall_ms();
        if (store_put_will(h->st, c->client_id, &sm, err, sizeof err) < 0)
            bt_logkv(BT_LOG_ERROR, "storing will failed", "client", c->client_id, "error", err,
                     NULL);
    }
    c->state = CONN_ACTIVE;
    /* session present: 0 in 3.1.x as SPEC §11 says; the truth in 5.0 */
    if ((v5 ? accept5(c, existed, k->client_id.len == 0)
            : send_connack(c, BT_MQTT_CONNACK_ACCEPTED)) < 0)
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
