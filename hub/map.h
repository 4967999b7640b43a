/* A small string-keyed hash map (chaining) for client ids, sessions and retained topics. */
#ifndef HUB_MAP_H
#define HUB_MAP_H

#include <stddef.h>

typedef struct map_node {
    struct map_node *next;
    void *value;
    size_t hash;
    char key[];
} map_node;

typedef struct {
    map_node **b;
    size_t nb, n;
} map;

/* The value for key, or NULL. */
void *map_get(const map *m, const char *key);
/* Sets key to value (replacing; the old value is returned through *old when not NULL).
 * Returns 0 or -1 (no memory). */
int map_put(map *m, const char *key, void *value, void **old);
/* Removes key; returns its value or NULL. */
void *map_del(map *m, const char *key);
/* Calls fn for every entry (do not modify the map inside). */
void map_each(const map *m, void (*fn)(const char *key, void *value, void *arg), void *arg);
/* Frees the map's nodes (not the values). */
void map_free(map *m);

#endif
