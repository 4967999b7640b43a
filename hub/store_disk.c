/* The data file's ground: zeros written ahead, and a full disk under it.
 *
 * Prefill (sync stores): every commit of a sync store flushes the data file. When the
 * commit made the file longer, that flush also has to commit the filesystem's journal (new
 * blocks, new size), which on a virtual disk costs ten times a plain data flush (measured:
 * ~2 ms against ~0.15 ms). So the file is kept zero-filled (real blocks, not a hole nor
 * unwritten extents) some way past LMDB's last page: commits then write into blocks the
 * filesystem already has and their flushes carry data only. LMDB reads only up to its last
 * page, so the zeros are never read; they are written under s->wmu, when no write txn runs.
 *
 * A full disk under the store (ENOSPC below storage.size.max). Deleting from LMDB writes
 * pages too (copy-on-write), so a store that filled its disk could not even be trimmed to
 * make room. Two guards: a reserve file, given back to the filesystem when a delete finds
 * the disk full; and, once the disk was full, appends that leave KEEP_PAGES reusable free
 * pages inside the data file, so the deletes that make room never need the disk again. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store_internal.h"

#define RESERVE_NAME "reserve"
#define RESERVE_BYTES ((off_t)1 << 20)
#define KEEP_PAGES 64
/* The disk has room again: appends grow the file freely and the reserve comes back. */
#define ROOM_AGAIN ((uint64_t)16 << 20)
/* Zeros kept ahead: a sixteenth of the file within these bounds, more than a large group
 * commit takes. They are written at most FILL_MAX per commit, so that no commit waits long
 * for them on a slow card; each fill costs one flush of its own. */
#define AHEAD_MIN ((uint64_t)2 << 20)
#define AHEAD_MAX ((uint64_t)16 << 20)
#define FILL_MAX ((uint64_t)1 << 20)
#define FILL_PIECE ((size_t)64 << 10)

static void reserve_path(const store *s, char *p, size_t len)
{
    snprintf(p, len, "%s/%s", s->dir, RESERVE_NAME);
}

void store_reserve_make(store *s)
{
    char p[4096];
    reserve_path(s, p, sizeof p);
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    /* Real blocks, not a hole: they are what a full disk gets back. */
    int rc = posix_fallocate(fd, 0, RESERVE_BYTES);
    close(fd);
    if (rc)
        unlink(p);
}

int store_reserve_release(store *s)
{
    char p[4096];
    reserve_path(s, p, sizeof p);
    return unlink(p) == 0 ? 0 : -1;
}

uint64_t store_disk_avail(const store *s)
{
    struct statvfs v;
    if (statvfs(s->dir, &v) < 0)
        return UINT64_MAX;
    return (uint64_t)v.f_bavail * v.f_frsize;
}

/* Free pages the next write txn may reuse: LMDB reuses those freed by txns older than the
 * one before it. Read in a read txn of its own: LMDB has no cursor on its free-page DB in
 * a write txn (the store opens with MDB_NOTLS, so both may be open in one thread). */
static int usable_free_pages(store *s, uint64_t *pages)
{
    MDB_txn *t;
    MDB_cursor *cur;
    MDB_val k, v;
    *pages = 0;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t);
    if (rc)
        return rc;
    /* LMDB reuses what txns before the oldest snapshot still read freed; the write-ahead
     * log pins its checkpoint's snapshot, so later frees wait for the next checkpoint. */
    size_t next = s->wal_pin ? mdb_txn_id(s->wal_pin) : mdb_txn_id(t) + 1;
    if ((rc = mdb_cursor_open(t, 0, &cur))) { /* 0: LMDB's free-page DB */
        mdb_txn_abort(t);
        return rc;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        size_t kid, n;
        if (k.mv_size != sizeof kid || v.mv_size < sizeof n)
            continue;
        memcpy(&kid, k.mv_data, sizeof kid);
        memcpy(&n, v.mv_data, sizeof n);
        if (kid + 1 < next)
            *pages += n;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(t);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_disk_room(store *s, uint64_t bytes)
{
    uint64_t avail = store_disk_avail(s);
    if (avail >= ROOM_AGAIN) {
        s->disk_full = 0;
        store_reserve_make(s);
        return 0;
    }
    MDB_stat st;
    uint64_t free_pages;
    int rc = mdb_env_stat(s->env, &st);
    if (rc == 0)
        rc = usable_free_pages(s, &free_pages);
    if (rc)
        return rc;
    /* Leaves split half full, and the branches above them are copied too. */
    uint64_t need = 2 * bytes / st.ms_psize + 8 + KEEP_PAGES;
    if (free_pages >= need || avail >= 2 * bytes + 2 * (uint64_t)RESERVE_BYTES)
        return 0;
    return STORE_EDISK;
}

/* Writes zeros over [from, to) of fd and flushes them; on failure the file is cut back to
 * from (the file's end, so never below LMDB's pages) so that zeros do not fill a short disk. */
static int zero_fill(int fd, uint64_t from, uint64_t to)
{
    static const uint8_t zeros[FILL_PIECE];
    for (uint64_t off = from; off < to;) {
        size_t len = to - off < FILL_PIECE ? (size_t)(to - off) : FILL_PIECE;
        ssize_t w = pwrite(fd, zeros, len, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int rc = ftruncate(fd, (off_t)from);
            (void)rc; /* the zeros left are harmless: LMDB writes over them */
            return -1;
        }
        off += (uint64_t)w;
    }
    return fdatasync(fd);
}

void store_prefill(store *s)
{
    /* With the write-ahead log the data file is flushed at checkpoints only: its growth
     * there costs one journal commit per checkpoint, not one per commit. */
    if (!s->sync || s->wal_fd >= 0 || s->disk_full || s->prefill_failed)
        return;
    MDB_envinfo info;
    MDB_stat st;
    int fd;
    if (mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &st) || mdb_env_get_fd(s->env, &fd))
        return;
    if (!s->file_end) {
        struct stat fs;
        if (fstat(fd, &fs) < 0)
            return;
        s->file_end = (uint64_t)fs.st_size;
    }
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    if (used > s->file_end)
        s->file_end = used; /* a txn grew the file past the zeros */
    uint64_t ahead = s->file_end / 16;
    ahead = ahead < AHEAD_MIN ? AHEAD_MIN : ahead > AHEAD_MAX ? AHEAD_MAX : ahead;
    uint64_t to = s->file_end + FILL_MAX;
    if (to > info.me_mapsize)
        to = info.me_mapsize;
    if (s->file_end - used >= ahead || to <= s->file_end)
        return;
    /* Zeros never take the room that a full disk's cleanup needs. */
    if (store_disk_avail(s) < to - s->file_end + ROOM_AGAIN)
        return;
    if (zero_fill(fd, s->file_end, to) < 0) {
        s->prefill_failed = 1; /* commits still work, only slower: no retry on every one */
        return;
    }
    s->file_end = to;
}
