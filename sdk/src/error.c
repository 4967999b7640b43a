/* One formatter for every error text of the project (baetyl/error.h). */
#include "baetyl/error.h"

#include <stdio.h>

int bt_verrf(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    return -1;
}

int bt_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bt_verrf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}
