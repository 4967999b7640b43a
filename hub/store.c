/* The store's LMDB environment: opening, write txns with map growth, chunked walks. The
 * log is in store_log.c, the keyed tables in store_kv.c.
 *
 * Durability choice: sync=1 runs LMDB with MDB_NOSYNC and makes every commit durable
 * through the store's write-ahead log (store_wal.c): an append's record flushed, one flush
 * where LMDB's own sync takes two (data pages, then meta page), and a checkpoint for any
 * other write. Without room for the log, sync=1 keeps LMDB's default flags. sync=0 uses
 * MDB_NOSYNC alone: committed pages are in the OS page cache, which survives a crash of
 * the process (the hub's kill -9 case) but not of the machine; the store is synced once at
 * close. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "baetyl/error.h"
#include "baetyl/util.h"
#include "store_internal.h"

#define STORE_VERSION 1
#define DEFAULT_MAP_SIZE ((size_t)1 << 30)
#define MIN_MAP_SIZE ((size_t)64 << 10)
#define MAX_RETRIES 8
#define DISK_FULL_SLACK ((uint64_t)1 << 20)
#define WALK_CHUNK_RECS 256
#define WALK_CHUNK_BYTES ((size_t)1 << 20)

int store_check_key(store *s, const char *what, const void *k, size_t len, char *err, size_t errlen)
{
    if (!k || !len)
        return bt_errf(err, errlen, "store: empty %s", what);
    size_t max = (size_t)mdb_env_get_maxkeysize(s->env);
    if (len > max)
        return bt_errf(err, errlen, "store: %s of %zu bytes is too long (max %zu)", what, len, max);
    return 0;
}

static int make_dir(const char *dir, char *err, size_t errlen)
{
    char why[512];
    if (bt_mkdir_p(dir, 0755, why, sizeof why) < 0)
        return bt_errf(err, errlen, "store: %s", why);
    return 0;
}

static size_t map_size_now(store *s)
{
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    return info.me_mapsize;
}

static const char *size_str(char *buf, size_t len, size_t bytes)
{
    if (bytes >= ((size_t)1 << 20))
        snprintf(buf, len, "%zu MiB", bytes >> 20);
    else
        snprintf(buf, len, "%zu KiB", bytes >> 10);
    return buf;
}

static size_t page_size(store *s)
{
    MDB_stat st;
    mdb_env_stat(s->env, &st);
    return st.ms_psize;
}

/* Sets the map size (0: adopt the size another process set, MDB_MAP_RESIZED), with every
 * txn of this process kept out. */
static int set_map_size(store *s, size_t size)
{
    pthread_rwlock_wrlock(&s->maplock);
    int rc = mdb_env_set_mapsize(s->env, size);
    pthread_rwlock_unlock(&s->maplock);
    return rc;
}

static int adopt_map_size(store *s)
{
    return set_map_size(s, 0);
}

/* Grows the map after MDB_MAP_FULL; -1 when the limit for this kind of txn is reached. */
static int grow_map(store *s, enum store_txn_kind kind, int *frees_grown)
{
    int rc = -1;
    size_t cur = map_size_now(s), want = 0;
    if (kind == STORE_TXN_GROWS) {
        if (cur < s->map_max)
            want = cur > s->map_max / 2 ? s->map_max : cur * 2;
    } else if (*frees_grown < 2) {
        /* Deleting rewrites a few pages; 1/16 more room is plenty and stays sparse on disk. */
        size_t step = cur / 16 > ((size_t)1 << 20) ? cur / 16 : ((size_t)1 << 20);
        want = cur + step;
        (*frees_grown)++;
    }
    if (want) {
        size_t ps = page_size(s);
        want = (want + ps - 1) / ps * ps;
        if (set_map_size(s, want) == 0)
            rc = 0;
    }
    return rc;
}

/* LMDB reports a short write as EIO: when the disk has (almost) no room left, that is a
 * full disk, not a failing one. */
