/* libFuzzer target for the files the master reads: application.yml (schema + the master's
 * own checks: paths escaping the work dir, images, duplicates), application.stats (YAML to
 * JSON, aliases and depth bounded) and the API address of conf.yml.
 *
 * The fuzz build links only the SDK, so the master's sources are compiled in here. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <baetyl/log.h>

#include "../../../master/app.h"
#include "../../../master/conf.h"
#include "../../../master/stats_file.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        bt_log_set_level(BT_LOG_ERROR); /* template warnings would flood the output */
        quiet = 1;
    }
    char err[512];
    app_config app;
    if (app_load_string((const char *)data, size, &app, err, sizeof err) == 0) {
        app_check_mounts(&app, err, sizeof err);
        for (size_t i = 0; i < app.services.n; i++)
            app_service_unchanged(&app, &app, APP_SERVICE(&app, i)->name);
        app_free(&app);
    }
    json_t *j = yaml_text_to_json((const char *)data, size, err, sizeof err);
    json_decref(j);
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = '\0';
        bt_api_addr a;
        if (bt_api_addr_parse(s, "/w", &a, err, sizeof err) == 0)
            bt_api_addr_free(&a);
        char *out = malloc(size + 1);
        if (out) {
            bt_path_clean_rel(s, out, size + 1);
            free(out);
        }
        free(s);
    }
    return 0;
}
