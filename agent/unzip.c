/* Unzipping a volume with libarchive, safe against zip slip. The archive comes from the
 * network: it is read twice, first to check every entry (nothing is written when one is
 * bad), then to extract with libarchive's own guards on as well.
 *
 * The rules that keep everything inside dir: names are relative without "..", only files,
 * directories and symbolic links are allowed, no entry lies below a symbolic link of the
 * archive, and a link's target is relative, stays inside dir when resolved from the link's
 * directory, and passes through no other link of the archive on the way (so the lexical
 * resolution is the real one). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "agent.h"
#include "archive_lib.h"
#include "baetyl/util.h"

typedef struct {
    char *name;   /* cleaned relative path */
    char *target; /* symbolic links: the target as written */
} link_entry;

typedef struct {
    link_entry *v;
    size_t n, cap;
} links;

static void links_free(links *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].target);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const link_entry *)a)->name, ((const link_entry *)b)->name);
}

static bool is_link(const links *l, const char *name)
{
    link_entry key = {.name = (char *)name};
    return l->n && bsearch(&key, l->v, l->n, sizeof *l->v, by_name) != NULL;
}

/* The clean form of an entry name ("a//b/./c/" -> "a/b/c"), or NULL when it is absolute,
 * holds "..", or is empty. */
static char *clean_name(const char *s)
{
    char *out = bt_path_clean_inside(s);
    if (out && !*out) {
        free(out);
        return NULL;
    }
    return out;
}

/* True when a proper prefix of name ("a" and "a/b" of "a/b/c") is a link of the archive. */
static bool below_link(const links *l, const char *name)
{
    char buf[PATH_MAX];
    for (const char *p = strchr(name, '/'); p; p = strchr(p + 1, '/')) {
        size_t n = (size_t)(p - name);
        if (n >= sizeof buf)
            return true;
        memcpy(buf, name, n);
        buf[n] = '\0';
        if (is_link(l, buf))
            return true;
    }
    return false;
}

/* Resolves the target of link e lexically from the link's directory. 0 when it stays
 * inside and passes through no other link; -1 with a reason otherwise. */
static int check_link(const links *l, const link_entry *e, char *why, size_t n)
{
    const char *t = e->target;
    if (!t || !*t) {
        snprintf(why, n, "has an empty link target");
        return -1;
    }
    if (t[0] == '/') {
        snprintf(why, n, "links to an absolute path");
        return -1;
    }
    char path[PATH_MAX];
    size_t len = 0;
    const char *slash = strrchr(e->name, '/');
    if (slash) {
        len = (size_t)(slash - e->name);
        memcpy(path, e->name, len);
    }
    path[len] = '\0';
    while (*t) {
        size_t sl = strcspn(t, "/");
        if (sl == 2 && t[0] == '.' && t[1] == '.') {
            if (len == 0) {
                snprintf(why, n, "links outside the volume directory");
                return -1;
            }
            char *p = strrchr(path, '/');
            len = p ? (size_t)(p - path) : 0;
            path[len] = '\0';
        } else if (sl > 0 && !(sl == 1 && t[0] == '.')) {
            if (len + sl + 2 > sizeof path) {
                snprintf(why, n, "has a link target that is too long");
                return -1;
            }
            if (len)
                path[len++] = '/';
            memcpy(path + len, t, sl);
            len += sl;
            path[len] = '\0';
            t += sl;
            /* a component followed by more of the path must not be another link */
            if (*t && t[strspn(t, "/")] && is_link(l, path)) {
                snprintf(why, n, "links through another link of the archive");
                return -1;
            }
            while (*t == '/')
                t++;
            continue;
        }
        t += sl;
        while (*t == '/')
            t++;
    }
    return 0;
}

static struct archive *open_zip(const char *zip, char *err, size_t errlen)
{
    struct archive *a = archive_read_new();
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    archive_read_support_format_zip(a);
    if (archive_read_open_filename(a, zip, 65536) != ARCHIVE_OK) {
        snprintf(err, errlen, "%s: %s", zip,
                 archive_error_string(a) ? archive_error_string(a) : "cannot open");
        archive_read_free(a);
        return NULL;
    }
    return a;
}

