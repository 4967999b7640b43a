/* Which other services' instances a service may start, stop and report into (SPEC §19, issue
 * 12.12). A service acts on its own instances; the function-manager also on the function
 * services its config names (`functions[].service`), which is how a Baetyl 1.0 application
 * already grants it them: no new key is needed in application.yml. */
#ifndef BAETYL_MASTER_GRANTS_H
#define BAETYL_MASTER_GRANTS_H

#include "app.h"

/* The services svc's config names in functions[].service. The config is found the way the
 * service finds it: `-c`/`--config` in its args, else etc/baetyl/service.yml, through the
 * mount that holds it, in the volume under pwd. Returns a NULL-terminated malloc'd list
 * (empty when there is no such config), or NULL when out of memory. */
char **grants_of(const char *pwd, const app_config *app, const app_service *svc);
/* True when name is in the list. */
bool grants_allow(char *const *grants, const char *name);
/* Frees a list. */
void grants_free(char **grants);

#endif
