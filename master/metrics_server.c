/* The metrics.address listener: a few short GETs, one thread polling (scrapes are rare). */
#include "metrics_server.h"
#include "api_server.h"
#include "metrics.h"
#include "status_page.h"
#include "baetyl/error.h"

#include <baetyl/api.h>

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define METRICS_CONNECTIONS 64
#define METRICS_TIMEOUT_S 10

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, void *body, size_t n,
                                 enum MHD_ResponseMemoryMode mode, const char *type,
                                 const char *route)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(n, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    metrics_count_request(route, status);
    return rc;
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **con_cls)
{
    master *m = cls;
    static const char text[] = "text/plain; charset=utf-8";
    if (!*con_cls) { /* headers only: answer once the (ignored) body is read */
        *con_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (!strcmp(url, "/metrics") && get) {
        size_t n;
        char *body = metrics_render(m, &n);
        if (!body)
            return send_body(c, 500, (void *)"out of memory\n", 14, MHD_RESPMEM_PERSISTENT, text,
                             "metrics");
        return send_body(c, 200, body, n, MHD_RESPMEM_MUST_FREE, METRICS_CONTENT_TYPE, "metrics");
    }
    if (!strcmp(url, "/") && get)
        return send_body(c, 200, (void *)status_page_html, status_page_len(),
                         MHD_RESPMEM_PERSISTENT, "text/html; charset=utf-8", "page");
    if (!strcmp(url, "/metrics") || !strcmp(url, "/"))
        return send_body(c, 405, (void *)"method not allowed\n", 19, MHD_RESPMEM_PERSISTENT, text,
                         "other");
    return send_body(c, 404, (void *)"404 page not found\n", 19, MHD_RESPMEM_PERSISTENT, text,
                     "other");
}

struct MHD_Daemon *metrics_server_start(master *m, const char *address, char *err, size_t errlen)
{
    bt_api_addr a;
    if (bt_api_addr_parse(address, NULL, &a, err, errlen) != 0)
        return NULL;
    int fd = a.is_unix ? bt_errf(err, errlen, "metrics.address: want tcp://host:port")
                       : api_listen_tcp(a.host, a.port, err, errlen);
    bt_api_addr_free(&a);
    if (fd < 0)
        return NULL;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, serve, m,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONNECTIONS, MHD_OPTION_END);
    if (!d) {
        close(fd);
        bt_errf(err, errlen, "failed to start the metrics server on %s", address);
    }
    return d;
}

void metrics_server_stop(struct MHD_Daemon *d)
{
    if (d)
        MHD_stop_daemon(d);
}
