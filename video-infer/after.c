/* The function's reply (after.h): parsed as hostile input, since a user's function
 * writes it; and the files and messages that come out of it. */
#include "after.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "baetyl/json.h"
#include "baetyl/util.h"
#include "baetyl/mqtt_client.h"

void vi_result_free(vi_result *r)
{
    free(r->location);
    free(r->topic);
    json_decref(r->body);
    memset(r, 0, sizeof *r);
}

static bool is_discard(const json_t *v)
{
    if (json_is_true(v))
        return true;
    return json_is_string(v) && strcasecmp(json_string_value(v), "true") == 0;
}

/* publishQOS as a JSON number 0 or 1 (1.0 counts: JSON has one number type). */
static int parse_qos(const json_t *v, int *qos, char *err, size_t errlen)
{
    double d;
    if (!v || json_is_null(v)) {
        *qos = 0;
        return 0;
    }
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v))
        d = json_real_value(v);
    else
        d = -1;
    if (d != 0 && d != 1) {
        snprintf(err, errlen, "publishQOS must be 0 or 1");
        return -1;
    }
    *qos = (int)d;
    return 0;
}

int vi_result_parse(const uint8_t *payload, size_t len, vi_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (len == 0)
        return 0;
    char why[200];
    json_t *o = bt_json_parse_object((const char *)payload, len, why, sizeof why);
    if (!o) {
        snprintf(err, errlen, "the function's result is not a JSON object: %s", why);
        return -1;
    }
    r->body = o;
    r->discard = is_discard(json_object_get(o, "imageDiscard"));
    const char *loc = bt_json_get_str(o, "imageLocation");
    const json_t *t = json_object_get(o, "publishTopic");
    const char *topic = json_is_string(t) ? json_string_value(t) : NULL;
    if (t && !json_is_null(t) && !topic) {
        snprintf(err, errlen, "publishTopic must be a string");
        goto fail;
    }
    if (topic && *topic) {
        /* strlen stops at an embedded NUL that jansson allows inside strings. */
        if (strlen(topic) != json_string_length(t) || !bt_mqtt_client_valid_name(topic)) {
            snprintf(err, errlen, "publishTopic is not a valid topic name");
            goto fail;
        }
    }
    if (parse_qos(json_object_get(o, "publishQOS"), &r->qos, err, errlen) < 0)
        goto fail;
    if (loc && *loc) {
        if (strlen(loc) != json_string_length(json_object_get(o, "imageLocation"))) {
            snprintf(err, errlen, "imageLocation holds a NUL character");
            goto fail;
        }
        if (!(r->location = strdup(loc)))
            goto oom;
    }
    if (topic && *topic && !(r->topic = strdup(topic)))
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    vi_result_free(r);
    return -1;
}

int vi_format_time(int64_t unix_ns, char *buf, size_t len)
{
    time_t sec = (time_t)(unix_ns / 1000000000);
    long ns = (long)(unix_ns % 1000000000);
    if (ns < 0) {
        ns += 1000000000;
        sec--;
    }
    struct tm tm;
    if (!localtime_r(&sec, &tm))
        return -1;
    char date[40], frac[16] = "", zone[16];
    if (strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return -1;
    if (ns) {
        snprintf(frac, sizeof frac, ".%09ld", ns);
        size_t n = strlen(frac);
        while (frac[n - 1] == '0')
            frac[--n] = '\0';
    }
    int off = (int)(tm.tm_gmtoff % 86400); /* real zones lie within ±14 h */
    if (off == 0)
        snprintf(zone, sizeof zone, "Z");
    else
        snprintf(zone, sizeof zone, "%c%02d:%02d", off < 0 ? '-' : '+', abs(off) / 3600,
                 abs(off) % 3600 / 60);
    int n = snprintf(buf, len, "%s%s%s", date, frac, zone);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

char *vi_result_message(const vi_result *r, const vi_image_info *info, char *err, size_t errlen)
{
    char when[64];
    if (vi_format_time(info->capture_ns, when, sizeof when) < 0) {
        snprintf(err, errlen, "cannot format the capture time");
        return NULL;
    }
    json_t *o = r->body ? json_deep_copy(r->body) : json_object();
    if (!o || json_object_set_new(o, "imageWidth", json_integer(info->width)) < 0 ||
        json_object_set_new(o, "imageHight", json_integer(info->height)) < 0 ||
        json_object_set_new(o, "imageCaptureTime", json_string(when)) < 0 ||
        json_object_set_new(o, "imageInferenceTime", json_real(info->infer_s)) < 0 ||
        json_object_set_new(o, "imageProcessTime", json_real(info->process_s)) < 0) {
        json_decref(o);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    char *s = bt_json_dump(o);
    json_decref(o);
    if (!s)
        snprintf(err, errlen, "out of memory");
    return s;
}

int vi_save_file(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    char why[512];
    if (!path || !*path || path[strlen(path) - 1] == '/') {
        snprintf(err, errlen, "save %s: not a file path", path ? path : "");
        return -1;
    }
    if (bt_mkdir_parents(path, why, sizeof why) < 0 ||
        bt_write_file_atomic(path, data, len, 0644, why, sizeof why) < 0) {
        snprintf(err, errlen, "save %s: %s", path, why);
        return -1;
    }
    return 0;
}
