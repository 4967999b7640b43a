/* The rule for instance and service names used in paths and process names (the general
 * helpers — files, paths, clock, tokens — are the SDK's baetyl/util.h). */
#ifndef BAETYL_MASTER_NAMES_H
#define BAETYL_MASTER_NAMES_H

#include <stdbool.h>

/* Checks an instance or service name used in paths and process names: 1..128 bytes of
 * [A-Za-z0-9._-], not starting with '.' or '-'. */
bool valid_instance_name(const char *s);

#endif
