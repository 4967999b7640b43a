/* WebSocket opening handshake (RFC 6455 §4): the server reads the HTTP/1.1 upgrade request
 * and answers 101 or 400; the client writes the request and checks the 101 answer. Headers
 * are read one line at a time into a small buffer so a connection costs no allocation; the
 * whole header is bounded by BT_WS_HANDSHAKE_MAX. */
#include "baetyl/ws.h"
#include "baetyl/error.h"
#include "http_parse.h"

#include <stdio.h>
#include <string.h>

#include "baetyl/ossl.h"

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Headers seen so far (bt_ws.hs_seen). */
enum {
    HS_UPGRADE = 1 << 0,
    HS_CONNECTION = 1 << 1,
    HS_VERSION = 1 << 2,
    HS_KEY = 1 << 3,
    HS_ACCEPT = 1 << 4,
};

void bt_ws_init(bt_ws *ws, bt_ws_role role, uint64_t max_message)
{
    memset(ws, 0, sizeof(*ws));
    ws->role = (uint8_t)role;
    ws->state = BT_WS_HANDSHAKE;
    ws->max_message = max_message;
    ws->hs_first = 1;
    ws->hdr_need = 2;
    ws->pong_at = -1;
}

int bt_ws_accept_key(const char *key, char out[29])
{
    char buf[64 + sizeof(WS_GUID)];
    size_t n = key ? strlen(key) : 0;
    /* SHA-1 and base64 are OpenSSL's, loaded on the first handshake. */
    if (!key || n > 64 || bt_ossl_load(NULL, 0) < 0) {
        out[0] = '\0';
        return -1;
    }
    memcpy(buf, key, n);
    memcpy(buf + n, WS_GUID, sizeof(WS_GUID) - 1);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)buf, n + sizeof(WS_GUID) - 1, md);
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH); /* 28 chars + NUL */
    return 0;
}

