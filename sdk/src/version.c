/* The only file built with BT_VERSION / BT_REVISION (see the Makefile's version stamp). */
#include "baetyl/version.h"

#ifndef BT_VERSION
#define BT_VERSION "unknown"
#endif
#ifndef BT_PLATFORM /* built outside the Makefile: what the compiler targets */
#if defined(__x86_64__)
#define BT_PLATFORM "linux/amd64"
#elif defined(__aarch64__)
#define BT_PLATFORM "linux/arm64"
#elif defined(__arm__)
#define BT_PLATFORM "linux/arm/v7"
#else
#define BT_PLATFORM "unknown"
#endif
#endif
#ifndef BT_REVISION
#define BT_REVISION "unknown"
#endif

const char bt_version[] = BT_VERSION;
const char bt_revision[] = BT_REVISION;
const char bt_platform[] = BT_PLATFORM;
