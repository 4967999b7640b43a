/* ota.log (SPEC §9, §15): the master and the agent append JSON lines to one file (the
 * agent sees it through its volumes mount), e.g.
 *   {"level":"info","msg":"app is updating","step":"UPDATING","time":"…","trace":"…",
 *    "type":"APP"}
 * keys sorted like logrus's JSON formatter, "error" added on failures. */
#ifndef BAETYL_OTALOG_H
#define BAETYL_OTALOG_H

#include <stddef.h>

/* Bytes read from the end of ota.log at most: an OTA's lines are the latest ones. */
#define BT_OTALOG_TAIL_MAX (1024 * 1024)

/* Appends one line {"level","msg","step","time","trace","type"[,"error"]} to path, creating
 * its directory: level is "error" when error is not NULL, else "info"; trace NULL = "",
 * type NULL = "APP"; time is local RFC 3339. One write() per line, so the lines of two
 * writers never mix. Returns 0, or -1 with err ("open <path>: <reason>"). */
int bt_otalog_write(const char *path, const char *trace, const char *type, const char *step,
                    const char *msg, const char *error, char *err, size_t errlen);
/* The last BT_OTALOG_TAIL_MAX bytes of the file at path, starting at a line (malloc'd,
 * NUL-terminated, *len bytes); NULL when missing, not a regular file or out of memory. */
char *bt_otalog_tail(const char *path, size_t *len);
/* The trace of the last line of the ota.log at path (malloc'd), or NULL when there is none
 * or it is empty. */
char *bt_otalog_last_trace(const char *path);

#endif