/* A Sec-WebSocket-Key is the base64 of exactly 16 bytes: 22 characters and "==". */
static int key_valid(const char *v, size_t n)
{
    if (n != 24 || v[22] != '=' || v[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++) {
        char c = v[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return 0;
    }
    unsigned char raw[24];
    return bt_ossl_load(NULL, 0) == 0 &&
           EVP_DecodeBlock(raw, (const unsigned char *)v, 24) == 18; /* 16 + 2 pad bytes */
}

/* Host and path go into our request verbatim: visible ASCII only, no header injection. */
static int visible_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

int bt_ws_client_start(bt_ws *ws, const char *host, const char *path, char *err, size_t errlen)
{
    if (ws->role != BT_WS_CLIENT || ws->state != BT_WS_HANDSHAKE || ws->hs_total || ws->out_len)
        return bt_errf(err, errlen, "websocket: client handshake already started or wrong role");
    if (!path || !*path)
        path = "/";
    if (!host || !*host || strlen(host) >= BT_WS_HOST_MAX || !visible_ascii(host))
        return bt_errf(err, errlen, "websocket: invalid host");
    if (path[0] != '/' || strlen(path) >= BT_WS_PATH_MAX || !visible_ascii(path)) {
        bt_errf(err, errlen, "websocket: invalid path (must start with '/', at most %d bytes)",
                BT_WS_PATH_MAX - 1);
        return -1;
    }
    char why[200];
    if (bt_ossl_load(why, sizeof why) < 0)
        return bt_errf(err, errlen, "websocket: the handshake needs %s", why);
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return bt_errf(err, errlen, "websocket: no randomness for the handshake key");
    EVP_EncodeBlock((unsigned char *)ws->key, nonce, sizeof(nonce));
    bt_ws_accept_key(ws->key, ws->accept);
    snprintf(ws->path, sizeof(ws->path), "%s", path);
    int n = snprintf((char *)ws->out, sizeof(ws->out),
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: mqtt\r\n"
                     "\r\n",
                     path, host, ws->key);
    if (n < 0 || (size_t)n >= sizeof(ws->out)) { /* cannot happen with the bounds above */
        return bt_errf(err, errlen, "websocket: request too long");
    }
    ws->out_len = (uint16_t)n;
    ws->out_sent = 0;
    return 0;
}

/* Request target: origin form "/p?q" or absolute form "ws://host/p"; keeps the path part. */
static int take_path(bt_ws *ws, const char *t, size_t n)
{
    if (n == 0)
        return -1;
    if (t[0] != '/') {
        const char *sep = memmem(t, n, "://", 3);
        if (!sep)
            return -1;
        const char *p = memchr(sep + 3, '/', n - (size_t)(sep + 3 - t));
        if (!p) {
            strcpy(ws->path, "/");
            return 0;
        }
        n -= (size_t)(p - t);
        t = p;
    }
    if (n >= sizeof(ws->path))
        return -2;
    memcpy(ws->path, t, n);
    ws->path[n] = '\0';
    return 0;
}

/* Server: "GET <target> HTTP/1.1". */
static const char *request_line(bt_ws *ws, const char *l, size_t n)
{
    const char *sp1 = memchr(l, ' ', n);
    if (!sp1)
        return "malformed request line";
    if (sp1 - l != 3 || memcmp(l, "GET", 3) != 0)
        return "method must be GET";
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', n - (size_t)(t - l));
    if (!sp2)
        return "malformed request line";
    const char *ver = sp2 + 1;
    size_t vl = n - (size_t)(ver - l);
    /* HTTP/1.1 or a later 1.x: the upgrade needs 1.1 at least. */
    if (vl != 8 || memcmp(ver, "HTTP/1.", 7) != 0 || ver[7] < '1' || ver[7] > '9')
        return "HTTP/1.1 required";
    int r = take_path(ws, t, (size_t)(sp2 - t));
    if (r == -2)
        return "request path too long";
    if (r < 0)
        return "malformed request target";
    return NULL;
}

static const char REFUSED[] = "server refused the upgrade";

/* Client: "HTTP/1.1 101 Switching Protocols". On failure the caller shows the line. */
static const char *status_line(const char *l, size_t n)
{
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[8] != ' ' || memcmp(l + 9, "101", 3) != 0 ||
        (n > 12 && l[12] != ' '))
        return REFUSED;
    return NULL;
}

/* Headers whose value we must read whole (a longer line is an error, not skipped). */
static int name_needed(const char *name, size_t nl)
{
    static const char *const names[] = {"upgrade",
                                        "connection",
                                        "sec-websocket-version",
                                        "sec-websocket-key",
                                        "sec-websocket-accept",
                                        "sec-websocket-protocol",
                                        "sec-websocket-extensions"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (bt_http_name_is(name, nl, names[i]))
            return 1;
    return 0;
}

static const char *header_server(bt_ws *ws, const char *nm, size_t nl, const char *v, size_t vl)
{
    if (bt_http_name_is(nm, nl, "upgrade")) {
        if (bt_http_list_has(v, vl, "websocket"))
            ws->hs_seen |= HS_UPGRADE;
    } else if (bt_http_name_is(nm, nl, "connection")) {
        if (bt_http_list_has(v, vl, "upgrade"))
            ws->hs_seen |= HS_CONNECTION;
    } else if (bt_http_name_is(nm, nl, "sec-websocket-version")) {
        if (vl != 2 || memcmp(v, "13", 2) != 0)
            return "unsupported Sec-WebSocket-Version (13 required)";
        ws->hs_seen |= HS_VERSION;
    } else if (bt_http_name_is(nm, nl, "sec-websocket-key")) {
        if (ws->hs_seen & HS_KEY)
            return "duplicate Sec-WebSocket-Key";
        if (!key_valid(v, vl))
            return "invalid Sec-WebSocket-Key (base64 of 16 bytes required)";
        memcpy(ws->key, v, vl);
        ws->key[vl] = '\0';
        ws->hs_seen |= HS_KEY;
    } else if (bt_http_name_is(nm, nl, "sec-websocket-protocol")) {
        /* Offers come in the client's order of preference (the header may repeat): the
         * first one we speak wins. Names are case-sensitive (RFC 6455 §11.5). */
        size_t i = 0;
        while (!ws->protocol[0] && i < vl) {
            while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
                i++;
            size_t s = i;
            while (i < vl && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
                i++;
            if (i - s == 4 && !memcmp(v + s, "mqtt", 4))
                strcpy(ws->protocol, "mqtt");
            else if (i - s == 8 && !memcmp(v + s, "mqttv3.1", 8))
                strcpy(ws->protocol, "mqttv3.1");
        }
    }
    /* Extensions are not offered back: none is supported. Other headers are ignored. */
    return NULL;
}

static const char *header_client(bt_ws *ws, const char *nm, size_t nl, const char *v, size_t vl)
{
    if (bt_http_name_is(nm, nl, "upgrade")) {
        if (bt_http_list_has(v, vl, "websocket"))
            ws->hs_seen |= HS_UPGRADE;
    } else if (bt_http_name_is(nm, nl, "connection")) {
        if (bt_http_list_has(v, vl, "upgrade"))
            ws->hs_seen |= HS_CONNECTION;
    } else if (bt_http_name_is(nm, nl, "sec-websocket-accept")) {
        if ((ws->hs_seen & HS_ACCEPT) || vl != strlen(ws->accept) || memcmp(v, ws->accept, vl) != 0)
            return "wrong Sec-WebSocket-Accept";
        ws->hs_seen |= HS_ACCEPT;
    } else if (bt_http_name_is(nm, nl, "sec-websocket-protocol")) {
        if (ws->protocol[0] || vl != 4 || memcmp(v, "mqtt", 4) != 0)
            return "server chose a subprotocol we did not offer";
        strcpy(ws->protocol, "mqtt");
    } else if (bt_http_name_is(nm, nl, "sec-websocket-extensions")) {
        if (vl)
            return "server chose an extension we did not offer";
    }
    return NULL;
}

/* One complete header line (CR stripped, not NUL-terminated); NULL or the error reason. */
static const char *process_line(bt_ws *ws, const char *l, size_t n, int too_long)
{
    int server = ws->role == BT_WS_SERVER;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)l[i] < 0x20 && l[i] != '\t') || l[i] == 0x7f)
            return "control character in header";
    if (ws->hs_first) {
        if (too_long)
            return server ? "request line too long" : "status line too long";
        ws->hs_first = 0;
        return server ? request_line(ws, l, n) : status_line(l, n);
    }
    if (l[0] == ' ' || l[0] == '\t')
        return "folded header lines are not supported";
    const char *colon = memchr(l, ':', n);
    if (!colon)
        return too_long ? "header name too long" : "header line without ':'";
    size_t nl = (size_t)(colon - l);
    if (nl == 0)
        return "empty header name";
    for (size_t i = 0; i < nl; i++)
        if (!bt_http_tchar((unsigned char)l[i]))
            return "invalid header name";
    if (too_long) /* only headers we ignore may be longer than our line buffer */
        return name_needed(l, nl) ? "header value too long" : NULL;
    const char *v = colon + 1, *e = l + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    return server ? header_server(ws, l, nl, v, (size_t)(e - v))
                  : header_client(ws, l, nl, v, (size_t)(e - v));
}

