/* Text from the cloud or an archive quoted in errors and logs: bounded, and without control
 * characters that would break a log line or forge one. */
#include <stdio.h>

#include "agent.h"

void agent_shown(char *out, size_t n, const char *s)
{
    snprintf(out, n, "%s", s ? s : "");
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F)
            *p = '?';
}
