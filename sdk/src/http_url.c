/* https:// URLs taken apart strictly (baetyl/http.h): what the HTTPS client connects to and
 * asks for, with anything ambiguous refused rather than guessed. */
#include "baetyl/error.h"
#include "baetyl/http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A DNS name: labels of letters, digits and '-' (not at their ends), dots between. */
static bool dns_name(const char *h, size_t n)
{
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
        } else if (isalnum(c) || (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && h[n - 1] != '-';
}

static int host_part(const char *h, size_t n, bt_http_url *u, char *err, size_t errlen)
{
    if (n == 0)
        return bt_errf(err, errlen, "url has no host");
    if (h[0] == '[') {
        struct in6_addr a6;
        if (n < 3 || h[n - 1] != ']' || n - 2 >= sizeof u->host)
            return bt_errf(err, errlen, "url host (%.*s) is not a valid [IPv6] address",
                           (int)(n > 80 ? 80 : n), h);
        memcpy(u->host, h + 1, n - 2);
        u->host[n - 2] = '\0';
        if (inet_pton(AF_INET6, u->host, &a6) != 1)
            return bt_errf(err, errlen, "url host (%.80s) is not a valid IPv6 address", u->host);
        return 0;
    }
    if (n >= sizeof u->host || !dns_name(h, n))
        return bt_errf(err, errlen, "url host (%.*s) is not a valid name or address",
                       (int)(n > 80 ? 80 : n), h);
    memcpy(u->host, h, n);
    u->host[n] = '\0';
    /* all digits and dots: only a whole dotted quad, not "1.2.3" or "0x7f.1" */
    if (strspn(u->host, "0123456789.") == n) {
        struct in_addr a4;
        if (inet_pton(AF_INET, u->host, &a4) != 1)
            return bt_errf(err, errlen, "url host (%s) is not a valid IPv4 address", u->host);
    }
    return 0;
}

static int port_part(const char *p, size_t n, bt_http_url *u, char *err, size_t errlen)
{
    long v = 0;
    if (n == 0 || n > 5 || strspn(p, "0123456789") < n)
        return bt_errf(err, errlen, "url port (%.*s) is not a number from 1 to 65535",
                       (int)(n > 20 ? 20 : n), p);
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (p[i] - '0');
    if (v < 1 || v > 65535)
        return bt_errf(err, errlen, "url port (%.*s) is not a number from 1 to 65535", (int)n, p);
    memcpy(u->port, p, n);
    u->port[n] = '\0';
    return 0;
}

int bt_http_url_parse(const char *url, bt_http_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    if (!url || strncasecmp(url, "https://", 8) != 0)
        return bt_errf(err, errlen, "url (%.200s) is not https://", url ? url : "");
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return bt_errf(err, errlen, "url (%.200s) holds a space or control character", url);
    if (strchr(url, '#'))
        return bt_errf(err, errlen, "url (%.200s) holds a fragment", url);
    const char *auth = url + 8, *end = auth + strcspn(auth, "/?");
    if (memchr(auth, '@', (size_t)(end - auth)))
        return bt_errf(err, errlen, "url (%.200s) holds user info", url);
    const char *colon = NULL;
    if (*auth == '[') {
        const char *rb = memchr(auth, ']', (size_t)(end - auth));
        if (!rb)
            return bt_errf(err, errlen, "url host of %.200s has no closing ]", url);
        if (rb + 1 < end && rb[1] != ':')
            return bt_errf(err, errlen, "url (%.200s) has something after its [IPv6] host", url);
        colon = rb + 1 < end ? rb + 1 : NULL;
    } else {
        colon = memchr(auth, ':', (size_t)(end - auth));
    }
    const char *hend = colon ? colon : end;
    if (host_part(auth, (size_t)(hend - auth), u, err, errlen) < 0)
        return -1;
    if (colon && port_part(colon + 1, (size_t)(end - colon - 1), u, err, errlen) < 0)
        return -1;
    if (!colon)
        memcpy(u->port, "443", 4);
    /* "?q" with no path asks for "/?q" */
    size_t tl = strlen(end);
    u->target = malloc(tl + 2);
    if (!u->target)
        return bt_errf(err, errlen, "out of memory");
    u->target[0] = '/';
    memcpy(u->target + (*end == '/' ? 0 : 1), end, tl + 1);
    return 0;
}

void bt_http_url_free(bt_http_url *u)
{
    free(u->target);
    u->target = NULL;
}
