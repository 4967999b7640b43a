/* libFuzzer target for the HTTP server's request parser (sdk/src/http_request.c), which
 * reads every byte a client of the master's API or metrics sends: the input, parsed as a
 * stream of pipelined requests once whole and once cut at every split its first byte picks,
 * must give the same requests (head, body) and the same refusal, never crash, never leak,
 * and never keep a head over its bound. The whole server: test/fuzz/master/fuzz_master_api.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../sdk/src/http_request.h"

#define MAX_REQUESTS 8

/* What a stream of requests parsed to, as one text to compare. */
typedef struct {
    bt_buf out;
    bt_buf body;
} result;

static int keep(const char *p, size_t n, void *arg)
{
    return bt_buf_append(&((result *)arg)->body, p, n);
}

static void note(result *res, const bt_http_request *q)
{
    char line[64];
    snprintf(line, sizeof line, "|%d %zu %d %d %zu|", q->minor, q->nheaders, q->keep_alive,
             q->expect_continue, bt_buf_size(&res->body));
    bt_buf_append(&res->out, line, strlen(line));
    const char *parts[] = {q->method, q->path, q->query};
    for (size_t i = 0; i < 3; i++)
        bt_buf_append(&res->out, parts[i], strlen(parts[i]) + 1);
    for (size_t i = 0; i < q->nheaders; i++) {
        bt_buf_append(&res->out, q->headers[i].name, strlen(q->headers[i].name) + 1);
        bt_buf_append(&res->out, q->headers[i].value, strlen(q->headers[i].value) + 1);
    }
    bt_buf_append(&res->out, res->body.p, bt_buf_size(&res->body));
}

static void parse(const char *data, size_t size, size_t step, result *res)
{
    memset(res, 0, sizeof *res);
    bt_http_request *q = calloc(1, sizeof *q);
    if (!q)
        abort();
    q->on_body = keep;
    q->on_body_arg = res;
    size_t off = 0;
    for (int n = 0; n < MAX_REQUESTS; n++) {
        bt_http_request_free(q);
        bt_http_request_init(q);
        bt_buf_free(&res->body);
        int rc;
        for (;;) {
            size_t len = size - off < step ? size - off : step, used;
            rc = bt_http_request_feed(q, data + off, len, &used);
            off += used;
            if (bt_buf_size(&q->head) > BT_HTTPD_MAX_HEAD || used > len)
                abort();
            if (rc == BT_HTTPD_HEAD) {
                if (!q->method || !q->path || !q->query || q->nheaders > BT_HTTPD_MAX_HEADERS)
                    abort();
                continue;
            }
            if (rc != BT_HTTPD_MORE || off == size)
                break;
        }
        if (rc == BT_HTTPD_DONE) {
            note(res, q);
            continue;
        }
        char end[200];
        if (rc < 0 && (!q->err[0] || q->status < 400))
            abort();
        snprintf(end, sizeof end, "#%d %d %s", rc, q->status, rc < 0 ? q->err : "");
        bt_buf_append(&res->out, end, strlen(end));
        break;
    }
    bt_http_request_free(q);
    bt_buf_free(&res->body);
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = data[0] % 17 + 1;
    const char *text = (const char *)data + 1;
    size--;
    result a, b;
    parse(text, size, size ? size : 1, &a);
    parse(text, size, step, &b);
    if (bt_buf_size(&a.out) != bt_buf_size(&b.out) ||
        (bt_buf_size(&a.out) && memcmp(a.out.p, b.out.p, bt_buf_size(&a.out)) != 0))
        abort();
    bt_buf_free(&a.out);
    bt_buf_free(&b.out);
    return 0;
}
