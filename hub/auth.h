/* Principals and permissions (SPEC §11 Connect and Authorisation). */
#ifndef HUB_AUTH_H
#define HUB_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Checks principals: unique usernames, valid permit filters ("pub topic(x) invalid"). */
int auth_validate(const bt_cfg_list *principals, char *err, size_t errlen);

/* Finds the principal a CONNECT authenticates as: with a password, the principal with that
 * username and password; without one (an empty password counts as none), only when
 * cert_verified, a principal with that username and no password. NULL when refused. */
const hub_principal_cfg *auth_login(const bt_cfg_list *principals, const char *username,
                                    const char *password, size_t password_len, bool has_password,
                                    bool cert_verified);

/* True when the principal may publish to topic name t. */
bool auth_can_pub(const hub_principal_cfg *p, const char *t);
/* True when the principal may subscribe to filter f. */
bool auth_can_sub(const hub_principal_cfg *p, const char *f);

#endif
