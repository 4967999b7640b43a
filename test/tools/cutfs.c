/* cutfs: a filesystem that forgets, as a power cut does, every write not yet made durable.
 *
 *   cutfs BACKING_DIR MOUNTPOINT [fuse options]     (runs in the foreground)
 *
 * A pass-through FUSE filesystem over BACKING_DIR, except for file data: a write is kept in
 * this process's memory (4 KiB pages per file) and reaches the backing file only when the
 * file is fsync'ed or fdatasync'ed, or on every write for files opened with O_SYNC or
 * O_DSYNC. Reads see the unsynced data, as a page cache would. Killing cutfs with SIGKILL is
 * the power cut: what was in memory is gone; unmount (fusermount3 -u -z) and mount it again
 * to see what survived. Metadata (create, rename, unlink, truncate, mkdir) is applied at
 * once, which is kinder than a real disk for renames, and exact for LMDB, whose durability
 * rests on fdatasync of its data file (test/durability/, issue #16).
 * CUTFS_LEAK=N (percent) also writes each written page through to the backing file with
 * that chance, keeping it in memory too: the kernel's writeback, which may put any unsynced
 * page on the disk early and in any order (a later LMDB meta page before its data pages,
 * say), so what survives a cut is any subset of the unsynced writes.
 * CUTFS_DIRECT=refuse fails an open with O_DIRECT (EINVAL), as filesystems without direct
 * I/O do; CUTFS_DIRECT=einval takes the open but fails its writes with EINVAL, as a
 * filesystem with another alignment does: the paths a store takes without direct writes.
 *
 * Single-threaded (-s is forced): simple and deterministic. */
#define FUSE_USE_VERSION 35
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#define PAGE 4096u
#define NBUCKET 1024u

typedef struct page {
    uint64_t no;
    struct page *next;
    uint8_t data[PAGE];
} page;

/* The unsynced state of one backing file (by inode), shared by its open handles. */
typedef struct dirty {
    ino_t ino;
    dev_t dev;
    int refs;   /* open handles */
    off_t size; /* the size readers see (backing size plus unsynced extension) */
    size_t npages;
    page *pages[NBUCKET]; /* by page number */
    struct dirty *next;
} dirty;

static const char *backing;
static dirty *files;
static int leak_pct;                                                 /* CUTFS_LEAK */
static enum { DIRECT_OK, DIRECT_REFUSE, DIRECT_EINVAL } direct_mode; /* CUTFS_DIRECT */
#define MAX_FD 4096
static uint8_t opened_direct[MAX_FD]; /* by backing fd: opened with O_DIRECT */
static unsigned long long synced_bytes, kept_pages;

static void full(const char *path, char *out)
{
    snprintf(out, PATH_MAX, "%s%s", backing, path);
}

static dirty *find_dirty(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return NULL;
    for (dirty *d = files; d; d = d->next)
        if (d->ino == st.st_ino && d->dev == st.st_dev)
            return d;
    return NULL;
}

static dirty *get_dirty(int fd)
{
    dirty *d = find_dirty(fd);
    if (d)
        return d;
    struct stat st;
    if (fstat(fd, &st) != 0 || !(d = calloc(1, sizeof *d)))
        return NULL;
    d->ino = st.st_ino;
    d->dev = st.st_dev;
    d->size = st.st_size;
    d->next = files;
    files = d;
    return d;
}

static page *find_page(dirty *d, uint64_t no)
{
    for (page *p = d->pages[no % NBUCKET]; p; p = p->next)
        if (p->no == no)
            return p;
    return NULL;
}

static void drop_pages(dirty *d, off_t from)
{
    for (unsigned b = 0; b < NBUCKET; b++) {
        for (page **pp = &d->pages[b]; *pp;) {
            if ((off_t)((*pp)->no * PAGE) >= from) {
                page *gone = *pp;
                *pp = gone->next;
                free(gone);
                d->npages--;
            } else {
                pp = &(*pp)->next;
            }
        }
    }
}

/* Writes the unsynced pages of d to fd and makes them durable. */
static int flush(dirty *d, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    for (unsigned b = 0; b < NBUCKET; b++) {
        for (page *p = d->pages[b]; p; p = p->next) {
            off_t at = (off_t)(p->no * PAGE);
            size_t n = PAGE;
            if (at + (off_t)n > d->size)
                n = at < d->size ? (size_t)(d->size - at) : 0;
            if (n && pwrite(fd, p->data, n, at) != (ssize_t)n)
                return -errno;
            synced_bytes += n;
        }
    }
    drop_pages(d, 0);
    if (d->size > st.st_size && ftruncate(fd, d->size) != 0)
        return -errno;
    return fdatasync(fd) != 0 ? -errno : 0;
}

static void *cut_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)conn;
    cfg->use_ino = 1;
    cfg->entry_timeout = cfg->attr_timeout = cfg->negative_timeout = 0;
    return NULL;
}

