/* libarchive loaded on first use (issue #18): only unzipping a volume needs it, and mapping
 * it (with the ICU, libxml2 and compression libraries it pulls in) costs ~0.9 MB PSS in the
 * agent for its whole life. unzip.c includes this header instead of libarchive's and calls
 * archive_lib_load() first; the libarchive names below then go through a table filled by
 * dlopen(). */
#ifndef AGENT_ARCHIVE_LIB_H
#define AGENT_ARCHIVE_LIB_H

#include <stddef.h>

#include <archive.h>
#include <archive_entry.h>

#ifndef LIBARCHIVE_SONAME
#define LIBARCHIVE_SONAME "libarchive.so.13"
#endif

#define ARCHIVE_LIB_FUNCS(X)           \
    X(archive_entry_filetype)          \
    X(archive_entry_hardlink)          \
    X(archive_entry_pathname)          \
    X(archive_entry_set_pathname)      \
    X(archive_entry_size)              \
    X(archive_entry_size_is_set)       \
    X(archive_entry_symlink)           \
    X(archive_error_string)            \
    X(archive_read_data_block)         \
    X(archive_read_free)               \
    X(archive_read_new)                \
    X(archive_read_next_header)        \
    X(archive_read_open_filename)      \
    X(archive_read_support_format_zip) \
    X(archive_write_data_block)        \
    X(archive_write_disk_new)          \
    X(archive_write_disk_set_options)  \
    X(archive_write_finish_entry)      \
    X(archive_write_free)              \
    X(archive_write_header)

#define ARCHIVE_LIB_MEMBER(f) __typeof__(&f) f;
struct archive_lib_table {
    ARCHIVE_LIB_FUNCS(ARCHIVE_LIB_MEMBER)
};
extern struct archive_lib_table archive_lib;

/* Loads libarchive once (thread-safe). 0, or -1 with err = "libarchive.so.13, which cannot
 * be loaded: <why>". */
int archive_lib_load(char *err, size_t errlen);

#ifndef ARCHIVE_LIB_IMPL
#define archive_entry_filetype (archive_lib.archive_entry_filetype)
#define archive_entry_hardlink (archive_lib.archive_entry_hardlink)
#define archive_entry_pathname (archive_lib.archive_entry_pathname)
#define archive_entry_set_pathname (archive_lib.archive_entry_set_pathname)
#define archive_entry_size (archive_lib.archive_entry_size)
#define archive_entry_size_is_set (archive_lib.archive_entry_size_is_set)
#define archive_entry_symlink (archive_lib.archive_entry_symlink)
#define archive_error_string (archive_lib.archive_error_string)
#define archive_read_data_block (archive_lib.archive_read_data_block)
#define archive_read_free (archive_lib.archive_read_free)
#define archive_read_new (archive_lib.archive_read_new)
#define archive_read_next_header (archive_lib.archive_read_next_header)
#define archive_read_open_filename (archive_lib.archive_read_open_filename)
#define archive_read_support_format_zip (archive_lib.archive_read_support_format_zip)
#define archive_write_data_block (archive_lib.archive_write_data_block)
#define archive_write_disk_new (archive_lib.archive_write_disk_new)
#define archive_write_disk_set_options (archive_lib.archive_write_disk_set_options)
#define archive_write_finish_entry (archive_lib.archive_write_finish_entry)
#define archive_write_free (archive_lib.archive_write_free)
#define archive_write_header (archive_lib.archive_write_header)
#endif

#endif
