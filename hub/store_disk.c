/* A full disk under the store (ENOSPC below storage.size.max). Deleting from LMDB writes
 * pages too (copy-on-write), so a store that filled its disk could not even be trimmed to
 * make room. Two guards: a reserve file, given back to the filesystem when a delete finds
 * the disk full; and, once the disk was full, appends that leave KEEP_PAGES reusable free
 * pages inside the data file, so the deletes that make room never need the disk again. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store_internal.h"

#define RESERVE_NAME "reserve"
#define RESERVE_BYTES ((off_t)1 << 20)
#define KEEP_PAGES 64
/* The disk has room again: appends grow the file freely and the reserve comes back. */
#define ROOM_AGAIN ((uint64_t)16 << 20)

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
    size_t next = mdb_txn_id(t) + 1;
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