static int cut_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    full(path, p);
    int r = fi ? fstat((int)fi->fh, st) : lstat(p, st);
    if (r != 0)
        return -errno;
    for (dirty *d = files; d; d = d->next)
        if (d->ino == st->st_ino && d->dev == st->st_dev && d->size > st->st_size)
            st->st_size = d->size;
    return 0;
}

static int cut_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                       struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)off, (void)fi, (void)flags;
    char p[PATH_MAX];
    full(path, p);
    DIR *dir = opendir(p);
    if (!dir)
        return -errno;
    struct dirent *e;
    while ((e = readdir(dir)))
        fill(buf, e->d_name, NULL, 0, 0);
    closedir(dir);
    return 0;
}

static int cut_mkdir(const char *path, mode_t mode)
{
    char p[PATH_MAX];
    full(path, p);
    return mkdir(p, mode) ? -errno : 0;
}

static int cut_unlink(const char *path)
{
    char p[PATH_MAX];
    full(path, p);
    return unlink(p) ? -errno : 0;
}

static int cut_rmdir(const char *path)
{
    char p[PATH_MAX];
    full(path, p);
    return rmdir(p) ? -errno : 0;
}

static int cut_rename(const char *from, const char *to, unsigned int flags)
{
    if (flags)
        return -EINVAL;
    char a[PATH_MAX], b[PATH_MAX];
    full(from, a);
    full(to, b);
    return rename(a, b) ? -errno : 0;
}

static int cut_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    full(path, p);
    return (fi ? fchmod((int)fi->fh, mode) : chmod(p, mode)) ? -errno : 0;
}

static int cut_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    full(path, p);
    return (fi ? futimens((int)fi->fh, tv) : utimensat(AT_FDCWD, p, tv, AT_SYMLINK_NOFOLLOW))
               ? -errno
               : 0;
}

static int open_common(const char *path, struct fuse_file_info *fi, mode_t mode, int create)
{
    char p[PATH_MAX];
    full(path, p);
    if ((fi->flags & O_DIRECT) && direct_mode == DIRECT_REFUSE)
        return -EINVAL;
    /* The backing file is opened without the sync flags: cutfs decides when data is durable. */
    int flags = (fi->flags & ~(O_SYNC | O_DSYNC | O_DIRECT)) | O_CLOEXEC;
    /* Read access too, when it can be had: a partly written page is filled from the file. */
    int rw = (flags & ~O_ACCMODE) | O_RDWR;
    int fd = create ? open(p, rw | O_CREAT, mode) : open(p, rw);
    if (fd < 0)
        fd = create ? open(p, flags | O_CREAT, mode) : open(p, flags);
    if (fd < 0)
        return -errno;
    dirty *d = get_dirty(fd);
    if (!d) {
        close(fd);
        return -ENOMEM;
    }
    d->refs++;
    if (fi->flags & O_TRUNC) {
        drop_pages(d, 0);
        d->size = 0;
    }
    if (fd < MAX_FD)
        opened_direct[fd] = (fi->flags & O_DIRECT) != 0;
    fi->fh = (uint64_t)fd;
    fi->direct_io = 0;
    fi->keep_cache = 0;
    return 0;
}

static int cut_open(const char *path, struct fuse_file_info *fi)
{
    return open_common(path, fi, 0, 0);
}

static int cut_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    return open_common(path, fi, mode, 1);
}

static int cut_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)path;
    int fd = (int)fi->fh;
    dirty *d = find_dirty(fd);
    off_t end = d ? d->size : 0;
    if (!d) {
        ssize_t r = pread(fd, buf, size, off);
        return r < 0 ? -errno : (int)r;
    }
    if (off >= end)
        return 0;
    if ((off_t)size > end - off)
        size = (size_t)(end - off);
    ssize_t r = pread(fd, buf, size, off);
    if (r < 0)
        return -errno;
    if ((size_t)r < size)
        memset(buf + r, 0, size - (size_t)r); /* an unsynced extension */
    for (uint64_t no = (uint64_t)off / PAGE; (off_t)(no * PAGE) < off + (off_t)size; no++) {
        page *p = find_page(d, no);
        if (!p)
            continue;
        off_t ps = (off_t)(no * PAGE), pe = ps + PAGE;
        off_t s = ps > off ? ps : off, e = pe < off + (off_t)size ? pe : off + (off_t)size;
        memcpy(buf + (s - off), p->data + (s - ps), (size_t)(e - s));
    }
    return (int)size;
}

