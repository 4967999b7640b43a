/* Unit tests of the strict https:// URL parser (baetyl/http.h): what the HTTPS client
 * connects to, and every malformed URL refused naming the part that is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "baetyl/http.h"

static void ok(const char *url, const char *host, const char *port, const char *target)
{
    bt_http_url u;
    char err[256] = "";
    int rc = bt_http_url_parse(url, &u, err, sizeof err);
    if (rc != 0)
        fail_msg("%s: %s", url, err);
    assert_string_equal(u.host, host);
    assert_string_equal(u.port, port);
    assert_string_equal(u.target, target);
    bt_http_url_free(&u);
}

static void bad(const char *url, const char *why)
{
    bt_http_url u;
    char err[256] = "";
    assert_int_equal(bt_http_url_parse(url, &u, err, sizeof err), -1);
    if (!strstr(err, why))
        fail_msg("%s: got \"%s\", want \"%s\"", url, err, why);
    bt_http_url_free(&u);
}

static void test_accepted(void **state)
{
    (void)state;
    ok("https://example.com", "example.com", "443", "/");
    ok("HTTPS://a-b.example.com:8443/v3/edge/info", "a-b.example.com", "8443", "/v3/edge/info");
    ok("https://127.0.0.1:1/files/x.zip?sig=a%20b", "127.0.0.1", "1", "/files/x.zip?sig=a%20b");
    ok("https://h?x=1", "h", "443", "/?x=1");
    ok("https://[::1]:65535/", "::1", "65535", "/");
    ok("https://[fe80::1:2]", "fe80::1:2", "443", "/");
    ok("https://localhost/", "localhost", "443", "/");
}

static void test_refused(void **state)
{
    (void)state;
    bad(NULL, "is not https://");
    bad("http://example.com/", "is not https://");
    bad("ftp://x", "is not https://");
    bad("https://", "url has no host");
    bad("https:///path", "url has no host");
    bad("https://:443/", "url has no host");
    bad("https://user:pw@example.com/", "holds user info");
    bad("https://example.com/a b", "space or control character");
    bad("https://example.com/\r\nX: y", "space or control character");
    bad("https://example.com/#frag", "holds a fragment");
    bad("https://example.com:0/", "url port (0) is not a number from 1 to 65535");
    bad("https://example.com:65536/", "url port (65536)");
    bad("https://example.com:123456/", "url port (123456)");
    bad("https://example.com:/", "url port () is not");
    bad("https://example.com:8a/", "url port (8a)");
    bad("https://example.com:-1/", "url port (-1)");
    bad("https://exa_mple.com/", "url host (exa_mple.com) is not a valid name or address");
    bad("https://-a.com/", "is not a valid name");
    bad("https://a-.com/", "is not a valid name");
    bad("https://a..com/", "is not a valid name");
    bad("https://a.com./", "is not a valid name");
    bad("https://1.2.3/", "url host (1.2.3) is not a valid IPv4 address");
    bad("https://256.1.1.1/", "is not a valid IPv4 address");
    bad("https://[::1/", "has no closing ]");
    bad("https://[::1]x/", "has something after its [IPv6] host");
    bad("https://[zz::1]/", "url host (zz::1) is not a valid IPv6 address");
    bad("https://[]/", "is not a valid [IPv6] address");
    bad("https://::1/", "url has no host");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
