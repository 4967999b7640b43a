/* Append throughput of the hub's store (hub/store*.c) for group-commit batches of 1 to 2000
 * messages of 100 bytes (the hub's group commit takes up to 2048), with sync on and off.
 * Not part of `make test`; build it by hand from the repository root:
 *
 *   gcc -O2 -std=gnu11 -D_GNU_SOURCE -Isdk/include -o /tmp/store_bench test/bench/store_bench.c \
 *       hub/store*.c sdk/src/error.c sdk/src/util*.c -llmdb -lpthread
 *   /tmp/store_bench [dir (default: a new dir under /tmp)] [seconds per case (default 2)]
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../hub/store.h"

#define MAX_COMMITS 2000000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Appends batches for `seconds`; prints one table row. */
static int run(const char *base, int sync, size_t batch, double seconds, double *lat)
{
    char dir[512], err[256];
    snprintf(dir, sizeof(dir), "%s/sync%d-batch%zu", base, sync, batch);
    store_options o = {.dir = dir, .sync = sync};
    store *s;
    if (store_open(&o, &s, err, sizeof(err))) {
        fprintf(stderr, "store_open: %s\n", err);
        return -1;
    }
    char payload[100];
    memset(payload, 'x', sizeof(payload));
    static store_msg msgs[2000];
    static uint64_t seqs[2000];
    for (size_t i = 0; i < batch; i++)
        msgs[i] = (store_msg){"bench/topic", 11, payload, sizeof(payload), 1, 0, 0};
    size_t commits = 0;
    double start = now_s(), end = start + seconds, t = start;
    while (t < end && commits < MAX_COMMITS) {
        for (size_t i = 0; i < batch; i++)
            msgs[i].ts_ms = (int64_t)(t * 1000);
        if (store_append(s, msgs, batch, seqs, NULL, 0, err, sizeof(err))) {
            fprintf(stderr, "store_append: %s\n", err);
            store_close(s);
            return -1;
        }
        double t2 = now_s();
        lat[commits++] = t2 - t;
        t = t2;
    }
    double el = t - start;
    store_close(s);
    qsort(lat, commits, sizeof(*lat), cmp_double);
    printf("%-5d %6zu %12.0f %10.0f %10.1f %10.1f %10.1f\n", sync, batch, commits * batch / el,
           commits / el, el / commits * 1e6, lat[commits / 2] * 1e6, lat[commits * 99 / 100] * 1e6);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

int main(int argc, char **argv)
{
    char tmp[] = "/tmp/store_bench.XXXXXX";
    const char *base = argc > 1 ? argv[1] : mkdtemp(tmp);
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    if (!base || seconds <= 0) {
        fprintf(stderr, "usage: %s [dir] [seconds per case]\n", argv[0]);
        return 2;
    }
    double *lat = malloc(MAX_COMMITS * sizeof(*lat));
    if (!lat)
        return 1;
    printf("store append, 100-byte payloads, %.1f s per case, in %s\n", seconds, base);
    printf("%-5s %6s %12s %10s %10s %10s %10s\n", "sync", "batch", "msgs/s", "commits/s", "avg us",
           "p50 us", "p99 us");
    static const size_t batches[] = {1, 10, 50, 100, 500, 2000};
    int rc = 0;
    for (int sync = 1; sync >= 0 && !rc; sync--)
        for (size_t i = 0; i < sizeof batches / sizeof *batches && !rc; i++)
            rc = run(base, sync, batches[i], seconds, lat);
    free(lat);
    if (argc <= 1)
        remove(base);
    return rc ? 1 : 0;
}
