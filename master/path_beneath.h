/* Directories reached without leaving the work dir through a symlink a service planted
 * (issue 12.8): volume and mount paths are checked as text when the app is loaded, but a
 * service can write symlinks into the volumes it mounts, and those could lead the master's
 * mkdir and symlink calls (and docker's binds) outside.
 *
 * The rule: a symlink that resolves outside the work dir is refused when it lies inside a
 * volume's directory (where services write); elsewhere it is the operator's layout (e.g. a
 * package directory linked to an installed tree) and is followed. Nothing is ever created
 * outside the work dir. */
#ifndef BAETYL_MASTER_PATH_BENEATH_H
#define BAETYL_MASTER_PATH_BENEATH_H

#include <stdbool.h>
#include <stddef.h>

#include "app.h"

/* True when p is root or below it (both resolved, absolute). */
bool path_inside(const char *root, const char *p);

/* The resolved directories of app's volumes that exist (NULL-terminated, malloc'd; NULL when
 * out of memory). */
char **volume_roots(const char *pwd, const app_config *app);
/* Frees that list. */
void volume_roots_free(char **roots);

/* Makes sure dir (lexically below root, both absolute) is a directory reached from root by
 * the rule above, creating missing components 0755 (only inside root). Returns the resolved
 * path (malloc'd), or NULL with err naming the symlink or component. */
char *path_dir_beneath(const char *root, char *const *vroots, const char *dir, char *err,
                       size_t errlen);

#endif
