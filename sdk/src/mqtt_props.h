/* MQTT 5.0 property reading and writing, internal to the codec (mqtt_decode.c,
 * mqtt_encode.c, mqtt_codec.c). */
#ifndef BT_MQTT_PROPS_H
#define BT_MQTT_PROPS_H

#include "baetyl/mqtt_codec.h"

/* Property value types. */
enum { PK_NONE, PK_BYTE, PK_U16, PK_U32, PK_VAR, PK_STR, PK_BIN, PK_PAIR };

/* Type of a property identifier, PK_NONE for an unknown one. */
int bt_mqtt_prop_kind(uint8_t id);

/* Variable byte integers: size, write, and read with the shortest-form rule (0 or -1 + why). */
size_t bt_mqtt_varint_len(uint32_t v);
uint8_t *bt_mqtt_put_varint(uint8_t *b, uint32_t v);
int bt_mqtt_get_varint(const uint8_t **pos, const uint8_t *end, uint32_t *v, const char *what,
                       char *err, size_t errlen);

/* Reads a property length and the set it covers at *pos, checked for `type` (0 = will). */
int bt_mqtt_props_read(const uint8_t **pos, const uint8_t *end, int type, bt_mqtt_props *out,
                       char *err, size_t errlen);
/* Encoded size of ps with its length prefix, or -1 when ps breaks a rule for `type`. */
ssize_t bt_mqtt_props_size(const bt_mqtt_props *ps, int type, char *err, size_t errlen);
/* Writes ps with its length prefix (checked by bt_mqtt_props_size first). */
uint8_t *bt_mqtt_props_write(uint8_t *b, const bt_mqtt_props *ps);
/* Same properties in the same order (raw or listed). */
bool bt_mqtt_props_equal(const bt_mqtt_props *a, const bt_mqtt_props *b);

#endif
