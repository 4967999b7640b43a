/* CRC-32C: the known answers (RFC 3720 B.4), and the CPU's instruction path agreeing with
 * the table path at every length and alignment, whole and in pieces. On a CPU without the
 * instruction both are the table: the emulated platforms' runs cover the ARMv8 path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../../hub/crc32c.h"

static void test_known_answers(void **state)
{
    (void)state;
    uint8_t buf[32];
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c_portable(0, "123456789", 9), 0xE3069283u);
    memset(buf, 0, sizeof buf);
    assert_int_equal(crc32c(0, buf, sizeof buf), 0x8A9136AAu);
    memset(buf, 0xFF, sizeof buf);
    assert_int_equal(crc32c(0, buf, sizeof buf), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(crc32c(0, buf, sizeof buf), 0x46DD794Eu);
    assert_int_equal(crc32c(0, buf, 0), 0);
}

static void test_paths_agree(void **state)
{
    (void)state;
    static uint8_t buf[2100];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= 2048; n += n < 64 ? 1 : 61) {
            uint32_t want = crc32c_portable(0, buf + off, n);
            assert_int_equal(crc32c(0, buf + off, n), want);
            size_t cut = n / 3;
            assert_int_equal(crc32c(crc32c(0, buf + off, cut), buf + off + cut, n - cut), want);
            assert_int_equal(
                crc32c_portable(crc32c_portable(0, buf + off, cut), buf + off + cut, n - cut),
                want);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_paths_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
