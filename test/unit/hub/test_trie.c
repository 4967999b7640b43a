/* Subscription trie: MQTT matching rules, removal and pruning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../../hub/trie.h"

typedef struct {
    int hits[8];
    int qos[8];
} seen;

static void cb(void *owner, uint8_t qos, void *arg)
{
    seen *s = arg;
    int i = (int)(intptr_t)owner;
    s->hits[i]++;
    s->qos[i] = qos;
}

static seen match(trie *t, const char *topic)
{
    seen s;
    memset(&s, 0, sizeof s);
    trie_match(t, topic, cb, &s);
    return s;
}

static void test_matching(void **state)
{
    trie t = {0};
    assert_int_equal(trie_add(&t, "a/#", (void *)1, 1), 0);
    assert_int_equal(trie_add(&t, "a/+", (void *)2, 0), 0);
    assert_int_equal(trie_add(&t, "+/+/c", (void *)3, 1), 0);
    assert_int_equal(trie_add(&t, "#", (void *)4, 0), 0);
    assert_int_equal(trie_add(&t, "a", (void *)5, 1), 0);
    assert_int_equal(trie_add(&t, "a//c", (void *)6, 1), 0);

    seen s = match(&t, "a");
    assert_int_equal(s.hits[1], 1); /* a/# matches a */
    assert_int_equal(s.hits[2], 0);
    assert_int_equal(s.hits[4], 1);
    assert_int_equal(s.hits[5], 1);

    s = match(&t, "a/b");
    assert_int_equal(s.hits[1], 1);
    assert_int_equal(s.hits[2], 1);
    assert_int_equal(s.hits[3], 0);
    assert_int_equal(s.hits[5], 0);

    s = match(&t, "a//c"); /* '+' matches an empty level */
    assert_int_equal(s.hits[3], 1);
    assert_int_equal(s.hits[6], 1);
    assert_int_equal(s.hits[2], 0);

    s = match(&t, "$SYS/x/c"); /* no wildcard match on '$' first level */
    assert_int_equal(s.hits[3], 0);
    assert_int_equal(s.hits[4], 0);
    assert_int_equal(t.count, 6);
    trie_free(&t);
}

static void test_replace_and_remove(void **state)
{
    trie t = {0};
    assert_int_equal(trie_add(&t, "x/y", (void *)1, 0), 0);
    assert_int_equal(trie_add(&t, "x/y", (void *)1, 1), 0); /* replaces the QoS */
    assert_int_equal(t.count, 1);
    seen s = match(&t, "x/y");
    assert_int_equal(s.hits[1], 1);
    assert_int_equal(s.qos[1], 1);
    assert_int_equal(trie_remove(&t, "x/y", (void *)2), 0);
    assert_int_equal(trie_remove(&t, "x/y", (void *)1), 1);
    assert_int_equal(trie_remove(&t, "x/y", (void *)1), 0);
    s = match(&t, "x/y");
    assert_int_equal(s.hits[1], 0);
    /* pruned back to an empty root */
    assert_int_equal(t.root.nkids, 0);
    assert_int_equal(t.count, 0);
    trie_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matching),
        cmocka_unit_test(test_replace_and_remove),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