/* Pass 1: every entry checked; nothing written. *declared = the sizes the entries declare. */
static int check_all(const char *zip, int64_t *declared, char *err, size_t errlen)
{
    struct archive *a = open_zip(zip, err, errlen);
    if (!a)
        return -1;
    links l = {0};
    char **names = NULL;
    size_t nn = 0, ncap = 0;
    int rc = -1;
    char q[256], why[128];
    struct archive_entry *e;
    for (;;) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            snprintf(err, errlen, "%s",
                     archive_error_string(a) ? archive_error_string(a) : "not a zip file");
            goto out;
        }
        if (nn >= AGENT_UNZIP_ENTRIES_MAX) {
            snprintf(err, errlen, "more than %d entries", AGENT_UNZIP_ENTRIES_MAX);
            goto out;
        }
        const char *raw = archive_entry_pathname(e);
        agent_shown(q, 201, raw);
        char *name = clean_name(raw);
        if (!name) {
            snprintf(err, errlen, "entry (%s) escapes the volume directory", q);
            goto out;
        }
        if (nn == ncap) {
            size_t nc = ncap ? ncap * 2 : 64;
            char **nv = realloc(names, nc * sizeof *nv);
            if (!nv) {
                free(name);
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            names = nv, ncap = nc;
        }
        names[nn++] = name;
        mode_t type = archive_entry_filetype(e);
        if (type == AE_IFREG && archive_entry_size_is_set(e) && archive_entry_size(e) > 0) {
            *declared += archive_entry_size(e);
            if (*declared > AGENT_UNZIP_MAX) {
                snprintf(err, errlen, "entries declare more than %lld bytes",
                         (long long)AGENT_UNZIP_MAX);
                goto out;
            }
        }
        if (archive_entry_hardlink(e)) {
            snprintf(err, errlen, "entry (%s) is a hard link, which volumes may not hold", q);
            goto out;
        }
        if (type == AE_IFLNK) {
            if (l.n == l.cap) {
                size_t nc = l.cap ? l.cap * 2 : 16;
                link_entry *nv = realloc(l.v, nc * sizeof *nv);
                if (!nv) {
                    snprintf(err, errlen, "out of memory");
                    goto out;
                }
                l.v = nv, l.cap = nc;
            }
            const char *t = archive_entry_symlink(e);
            link_entry le = {strdup(name), t ? strdup(t) : NULL};
            if (!le.name || (t && !le.target)) {
                free(le.name);
                free(le.target);
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            l.v[l.n++] = le;
        } else if (type != AE_IFREG && type != AE_IFDIR) {
            snprintf(err, errlen, "entry (%s) is not a file, a directory or a link", q);
            goto out;
        }
    }
    if (l.n)
        qsort(l.v, l.n, sizeof *l.v, by_name);
    for (size_t i = 0; i < nn; i++) {
        if (below_link(&l, names[i])) {
            agent_shown(q, 201, names[i]);
            snprintf(err, errlen, "entry (%s) lies below a link of the archive", q);
            goto out;
        }
    }
    for (size_t i = 0; i < l.n; i++) {
        if (check_link(&l, &l.v[i], why, sizeof why) < 0) {
            agent_shown(q, 201, l.v[i].name);
            snprintf(err, errlen, "entry (%s) %s", q, why);
            goto out;
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    links_free(&l);
    archive_read_free(a);
    return rc;
}

/* Pass 2: extraction under base (an absolute, resolved directory). */
static int extract_all(const char *zip, const char *base, char *err, size_t errlen)
{
    struct archive *a = open_zip(zip, err, errlen);
    if (!a)
        return -1;
    struct archive *w = archive_write_disk_new();
    if (!w) {
        archive_read_free(a);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* libarchive's guards too: no "..", nothing extracted through a symbolic link. No owner,
     * no set-id bits: files get the archive's mode under the umask. */
    archive_write_disk_set_options(w, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                          ARCHIVE_EXTRACT_SECURE_SYMLINKS);
    int64_t total = 0, next_check = AGENT_DISK_CHECK;
    int rc = -1;
    char q[256];
    struct archive_entry *e;
    for (;;) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            snprintf(err, errlen, "%s",
                     archive_error_string(a) ? archive_error_string(a) : "read error");
            goto out;
        }
        agent_shown(q, 201, archive_entry_pathname(e));
        char *name = clean_name(archive_entry_pathname(e)), *full = NULL;
        if (!name || asprintf(&full, "%s/%s", base, name) < 0) {
            free(name);
            snprintf(err, errlen, "entry (%s) escapes the volume directory", q);
            goto out;
        }
        free(name);
        archive_entry_set_pathname(e, full);
        free(full);
        r = archive_write_header(w, e);
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            snprintf(err, errlen, "entry (%s): %s", q,
                     archive_error_string(w) ? archive_error_string(w) : "write error");
            goto out;
        }
        if (archive_entry_filetype(e) == AE_IFREG) {
            /* A zip may lie about sizes (libarchive only warns at the end): the declared
             * size is a bound, so a bomb stops after that much, not after the cap. */
            int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1, got = 0;
            const void *buf;
            size_t size;
            la_int64_t off;
            for (;;) {
                r = archive_read_data_block(a, &buf, &size, &off);
                if (r == ARCHIVE_EOF)
                    break;
                /* a warning here is a bad CRC or a wrong size: the data is not what was
                 * packed */
                if (r != ARCHIVE_OK) {
                    snprintf(err, errlen, "entry (%s): %s", q,
                             archive_error_string(a) ? archive_error_string(a) : "read error");
                    goto out;
                }
                total += (int64_t)size;
                got += (int64_t)size;
                if (total > AGENT_UNZIP_MAX) {
                    snprintf(err, errlen, "more than %lld bytes unpacked",
                             (long long)AGENT_UNZIP_MAX);
                    goto out;
                }
                if (declared >= 0 && got > declared) {
                    snprintf(err, errlen, "entry (%s) holds more than the %lld bytes it declares",
                             q, (long long)declared);
                    goto out;
                }
                if (total >= next_check) {
                    next_check = total + AGENT_DISK_CHECK;
                    if (agent_disk_room(base, 0, err, errlen) < 0)
                        goto out;
                }
                if (archive_write_data_block(w, buf, size, off) != ARCHIVE_OK) {
                    snprintf(err, errlen, "entry (%s): %s", q,
                             archive_error_string(w) ? archive_error_string(w) : "write error");
                    goto out;
                }
            }
        }
        r = archive_write_finish_entry(w);
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            snprintf(err, errlen, "entry (%s): %s", q,
                     archive_error_string(w) ? archive_error_string(w) : "write error");
            goto out;
        }
    }
    rc = 0;
