/* Subscription trie: one node per topic level, '+' and '#' children apart, so matching a
 * topic walks its levels once instead of testing every subscription. */
#ifndef HUB_TRIE_H
#define HUB_TRIE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    void *owner;
    uint8_t qos;
} trie_sub;

typedef struct trie_node {
    char *level;
    struct trie_node *parent;
    struct trie_node **kids; /* literal levels */
    size_t nkids, capkids;
    struct trie_node *plus, *hash;
    trie_sub *subs;
    size_t nsubs, capsubs;
} trie_node;

typedef struct {
    trie_node root;
    size_t count; /* subscriptions */
} trie;

/* Adds owner's subscription to filter (replaces its QoS when present). 0 or -1 (no memory). */
int trie_add(trie *t, const char *filter, void *owner, uint8_t qos);
/* Removes owner's subscription to filter; 1 when removed, 0 when absent. */
int trie_remove(trie *t, const char *filter, void *owner);
typedef void (*trie_cb)(void *owner, uint8_t qos, void *arg);
/* Calls cb for every subscription whose filter matches the topic name (once per filter). */
void trie_match(const trie *t, const char *topic, trie_cb cb, void *arg);
/* Frees every node. */
void trie_free(trie *t);

#endif
