/* What happens after inference (SPEC §16): the function's JSON reply decides whether the
 * frame is kept (imageDiscard, imageLocation) and where the result is published
 * (publishTopic, publishQOS); the published message is that JSON plus the image fields. */
#ifndef VI_AFTER_H
#define VI_AFTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The function's decision about one frame. */
typedef struct {
    bool discard;   /* imageDiscard: true (or the string "true", any case) */
    char *location; /* imageLocation; NULL when absent, empty or not a string */
    char *topic;    /* publishTopic; NULL when absent or empty: nothing is published */
    int qos;        /* publishQOS: 0 (default) or 1 */
    json_t *body;   /* the whole reply (an object), or NULL for an empty reply */
} vi_result;

/* Facts about the frame added to the published message. */
typedef struct {
    int width, height;  /* imageWidth, imageHight */
    int64_t capture_ns; /* imageCaptureTime: unix time in ns, written as RFC 3339 */
    double infer_s;     /* imageInferenceTime: seconds spent in the network */
    double process_s;   /* imageProcessTime: seconds from capture to publish */
} vi_image_info;

/* Reads the function's reply into r (zeroed first). An empty reply means "nothing to do"
 * (0, everything empty). Returns 0, or -1 with err when the reply is not a JSON object or
 * publishTopic/publishQOS are unusable; r is then empty. */
int vi_result_parse(const uint8_t *payload, size_t len, vi_result *r, char *err, size_t errlen);
/* The message to publish: r's JSON with the image fields set (they replace the
 * function's own keys of the same name). Malloc'd compact JSON, or NULL with err. */
char *vi_result_message(const vi_result *r, const vi_image_info *info, char *err, size_t errlen);
/* Frees what r holds and zeroes it. */
void vi_result_free(vi_result *r);

/* Go's time.RFC3339Nano of unix_ns in the local zone ("2019-10-08T12:56:58.5+08:00",
 * "…Z" at offset 0; trailing zeros of the fraction dropped). Returns 0 or -1 (no room). */
int vi_format_time(int64_t unix_ns, char *buf, size_t len);

/* Writes data to path through a temporary file and a rename, so readers never see half a
 * file; the parent directories are created (0755) when missing. 0, or -1 with err. */
int vi_save_file(const char *path, const void *data, size_t len, char *err, size_t errlen);

#endif
