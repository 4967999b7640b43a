/* String-keyed hash map: FNV-1a, chaining, doubles at load factor 1. */
#include "map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t map_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* 64-bit FNV-1a on every platform, folded on 32-bit */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return (size_t)(h ^ (h >> 32));
}

void *map_get(const map *m, const char *key)
{
    if (!m->nb)
        return NULL;
    size_t h = map_hash(key);
    for (map_node *n = m->b[h & (m->nb - 1)]; n; n = n->next)
        if (n->hash == h && !strcmp(n->key, key))
            return n->value;
    return NULL;
}

static int map_grow(map *m)
{
    size_t nb = m->nb ? m->nb * 2 : 16;
    map_node **b = calloc(nb, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < m->nb; i++) {
        map_node *n = m->b[i];
        while (n) {
            map_node *next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
            n = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

int map_put(map *m, const char *key, void *value, void **old)
{
    if (old)
        *old = NULL;
    size_t h = map_hash(key);
    if (m->nb) {
        for (map_node *n = m->b[h & (m->nb - 1)]; n; n = n->next)
            if (n->hash == h && !strcmp(n->key, key)) {
                if (old)
                    *old = n->value;
                n->value = value;
                return 0;
            }
    }
    if (m->n >= m->nb && map_grow(m) < 0)
        return -1;
    size_t kl = strlen(key);
    map_node *n = malloc(sizeof *n + kl + 1);
    if (!n)
        return -1;
    memcpy(n->key, key, kl + 1);
    n->hash = h;
    n->value = value;
    n->next = m->b[h & (m->nb - 1)];
    m->b[h & (m->nb - 1)] = n;
    m->n++;
    return 0;
}

void *map_del(map *m, const char *key)
{
    if (!m->nb)
        return NULL;
    size_t h = map_hash(key);
    for (map_node **pp = &m->b[h & (m->nb - 1)]; *pp; pp = &(*pp)->next) {
        map_node *n = *pp;
        if (n->hash == h && !strcmp(n->key, key)) {
            void *v = n->value;
            *pp = n->next;
            free(n);
            m->n--;
            return v;
        }
    }
    return NULL;
}

void map_each(const map *m, void (*fn)(const char *key, void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < m->nb; i++)
        for (map_node *n = m->b[i]; n; n = n->next)
            fn(n->key, n->value, arg);
}

void map_free(map *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        map_node *n = m->b[i];
        while (n) {
            map_node *next = n->next;
            free(n);
            n = next;
        }
    }
    free(m->b);
    m->b = NULL;
    m->nb = m->n = 0;
}