static int disk_nearly_full(store *s)
{
    return store_disk_avail(s) < DISK_FULL_SLACK;
}

static int write_locked(store *s, enum store_txn_kind kind, const char *what, store_txn_fn fn,
                        void *arg, char *err, size_t errlen)
{
    int frees_grown = 0, ckpt_tried = 0;
    if (kind == STORE_TXN_GROWS)
        store_prefill(s);
    for (int attempt = 0;; attempt++) {
        MDB_txn *t;
        s->wal_rec = NULL;
        pthread_rwlock_rdlock(&s->maplock);
        int rc = mdb_txn_begin(s->env, NULL, 0, &t);
        if (rc == 0) {
            rc = fn(s, t, arg, err, errlen);
            if (rc == 0)
                rc = mdb_txn_commit(t);
            else
                mdb_txn_abort(t);
        }
        pthread_rwlock_unlock(&s->maplock);
        if (rc == 0)
            return store_wal_after_commit(s, err, errlen);
        if (rc == STORE_EFN)
            return -1;
        if (rc == STORE_ECOUNT) {
            s->full_kind = STORE_FULL_COUNT;
            bt_errf(err, errlen, "store full: %s would pass the %llu messages of storage.count.max",
                    what, (unsigned long long)s->count_max);
            return STORE_FULL;
        }
        if (rc == ENOSPC || rc == EDQUOT || rc == STORE_EDISK ||
            (rc == EIO && disk_nearly_full(s))) {
            /* LMDB wrote the txn's pages to free space only and aborted it: nothing
             * committed is touched, the store goes on once space is freed. A delete
             * gets the reserve back from the disk and goes again. */
            s->disk_full = 1;
            int retry = kind == STORE_TXN_FREES && attempt < MAX_RETRIES;
            if (retry && store_reserve_release(s) == 0)
                continue;
            s->full_kind = STORE_FULL_DISK;
            bt_errf(err, errlen, "store full: %s: the disk is full (%s)", what, strerror(rc));
            return STORE_FULL;
        }
        if (rc == MDB_MAP_RESIZED && attempt < MAX_RETRIES && adopt_map_size(s) == 0)
            continue;
        if (rc == MDB_MAP_FULL) {
            /* Pages freed since the checkpoint are pinned: a new one frees them for reuse. */
            if (s->wal_fd >= 0 && s->wal_commits && !ckpt_tried) {
                ckpt_tried = 1;
                if (store_wal_checkpoint(s, err, errlen))
                    return -1;
                continue;
            }
            if (attempt < MAX_RETRIES && grow_map(s, kind, &frees_grown) == 0) {
                if (kind == STORE_TXN_GROWS)
                    store_prefill(s); /* the zeros go on into the grown map */
                continue;
            }
            char cur[32], max[32];
            bt_errf(err, errlen, "store full: %s needs more than the %s map (limit %s)", what,
                    size_str(cur, sizeof(cur), map_size_now(s)),
                    size_str(max, sizeof(max), s->map_max));
            s->full_kind = STORE_FULL_SIZE;
            return STORE_FULL;
        }
        return bt_errf(err, errlen, "store: %s: %s", what, mdb_strerror(rc));
    }
}

int store_write(store *s, enum store_txn_kind kind, const char *what, store_txn_fn fn, void *arg,
                char *err, size_t errlen)
{
    pthread_mutex_lock(&s->wmu);
    int rc = write_locked(s, kind, what, fn, arg, err, errlen);
    pthread_mutex_unlock(&s->wmu);
    return rc;
}

int store_read_begin(store *s, MDB_txn **t, char *err, size_t errlen)
{
    for (int attempt = 0;; attempt++) {
        pthread_rwlock_rdlock(&s->maplock);
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, t);
        if (rc == 0)
            return 0;
        pthread_rwlock_unlock(&s->maplock);
        if (rc == MDB_MAP_RESIZED && attempt < MAX_RETRIES && adopt_map_size(s) == 0)
            continue;
        return bt_errf(err, errlen, "store: read: %s", mdb_strerror(rc));
    }
}

