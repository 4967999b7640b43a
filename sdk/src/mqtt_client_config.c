/* Hub client settings (SPEC §17) as a config schema, the address parser and MQTT's own topic
 * rules (the client talks to remote brokers too, so the hub's stricter rules of topic.h,
 * such as no leading '$', do not apply here). */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt_client_internal.h"

/* ---- topics ----------------------------------------------------------------------- */

static bool valid_utf8_topic(const char *s, size_t *len)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    if (n == 0 || n > 0xFFFF || bt_mqtt_utf8_check(s, n) != 0)
        return false;
    *len = n;
    return true;
}

bool bt_mqtt_client_valid_name(const char *s)
{
    size_t n;
    if (!valid_utf8_topic(s, &n))
        return false;
    return strpbrk(s, "+#") == NULL;
}

bool bt_mqtt_client_valid_filter(const char *s)
{
    size_t n;
    if (!valid_utf8_topic(s, &n))
        return false;
    for (size_t i = 0; i < n; i++) {
        bool level_start = i == 0 || s[i - 1] == '/';
        bool level_end = i + 1 == n || s[i + 1] == '/';
        if (s[i] == '+' && !(level_start && level_end))
            return false;
        if (s[i] == '#' && !(level_start && i + 1 == n))
            return false;
    }
    return true;
}

/* ---- address ---------------------------------------------------------------------- */

static int bad(char *err, size_t errlen, const char *url, const char *why)
{
    if (err && errlen)
        snprintf(err, errlen, "address (%.200s) %s", url, why);
    return -1;
}

int mc_parse_address(const char *url, mc_addr *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    if (!url || !*url)
        return bad(err, errlen, "", "is empty");
    const char *sep = strstr(url, "://");
    if (!sep || sep == url || sep - url >= (ptrdiff_t)sizeof a->scheme)
        return bad(err, errlen, url, "has no scheme (tcp://, ssl://, ws://, wss://)");
    size_t sl = (size_t)(sep - url);
    for (size_t i = 0; i < sl; i++)
        a->scheme[i] = (char)tolower((unsigned char)url[i]);
    const char *defport;
    if (!strcmp(a->scheme, "tcp"))
        defport = "1883";
    else if (!strcmp(a->scheme, "ssl"))
        defport = "8883", a->tls = true;
    else if (!strcmp(a->scheme, "ws"))
        defport = "80", a->ws = true;
    else if (!strcmp(a->scheme, "wss"))
        defport = "443", a->ws = a->tls = true;
    else
        return bad(err, errlen, url, "has an unsupported scheme (tcp, ssl, ws or wss)");

    const char *p = sep + 3, *hs, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he)
            return bad(err, errlen, url, "has an unclosed [");
        p = he + 1;
    } else {
        hs = p;
        p += strcspn(p, ":/?#");
        he = p;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0)
        return bad(err, errlen, url, "has no host");
    if (hl >= sizeof a->host)
        return bad(err, errlen, url, "has a host name that is too long");
    memcpy(a->host, hs, hl);
    for (size_t i = 0; i < hl; i++)
        if ((unsigned char)a->host[i] <= ' ' || a->host[i] == '@')
            return bad(err, errlen, url, "has an invalid host");

    if (*p == ':') {
        p++;
        size_t pl = strspn(p, "0123456789");
        if (pl == 0 || pl > 5)
            return bad(err, errlen, url, "has an invalid port");
        long port = strtol(p, NULL, 10);
        if (port < 1 || port > 65535)
            return bad(err, errlen, url, "has a port out of range");
        snprintf(a->port, sizeof a->port, "%ld", port);
        p += pl;
    } else {
        snprintf(a->port, sizeof a->port, "%s", defport);
    }
    if (*p && *p != '/')
        return bad(err, errlen, url, "has junk after the port");
    if (a->ws) {
        const char *path = *p ? p : "/mqtt";
        if (strlen(path) >= sizeof a->path)
            return bad(err, errlen, url, "has a path that is too long");
        for (const char *q = path; *q; q++)
            if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7F)
                return bad(err, errlen, url, "has an invalid path");
        snprintf(a->path, sizeof a->path, "%s", path);
    } else if (*p && strcmp(p, "/") != 0) {
        return bad(err, errlen, url, "has a path, which only ws:// and wss:// take");
    }
    bool v6 = strchr(a->host, ':') != NULL;
    snprintf(a->hostport, sizeof a->hostport, "%s%s%s:%s", v6 ? "[" : "", a->host, v6 ? "]" : "",
             a->port);
    return 0;
}

/* ---- schema ----------------------------------------------------------------------- */

static int check_address(const void *v, char *err, size_t errlen)
{
    const char *s = *(char *const *)v;
    mc_addr a;
    if (!s)
        return 0; /* absence is the REQUIRED flag's business */
    if (mc_parse_address(s, &a, err, errlen) < 0) {
        /* the loader prefixes the path; keep only the reason */
        return -1;
    }
    return 0;
}

static int check_filter(const void *v, char *err, size_t errlen)
{
    const char *s = *(char *const *)v;
    if (s && !bt_mqtt_client_valid_filter(s)) {
        snprintf(err, errlen, "invalid topic filter (%.200s)", s);
        return -1;
    }
    return 0;
}

static const bt_cfg_field topic_fields[] = {
    BT_FIELD(bt_mqtt_topic_info, topic, "topic", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .check = check_filter),
    BT_FIELD(bt_mqtt_topic_info, qos, "qos", BT_CFG_INT, .def = "0", .flags = BT_CFG_RANGE,
             .min = 0, .max = 1),
    {0},
};
const bt_cfg_schema bt_mqtt_topic_schema = {sizeof(bt_mqtt_topic_info), topic_fields, NULL};

