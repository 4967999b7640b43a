/* The master's own name rule; the general helpers (files, paths, clock, tokens) are the SDK's
 * baetyl/util.h, included here for every master file. */
#ifndef BAETYL_MASTER_UTIL_H
#define BAETYL_MASTER_UTIL_H

#include <stdbool.h>

#include "baetyl/error.h" /* bt_errf: the one-line error paths of every master file */
#include "baetyl/util.h"

/* Checks an instance or service name used in paths and process names: 1..128 bytes of
 * [A-Za-z0-9._-], not starting with '.' or '-'. */
bool valid_instance_name(const char *s);

#endif
