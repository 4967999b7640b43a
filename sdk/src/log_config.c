/* The `logger:` section every module embeds (SPEC §18), as a config schema. */
#include "baetyl/config.h"
#include "baetyl/log.h"

static const bt_cfg_field logger_fields[] = {
    BT_FIELD(bt_logger_config, path, "path", BT_CFG_STRING),
    BT_FIELD(bt_logger_config, level, "level", BT_CFG_STRING, .def = "info",
             .choices = "debug|info|warn|error"),
    BT_FIELD(bt_logger_config, format, "format", BT_CFG_STRING, .def = "text",
             .choices = "text|json"),
    /* Negative limits mean nothing to rotation; 0 is left to the logger to interpret. */
    BT_FIELD(bt_logger_config, age_max, "age.max", BT_CFG_INT, .def = "15", .flags = BT_CFG_RANGE,
             .min = 0, .max = 2147483647),
    BT_FIELD(bt_logger_config, size_max, "size.max", BT_CFG_INT, .def = "50", .flags = BT_CFG_RANGE,
             .min = 0, .max = 2147483647),
    BT_FIELD(bt_logger_config, backup_max, "backup.max", BT_CFG_INT, .def = "15",
             .flags = BT_CFG_RANGE, .min = 0, .max = 2147483647),
    {0},
};

const bt_cfg_schema bt_logger_schema = {sizeof(bt_logger_config), logger_fields, NULL};
