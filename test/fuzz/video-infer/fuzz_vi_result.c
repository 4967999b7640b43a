/* libFuzzer target: arbitrary bytes as a function's reply to video-infer (after.h): parsed,
 * then turned into the message that would be published. Linked with video-infer's objects
 * (test/fuzz/video-infer/: everything in video-infer/ but main.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../../video-infer/after.h"
#include "baetyl/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        bt_log_set_level(BT_LOG_ERROR);
        quiet = 1;
    }
    vi_result r;
    char err[512];
    if (vi_result_parse(data, size, &r, err, sizeof err) < 0) {
        if (r.body || r.topic || r.location || !err[0])
            abort(); /* a failed parse leaves nothing behind and says why */
        return 0;
    }
    if (r.topic && (!*r.topic || strpbrk(r.topic, "+#")))
        abort(); /* only a usable topic name comes out */
    if (r.qos != 0 && r.qos != 1)
        abort();
    vi_image_info info = {.width = 640,
                          .height = 480,
                          .capture_ns = (int64_t)size * 1000003 - 500000000,
                          .infer_s = 0.01,
                          .process_s = 0.02};
    char *msg = vi_result_message(&r, &info, err, sizeof err);
    if (!msg || !strstr(msg, "\"imageHight\":480"))
        abort();
    free(msg);
    vi_result_free(&r);
    return 0;
}
