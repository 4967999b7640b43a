/* MQTT topic names and filters, exactly as SPEC §11 says: at most 255 bytes, at most 8 '/'
 * separators, no U+0000, no leading '$'; names have no wildcards; in filters '+' fills a
 * whole level and '#' is a whole last level. Shared by the hub and every client. */
#ifndef BAETYL_TOPIC_H
#define BAETYL_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#define BT_TOPIC_MAX_LEN 255
#define BT_TOPIC_MAX_SEPARATORS 8

/* True when s[0..len) is a valid topic name for PUBLISH. */
bool bt_topic_valid_name(const char *s, size_t len);
/* True when s[0..len) is a valid topic filter for SUBSCRIBE. */
bool bt_topic_valid_filter(const char *s, size_t len);
/* True when filter matches name: "a/#" matches "a", "+" matches an empty level. Both are
 * NUL-terminated and assumed valid. */
bool bt_topic_match(const char *filter, const char *name);
/* Permission check (SPEC §11 Authorisation): true when `permit` allows acting on `topic`,
 * which may itself be a filter: its wildcard levels only match wildcard levels of the
 * permit ("test/#" allows "test/+", "test/a" does not). */
bool bt_topic_permit(const char *permit, const char *topic);

#endif
