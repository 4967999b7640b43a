/* libFuzzer target for what the docker engine reads: `ports` and `devices` entries of an
 * application (Docker's syntax), image references, the engine's log stream (frame headers
 * and lines) and its stats JSON. The first byte picks the parser.
 *
 * The fuzz build links only the SDK, so the master's sources are compiled in here. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <baetyl/json.h>

#include "../../../master/app.h"
#include "../../../master/docker_api.h"
#include "../../../master/docker_config.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

static void count_line(int stream, const char *text, size_t len, void *arg)
{
    size_t *total = arg;
    *total += len + (size_t)stream;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t which = data[0] % 4;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char *s = malloc(n + 1);
    if (!s)
        return 0;
    memcpy(s, in, n);
    s[n] = '\0';
    char err[512];
    switch (which) {
    case 0: {
        json_t *ex = json_object(), *pb = json_object();
        docker_add_port(s, ex, pb, err, sizeof err);
        json_decref(ex);
        json_decref(pb);
        json_decref(docker_device(s, err, sizeof err));
        break;
    }
    case 1: {
        char repo[256], tag[64];
        docker_image_split(s, repo, sizeof repo, tag, sizeof tag);
        break;
    }
    case 2: {
        size_t total = 0;
        docker_demux *d = malloc(sizeof *d);
        if (d) {
            docker_demux_init(d, count_line, &total);
            /* in two pieces, split where the second byte says */
            size_t cut = n ? (size_t)(uint8_t)in[0] % (n + 1) : 0;
            docker_demux_feed(d, in, cut);
            docker_demux_feed(d, in + cut, n - cut);
            docker_demux_flush(d);
            free(d);
        }
        break;
    }
    default: {
        json_t *j = bt_json_parse(s, n, NULL, 0);
        double pct;
        uint64_t usage, limit;
        if (j && docker_stats_compute(j, &pct, &usage, &limit) == 0 && !(pct >= 0 && pct <= 1e6))
            abort(); /* the percentage is always a bounded number */
        json_decref(j);
        break;
    }
    }
    free(s);
    return 0;
}
