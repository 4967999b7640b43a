/* The status page (status_page.html, embedded at build time). */
#ifndef BAETYL_MASTER_STATUS_PAGE_H
#define BAETYL_MASTER_STATUS_PAGE_H

#include <stddef.h>

extern const char status_page_html[];
/* Its length in bytes. */
size_t status_page_len(void);

#endif
