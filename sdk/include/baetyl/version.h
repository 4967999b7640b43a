/* The version compiled into every binary: the git tag, else git-<short revision>. Only
 * sdk/src/version.c sees the build's -D flags, so a new version rebuilds one file. */
#ifndef BAETYL_VERSION_H
#define BAETYL_VERSION_H

/* "v1.0.0" or "git-1a2b3c4". */
extern const char bt_version[];
/* The full git revision, or "unknown" outside a git checkout. */
extern const char bt_revision[];
/* The platform the binary was built for, as docker names it: "linux/amd64", "linux/arm64",
 * "linux/arm/v7". */
extern const char bt_platform[];

#endif
