/* The QoS 1 message log: key = 8-byte big-endian seq (so LMDB's byte order is seq order),
 * value = message record. The last seq handed out is the log's last key, or the "last_seq"
 * high-water mark in meta when that is higher: a cleanup writes the mark before it deletes,
 * so it survives a cleanup that empties the log. An append does not write it: that was one
 * more page copied (and written to the disk) on every commit. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "baetyl/error.h"
#include "store_internal.h"

typedef struct {
    const store_msg *msgs;
    size_t n;
    const store_offset *offs;
    size_t noffs;
    uint64_t last;
    uint8_t *rec; /* the write-ahead log's record of it (store_wal.c) */
} append_ctx;

int store_log_last(store *s, MDB_txn *t, MDB_cursor *cur, uint64_t *last, char *err, size_t errlen)
{
    int rc = store_meta_last_seq(s, t, last, err, errlen);
    if (rc)
        return rc;
    MDB_val k, v;
    if ((rc = mdb_cursor_get(cur, &k, &v, MDB_LAST)))
        return rc == MDB_NOTFOUND ? 0 : rc;
    if (k.mv_size != 8) {
        bt_errf(err, errlen, "store: corrupt log key of %zu bytes", k.mv_size);
        return STORE_EFN;
    }
    if (store_be64_get(k.mv_data) > *last)
        *last = store_be64_get(k.mv_data);
    return 0;
}

/* The checks before the batch's puts: seqs left, room on a full disk, the count bound. */
static int append_check(store *s, MDB_txn *t, const append_ctx *c, uint64_t last, char *err,
                        size_t errlen)
{
    int rc;
    if (last > UINT64_MAX - c->n) {
        bt_errf(err, errlen, "store: sequence numbers exhausted");
        return STORE_EFN;
    }
    if (s->disk_full) {
        uint64_t bytes = 0;
        for (size_t i = 0; i < c->n; i++)
            bytes += store_msg_size(&c->msgs[i]) + 16;
        if ((rc = store_disk_room(s, bytes)))
            return rc;
    }
    if (s->count_max) {
        MDB_stat st;
        if ((rc = mdb_stat(t, s->log, &st)))
            return rc;
        if (st.ms_entries + c->n > s->count_max) {
            s->excess = st.ms_entries + c->n - s->count_max;
            return STORE_ECOUNT;
        }
    }
    return 0;
}

static int append_txn(store *s, MDB_txn *t, void *arg, char *err, size_t errlen)
{
    append_ctx *c = arg;
    uint64_t last;
    /* One cursor for the batch: found on the last key, it stays on the last page, where
     * every append goes. */
    MDB_cursor *cur;
    int rc = store_put_offsets(s, t, c->offs, c->noffs);
    if (rc || (rc = mdb_cursor_open(t, s->log, &cur)))
        return rc;
    rc = store_log_last(s, t, cur, &last, err, errlen);
    if (rc == 0)
        rc = append_check(s, t, c, last, err, errlen);
    for (size_t i = 0; rc == 0 && i < c->n; i++) {
        uint8_t kb[8];
        store_be64_put(kb, last + 1 + i);
        MDB_val k = {8, kb}, v = {store_msg_size(&c->msgs[i]), NULL};
        /* APPEND: seqs only grow, so LMDB skips the search; RESERVE: encode in place. */
        if ((rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND | MDB_RESERVE)) == 0)
            store_msg_encode(&c->msgs[i], v.mv_data);
    }
    mdb_cursor_close(cur);
    if (rc)
        return rc;
    c->last = last + c->n;
    if (s->wal_fd >= 0 && !s->wal_recovering) {
        size_t len = store_wal_record_size(c->msgs, c->n, c->offs, c->noffs);
        if (!c->rec && !(c->rec = store_wal_record_new(len)))
            return ENOMEM;
        store_wal_record_write(c->rec + STORE_WAL_REC_HDR, last + 1, c->msgs, c->n, c->offs,
                               c->noffs);
        s->wal_rec = c->rec;
        s->wal_len = len;
    }
    return 0;
}

int store_append(store *s, const store_msg *msgs, size_t n, uint64_t *seqs,
                 const store_offset *offs, size_t noffs, char *err, size_t errlen)
{
    if (!s || (n && !msgs) || (noffs && !offs))
        return bt_errf(err, errlen, "store: invalid arguments to append");
    if (!n)
        return store_set_offsets(s, offs, noffs, err, errlen);
    for (size_t i = 0; i < n; i++)
        if (store_msg_check(&msgs[i], 0, err, errlen))
            return -1;
    if (store_check_offsets(s, offs, noffs, err, errlen))
        return -1;
    append_ctx c = {msgs, n, offs, noffs, 0, NULL};
    int rc = store_write(s, STORE_TXN_GROWS, "append", append_txn, &c, err, errlen);
    free(c.rec);
    if (rc)
        return rc;
    if (seqs)
        for (size_t i = 0; i < n; i++)
            seqs[i] = c.last - n + 1 + i;
    /* The writer thread raises it; store_last_seq() reads it from the hub's thread. */
    if (c.last > __atomic_load_n(&s->last_seq, __ATOMIC_ACQUIRE))
        __atomic_store_n(&s->last_seq, c.last, __ATOMIC_RELEASE);
    return 0;
}

typedef struct {
    store_scan_cb cb;
    void *arg;
    char *topic; /* NUL-terminated copy of the current topic */
    size_t topic_cap;
} scan_ctx;

