/* `baetyl check`: certificate files named in the services' configs exist. */
#ifndef BAETYL_MASTER_CHECK_CERTS_H
#define BAETYL_MASTER_CHECK_CERTS_H

#include <stddef.h>

#include "app.h"

/* Reads each service's etc/baetyl/service.yml through its mounts (cwd = work dir) and checks
 * that every ca/cert/key file of a TLS block that a mount covers exists. Returns 0, or -1 with
 * err naming the service, the file and where it was looked for. */
int app_check_certs(const app_config *app, char *err, size_t errlen);

#endif
