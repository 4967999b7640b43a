/* The only file built with BT_VERSION / BT_REVISION (see the Makefile's version stamp). */
#include "baetyl/version.h"

#ifndef BT_VERSION
#define BT_VERSION "unknown"
#endif
#ifndef BT_REVISION
#define BT_REVISION "unknown"
#endif

const char bt_version[] = BT_VERSION;
const char bt_revision[] = BT_REVISION;