void store_read_end(store *s, MDB_txn *t)
{
    mdb_txn_abort(t);
    pthread_rwlock_unlock(&s->maplock);
}

/* A chunk of copied records: [size_t klen][size_t vlen][key][0][value][0] ... */
typedef struct {
    uint8_t *buf;
    size_t len, cap;
} chunk;

static int chunk_add(chunk *c, const MDB_val *k, const MDB_val *v)
{
    size_t need = 2 * sizeof(size_t) + k->mv_size + v->mv_size + 2;
    if (need > c->cap - c->len) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap - c->len < need)
            cap *= 2;
        uint8_t *b = realloc(c->buf, cap);
        if (!b)
            return -1;
        c->buf = b;
        c->cap = cap;
    }
    uint8_t *p = c->buf + c->len;
    memcpy(p, &k->mv_size, sizeof(size_t));
    memcpy(p + sizeof(size_t), &v->mv_size, sizeof(size_t));
    p += 2 * sizeof(size_t);
    memcpy(p, k->mv_data, k->mv_size);
    p[k->mv_size] = 0;
    p += k->mv_size + 1;
    memcpy(p, v->mv_data, v->mv_size);
    p[v->mv_size] = 0;
    c->len += need;
    return 0;
}

/* Copies up to a chunk of records starting at *resume (skipping it when skip is set). */
static int walk_fill(store *s, MDB_dbi dbi, const chunk *resume, int skip, size_t limit, chunk *c,
                     size_t *nrec, int *more, char *err, size_t errlen)
{
    MDB_txn *t;
    MDB_cursor *cur;
    MDB_val k, v;
    if (store_read_begin(s, &t, err, errlen))
        return -1;
    int rc = mdb_cursor_open(t, dbi, &cur);
    if (rc) {
        store_read_end(s, t);
        return bt_errf(err, errlen, "store: cursor: %s", mdb_strerror(rc));
    }
    if (resume->len) {
        k.mv_data = resume->buf;
        k.mv_size = resume->len;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == 0 && skip && k.mv_size == resume->len &&
            !memcmp(k.mv_data, resume->buf, k.mv_size))
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    c->len = 0;
    *nrec = 0;
    while (rc == 0 && *nrec < WALK_CHUNK_RECS && c->len < WALK_CHUNK_BYTES &&
           (!limit || *nrec < limit)) {
        if (chunk_add(c, &k, &v)) {
            rc = ENOMEM;
            break;
        }
        (*nrec)++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    store_read_end(s, t);
    if (rc && rc != MDB_NOTFOUND)
        return bt_errf(err, errlen, "store: read: %s", mdb_strerror(rc));
    *more = rc == 0;
    return 0;
}

long store_walk(store *s, MDB_dbi dbi, const void *start, size_t startlen, size_t max,
                store_walk_fn fn, void *arg, char *err, size_t errlen)
{
    chunk c = {0}, resume = {0};
    long passed = -1, n = 0;
    int skip = 0;
    /* resume holds the raw bytes of the key to continue from */
    if (start && startlen) {
        if (!(resume.buf = malloc(startlen)))
            goto oom;
        memcpy(resume.buf, start, startlen);
        resume.len = resume.cap = startlen;
    }
    for (;;) {
        size_t nrec = 0;
        int more = 0;
        if (walk_fill(s, dbi, &resume, skip, max ? max - (size_t)n : 0, &c, &nrec, &more, err,
                      errlen))
            goto out;
        const uint8_t *p = c.buf, *lastk = NULL;
        size_t lastklen = 0;
        for (size_t i = 0; i < nrec; i++) {
            size_t klen, vlen;
            memcpy(&klen, p, sizeof(size_t));
            memcpy(&vlen, p + sizeof(size_t), sizeof(size_t));
            const uint8_t *k = p + 2 * sizeof(size_t), *v = k + klen + 1;
            p = v + vlen + 1;
            int r = fn(k, klen, v, vlen, arg, err, errlen);
            if (r < 0)
                goto out;
            n++;
            if (r > 0 || (max && (size_t)n >= max)) {
                passed = n;
                goto out;
            }
            lastk = k;
            lastklen = klen;
        }
        if (!more || !nrec) {
            passed = n;
            goto out;
        }
        if (lastklen > resume.cap) {
            uint8_t *b = realloc(resume.buf, lastklen);
            if (!b)
                goto oom;
            resume.buf = b;
            resume.cap = lastklen;
        }
        memcpy(resume.buf, lastk, lastklen);
        resume.len = lastklen;
        skip = 1;
    }
oom:
    bt_errf(err, errlen, "store: out of memory");
out:
    free(c.buf);
    free(resume.buf);
    return passed;
}

/* Reads an 8-byte meta value; 0 with *found = 0 when missing. */
static int meta_get_u64(store *s, MDB_txn *t, const char *key, uint64_t *out, int *found, char *err,
                        size_t errlen)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(t, s->meta, &k, &v);
    *found = 0;
    *out = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (v.mv_size != 8) {
        bt_errf(err, errlen, "store: corrupt meta %s (%zu bytes)", key, v.mv_size);
        return STORE_EFN;
    }
    *out = store_be64_get(v.mv_data);
    *found = 1;
    return 0;
}

