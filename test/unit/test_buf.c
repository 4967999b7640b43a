/* The SDK's byte buffer (baetyl/buf.h), shared by the hub, the MQTT client and every piece of
 * code that builds a reply or a text piece by piece. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "baetyl/buf.h"

static void test_append_consume_and_reuse(void **state)
{
    (void)state;
    bt_buf b = {0};
    assert_int_equal(bt_buf_size(&b), 0);
    assert_int_equal(bt_buf_append(&b, "hello", 5), 0);
    assert_int_equal(bt_buf_size(&b), 5);
    assert_memory_equal(b.p + b.off, "hello", 5);
    size_t cap = b.cap;
    assert_true(cap >= 5);

    /* consuming from the front, then appending, reuses the consumed space */
    bt_buf_consume(&b, 3);
    assert_int_equal(bt_buf_size(&b), 2);
    assert_memory_equal(b.p + b.off, "lo", 2);
    uint8_t big[200];
    memset(big, 'x', sizeof big);
    while (b.len + 10 <= b.cap)
        assert_int_equal(bt_buf_append(&b, big, 10), 0);
    assert_int_equal(b.cap, cap);
    size_t live = bt_buf_size(&b);
    assert_int_equal(bt_buf_append(&b, big, 3), 0); /* moves the live bytes to the front */
    assert_int_equal(b.off, 0);
    assert_int_equal(b.cap, cap);
    assert_int_equal(bt_buf_size(&b), live + 3);
    assert_memory_equal(b.p, "lo", 2);

    /* an emptied buffer starts over at its beginning and keeps its memory */
    bt_buf_consume(&b, bt_buf_size(&b));
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 0);
    assert_non_null(b.p);
    bt_buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.cap, 0);
}

static void test_growth_keeps_bytes(void **state)
{
    (void)state;
    bt_buf b = {0};
    for (int i = 0; i < 100000; i++) {
        uint8_t c = (uint8_t)(i * 7);
        assert_int_equal(bt_buf_append(&b, &c, 1), 0);
    }
    assert_int_equal(bt_buf_size(&b), 100000);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(b.p[i], (uint8_t)(i * 7));
    /* reserve hands out room at the end without changing the size */
    uint8_t *w = bt_buf_reserve(&b, 1 << 20);
    assert_non_null(w);
    assert_ptr_equal(w, b.p + b.len);
    assert_int_equal(bt_buf_size(&b), 100000);
    assert_true(b.cap - b.len >= 1 << 20);
    /* an impossible size is refused, not wrapped (volatile: the compiler must not see it) */
    volatile size_t huge = SIZE_MAX;
    assert_null(bt_buf_reserve(&b, huge - 8));
    assert_int_equal(bt_buf_append(&b, "x", huge), -1);
    assert_int_equal(bt_buf_size(&b), 100000);
    bt_buf_free(&b);
}

static void test_empty_appends(void **state)
{
    (void)state;
    /* nothing appended to an empty buffer is not an error */
    bt_buf b = {0};
    assert_int_equal(bt_buf_append(&b, NULL, 0), 0);
    assert_int_equal(bt_buf_size(&b), 0);
    bt_buf_free(&b);
}

static void test_trim(void **state)
{
    (void)state;
    bt_buf b = {0};
    assert_int_equal(bt_buf_append(&b, "abc", 3), 0);
    bt_buf_trim(&b, 0); /* not empty: kept */
    assert_non_null(b.p);
    bt_buf_consume(&b, 3);
    bt_buf_trim(&b, 1 << 20); /* small: kept */
    assert_non_null(b.p);
    bt_buf_trim(&b, 0); /* empty: freed */
    assert_null(b.p);
    assert_int_equal(b.cap, 0);
    bt_buf_trim(&b, 0); /* nothing to free */
    assert_null(b.p);
}

static void test_append_nul(void **state)
{
    (void)state;
    bt_buf b = {0};
    assert_int_equal(bt_buf_append_nul(&b, "", 0), 0); /* a valid empty string */
    assert_non_null(b.p);
    assert_string_equal((char *)b.p, "");
    assert_int_equal(b.len, 0);
    assert_int_equal(bt_buf_append_nul(&b, "ab", 2), 0);
    assert_int_equal(bt_buf_append_nul(&b, "c\0d", 3), 0); /* bytes, NULs included */
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.p, "abc\0d", 6);
    volatile size_t huge = SIZE_MAX;
    assert_int_equal(bt_buf_append_nul(&b, "x", huge), -1);
    assert_int_equal(b.len, 5);
    bt_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_consume_and_reuse),
        cmocka_unit_test(test_growth_keeps_bytes),
        cmocka_unit_test(test_empty_appends),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_append_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