/* The empty line: everything required must have been seen. */
static const char *finish(bt_ws *ws)
{
    unsigned s = ws->hs_seen;
    if (!(s & HS_UPGRADE))
        return "missing 'Upgrade: websocket'";
    if (!(s & HS_CONNECTION))
        return "missing 'Connection: Upgrade'";
    if (ws->role == BT_WS_CLIENT)
        return (s & HS_ACCEPT) ? NULL : "missing Sec-WebSocket-Accept";
    if (!(s & HS_VERSION))
        return "missing Sec-WebSocket-Version";
    if (!(s & HS_KEY))
        return "missing Sec-WebSocket-Key";
    return NULL;
}

static void answer_101(bt_ws *ws)
{
    char accept[29];
    bt_ws_accept_key(ws->key, accept);
    int n = snprintf((char *)ws->out, sizeof(ws->out),
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "%s%s%s"
                     "\r\n",
                     accept, ws->protocol[0] ? "Sec-WebSocket-Protocol: " : "", ws->protocol,
                     ws->protocol[0] ? "\r\n" : "");
    ws->out_len = (uint16_t)n; /* < 200 bytes */
    ws->out_sent = 0;
}

/* The reason is one of our fixed texts, never bytes of the request. */
static void answer_400(bt_ws *ws, const char *reason)
{
    int n = snprintf((char *)ws->out, sizeof(ws->out),
                     "HTTP/1.1 400 Bad Request\r\n"
                     "Connection: close\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n"
                     "\r\n"
                     "%s\n",
                     strlen(reason) + 1, reason);
    if (n < 0 || (size_t)n >= sizeof(ws->out))
        n = 0;
    ws->out_len = (uint16_t)n;
    ws->out_sent = 0;
}

