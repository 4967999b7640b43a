/* The event loop: epoll over listeners, connections and the module's stop fd; one turn handles
 * every ready descriptor, then the hub's end-of-turn work (commit, flush). */
#ifndef HUB_LOOP_H
#define HUB_LOOP_H

#include <stddef.h>

/* Tags: the first int of every object registered with epoll. */
enum { LOOP_CONN = 1, LOOP_LISTENER, LOOP_STOP, LOOP_STORE };

struct hub;

/* Called after each tick (~100 ms) with the hub, e.g. to publish counters. */
typedef void (*loop_tick_fn)(struct hub *h, void *arg);

/* Runs until stop_fd (bt_ctx_stop_fd, or -1 for none) becomes readable. Listeners are
 * registered by the loop. Returns 0, or -1 + err if epoll cannot be set up. */
int loop_run(struct hub *h, void *listeners, size_t nlisteners, int stop_fd, loop_tick_fn on_tick,
             void *arg, char *err, size_t errlen);

#endif
