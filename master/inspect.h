/* The inspect document (SPEC §10): software, hardware, services, volumes, error. */
#ifndef BAETYL_MASTER_INSPECT_H
#define BAETYL_MASTER_INSPECT_H

#include <jansson.h>

#include "master.h"

/* Builds the whole inspect object (new reference, NULL when out of memory). */
json_t *inspect_build(master *m);
/* The compiler that built the master, e.g. "gcc 12.2.0". */
const char *inspect_compiler(void);

#endif
