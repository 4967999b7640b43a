/* Unit tests of the gRPC framing of the function client and server (sdk/src/grpc_wire.c):
 * the message prefix read back from DATA in any pieces, the refusals (over the bound before
 * any allocation, compressed, a second message, cut short), grpc-timeout both ways and
 * grpc-message's percent encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../sdk/src/grpc_wire.h"
#include "baetyl/function.h"

static char err[256];

/* Feeds len bytes in pieces of step (0 = whole) into a reader bounded by max, then its end.
 * Returns the status; r keeps the message. */
static int feed(bt_grpc_reader *r, const void *p, size_t len, size_t step, size_t max)
{
    memset(r, 0, sizeof *r);
    r->max = max;
    if (!step)
        step = len ? len : 1;
    int code = 0;
    const uint8_t *b = p;
    for (size_t off = 0; off < len && code == 0; off += step)
        code =
            bt_grpc_reader_feed(r, b + off, len - off < step ? len - off : step, err, sizeof err);
    return code ? code : bt_grpc_reader_finish(r, err, sizeof err);
}

static void test_reader_pieces(void **state)
{
    uint8_t frame[5 + 300];
    bt_grpc_prefix(frame, 300);
    assert_memory_equal(frame, "\0\0\0\x01\x2c", 5);
    for (int i = 0; i < 300; i++)
        frame[5 + i] = (uint8_t)i;
    for (size_t step = 0; step < 8; step++) {
        bt_grpc_reader r;
        assert_int_equal(feed(&r, frame, sizeof frame, step, 300), 0);
        assert_true(r.received);
        assert_int_equal(r.len, 300);
        assert_memory_equal(r.buf, frame + 5, 300);
        bt_grpc_reader_reset(&r);
        assert_null(r.buf);
        assert_int_equal(r.max, 300);
    }
    /* a large message grows with its bytes: announced 4 MiB, 10 bytes seen */
    bt_grpc_reader big = {.max = 4 << 20};
    assert_int_equal(
        bt_grpc_reader_feed(&big, (const uint8_t *)"\0\0\x40\0\0xxxxxxxxxx", 15, err, sizeof err),
        0);
    assert_true(big.cap <= 64 * 1024);
    bt_grpc_reader_reset(&big);
    uint8_t *mib = calloc(1, (1 << 20) + 5);
    bt_grpc_prefix(mib, 1 << 20);
    mib[5 + 12345] = 7;
    for (size_t step = 1000; step < 300000; step *= 7) {
        assert_int_equal(feed(&big, mib, (1 << 20) + 5, step, 4 << 20), 0);
        assert_int_equal(big.len, 1 << 20);
        assert_int_equal(big.buf[12345], 7);
        bt_grpc_reader_reset(&big);
    }
    free(mib);
    /* an empty message is a message */
    bt_grpc_reader r;
    assert_int_equal(feed(&r, "\0\0\0\0\0", 5, 1, 10), 0);
    assert_true(r.received);
    assert_int_equal(r.len, 0);
    bt_grpc_reader_reset(&r);
}

static void test_reader_refusals(void **state)
{
    bt_grpc_reader r;
    /* over the bound: refused from the prefix alone, nothing allocated */
    assert_int_equal(feed(&r, "\0\xff\xff\xff\xff", 5, 0, 4 << 20), BT_FN_CODE_RESOURCE_EXHAUSTED);
    assert_null(r.buf);
    assert_true(r.too_large);
    assert_string_equal(err, "received message larger than max (4294967295 vs. 4194304)");
    bt_grpc_reader_reset(&r);
    /* compressed without an encoding */
    assert_int_equal(feed(&r, "\x01\0\0\0\x01x", 6, 0, 10), BT_FN_CODE_INTERNAL);
    assert_non_null(strstr(err, "compressed"));
    bt_grpc_reader_reset(&r);
    /* two messages in a unary call */
    assert_int_equal(feed(&r, "\0\0\0\0\x01x\0", 7, 0, 10), BT_FN_CODE_INTERNAL);
    assert_non_null(strstr(err, "more than one message"));
    bt_grpc_reader_reset(&r);
    /* cut short, in the prefix or the message, and nothing at all */
    assert_int_equal(feed(&r, "\0\0\0", 3, 0, 10), BT_FN_CODE_INTERNAL);
    assert_non_null(strstr(err, "cut short"));
    bt_grpc_reader_reset(&r);
    assert_int_equal(feed(&r, "\0\0\0\0\x05xy", 7, 1, 10), BT_FN_CODE_INTERNAL);
    assert_string_equal(err, "message cut short (2 of 5 bytes)");
    bt_grpc_reader_reset(&r);
    assert_int_equal(feed(&r, "", 0, 0, 10), BT_FN_CODE_INTERNAL);
    assert_string_equal(err, "no request message");
    bt_grpc_reader_reset(&r);
}

static void test_timeout(void **state)
{
    assert_int_equal(bt_grpc_timeout_parse("1H", 2), 3600000);
    assert_int_equal(bt_grpc_timeout_parse("2M", 2), 120000);
    assert_int_equal(bt_grpc_timeout_parse("30S", 3), 30000);
    assert_int_equal(bt_grpc_timeout_parse("150m", 4), 150);
    assert_int_equal(bt_grpc_timeout_parse("1500u", 5), 2);
    assert_int_equal(bt_grpc_timeout_parse("1n", 2), 1);
    assert_int_equal(bt_grpc_timeout_parse("99999999S", 9), 99999999000LL);
    /* malformed: no unit, no digits, a bad unit, over 8 digits, a sign */
    const char *bad[] = {"100", "m", "10x", "123456789m", "-1m", "1 m", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(bt_grpc_timeout_parse(bad[i], strlen(bad[i])), -1);
    /* the length is respected: "15m" read as "15" is malformed */
    assert_int_equal(bt_grpc_timeout_parse("15m", 2), -1);
    char v[24];
    bt_grpc_timeout_format(30000, v, sizeof v);
    assert_string_equal(v, "30000m");
    bt_grpc_timeout_format(0, v, sizeof v);
    assert_string_equal(v, "1m");
    bt_grpc_timeout_format(86400000LL * 3650, v, sizeof v);
    assert_true(bt_grpc_timeout_parse(v, strlen(v)) >= 86400000LL * 3650);
    assert_true(strlen(v) <= 9);
}

static void test_percent_encoding(void **state)
{
    char enc[64], dec[64];
    assert_int_equal(bt_grpc_pct_encode("a b%c\n中", enc, sizeof enc), 19);
    assert_string_equal(enc, "a b%25c%0A%E4%B8%AD");
    bt_grpc_pct_decode(enc, strlen(enc), dec, sizeof dec);
    assert_string_equal(dec, "a b%c\n中");
    /* cut at a whole escape */
    assert_int_equal(bt_grpc_pct_encode("ab\n", enc, 5), 2);
    assert_string_equal(enc, "ab");
    /* malformed escapes are kept as they are */
    bt_grpc_pct_decode("100%", 4, dec, sizeof dec);
    assert_string_equal(dec, "100%");
    bt_grpc_pct_decode("%zz%4", 5, dec, sizeof dec);
    assert_string_equal(dec, "%zz%4");
    /* the output is bounded */
    bt_grpc_pct_decode("abcdef", 6, dec, 4);
    assert_string_equal(dec, "abc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_pieces),
        cmocka_unit_test(test_reader_refusals),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_percent_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
