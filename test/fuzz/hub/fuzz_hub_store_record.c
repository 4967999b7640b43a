/* libFuzzer target: bytes read back from the store as a message record (log, retained,
 * will) and as a session's subscription record (hub/store_record.c). Whatever decodes must
 * encode back to the same bytes (the layouts have one spelling each), so a decoder that
 * accepts more than the encoder writes is caught too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../../hub/store_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[200];
    store_msg m;
    if (store_msg_decode(data, size, &m, err, sizeof err) == 0) {
        /* a plain record of the old layout may say "no 5.0 block" only one way */
        if (store_msg_check(&m, 0, err, sizeof err) != 0 || store_msg_size(&m) != size)
            abort();
        uint8_t *out = malloc(size);
        store_msg_encode(&m, out);
        if (memcmp(out, data, size) != 0)
            abort();
        free(out);
    }
    store_sub *subs = NULL;
    size_t n = 0;
    char *owner = NULL;
    if (store_subs_decode(data, size, &subs, &n, &owner, err, sizeof err) == 0) {
        size_t need = store_subs_size(subs, n, owner, err, sizeof err);
        if (need != size)
            abort();
        uint8_t *out = malloc(size);
        store_subs_encode(subs, n, owner, out);
        if (memcmp(out, data, size) != 0)
            abort();
        free(out);
        free(subs);
        free(owner);
    }
    return 0;
}