int store_meta_last_seq(store *s, MDB_txn *t, uint64_t *last, char *err, size_t errlen)
{
    int found;
    return meta_get_u64(s, t, "last_seq", last, &found, err, errlen);
}

int store_meta_put_last_seq(store *s, MDB_txn *t, uint64_t last)
{
    uint8_t b[8];
    store_be64_put(b, last);
    MDB_val k = {8, "last_seq"}, v = {8, b};
    return mdb_put(t, s->meta, &k, &v, 0);
}

/* Opens the DBs, checks the format version and sets the seq high-water mark so that the
 * next seq is above both the log's last key and any seq ever handed out. */
static int init_txn(store *s, MDB_txn *t, void *arg, char *err, size_t errlen)
{
    static const char *names[] = {"log", "offsets", "sessions", "retained", "wills", "meta"};
    MDB_dbi *dbis[] = {&s->log, &s->offsets, &s->sessions, &s->retained, &s->wills, &s->meta};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int rc = mdb_dbi_open(t, names[i], MDB_CREATE, dbis[i]);
        if (rc)
            return rc;
    }
    uint64_t version, hwm;
    int found, rc = meta_get_u64(s, t, "version", &version, &found, err, errlen);
    if (rc)
        return rc;
    if (found && version != STORE_VERSION) {
        bt_errf(err, errlen, "store: format version %llu is not supported (this build reads %d)",
                (unsigned long long)version, STORE_VERSION);
        return STORE_EFN;
    }
    if (!found) {
        uint8_t b[8];
        store_be64_put(b, STORE_VERSION);
        MDB_val k = {7, "version"}, v = {8, b};
        if ((rc = mdb_put(t, s->meta, &k, &v, 0)))
            return rc;
    }
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(t, s->log, &cur)))
        return rc;
    rc = store_log_last(s, t, cur, &hwm, err, errlen);
    mdb_cursor_close(cur);
    if (rc)
        return rc;
    s->last_seq = hwm;
    return store_meta_put_last_seq(s, t, hwm);
}

