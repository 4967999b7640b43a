/* Embeds status_page.html (assembler .incbin, paths relative to the source root where make
 * runs), so the master needs no file at run time. */
#include "status_page.h"

__asm__(".section .rodata\n"
        ".global status_page_html\n"
        "status_page_html:\n"
        ".incbin \"master/status_page.html\"\n"
        ".global status_page_end\n"
        "status_page_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const char status_page_end[];

size_t status_page_len(void)
{
    return (size_t)(status_page_end - status_page_html);
}
