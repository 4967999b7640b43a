/* Subscription trie (MQTT 3.1.1 §4.7 matching: "a/#" matches "a", '+' matches an empty
 * level, wildcards in the first level do not match '$' topics). */
#include "trie.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static trie_node *node_new(trie_node *parent, const char *lv, size_t len)
{
    trie_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->level = malloc(len + 1);
    if (!n->level) {
        free(n);
        return NULL;
    }
    memcpy(n->level, lv, len);
    n->level[len] = 0;
    n->parent = parent;
    return n;
}

static trie_node *child_find(const trie_node *n, const char *lv, size_t len)
{
    if (len == 1 && lv[0] == '+')
        return n->plus;
    if (len == 1 && lv[0] == '#')
        return n->hash;
    for (size_t i = 0; i < n->nkids; i++) {
        trie_node *k = n->kids[i];
        if (!strncmp(k->level, lv, len) && k->level[len] == 0)
            return k;
    }
    return NULL;
}

static trie_node *child_get(trie_node *n, const char *lv, size_t len)
{
    trie_node *k = child_find(n, lv, len);
    if (k)
        return k;
    k = node_new(n, lv, len);
    if (!k)
        return NULL;
    if (len == 1 && lv[0] == '+') {
        n->plus = k;
    } else if (len == 1 && lv[0] == '#') {
        n->hash = k;
    } else {
        if (n->nkids == n->capkids) {
            size_t cap = n->capkids ? n->capkids * 2 : 4;
            trie_node **kids = realloc(n->kids, cap * sizeof *kids);
            if (!kids) {
                free(k->level);
                free(k);
                return NULL;
            }
            n->kids = kids;
            n->capkids = cap;
        }
        n->kids[n->nkids++] = k;
    }
    return k;
}

static void node_free(trie_node *n)
{
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    if (n->plus)
        node_free(n->plus);
    if (n->hash)
        node_free(n->hash);
    free(n->kids);
    free(n->subs);
    free(n->level);
    if (n->parent)
        free(n);
}

/* Removes nodes left without subscriptions or children, up to the root. */
static void prune(trie_node *n)
{
    while (n->parent && !n->nsubs && !n->nkids && !n->plus && !n->hash) {
        trie_node *p = n->parent;
        if (p->plus == n) {
            p->plus = NULL;
        } else if (p->hash == n) {
            p->hash = NULL;
        } else {
            for (size_t i = 0; i < p->nkids; i++)
                if (p->kids[i] == n) {
                    p->kids[i] = p->kids[--p->nkids];
                    break;
                }
        }
        node_free(n);
        n = p;
    }
}

static trie_node *walk(trie *t, const char *filter, bool create)
{
    trie_node *n = &t->root;
    const char *p = filter;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        n = create ? child_get(n, p, len) : child_find(n, p, len);
        if (!n || !e)
            return n;
        p = e + 1;
    }
}

int trie_add(trie *t, const char *filter, void *owner, uint8_t qos)
{
    trie_node *n = walk(t, filter, true);
    if (!n)
        return -1;
    for (size_t i = 0; i < n->nsubs; i++)
        if (n->subs[i].owner == owner) {
            n->subs[i].qos = qos;
            return 0;
        }
    if (n->nsubs == n->capsubs) {
        size_t cap = n->capsubs ? n->capsubs * 2 : 2;
        trie_sub *s = realloc(n->subs, cap * sizeof *s);
        if (!s) {
            prune(n);
            return -1;
        }
        n->subs = s;
        n->capsubs = cap;
    }
    n->subs[n->nsubs++] = (trie_sub){owner, qos};
    t->count++;
    return 0;
}

int trie_remove(trie *t, const char *filter, void *owner)
{
    trie_node *n = walk(t, filter, false);
    if (!n)
        return 0;
    for (size_t i = 0; i < n->nsubs; i++)
        if (n->subs[i].owner == owner) {
            n->subs[i] = n->subs[--n->nsubs];
            t->count--;
            prune(n);
            return 1;
        }
    return 0;
}

static void emit(const trie_node *n, trie_cb cb, void *arg)
{
    for (size_t i = 0; i < n->nsubs; i++)
        cb(n->subs[i].owner, n->subs[i].qos, arg);
}

/* p: the rest of the topic starting at a level; NULL when the topic ended at n. */
static void match_at(const trie_node *n, const char *p, bool first, trie_cb cb, void *arg)
{
    bool dollar = first && p && p[0] == '$';
    if (n->hash && !dollar)
        emit(n->hash, cb, arg); /* '#' here matches this level and all below, and the parent */
    if (!p) {
        emit(n, cb, arg);
        return;
    }
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    const char *rest = e ? e + 1 : NULL;
    if (n->plus && !dollar)
        match_at(n->plus, rest, false, cb, arg);
    for (size_t i = 0; i < n->nkids; i++) {
        const trie_node *k = n->kids[i];
        if (!strncmp(k->level, p, len) && k->level[len] == 0) {
            match_at(k, rest, false, cb, arg);
            break;
        }
    }
}

void trie_match(const trie *t, const char *topic, trie_cb cb, void *arg)
{
    match_at(&t->root, topic, true, cb, arg);
}

void trie_free(trie *t)
{
    node_free(&t->root);
    memset(t, 0, sizeof *t);
}
