/* CRC-32C (Castagnoli), the checksum of the write-ahead log's records and headers.
 * The CPU's own instruction where it has one (x86-64 SSE4.2, ARMv8 CRC32), else a
 * slicing-by-8 table: at a few hundred commits a second of ~15 KiB each the byte-wise
 * table cost a tenth of the hub's CPU. */
#ifndef HUB_CRC32C_H
#define HUB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of p[0..n) continued from crc (0 to start). */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

/* The table version whatever the CPU has: the unit test checks the two agree. */
uint32_t crc32c_portable(uint32_t crc, const void *p, size_t n);

#endif
