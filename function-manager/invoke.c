/* One invocation of a function for a message (SPEC §12): the attempts (retry.max in all),
 * and the size limit checked before any instance is involved. */
#include <stdio.h>
#include <string.h>

#include "fm.h"
#include "metrics.h"

int fm_invoke_fits(fm_pool *p, const bt_fn_msg *in, char *err, size_t errlen)
{
    const fm_function_cfg *f = fm_pool_function(p);
    size_t size = bt_fn_msg_encoded_size(in);
    if (size <= (size_t)f->call.message_max)
        return 0;
    snprintf(err, errlen,
             "message too large: %zu bytes (payload %zu), function (%s) accepts at most %lld "
             "(message.length.max)",
             size, in->payload_len, f->name, (long long)f->call.message_max);
    return -1;
}

int fm_invoke(fm_pool *p, const bt_fn_msg *in, long attempts, bt_fn_msg *out, char *err,
              size_t errlen)
{
    memset(out, 0, sizeof *out);
    int64_t t0 = fm_metrics_clock();
    if (fm_invoke_fits(p, in, err, errlen) < 0) {
        /* Every attempt would fail the same way: fail once, without touching instances. */
        fm_metrics_invoked(p, t0, -1, 1);
        return -1;
    }
    if (attempts < 1)
        attempts = 1;
    for (long i = 0; i < attempts; i++) {
        int rc = fm_pool_call(p, in, out, err, errlen);
        if (rc == BT_FN_OK) {
            fm_metrics_invoked(p, t0, 0, i + 1);
            return 0;
        }
        if (fm_pool_closed(p))
            return -2;
    }
    fm_metrics_invoked(p, t0, -1, attempts);
    return -1;
}