static int fail(bt_ws *ws, const char *reason, const char *line, size_t ln, char *err,
                size_t errlen)
{
    if (ws->role == BT_WS_SERVER) {
        answer_400(ws, reason);
        bt_errf(err, errlen, "websocket handshake: %s", reason);
    } else {
        /* Show the server's status line: it tells the user what went wrong (404, 401…). */
        int show = reason == REFUSED && line;
        bt_errf(err, errlen, "websocket handshake: %s%s%.*s%s", reason, show ? " (" : "",
                show ? (int)(ln > 80 ? 80 : ln) : 0, show ? line : "", show ? ")" : "");
    }
    ws->state = BT_WS_FAILED;
    return -1;
}

int bt_ws_handshake(bt_ws *ws, const uint8_t *in, size_t len, size_t *used, char *err,
                    size_t errlen)
{
    *used = 0;
    if (ws->state != BT_WS_HANDSHAKE) {
        bt_errf(err, errlen, "websocket handshake: already %s",
                ws->state == BT_WS_FAILED ? "failed" : "done");
        return ws->state == BT_WS_FAILED ? -1 : 1;
    }
    if (ws->role == BT_WS_CLIENT && !ws->key[0])
        return bt_errf(err, errlen, "websocket handshake: bt_ws_client_start not called");
    for (size_t i = 0; i < len; i++) {
        char c = (char)in[i];
        if (++ws->hs_total > BT_WS_HANDSHAKE_MAX) {
            *used = i + 1;
            return fail(ws,
                        ws->role == BT_WS_SERVER ? "request header too large"
                                                 : "answer header too large",
                        NULL, 0, err, errlen);
        }
        if (c != '\n') {
            if (ws->line_len < sizeof(ws->line))
                ws->line[ws->line_len++] = c;
            else
                ws->line_long = 1;
            continue;
        }
        size_t n = ws->line_len;
        int too_long = ws->line_long;
        if (!too_long && n && ws->line[n - 1] == '\r')
            n--;
        ws->line_len = 0;
        ws->line_long = 0;
        if (n == 0 && !too_long) {
            if (ws->hs_first) /* blank lines before the request line are tolerated */
                continue;
            *used = i + 1;
            const char *why = finish(ws);
            if (why)
                return fail(ws, why, NULL, 0, err, errlen);
            if (ws->role == BT_WS_SERVER)
                answer_101(ws);
            ws->state = BT_WS_OPEN;
            return 1;
        }
        const char *why = process_line(ws, ws->line, n, too_long);
        if (why) {
            *used = i + 1;
            return fail(ws, why, ws->line, n, err, errlen);
        }
    }
    *used = len;
    return 0;
}

bt_ws_state bt_ws_get_state(const bt_ws *ws)
{
    return (bt_ws_state)ws->state;
}

const char *bt_ws_path(const bt_ws *ws)
{
    return ws->path;
}

const char *bt_ws_protocol(const bt_ws *ws)
{
    return ws->protocol;
}
