/* ota.log (SPEC §9, §15): the agent follows the lines of its trace. The lines themselves
 * are written and read by the SDK (baetyl/otalog.h), like the master's. */
#include <stdlib.h>
#include <string.h>

#include "agent.h"

json_t *otalog_records(const char *path, const char *trace)
{
    json_t *out = json_array();
    size_t len = 0;
    char *text = out ? bt_otalog_tail(path, &len) : NULL;
    if (!text)
        return out;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(line, 0, NULL);
        const char *t = json_string_value(json_object_get(o, "trace"));
        const char *step = json_string_value(json_object_get(o, "step"));
        if (t && step && trace && !strcmp(t, trace)) {
            /* A trace sent again starts over at its latest RECEIVED. */
            if (!strcmp(step, OTA_RECEIVED))
                json_array_clear(out);
            json_t *r = json_pack("{s:s,s:s,s:s}", "time",
                                  json_string_value(json_object_get(o, "time")) ?: "", "step", step,
                                  "trace", t);
            const char *e = json_string_value(json_object_get(o, "error"));
            if (r && e && *e)
                json_object_set_new(r, "error", json_string(e));
            if (r)
                json_array_append_new(out, r);
        }
        json_decref(o);
    }
    free(text);
    return out;
}

bool otalog_finished(const json_t *records, const char **step)
{
    size_t n = json_array_size(records);
    const char *s =
        n ? json_string_value(json_object_get(json_array_get(records, n - 1), "step")) : NULL;
    if (step)
        *step = s;
    return s && (!strcmp(s, OTA_UPDATED) || !strcmp(s, OTA_ROLLEDBACK) || !strcmp(s, OTA_FAILURE) ||
                 !strcmp(s, OTA_TIMEOUT));
}
