/* The write-ahead log of a sync store: one flush per group commit instead of LMDB's two.
 *
 * LMDB makes a commit durable with two flushes, its data pages and then its meta page, in
 * that order, so that a power cut never leaves a meta page pointing at pages not on disk.
 * Here the environment runs with MDB_NOSYNC and durability comes from this log:
 * - an append's txn is committed to the page cache, then its record (the log values it put
 *   and the offsets riding along) is written here and flushed: one flush;
 * - any other write txn, a full log and every CKPT_COMMITS appends end in a checkpoint:
 *   LMDB's pages and meta page flushed (mdb_env_sync), then the header names that txn and
 *   keeps a copy of its meta page, and the records start over;
 * - a read txn pins the checkpoint's snapshot, so no later txn reuses its pages.
 * After a power cut the data file holds the checkpoint intact plus any subset of the later
 * writes (a later meta page may have reached the disk before its pages). Opening puts the
 * checkpoint's meta page back into both meta slots, so LMDB opens that snapshot, and
 * replays the records after it in seq order up to the first torn one: what was PUBACKed is
 * back, and the store is consistent whatever the disk kept.
 *
 * File: two header slots (the valid one with the higher generation wins, so a torn header
 * write leaves the other), records from REC_START on, each [magic][gen][len][crc] and len
 * bytes, padded with zeros to WAL_ALIGN. A record of another generation, a bad crc or a seq
 * out of line ends the replay. The file is zero-filled to WAL_SIZE once, so a record's
 * flush carries data only (a flush that makes a file longer also commits the filesystem's
 * journal).
 *
 * Records are written with O_DIRECT where the filesystem allows it: the block goes from
 * our buffer to the disk without the page cache's copy and writeback scan, a quarter off
 * each commit's flush here (16 KiB: 149 -> 113 us). The padding is what O_DIRECT needs,
 * and a record never shares a block with the one before, so a torn write cannot take an
 * acknowledged record with it. Version 1 logs (packed records) are still replayed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "baetyl/error.h"
#include "baetyl/log.h"
#include "crc32c.h"
#include "store_internal.h"

#define WAL_SIZE ((uint64_t)8 << 20)
#define HDR_SLOT 512
#define REC_START 4096
#define META_COPY 256         /* LMDB's page header and MDB_meta fit in it on every platform */
#define HDR_MAGIC 0x31485742u /* "BWH1" */
#define REC_MAGIC 0x31525742u /* "BWR1" */
#define REC_HDR STORE_WAL_REC_HDR
#define WAL_ALIGN 4096 /* O_DIRECT's alignment on every Linux filesystem and disk */
#define WAL_VERSION 2  /* 1: records packed, without padding */
#define HDR_LEN (36 + META_COPY + 4)
/* Appends between checkpoints: bounds the pages the pin keeps from reuse (a few per txn). */
#define CKPT_COMMITS 512
/* Appends between two starts of the data file's writeback. LMDB's copy-on-write puts ~8
 * new pages on each commit, and with the snapshot pinned none is reused: a checkpoint left
 * to write 512 commits' pages at once took 13-28 ms here, a stall of the whole pipeline
 * every ~100 ms. Started every 8 records they are mostly on disk by then (0.3-1 ms). */
#define TRICKLE_COMMITS 8

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* All n bytes at off, read or written; 0 or -1 (errno). */
static int pio_all(int fd, void *buf, size_t n, off_t off, int write)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = write ? pwrite(fd, p, n, off) : pread(fd, p, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
        off += r;
    }
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
    return pio_all(fd, (void *)buf, n, off, 1);
}

static int pread_all(int fd, void *buf, size_t n, off_t off)
{
    return pio_all(fd, buf, n, off, 0);
}

static void path_in(const store *s, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", s->dir, name);
}

/* The valid header with the highest generation; 0, or -1 when there is none. */
static int header_read(store *s, uint8_t *meta, uint32_t *psize)
{
    int found = -1;
    for (int slot = 0; slot < 2; slot++) {
        uint8_t h[HDR_LEN];
        if (pread_all(s->wal_fd, h, sizeof h, (off_t)slot * HDR_SLOT) < 0)
            continue;
        uint32_t version = get32(h + 4);
        if (get32(h) != HDR_MAGIC || (version != 1 && version != WAL_VERSION) ||
            crc32c(0, h, HDR_LEN - 4) != get32(h + HDR_LEN - 4) || get32(h + 32) != META_COPY)
            continue;
        uint32_t gen = get32(h + 8);
        if (found == 0 && gen <= s->wal_gen)
            continue;
        found = 0;
        s->wal_gen = gen;
        s->wal_align = version == 1 ? 1 : WAL_ALIGN;
        *psize = get32(h + 12);
        memcpy(meta, h + 36, META_COPY);
    }
    return found;
}