static int check_client(void *obj, char *err, size_t errlen)
{
    const bt_mqtt_client_config *c = obj;
    bool cert = c->cert && *c->cert, key = c->key && *c->key;
    if (cert != key) {
        snprintf(err, errlen, "cert and key must be given together");
        return -1;
    }
    return 0;
}

static const bt_cfg_field client_fields[] = {
    BT_FIELD(bt_mqtt_client_config, address, "address", BT_CFG_STRING, .flags = BT_CFG_REQUIRED,
             .check = check_address),
    /* MQTT protocol level: 3.1.1 unless the module is told to speak 5.0 (or 3.1) */
    BT_FIELD(bt_mqtt_client_config, protocol, "protocol", BT_CFG_INT, .def = "4",
             .flags = BT_CFG_RANGE, .min = 3, .max = 5),
    BT_FIELD(bt_mqtt_client_config, username, "username", BT_CFG_STRING),
    BT_FIELD(bt_mqtt_client_config, password, "password", BT_CFG_STRING),
    BT_FIELD(bt_mqtt_client_config, ca, "ca", BT_CFG_STRING),
    BT_FIELD(bt_mqtt_client_config, cert, "cert", BT_CFG_STRING),
    BT_FIELD(bt_mqtt_client_config, key, "key", BT_CFG_STRING),
    BT_FIELD(bt_mqtt_client_config, insecure, "insecure", BT_CFG_BOOL, .def = "false"),
    BT_FIELD(bt_mqtt_client_config, clientid, "clientid", BT_CFG_STRING),
    BT_FIELD(bt_mqtt_client_config, cleansession, "cleansession", BT_CFG_BOOL, .def = "false"),
    BT_FIELD(bt_mqtt_client_config, timeout, "timeout", BT_CFG_DURATION, .def = "30s",
             .flags = BT_CFG_RANGE, .min = 1, .max = 86400000),
    BT_FIELD(bt_mqtt_client_config, interval, "interval", BT_CFG_DURATION, .def = "1m",
             .flags = BT_CFG_RANGE, .min = 1, .max = 86400000),
    BT_FIELD(bt_mqtt_client_config, reconnectinterval, "reconnectinterval", BT_CFG_DURATION,
             .def = "1s", .flags = BT_CFG_RANGE, .min = 1, .max = 86400000),
    /* MQTT carries keepalive as 16-bit seconds */
    BT_FIELD(bt_mqtt_client_config, keepalive, "keepalive", BT_CFG_DURATION, .def = "10m",
             .flags = BT_CFG_RANGE, .min = 0, .max = 65535000),
    BT_FIELD(bt_mqtt_client_config, buffersize, "buffersize", BT_CFG_INT, .def = "10",
             .flags = BT_CFG_RANGE, .min = 1, .max = 1000000),
    BT_FIELD(bt_mqtt_client_config, validatesubs, "validatesubs", BT_CFG_BOOL, .def = "false"),
    /* the broker's limit, when known: 0 = the client does not check, the broker decides */
    BT_FIELD(bt_mqtt_client_config, message_max, "message.length.max", BT_CFG_SIZE, .def = "0",
             .flags = BT_CFG_RANGE, .min = 0, .max = 268435455),
    BT_FIELD(bt_mqtt_client_config, subscriptions, "subscriptions", BT_CFG_LIST,
             .sub = &bt_mqtt_topic_schema),
    {0},
};
const bt_cfg_schema bt_mqtt_client_schema = {sizeof(bt_mqtt_client_config), client_fields,
                                             check_client};

/* Rules the schema cannot express, or that apply to structs filled in code. */
int mc_check_config(const bt_mqtt_client_config *cfg, char *err, size_t errlen)
{
    mc_addr a;
    if (!cfg->address || !*cfg->address) {
        snprintf(err, errlen, "address: required");
        return -1;
    }
    if (mc_parse_address(cfg->address, &a, err, errlen) < 0)
        return -1;
    if (!cfg->cleansession && (!cfg->clientid || !*cfg->clientid)) {
        snprintf(err, errlen, "clientid: required when cleansession is false");
        return -1;
    }
    if (cfg->protocol != 0 && (cfg->protocol < 3 || cfg->protocol > 5)) {
        snprintf(err, errlen, "protocol: must be 3, 4 or 5");
        return -1;
    }
    if (cfg->clientid && strlen(cfg->clientid) > 0xFFFF) {
        snprintf(err, errlen, "clientid: too long");
        return -1;
    }
    if (cfg->timeout <= 0 || cfg->interval <= 0) {
        snprintf(err, errlen, "timeout and interval must be positive");
        return -1;
    }
    if (cfg->keepalive < 0 || cfg->keepalive > 65535000) {
        snprintf(err, errlen, "keepalive: must be between 0 and 65535s");
        return -1;
    }
    if (cfg->buffersize < 1 || cfg->buffersize > 1000000) {
        snprintf(err, errlen, "buffersize: must be between 1 and 1000000");
        return -1;
    }
    if (check_client((void *)cfg, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < cfg->subscriptions.n; i++) {
        const bt_mqtt_topic_info *t = &BT_CFG_AT(cfg->subscriptions, bt_mqtt_topic_info, i);
        if (!bt_mqtt_client_valid_filter(t->topic)) {
            snprintf(err, errlen, "subscriptions[%zu].topic: invalid topic filter (%.200s)", i,
                     t->topic ? t->topic : "");
            return -1;
        }
        if (t->qos < 0 || t->qos > 1) {
            snprintf(err, errlen, "subscriptions[%zu].qos: must be 0 or 1", i);
            return -1;
        }
    }
    return 0;
}
