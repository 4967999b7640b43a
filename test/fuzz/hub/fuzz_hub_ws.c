/* libFuzzer target: bytes from a WebSocket client into a hub connection through the hub's
 * WebSocket transport (hub/transport_ws.c) over a memory reader, so the glue is fuzzed:
 * handshake then frames in one read, in-place decoding into the shared read buffer, MQTT
 * packets split across frames and reads, answers and close frames written back.
 * Input byte 0: bit 0 = prepend a valid upgrade request, bit 1 = then a masked CONNECT
 * frame (to reach the packet handlers), bits 2..7 = read size (1..64 bytes, or 64 KiB when
 * all set). The WebSocket layer itself has its own target (test/fuzz/fuzz_ws.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../../hub/hub.h"

static const char CONF[] = "listen: ['ws://127.0.0.1:1/mqtt']\n"
                           "message: {length: {max: 2k}}\n"
                           "principals:\n"
                           "  - username: u\n    password: p\n"
                           "    permissions:\n"
                           "      - {action: pub, permit: ['#']}\n"
                           "      - {action: sub, permit: ['#']}\n";

static const char UPGRADE[] =
    "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n";
/* A binary frame masked with key 1,2,3,4 holding CONNECT "f" u/p, clean session. */
static const uint8_t CONNECT[] = {0x10, 0x13, 0, 4,   'M', 'Q', 'T', 'T', 4, 0xC2, 0,
                                  60,   0,    1, 'f', 0,   1,   'u', 0,   1, 'p'};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static hub_config cfg;
    static int loaded;
    if (!loaded) {
        char err[256];
        bt_log_set_level(BT_LOG_ERROR);
        if (bt_cfg_load_string(&hub_config_schema, &cfg, CONF, strlen(CONF), err, sizeof err) < 0)
            abort();
        loaded = 1;
    }
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    size_t pre = 0;
    uint8_t *in = malloc(sizeof UPGRADE + 6 + sizeof CONNECT + size);
    if (!in)
        abort();
    if (mode & 1) {
        memcpy(in, UPGRADE, sizeof UPGRADE - 1);
        pre = sizeof UPGRADE - 1;
        if (mode & 2) {
            static const uint8_t key[4] = {1, 2, 3, 4};
            in[pre++] = 0x82;
            in[pre++] = 0x80 | (uint8_t)sizeof CONNECT;
            memcpy(in + pre, key, 4);
            pre += 4;
            for (size_t i = 0; i < sizeof CONNECT; i++)
                in[pre + i] = CONNECT[i] ^ key[i & 3];
            pre += sizeof CONNECT;
        }
    }
    memcpy(in + pre, data, size);
    size_t chunk = (mode >> 2) == 63 ? 65536 : (size_t)(mode >> 2) + 1;

    hub h;
    char err[256];
    if (hub_init(&h, &cfg, NULL, err, sizeof err) < 0)
        abort();
    uint64_t ws_max = (uint64_t)cfg.length_max + BT_MQTT_MAX_HEADER + 64 * 1024;
    transport *t = transport_ws_new(transport_mem_reader_new(in, pre + size, chunk), ws_max);
    if (!t)
        abort();
    conn *c = conn_new(&h, t);
    /* Each call is one readiness event; the reader reports EOF after the input. */
    for (size_t turns = 0; turns <= pre + size + 1; turns++) {
        conn_on_readable(c);
        hub_turn_end(&h); /* frees c once closed (also by a failed flush in there) */
        if (!h.conns)
            break;
    }
    hub_shutdown(&h);
    free(in);
    return 0;
}