int store_open(const store_options *o, store **out, char *err, size_t errlen)
{
    if (!out)
        return bt_errf(err, errlen, "store: no output pointer");
    *out = NULL;
    if (!o || !o->dir || !o->dir[0])
        return bt_errf(err, errlen, "store: no directory given");
    if (make_dir(o->dir, err, errlen))
        return -1;
    store *s = calloc(1, sizeof(*s));
    if (!s)
        return bt_errf(err, errlen, "store: out of memory");
    s->sync = o->sync ? 1 : 0;
    s->count_max = o->count_max;
    s->done_fd = -1;
    s->wal_fd = s->wal_dfd = -1;
    pthread_mutex_init(&s->wmu, NULL);
    pthread_rwlock_init(&s->maplock, NULL);
    if (!(s->dir = strdup(o->dir))) {
        free(s);
        return bt_errf(err, errlen, "store: out of memory");
    }

    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    size_t map = o->map_size ? o->map_size : DEFAULT_MAP_SIZE;
    if (map < MIN_MAP_SIZE)
        map = MIN_MAP_SIZE;
    map = (map + ps - 1) / ps * ps;
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, 8);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, map);
    /* A store that ran with sync and now runs without recovers through its log first. */
    if (rc == 0 && store_wal_prepare(s, s->sync, err, errlen))
        goto fail;
    /* NOTLS: a read txn is not tied to a thread-local reader slot. NOSYNC: a sync store
     * with its write-ahead log flushes that instead. */
    unsigned flags = MDB_NOTLS | (!s->sync || s->wal_fd >= 0 ? MDB_NOSYNC : 0);
    if (rc == 0)
        rc = mdb_env_open(s->env, o->dir, flags, 0600);
    if (rc) {
        bt_errf(err, errlen, "store: cannot open %s: %s", o->dir, mdb_strerror(rc));
        goto fail;
    }
    /* Reader slots left by a crashed process would pin old pages forever. */
    int dead;
    mdb_reader_check(s->env, &dead);
    /* LMDB keeps a larger size recorded in the file; the grow limit is relative to that. */
    size_t cur = map_size_now(s);
    s->map_max = o->map_max ? o->map_max : 2 * map;
    if (s->map_max < cur)
        s->map_max = cur;
    /* The snapshot opened is the checkpoint's: pinned before any write, or the open's and
     * the replay's txns could reuse its pages, which a cut before the next checkpoint
     * would then find overwritten. */
    if (s->wal_fd >= 0 && (rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->wal_pin))) {
        bt_errf(err, errlen, "store: cannot open %s: %s", o->dir, mdb_strerror(rc));
        goto fail;
    }
    s->wal_recovering = 1;
    if (store_write(s, STORE_TXN_GROWS, "open", init_txn, NULL, err, errlen) ||
        store_wal_recover(s, err, errlen) || (!s->sync && store_wal_drop(s, err, errlen)))
        goto fail;
    s->wal_recovering = 0;
    store_reserve_make(s);
    /* Without a thread, submitted appends are refused and run in the caller. */
    if (s->sync)
        store_writer_start(s);
    *out = s;
    return 0;
fail:
    if (s->wal_pin)
        mdb_txn_abort(s->wal_pin);
    if (s->wal_dfd >= 0)
        close(s->wal_dfd);
    if (s->wal_fd >= 0)
        close(s->wal_fd);
    if (s->env)
        mdb_env_close(s->env);
    pthread_mutex_destroy(&s->wmu);
    pthread_rwlock_destroy(&s->maplock);
    free(s->dir);
    free(s);
    return -1;
}

void store_close(store *s)
{
    if (!s)
        return;
    store_writer_stop(s);
    if (s->wal_fd >= 0)
        store_wal_close(s);
    else if (!s->sync)
        mdb_env_sync(s->env, 1);
    mdb_env_close(s->env);
    pthread_mutex_destroy(&s->wmu);
    pthread_rwlock_destroy(&s->maplock);
    free(s->dir);
    free(s);
}

int store_full_kind(const store *s, uint64_t *excess)
{
    if (excess)
        *excess = s ? s->excess : 0;
    return s ? s->full_kind : 0;
}

uint64_t store_last_seq(store *s)
{
    return s ? __atomic_load_n(&s->last_seq, __ATOMIC_ACQUIRE) : 0;
}