/* Puts the checkpoint's meta page into both of the data file's meta slots: LMDB then opens
 * that snapshot, whatever later meta pages reached the disk. */
static int meta_restore(store *s, const uint8_t *meta, uint32_t psize, char *err, size_t errlen)
{
    char path[4096];
    path_in(s, "data.mdb", path, sizeof path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 1 : bt_errf(err, errlen, "store: %s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0 || psize < META_COPY || (uint64_t)st.st_size < 2 * (uint64_t)psize) {
        close(fd);
        return 1; /* not a data file this log checkpointed: the log is dropped */
    }
    for (size_t slot = 0; slot < 2 && rc == 0; slot++) {
        /* The copy with its page number (LMDB's pgno_t is a size_t) set to the slot's. */
        uint8_t page[META_COPY];
        memcpy(page, meta, META_COPY);
        memcpy(page, &slot, sizeof slot);
        rc = pwrite_all(fd, page, META_COPY, (off_t)(slot * psize));
    }
    if (rc == 0)
        rc = fdatasync(fd);
    if (rc)
        bt_errf(err, errlen, "store: restoring %s: %s", path, strerror(errno));
    close(fd);
    return rc ? -1 : 0;
}

static uint64_t align_up(uint64_t n, uint64_t a)
{
    return (n + a - 1) / a * a;
}

static void direct_refused(void)
{
    bt_logkv(BT_LOG_INFO,
             "message store: the filesystem refuses direct writes to the write-ahead log: "
             "buffered writes and a flush instead",
             NULL);
}

/* The log's second descriptor, for records; none (buffered writes) where O_DIRECT is
 * refused (an older tmpfs, some FUSE filesystems). */
static void wal_open_direct(store *s)
{
    char path[4096];
    path_in(s, "wal", path, sizeof path);
    s->wal_dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (s->wal_dfd < 0 && errno == EINVAL)
        direct_refused();
}

static void wal_close_fds(store *s)
{
    if (s->wal_dfd >= 0)
        close(s->wal_dfd);
    if (s->wal_fd >= 0)
        close(s->wal_fd);
    s->wal_fd = s->wal_dfd = -1;
}

/* A new log file, zero-filled to WAL_SIZE and on disk; -1 (errno) when it cannot be. */
static int wal_create(store *s)
{
    char path[4096];
    path_in(s, "wal", path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    static const uint8_t zeros[64 << 10];
    for (uint64_t off = 0; off < WAL_SIZE; off += sizeof zeros)
        if (pwrite_all(fd, zeros, sizeof zeros, (off_t)off) < 0) {
            int e = errno;
            close(fd);
            unlink(path);
            errno = e;
            return -1;
        }
    if (fdatasync(fd) < 0) {
        close(fd);
        return -1;
    }
    s->wal_fd = fd;
    int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int store_wal_prepare(store *s, int create, char *err, size_t errlen)
{
    char path[4096];
    path_in(s, "wal", path, sizeof path);
    s->wal_fd = open(path, O_RDWR | O_CLOEXEC);
    if (s->wal_fd < 0 && !create)
        return 0;
    if (s->wal_fd >= 0) {
        if (flock(s->wal_fd, LOCK_EX | LOCK_NB) < 0) {
            close(s->wal_fd);
            s->wal_fd = -1;
            return bt_errf(err, errlen, "store: %s is in use by another process", s->dir);
        }
        struct stat st;
        uint8_t meta[META_COPY];
        uint32_t psize = 0;
        if (fstat(s->wal_fd, &st) == 0 && (uint64_t)st.st_size == WAL_SIZE &&
            header_read(s, meta, &psize) == 0) {
            int rc = meta_restore(s, meta, psize, err, errlen);
            if (rc < 0)
                return -1;
            s->wal_replay = rc == 0;
            wal_open_direct(s);
            return 0;
        }
        bt_logkv(BT_LOG_WARN, "message store: the write-ahead log is unreadable, made anew", "path",
                 path, NULL);
        close(s->wal_fd);
        s->wal_fd = -1;
        if (!create) {
            unlink(path);
            return 0;
        }
    }
    if (wal_create(s) < 0 || flock(s->wal_fd, LOCK_EX | LOCK_NB) < 0) {
        /* No room for the log (or no lock): LMDB's own two flushes per commit. */
        bt_logkv(BT_LOG_WARN, "message store: no write-ahead log, commits flush twice", "error",
                 strerror(errno), NULL);
        wal_close_fds(s);
        return 0;
    }
    s->wal_gen = 0;
    wal_open_direct(s);
    return 0;
}

/* The payload of one append record: what replay_txn puts again. */
typedef struct {
    uint64_t first;
    uint32_t n, noffs;
    const uint8_t *p, *end;
} rec_view;

static int rec_parse(const uint8_t *p, size_t len, rec_view *v)
{
    if (len < 16)
        return -1;
    v->first = store_be64_get(p);
    v->n = get32(p + 8);
    v->noffs = get32(p + 12);
    v->p = p + 16;
    v->end = p + len;
    return 0;
}

static int replay_txn(store *s, MDB_txn *t, void *arg, char *err, size_t errlen)
{
    const rec_view *v = arg;
    const uint8_t *p = v->p;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t, s->log, &cur);
    if (rc)
        return rc;
    for (uint32_t i = 0; rc == 0 && i < v->n; i++) {
        if (v->end - p < 4 || (size_t)(v->end - p - 4) < get32(p)) {
            rc = STORE_EFN;
            break;
        }
        uint8_t kb[8];
        store_be64_put(kb, v->first + i);
        MDB_val k = {8, kb}, d = {get32(p), (void *)(p + 4)};
        rc = mdb_cursor_put(cur, &k, &d, MDB_APPEND);
        p += 4 + d.mv_size;
    }
    mdb_cursor_close(cur);
    for (uint32_t i = 0; rc == 0 && i < v->noffs; i++) {
        size_t klen = v->end - p < 2 ? 0 : (size_t)(p[0] << 8 | p[1]);
        if (v->end - p < 2 || (size_t)(v->end - p - 2) < klen + 8) {
            rc = STORE_EFN;
            break;
        }
        MDB_val k = {klen, (void *)(p + 2)}, d = {8, (void *)(p + 2 + klen)};
        rc = mdb_put(t, s->offsets, &k, &d, 0);
        p += 2 + klen + 8;
    }
    if (rc == STORE_EFN) {
        bt_errf(err, errlen, "store: write-ahead log record of seq %llu is malformed",
                (unsigned long long)v->first);
        return STORE_EFN;
    }
    if (rc == 0 && v->n)
        rc = store_meta_put_last_seq(s, t, v->first + v->n - 1);
    return rc;
}

typedef struct {
    rec_view *v;
    size_t n;
} replay_set;

/* Every record in one txn: pages are copied once, not once per record, so the replay
 * needs little more room than its messages (the checkpoint's pages are pinned). */
static int replay_all_txn(store *s, MDB_txn *t, void *arg, char *err, size_t errlen)
{
    const replay_set *rs = arg;
    for (size_t i = 0; i < rs->n; i++) {
        int rc = replay_txn(s, t, &rs->v[i], err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

/* Replays the records after the checkpoint; how many messages, or -1. */
static long replay(store *s, char *err, size_t errlen)
{
    uint8_t *buf = malloc(WAL_SIZE - REC_START);
    replay_set rs = {NULL, 0};
    size_t cap = 0;
    uint64_t pos = REC_START, next = s->last_seq + 1;
    long msgs = 0;
    if (!buf)
        return bt_errf(err, errlen, "store: out of memory replaying the write-ahead log");
    while (pos + REC_HDR <= WAL_SIZE) {
        uint8_t *h = buf + (pos - REC_START);
        if (pread_all(s->wal_fd, h, REC_HDR, (off_t)pos) < 0)
            break;
        uint32_t len = get32(h + 8);
        if (get32(h) != REC_MAGIC || get32(h + 4) != s->wal_gen || len > WAL_SIZE - pos - REC_HDR ||
            pread_all(s->wal_fd, h + REC_HDR, len, (off_t)(pos + REC_HDR)) < 0)
            break;
        rec_view v;
        if (crc32c(crc32c(0, h + 4, 8), h + REC_HDR, len) != get32(h + 12) ||
            rec_parse(h + REC_HDR, len, &v) < 0 || v.first != next || !v.n)
            break; /* torn, or not the next: what follows was never acknowledged */
        if (rs.n == cap) {
            cap = cap ? cap * 2 : 64;
            rec_view *nv = realloc(rs.v, cap * sizeof *nv);
            if (!nv) {
                free(rs.v);
                free(buf);
                return bt_errf(err, errlen, "store: out of memory replaying the write-ahead log");
            }
            rs.v = nv;
        }
        rs.v[rs.n++] = v;
        next = v.first + v.n;
        msgs += v.n;
        pos += align_up(REC_HDR + len, s->wal_align);
    }
    int rc = rs.n ? store_write(s, STORE_TXN_GROWS, "replay", replay_all_txn, &rs, err, errlen) : 0;
    if (rc == 0 && rs.n)
        s->last_seq = next - 1;
    free(rs.v);
    free(buf);
    return rc ? -1 : msgs;
}

int store_wal_checkpoint(store *s, char *err, size_t errlen)
{
    if (s->wal_fd < 0)
        return 0;
    int rc = mdb_env_sync(s->env, 1);
    MDB_envinfo info;
    MDB_stat st;
    uint8_t h[HDR_LEN], meta[META_COPY];
    if (rc == 0) {
        mdb_env_info(s->env, &info);
        mdb_env_stat(s->env, &st);
        int fd;
        rc = mdb_env_get_fd(s->env, &fd);
        size_t slot = info.me_last_txnid & 1;
        if (rc == 0 && pread_all(fd, meta, META_COPY, (off_t)(slot * st.ms_psize)) < 0)
            rc = errno ? errno : EIO;
    }
    if (rc)
        return bt_errf(err, errlen, "store: checkpoint: %s", mdb_strerror(rc));
    uint32_t gen = s->wal_gen + 1;
    memset(h, 0, sizeof h);
    put32(h, HDR_MAGIC);
    put32(h + 4, WAL_VERSION);
    put32(h + 8, gen);
    put32(h + 12, st.ms_psize);
    store_be64_put(h + 16, (uint64_t)info.me_last_txnid);
    store_be64_put(h + 24, s->last_seq);
    put32(h + 32, META_COPY);
    memcpy(h + 36, meta, META_COPY);
    put32(h + HDR_LEN - 4, crc32c(0, h, HDR_LEN - 4));
    if (pwrite_all(s->wal_fd, h, sizeof h, (off_t)(gen & 1) * HDR_SLOT) < 0 ||
        fdatasync(s->wal_fd) < 0)
        return bt_errf(err, errlen, "store: checkpoint: write-ahead log: %s", strerror(errno));
    s->wal_gen = gen;
    s->wal_align = WAL_ALIGN;
    s->wal_pos = REC_START;
    s->wal_commits = 0;
    /* The new checkpoint is on disk: its snapshot is the one to keep. No write txn runs in
     * between (wmu), so the new read txn sees exactly it. */
    if (s->wal_pin)
        mdb_txn_abort(s->wal_pin);
    s->wal_pin = NULL;
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->wal_pin)))
        return bt_errf(err, errlen, "store: checkpoint: pinning the snapshot: %s",
                       mdb_strerror(rc));
    return 0;
}

int store_wal_recover(store *s, char *err, size_t errlen)
{
    if (s->wal_fd < 0)
        return 0;
    if (s->wal_replay) {
        long n = replay(s, err, errlen);
        if (n < 0)
            return -1;
        if (n > 0) {
            char b[32];
            snprintf(b, sizeof b, "%ld", n);
            bt_logkv(BT_LOG_INFO, "message store: replayed the write-ahead log", "messages", b,
                     NULL);
        }
    }
    s->wal_replay = 0;
    return store_wal_checkpoint(s, err, errlen);
}

uint8_t *store_wal_record_new(size_t len)
{
    void *p = NULL;
    return posix_memalign(&p, WAL_ALIGN, align_up(REC_HDR + len, WAL_ALIGN)) ? NULL : p;
}

/* One record block at wal_pos, on disk when it returns; 0 or -1 (errno). A direct write
 * the filesystem refuses (EINVAL: another alignment) turns direct writes off for good. */
static int record_write(store *s, const uint8_t *blk, size_t total)
{
    if (s->wal_dfd >= 0) {
        ssize_t w = pwrite(s->wal_dfd, blk, total, (off_t)s->wal_pos);
        if (w == (ssize_t)total)
            return fdatasync(s->wal_dfd);
        if (w >= 0 || errno != EINVAL)
            return w < 0 ? -1 : (errno = EIO, -1);
        close(s->wal_dfd);
        s->wal_dfd = -1;
        direct_refused();
    }
    if (pwrite_all(s->wal_fd, blk, total, (off_t)s->wal_pos) < 0)
        return -1;
    return fdatasync(s->wal_fd);
}

int store_wal_after_commit(store *s, char *err, size_t errlen)
{
    if (s->wal_fd < 0 || s->wal_recovering)
        return 0;
    uint8_t *blk = s->wal_rec;
    size_t len = s->wal_len;
    s->wal_rec = NULL;
    uint64_t total = align_up(REC_HDR + len, WAL_ALIGN);
    if (!blk || total > WAL_SIZE - REC_START || s->wal_commits >= CKPT_COMMITS)
        return store_wal_checkpoint(s, err, errlen);
    if (s->wal_pos + total > WAL_SIZE && store_wal_checkpoint(s, err, errlen))
        return -1;
    put32(blk, REC_MAGIC);
    put32(blk + 4, s->wal_gen);
    put32(blk + 8, (uint32_t)len);
    put32(blk + 12, crc32c(crc32c(0, blk + 4, 8), blk + REC_HDR, len));
    memset(blk + REC_HDR + len, 0, total - REC_HDR - len);
    errno = 0;
    if (record_write(s, blk, total) < 0) {
        /* The txn is in LMDB's cache but not durable: a checkpoint makes it so. */
        char why[160];
        snprintf(why, sizeof why, "%s", errno ? strerror(errno) : "short write");
        if (store_wal_checkpoint(s, err, errlen))
            return -1;
        bt_logkv(BT_LOG_WARN, "message store: write-ahead log write failed, checkpointed", "error",
                 why, NULL);
        return 0;
    }
    s->wal_pos += total;
    s->wal_commits++;
    int dfd;
    if (s->wal_commits % TRICKLE_COMMITS == 0 && mdb_env_get_fd(s->env, &dfd) == 0)
        sync_file_range(dfd, 0, 0, SYNC_FILE_RANGE_WRITE); /* starts it; waits for nothing */
    return 0;
}

int store_wal_drop(store *s, char *err, size_t errlen)
{
    if (s->wal_fd < 0)
        return 0;
    int rc = mdb_env_sync(s->env, 1);
    if (rc)
        return bt_errf(err, errlen, "store: syncing before dropping the write-ahead log: %s",
                       mdb_strerror(rc));
    if (s->wal_pin)
        mdb_txn_abort(s->wal_pin);
    s->wal_pin = NULL;
    char path[4096];
    path_in(s, "wal", path, sizeof path);
    unlink(path);
    wal_close_fds(s);
    return 0;
}

void store_wal_close(store *s)
{
    if (s->wal_fd < 0)
        return;
    char err[256];
    if (store_wal_checkpoint(s, err, sizeof err))
        bt_logkv(BT_LOG_ERROR, "message store: last checkpoint failed", "error", err, NULL);
    if (s->wal_pin)
        mdb_txn_abort(s->wal_pin);
    s->wal_pin = NULL;
    wal_close_fds(s);
}

size_t store_wal_record_size(const store_msg *msgs, size_t n, const store_offset *offs,
                             size_t noffs)
{
    size_t len = 16;
    for (size_t i = 0; i < n; i++)
        len += 4 + store_msg_size(&msgs[i]);
    for (size_t i = 0; i < noffs; i++)
        len += 2 + strlen(offs[i].consumer) + 8;
    return len;
}

void store_wal_record_write(uint8_t *p, uint64_t first, const store_msg *msgs, size_t n,
                            const store_offset *offs, size_t noffs)
{
    store_be64_put(p, first);
    put32(p + 8, (uint32_t)n);
    put32(p + 12, (uint32_t)noffs);
    p += 16;
    for (size_t i = 0; i < n; i++) {
        size_t sz = store_msg_size(&msgs[i]);
        put32(p, (uint32_t)sz);
        store_msg_encode(&msgs[i], p + 4);
        p += 4 + sz;
    }
    for (size_t i = 0; i < noffs; i++) {
        size_t kl = strlen(offs[i].consumer);
        p[0] = (uint8_t)(kl >> 8);
        p[1] = (uint8_t)kl;
        memcpy(p + 2, offs[i].consumer, kl);
        store_be64_put(p + 2 + kl, offs[i].offset);
        p += 2 + kl + 8;
    }
}
