/* libFuzzer target for the HTTPS client's URL parser (sdk/src/http_url.c): any string is
 * refused with a message or taken apart into a host without separators or controls, a port
 * from 1 to 65535 and a target starting with '/', never crashing or leaking. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1), err[256] = "";
    if (!url)
        abort();
    memcpy(url, data, size);
    url[size] = '\0';
    bt_http_url u;
    if (bt_http_url_parse(url, &u, err, sizeof err) == 0) {
        long port = strtol(u.port, NULL, 10);
        if (!u.host[0] || strpbrk(u.host, "/?#@[] \r\n") || port < 1 || port > 65535 || !u.target ||
            u.target[0] != '/' || strpbrk(u.target, " \r\n#"))
            abort();
    } else if (!err[0]) {
        abort();
    }
    bt_http_url_free(&u);
    free(url);
    return 0;
}