static int cut_write(const char *path, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)path;
    int fd = (int)fi->fh;
    if (direct_mode == DIRECT_EINVAL && fd < MAX_FD && opened_direct[fd])
        return -EINVAL;
    dirty *d = get_dirty(fd);
    if (!d)
        return -ENOMEM;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    for (size_t done = 0; done < size;) {
        off_t at = off + (off_t)done;
        uint64_t no = (uint64_t)at / PAGE;
        size_t in = (size_t)(at % PAGE), n = PAGE - in;
        if (n > size - done)
            n = size - done;
        page *p = find_page(d, no);
        if (!p) {
            if (!(p = calloc(1, sizeof *p)))
                return -ENOMEM;
            p->no = no;
            ssize_t r = pread(fd, p->data, PAGE, (off_t)(no * PAGE)); /* the rest of the page */
            (void)r; /* short or failed: the rest of the page stays zero, as a hole reads */
            p->next = d->pages[no % NBUCKET];
            d->pages[no % NBUCKET] = p;
            d->npages++;
            kept_pages++;
        }
        memcpy(p->data + in, buf + done, n);
        done += n;
    }
    if (off + (off_t)size > d->size)
        d->size = off + (off_t)size;
    for (uint64_t no = (uint64_t)off / PAGE; leak_pct && no <= (uint64_t)(off + size - 1) / PAGE;
         no++) {
        page *p = find_page(d, no);
        off_t at = (off_t)(no * PAGE);
        size_t n = at + (off_t)PAGE > d->size ? (size_t)(d->size - at) : PAGE;
        if (p && rand() % 100 < leak_pct && pwrite(fd, p->data, n, at) != (ssize_t)n)
            return -errno;
    }
    if (fi->flags & (O_SYNC | O_DSYNC)) {
        int r = flush(d, fd);
        if (r < 0)
            return r;
    }
    return (int)size;
}

static int cut_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    full(path, p);
    int fd = fi ? (int)fi->fh : open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = ftruncate(fd, size) ? -errno : 0;
    dirty *d = find_dirty(fd);
    if (d && r == 0) {
        d->size = size;
        drop_pages(d, size);
    }
    if (!fi)
        close(fd);
    return r;
}

static int cut_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path, (void)datasync;
    int fd = (int)fi->fh;
    dirty *d = find_dirty(fd);
    return d ? flush(d, fd) : (fdatasync(fd) ? -errno : 0);
}

static int cut_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    int fd = (int)fi->fh;
    dirty *d = find_dirty(fd);
    /* Closing does not make data durable: the pages stay until an fsync or the cut. */
    if (d)
        d->refs--;
    if (fd < MAX_FD)
        opened_direct[fd] = 0;
    close(fd);
    return 0;
}

static int cut_statfs(const char *path, struct statvfs *st)
{
    (void)path;
    return statvfs(backing, st) ? -errno : 0;
}

static int cut_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path, (void)datasync, (void)fi;
    return 0;
}

static int cut_access(const char *path, int mask)
{
    char p[PATH_MAX];
    full(path, p);
    return access(p, mask) ? -errno : 0;
}

static const struct fuse_operations ops = {
    .init = cut_init,
    .getattr = cut_getattr,
    .readdir = cut_readdir,
    .mkdir = cut_mkdir,
    .unlink = cut_unlink,
    .rmdir = cut_rmdir,
    .rename = cut_rename,
    .chmod = cut_chmod,
    .utimens = cut_utimens,
    .truncate = cut_truncate,
    .open = cut_open,
    .create = cut_create,
    .read = cut_read,
    .write = cut_write,
    .fsync = cut_fsync,
    .release = cut_release,
    .statfs = cut_statfs,
    .fsyncdir = cut_fsyncdir,
    .access = cut_access,
};

int main(int argc, char **argv)
{
    if (argc < 3 || argv[1][0] != '/') {
        fprintf(stderr, "usage: cutfs /ABSOLUTE/BACKING_DIR MOUNTPOINT [fuse options]\n");
        return 2;
    }
    backing = argv[1];
    const char *leak = getenv("CUTFS_LEAK");
    leak_pct = leak ? atoi(leak) : 0;
    const char *direct = getenv("CUTFS_DIRECT");
    if (direct && strcmp(direct, "refuse") == 0) {
        direct_mode = DIRECT_REFUSE;
    } else if (direct && strcmp(direct, "einval") == 0) {
        direct_mode = DIRECT_EINVAL;
    } else if (direct && *direct) {
        fprintf(stderr, "cutfs: CUTFS_DIRECT is refuse or einval, not %s\n", direct);
        return 2;
    }
    srand((unsigned)getpid());
    char *fargv[64];
    int fargc = 0;
    fargv[fargc++] = argv[0];
    fargv[fargc++] = "-f";
    fargv[fargc++] = "-s";
    for (int i = 2; i < argc && fargc < 63; i++)
        fargv[fargc++] = argv[i];
    fargv[fargc] = NULL;
    int r = fuse_main(fargc, fargv, &ops, NULL);
    fprintf(stderr, "cutfs: %llu bytes made durable, %llu pages kept in memory\n", synced_bytes,
            kept_pages);
    return r;
}