out:
    archive_write_free(w);
    archive_read_free(a);
    return rc;
}

int agent_disk_room(const char *path, int64_t need, char *err, size_t errlen)
{
    struct statvfs s;
    if (statvfs(path, &s) != 0) {
        snprintf(err, errlen, "statvfs %s: %s", path, strerror(errno));
        return -1;
    }
    int64_t avail = (int64_t)s.f_bavail * (int64_t)s.f_frsize;
    if (need > INT64_MAX - AGENT_DISK_RESERVE || avail < need + AGENT_DISK_RESERVE) {
        snprintf(err, errlen,
                 "not enough disk space: %lld bytes free, %lld needed and %lld kept free",
                 (long long)avail, (long long)need, (long long)AGENT_DISK_RESERVE);
        return -1;
    }
    return 0;
}

int agent_unzip(const char *zip, const char *dir, char *err, size_t errlen)
{
    int64_t declared = 0;
    if (archive_lib_load(err, errlen) < 0 || check_all(zip, &declared, err, errlen) < 0 ||
        agent_disk_room(dir, declared, err, errlen) < 0)
        return -1;
    /* The volumes dir is itself a link (the agent's mount): extract under its real path, so
     * that libarchive's link guard only sees links the archive makes. */
    char *base = realpath(dir, NULL);
    if (!base) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = extract_all(zip, base, err, errlen);
    free(base);
    return rc;
}
