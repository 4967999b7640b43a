/* libFuzzer target for the topic rules: the input is split at its first '\n' (or in the
 * middle) into a filter/permit and a name/topic. Validation, matching and permit checks
 * must never crash, and must agree with each other where the SPEC says they do. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/topic.h"

static char *dup_n(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t cut = nl ? (size_t)(nl - data) : size / 2;
    size_t rest = nl ? cut + 1 : cut;
    size_t alen = cut, blen = size - rest;

    /* Raw bytes (NULs included) through the validators. */
    bool a_name = bt_topic_valid_name((const char *)data, alen);
    bool a_filter = bt_topic_valid_filter((const char *)data, alen);
    bool b_name = bt_topic_valid_name((const char *)data + rest, blen);
    bool b_filter = bt_topic_valid_filter((const char *)data + rest, blen);
    if (a_name && !a_filter)
        abort(); /* every valid name is a valid filter */
    if (b_name && !b_filter)
        abort();

    char *a = dup_n(data, alen);
    char *b = dup_n(data + rest, blen);

    /* Any strings, valid or not: no crash. */
    bool m = bt_topic_match(a, b);
    bool p = bt_topic_permit(a, b);
    (void)bt_topic_match(b, a);
    (void)bt_topic_permit(b, a);

    if (a_name && (!bt_topic_match(a, a) || !bt_topic_permit(a, a)))
        abort(); /* a name matched by itself as filter */
    if (b_name && (!bt_topic_match(b, b) || !bt_topic_permit(b, b)))
        abort();
    if (a_filter && !bt_topic_permit(a, a))
        abort(); /* a permit allows subscribing to exactly itself */
    /* Against a plain name, a permit behaves exactly like a subscription filter. */
    if (a_filter && b_name && m != p)
        abort();
    /* '#' allows and matches every valid topic. */
    if (b_name && !bt_topic_match("#", b))
        abort();
    if (b_filter && !bt_topic_permit("#", b))
        abort();

    free(a);
    free(b);
    return 0;
}
