/* Error text for the `char *err, size_t errlen` convention of the whole project (DESIGN.md
 * §3): functions that can fail fill a caller-given buffer and return -1. */
#ifndef BAETYL_ERROR_H
#define BAETYL_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* Formats into err (nothing when err is NULL or errlen is 0) and returns -1, so an error
 * path is one line: `return bt_errf(err, errlen, "open %s: %s", p, strerror(errno));`. */
int bt_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* bt_errf with a va_list, for wrappers that return something else than -1. */
int bt_verrf(char *err, size_t errlen, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
