/* Unit tests of the SDK's HTTPS client (baetyl/http.h) against a TLS server thread with a
 * certificate from a test CA: a verified request (Host, extra headers), a redirect followed,
 * a server refused for a certificate another CA signed or for another name, the handshake's
 * timeout, the redirect limit and a redirect away from https. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "baetyl/http.h"
#include "baetyl/ossl.h"
#include "baetyl/util.h"

static char dir[64], path_ca[128], path_other[128], path_cert[128], path_key[128];
static int lfd = -1, port;
static SSL_CTX *srv;
static bool silent;        /* accept TCP, never answer the handshake */
static const char *answer; /* to every request but /final */
static const char *final;  /* to /final */
static char request[4096]; /* the last request head */
static int conns;          /* connections the server thread takes */

static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("failed: %s", cmd);
}

static void serve_one(int fd)
{
    if (silent) {
        char b;
        while (read(fd, &b, 1) > 0) /* until the client gives up */
            ;
        return;
    }
    SSL *ssl = SSL_new(srv);
    SSL_set_fd(ssl, fd);
    SSL_set_accept_state(ssl);
    if (SSL_do_handshake(ssl) == 1) {
        int n = 0, r, want = INT32_MAX;
        request[0] = '\0';
        /* the head and a body of its Content-Length: unread bytes would reset the connection */
        while (n < want && n < (int)sizeof request - 1 &&
               (r = SSL_read(ssl, request + n, (int)sizeof request - 1 - n)) > 0) {
            n += r;
            request[n] = '\0';
            const char *end = strstr(request, "\r\n\r\n"), *cl = strstr(request, "Length: ");
            if (end)
                want = (int)(end + 4 - request) + (cl ? atoi(cl + 8) : 0);
        }
        const char *a = strstr(request, " /final ") ? final : answer;
        SSL_write(ssl, a, (int)strlen(a));
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    ERR_clear_error();
}

static void *serve(void *arg)
{
    (void)arg;
    for (int i = 0; i < conns; i++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        serve_one(fd);
        close(fd);
    }
    return NULL;
}

static int call(bt_http_req *q, char **body, char *err, size_t errlen, int n)
{
    conns = n;
    pthread_t t;
    pthread_create(&t, NULL, serve, NULL);
    int rc = bt_http_request(q, body, NULL, err, errlen);
    pthread_join(t, NULL);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    char why[256];
    if (bt_ossl_load(why, sizeof why) < 0)
        fail_msg("%s", why);
    snprintf(dir, sizeof dir, "/tmp/bt-https-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh("cd %s && openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=ca "
       ">/dev/null 2>&1",
       dir, ec);
    sh("cd %s && openssl req -x509 %s -keyout other.key -out other.pem -days 2 -subj /CN=o "
       ">/dev/null 2>&1",
       dir, ec);
    sh("cd %s && openssl req %s -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 >/dev/null 2>&1"
       " && printf 'subjectAltName=IP:127.0.0.1\\n' > ext && openssl x509 -req -in srv.csr "
       "-CA ca.pem -CAkey ca.key -set_serial 2 -days 2 -extfile ext -out srv.pem >/dev/null 2>&1",
       dir, ec);
    snprintf(path_ca, sizeof path_ca, "%s/ca.pem", dir);
    snprintf(path_other, sizeof path_other, "%s/other.pem", dir);
    snprintf(path_cert, sizeof path_cert, "%s/srv.pem", dir);
    snprintf(path_key, sizeof path_key, "%s/srv.key", dir);
    srv = SSL_CTX_new(TLS_server_method());
    if (!srv || SSL_CTX_use_certificate_chain_file(srv, path_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(srv, path_key, SSL_FILETYPE_PEM) != 1)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 8) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0)
        return -1;
    port = ntohs(sa.sin_port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char why[256];
    if (lfd >= 0)
        close(lfd);
    if (srv)
        SSL_CTX_free(srv);
    bt_rm_rf(dir, why, sizeof why);
    return 0;
}

static void test_verified_and_redirected(void **state)
{
    (void)state;
    char url[128], loc[256], err[256] = "", *body = NULL;
    const char *hdrs[] = {"x-iot-edge-sn: 12", NULL};
    snprintf(url, sizeof url, "https://127.0.0.1:%d/v3/edge/info", port);
    silent = false;
    answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    bt_http_req q = {.url = url,
                     .method = "POST",
                     .headers = hdrs,
                     .content_type = "application/x-www-form-urlencoded",
                     .body = "a=b",
                     .body_len = 3,
                     .ca = path_ca,
                     .timeout_ms = 5000,
                     .cancel_fd = -1};
    int rc = call(&q, &body, err, sizeof err, 1);
    if (rc != 200)
        fail_msg("%d: %s", rc, err);
    assert_string_equal(body, "ok");
    free(body);
    char host[64];
    snprintf(host, sizeof host, "Host: 127.0.0.1:%d\r\n", port);
    assert_non_null(strstr(request, "POST /v3/edge/info HTTP/1.1\r\n"));
    assert_non_null(strstr(request, host));
    assert_non_null(strstr(request, "x-iot-edge-sn: 12\r\n"));
    assert_non_null(strstr(request, "Content-Type: application/x-www-form-urlencoded\r\n"));
    /* a GET follows a redirect to an absolute https URL */
    snprintf(loc, sizeof loc,
             "HTTP/1.1 302 Found\r\nLocation: https://127.0.0.1:%d/final\r\n"
             "Content-Length: 0\r\n\r\n",
             port);
    answer = loc;
    final = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal";
    bt_http_req g = {.url = url,
                     .method = "GET",
                     .ca = path_ca,
                     .max_redirects = 5,
                     .timeout_ms = 5000,
                     .cancel_fd = -1};
    assert_int_equal(call(&g, &body, err, sizeof err, 2), 200);
    assert_string_equal(body, "final");
    free(body);
    /* without max_redirects the 302 is the answer */
    g.max_redirects = 0;
    assert_int_equal(call(&g, NULL, err, sizeof err, 1), 302);
}

/* A GET of https://<host>:<port><path> (written into url) trusting ca. */
static bt_http_req get(char *url, size_t n, const char *host, const char *path, const char *ca)
{
    snprintf(url, n, "https://%s:%d%s", host, port, path);
    return (bt_http_req){
        .url = url, .method = "GET", .ca = ca, .timeout_ms = 5000, .cancel_fd = -1};
}

static int count(const char *p, size_t n, void *arg)
{
    (void)p;
    *(size_t *)arg += n;
    return 0;
}

static void test_streamed_bound(void **state)
{
    (void)state;
    char url[128], err[256] = "";
    silent = false;
    size_t got = 0;
    bt_http_req q = get(url, sizeof url, "127.0.0.1", "/big", path_ca);
    q.on_data = count;
    q.arg = &got;
    q.max_stream = 4;
    /* declared larger: refused before any byte */
    answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    assert_int_equal(call(&q, NULL, err, sizeof err, 1), BT_HTTP_TOO_LARGE);
    assert_non_null(strstr(err, "larger than 4 bytes"));
    assert_int_equal(got, 0);
    /* chunks that pass it */
    answer =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
    assert_int_equal(call(&q, NULL, err, sizeof err, 1), BT_HTTP_TOO_LARGE);
    assert_int_equal(got, 3);
    /* within it */
    answer = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfour";
    got = 0;
    assert_int_equal(call(&q, NULL, err, sizeof err, 1), 200);
    assert_int_equal(got, 4);
}

static void test_bad_certificate(void **state)
{
    (void)state;
    char url[128], err[256] = "";
    silent = false;
    answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    bt_http_req q = get(url, sizeof url, "127.0.0.1", "/", path_other);
    assert_int_equal(call(&q, NULL, err, sizeof err, 1), BT_HTTP_ERR);
    assert_non_null(strstr(err, "TLS handshake: certificate verify failed"));
    /* the right CA, but the certificate is for 127.0.0.1, not for this name */
    q = get(url, sizeof url, "localhost", "/", path_ca);
    assert_int_equal(call(&q, NULL, err, sizeof err, 1), BT_HTTP_ERR);
    assert_non_null(strstr(err, "certificate verify failed: hostname mismatch"));
    /* a CA file that is not there is named */
    q.ca = "/nonexistent/ca.pem";
    assert_int_equal(bt_http_request(&q, NULL, NULL, err, sizeof err), BT_HTTP_ERR);
    assert_non_null(strstr(err, "ca: cannot load /nonexistent/ca.pem"));
}

static void test_handshake_timeout(void **state)
{
    (void)state;
    char url[128], err[256] = "";
    silent = true;
    bt_http_req q = get(url, sizeof url, "127.0.0.1", "/", path_ca);
    q.timeout_ms = 0;
    q.connect_timeout_ms = 300;
    assert_int_equal(call(&q, NULL, err, sizeof err, 1), BT_HTTP_TIMEOUT);
    assert_non_null(strstr(err, "TLS handshake: timed out"));
}

static void test_redirect_limit(void **state)
{
    (void)state;
    char url[128], err[256] = "";
    silent = false;
    answer = "HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n";
    bt_http_req q = get(url, sizeof url, "127.0.0.1", "/start", path_ca);
    q.max_redirects = 2;
    assert_int_equal(call(&q, NULL, err, sizeof err, 3), BT_HTTP_ERR);
    assert_non_null(strstr(err, "more than 2 redirects (the last to /again)"));
    assert_non_null(strstr(request, "GET /again HTTP/1.1\r\n"));
    /* https only, redirects too */
    answer = "HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1/x\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(call(&q, NULL, err, sizeof err, 1), BT_HTTP_ERR);
    assert_non_null(strstr(err, "redirect to http://127.0.0.1/x refused: not https://"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verified_and_redirected), cmocka_unit_test(test_streamed_bound),
        cmocka_unit_test(test_bad_certificate),         cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_redirect_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