static int scan_one(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg,
                    char *err, size_t errlen)
{
    scan_ctx *c = arg;
    if (klen != 8) {
        bt_errf(err, errlen, "store: corrupt log key of %zu bytes", klen);
        return STORE_EFN;
    }
    uint64_t seq = store_be64_get(k);
    store_msg m;
    char why[160];
    if (store_msg_decode(v, vlen, &m, why, sizeof(why))) {
        bt_errf(err, errlen, "store: corrupt log record at seq %llu: %s", (unsigned long long)seq,
                why);
        return STORE_EFN;
    }
    if (store_msg_topic_cstr(&m, &c->topic, &c->topic_cap, err, errlen))
        return STORE_EFN;
    return c->cb(seq, &m, c->arg) ? 1 : 0;
}

long store_scan(store *s, uint64_t from, size_t max, store_scan_cb cb, void *arg, char *err,
                size_t errlen)
{
    if (!s || !cb)
        return bt_errf(err, errlen, "store: invalid arguments to scan");
    uint8_t kb[8];
    store_be64_put(kb, from);
    scan_ctx c = {cb, arg, NULL, 0};
    long n = store_walk(s, s->log, kb, 8, max, scan_one, &c, err, errlen);
    free(c.topic);
    return n;
}

typedef struct {
    int64_t cutoff;
    uint64_t upto; /* messages with seq <= upto go whatever their age */
    uint64_t left; /* how many more may go (the n oldest); UINT64_MAX = no bound */
    long deleted;  /* in this txn */
    int done;
} cleanup_ctx;

/* Deletes up to one batch of expired (or consumed) messages from the head of the log. The
 * log is in arrival order, so it stops at the first message that is still within retention
 * and after upto. An unreadable record at the head is deleted too: it can never be
 * delivered and would otherwise stop retention for good. */
static int cleanup_txn(store *s, MDB_txn *t, void *arg, char *err, size_t errlen)
{
    cleanup_ctx *c = arg;
    MDB_cursor *cur;
    MDB_val k, v;
    c->deleted = 0;
    c->done = 0;
    uint64_t last;
    int rc = mdb_cursor_open(t, s->log, &cur);
    if (rc)
        return rc;
    rc = store_log_last(s, t, cur, &last, err, errlen);
    if (rc == 0)
        rc = store_meta_put_last_seq(s, t, last); /* what is deleted may be the last key */
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && c->deleted < STORE_CLEANUP_BATCH && (uint64_t)c->deleted < c->left) {
        store_msg m;
        if (k.mv_size == 8 && store_msg_decode(v.mv_data, v.mv_size, &m, NULL, 0) == 0 &&
            m.ts_ms >= c->cutoff && store_be64_get(k.mv_data) > c->upto)
            break;
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
        c->deleted++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND || rc == 0) {
        c->done = c->deleted < STORE_CLEANUP_BATCH || (uint64_t)c->deleted == c->left;
        return 0;
    }
    return rc;
}

/* Records when cleanup last ran (meta "cleanup_ms"). */
static int mark_txn(store *s, MDB_txn *t, void *arg, char *err, size_t errlen)
{
    int64_t now_ms = *(const int64_t *)arg;
    uint8_t b[8];
    store_be64_put(b, (uint64_t)now_ms);
    MDB_val k = {10, "cleanup_ms"}, v = {8, b};
    return mdb_put(t, s->meta, &k, &v, 0);
}

static long cleanup_run(store *s, cleanup_ctx c, int64_t now_ms, char *err, size_t errlen)
{
    long total = 0;
    /* One bounded txn per batch: a huge cleanup does not make one huge txn. */
    do {
        if (store_write(s, STORE_TXN_FREES, "cleanup", cleanup_txn, &c, err, errlen))
            return -1;
        total += c.deleted;
        c.left -= (uint64_t)c.deleted;
    } while (!c.done);
    /* LMDB reuses pages freed by a txn only once a later txn has committed: without this
     * small write, the append that follows a cleanup of a full store would still be full. */
    if (total && store_write(s, STORE_TXN_FREES, "cleanup", mark_txn, &now_ms, err, errlen))
        return -1;
    return total;
}

long store_cleanup(store *s, int64_t now_ms, int64_t retention_ms, char *err, size_t errlen)
{
    if (!s || retention_ms < 0)
        return bt_errf(err, errlen, "store: invalid arguments to cleanup");
    cleanup_ctx c = {.left = UINT64_MAX};
    if (__builtin_sub_overflow(now_ms, retention_ms, &c.cutoff))
        c.cutoff = INT64_MIN;
    return cleanup_run(s, c, now_ms, err, errlen);
}

long store_trim(store *s, uint64_t upto, int64_t now_ms, char *err, size_t errlen)
{
    if (!s)
        return bt_errf(err, errlen, "store: invalid arguments to trim");
    cleanup_ctx c = {.cutoff = INT64_MIN, .upto = upto, .left = UINT64_MAX};
    return cleanup_run(s, c, now_ms, err, errlen);
}

long store_drop_oldest(store *s, uint64_t n, int64_t now_ms, char *err, size_t errlen)
{
    if (!s)
        return bt_errf(err, errlen, "store: invalid arguments to drop");
    if (!n)
        return 0;
    cleanup_ctx c = {.cutoff = INT64_MIN, .upto = UINT64_MAX, .left = n};
    return cleanup_run(s, c, now_ms, err, errlen);
}
