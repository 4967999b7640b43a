/* The libarchive table of archive_lib.h, filled by dlopen() on the first unzip. */
#define ARCHIVE_LIB_IMPL
#include "archive_lib.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

struct archive_lib_table archive_lib;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char why[256]; /* empty when loaded */

/* dlsym returns void *; the table's members are function pointers (POSIX allows it). */
#define ARCHIVE_LIB_SYM(f)                                     \
    if (!why[0] && !(*(void **)&archive_lib.f = dlsym(h, #f))) \
        snprintf(why, sizeof why, "%s, which lacks %s", LIBARCHIVE_SONAME, #f);

static void load(void)
{
    void *h = dlopen(LIBARCHIVE_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, sizeof why, "%s, which cannot be loaded: %s", LIBARCHIVE_SONAME,
                 e ? e : "unknown error");
        return;
    }
    ARCHIVE_LIB_FUNCS(ARCHIVE_LIB_SYM)
}

int archive_lib_load(char *err, size_t errlen)
{
    pthread_once(&once, load);
    if (!why[0])
        return 0;
    snprintf(err, errlen, "unzipping needs %s", why);
    return -1;
}
