/* libFuzzer target: a message of the desire topic (network input) through the agent's event
 * parser, then the volume it names through the path checks. Nothing may crash or leak, an
 * accepted event always has a trace, a type and a volume with name, path, url and md5, and
 * an event refused as a failed OTA (-2, written to ota.log) holds a trace and a type only. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../../agent/agent.h"

/* True when p has a ".." segment ("a/../b", "../a", "a/..") */
static int dotdot(const char *p)
{
    for (const char *s = p; (s = strstr(s, "..")); s += 2)
        if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    agent_ota_event ev;
    char err[512];
    int r = agent_event_parse(data, size, &ev, err, sizeof err);
    if (r == -2) {
        if (!ev.trace || !*ev.trace || !ev.type || !*ev.type || ev.version || ev.volume.name ||
            ev.volume.url || !err[0])
            abort();
        agent_event_free(&ev);
        return 0;
    }
    if (r < 0)
        return 0;
    if (!ev.trace || !*ev.trace || !ev.type || !ev.volume.name || !ev.volume.path ||
        !ev.volume.url || !ev.volume.md5)
        abort();
    char *c = NULL, *h = NULL;
    if (agent_volume_dirs(&ev.volume, &c, &h, err, sizeof err) == 0) {
        /* an accepted path always lands under the volumes mount, without a ".." segment */
        if (strncmp(c, AGENT_VOLUMES_DIR "/", strlen(AGENT_VOLUMES_DIR) + 1) != 0 || dotdot(c) ||
            dotdot(h) || strncmp(h, AGENT_HOST_DB "/", strlen(AGENT_HOST_DB) + 1) != 0)
            abort();
        free(c);
        free(h);
    }
    agent_event_free(&ev);
    return 0;
}
