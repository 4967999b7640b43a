/* QoS 2 (SPEC §11, MQTT 3.1.1 §4.3.3): the PUBREC, PUBREL and PUBCOMP exchanges both ways.
 *
 * Towards a subscriber: a delivery is resent (DUP, same packet id) until its PUBREC; then
 * the message is done (the session's log offset may pass it) and only its packet id is
 * kept until PUBCOMP. For a persistent session that id is stored before the PUBREL goes
 * out, so a restarted hub sends PUBREL again and never the PUBLISH: the subscriber gets the
 * message once, whatever moment the hub is killed at.
 *
 * From a publisher: the packet id of a received PUBLISH is kept (stored in the commit of
 * the message, for a persistent session) until its PUBREL, so a resent PUBLISH with that id
 * is not published twice; PUBCOMP goes out once the id is cleared. */
#include <stdlib.h>
#include <string.h>

#include "hub.h"

bool pid_set_has(const pid_set *s, uint16_t pid)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == pid)
            return true;
    return false;
}

int pid_set_add(pid_set *s, uint16_t pid)
{
    if (pid_set_has(s, pid))
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        uint16_t *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = pid;
    return 0;
}

bool pid_set_del(pid_set *s, uint16_t pid)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == pid) {
            s->v[i] = s->v[--s->n];
            return true;
        }
    return false;
}

void pid_set_free(pid_set *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

int handle_pubrec(conn *c, uint16_t pid)
{
    outq_entry *e = session_find(c, pid);
    if (!e || e->qos != 2)
        return 0; /* unknown: ignored, like a PUBACK (its PUBLISH may come again) */
    if (e->released)
        return e->rel_wait ? 0 : send_ack(c, BT_MQTT_PUBREL, pid);
    e->released = true;
    e->sent_ms = c->h->now_ms;
    if (e->seq) {
        uint64_t seq = e->seq;
        c->qlog--;
        c->h->log_acked = true;
        e->seq = 0;
        psession_seq_done(c, seq); /* completed before an earlier one: not sent again */
    }
    msg_unref(e->m);
    e->m = NULL;
    if (!c->clean)
        c->h->offsets_acked = true;
    if (psession_qos2_record(c, 'o', pid, true)) {
        e->rel_wait = true; /* PUBREL once the id is stored (psession_offsets_done) */
        return 0;
    }
    return send_ack(c, BT_MQTT_PUBREL, pid);
}

int handle_pubcomp(conn *c, uint16_t pid)
{
    outq_entry *e = session_find(c, pid);
    if (!e || !e->released)
        return 0;
    session_entry_acked(c, e);
    psession_qos2_record(c, 'o', pid, false);
    session_acked(c);
    return 0;
}

int handle_pubrel(conn *c, uint16_t pid)
{
    if (pid_set_del(&c->rx2, pid) && psession_qos2_record(c, 'i', pid, false))
        return 0; /* PUBCOMP once the id is cleared in the store (psession_offsets_done) */
    return send_ack(c, BT_MQTT_PUBCOMP, pid);
}
