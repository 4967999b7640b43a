/* The metrics.address listener: a few short GETs on the SDK's HTTP server (scrapes are rare:
 * few connections, a short idle timeout, bodies read and dropped). */
#include "metrics_server.h"
#include "api_server.h"
#include "metrics.h"
#include "status_page.h"
#include "baetyl/error.h"

#include <baetyl/api.h>

#include <stdbool.h>
#include <string.h>

#define METRICS_CONNECTIONS 64
#define METRICS_TIMEOUT_MS 10000

static const char text_type[] = "text/plain; charset=utf-8";

static void on_head(bt_http_req *rq, void *arg)
{
    rq->keep_body = false;
}

static void set(bt_http_resp *resp, int status, const char *type, const char *body, size_t n)
{
    resp->status = status;
    resp->type = type;
    resp->body = body;
    resp->len = n;
}

static void on_request(bt_http_req *rq, bt_http_resp *resp, void *arg)
{
    master *m = arg;
    bool get = !strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD");
    const char *route = "other";
    if (!strcmp(rq->path, "/metrics") && get) {
        size_t n;
        char *body = metrics_render(m, &n);
        route = "metrics";
        if (body) {
            set(resp, 200, METRICS_CONTENT_TYPE, body, n);
            resp->free_body = true;
        } else {
            set(resp, 500, text_type, "out of memory\n", 14);
        }
    } else if (!strcmp(rq->path, "/") && get) {
        route = "page";
        set(resp, 200, "text/html; charset=utf-8", status_page_html, status_page_len());
    } else if (!strcmp(rq->path, "/metrics") || !strcmp(rq->path, "/")) {
        set(resp, 405, text_type, "method not allowed\n", 19);
    } else {
        set(resp, 404, text_type, "404 page not found\n", 19);
    }
    resp->headers = "Cache-Control: no-store\r\n";
    metrics_count_request(route, (unsigned)resp->status);
}

bt_http_server *metrics_server_start(master *m, const char *address, char *err, size_t errlen)
{
    bt_api_addr a;
    if (bt_api_addr_parse(address, NULL, &a, err, errlen) != 0)
        return NULL;
    int fd = a.is_unix ? bt_errf(err, errlen, "metrics.address: want tcp://host:port")
                       : api_listen_tcp(a.host, a.port, err, errlen);
    bt_api_addr_free(&a);
    if (fd < 0)
        return NULL;
    bt_http_server_opts o = {.name = "metrics",
                             .max_connections = METRICS_CONNECTIONS,
                             .idle_timeout_ms = METRICS_TIMEOUT_MS,
                             .on_head = on_head,
                             .on_request = on_request,
                             .arg = m};
    bt_http_server *d;
    if (bt_http_server_start(fd, &o, &d, err, errlen) != 0) {
        bt_errf(err, errlen, "failed to start the metrics server on %s", address);
        return NULL;
    }
    return d;
}

void metrics_server_stop(bt_http_server *d)
{
    bt_http_server_stop(d);
}
