/* Private to hub/store*.c: the store's state, transaction helpers and record codecs.
 * The hub core uses store.h only. */
#ifndef HUB_STORE_INTERNAL_H
#define HUB_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>

#include "store.h"

struct store {
    MDB_env *env;
    MDB_dbi log, offsets, sessions, retained, wills, meta;
    uint64_t last_seq; /* highest committed seq */
    size_t map_max;    /* growth limit for writes that add data */
    int sync;
    char *dir;          /* for the free space of its filesystem */
    int disk_full;      /* the disk was full: appends keep room for deletes (store_disk.c) */
    uint64_t file_end;  /* the data file's size as prefilled (store_prefill), 0 = not read */
    int prefill_failed; /* a zero fill failed: no more tries */
    uint64_t count_max; /* log message bound, 0 = none */
    int full_kind;      /* enum store_full_kind of the last STORE_FULL */
    uint64_t excess;    /* for STORE_FULL_COUNT: messages over count_max */
    /* Threads (store_writer.c): wmu orders writes with the store's fields; maplock is held
     * shared by every txn and exclusively while the map size changes. */
    pthread_mutex_t wmu;
    pthread_rwlock_t maplock;
    int has_writer, wstop, inflight, done_fd;
    pthread_t writer;
    void *wstack;        /* the writer's stack: ours, so it is unmapped when the writer ends */
    pthread_mutex_t jmu; /* guards job, done, inflight, wstop */
    pthread_cond_t jcond;
    store_job *job, *done;
    /* The write-ahead log of a sync store (store_wal.c); wal_fd -1: none, LMDB syncs.
     * wal_dfd: the same file opened O_DIRECT for records, -1 where the filesystem refuses. */
    int wal_fd, wal_dfd;
    uint32_t wal_align;   /* records start on multiples of it (1 in a log of version 1) */
    int wal_replay;       /* the header was valid at open: records to replay */
    int wal_recovering;   /* opening: commits need no log record or checkpoint */
    uint32_t wal_gen;     /* the checkpoint's generation */
    uint64_t wal_pos;     /* where the next record goes */
    uint64_t wal_commits; /* records since the checkpoint */
    MDB_txn *wal_pin;     /* read txn on the checkpoint's snapshot */
    uint8_t *wal_rec;     /* set by an append's txn body: its record block (wmu held) */
    size_t wal_len;       /* the record's payload length, after STORE_WAL_REC_HDR bytes */
};

/* Write-ahead log (store_wal.c). Before mdb_env_open: opens the log and puts its
 * checkpoint's meta page back into the data file, or makes a new log when create (sync
 * stores); 0 (also when there is no log: wal_fd stays -1) or -1 with err. */
int store_wal_prepare(store *s, int create, char *err, size_t errlen);
/* After the environment is open: replays the records after the checkpoint, then takes a
 * new checkpoint. 0 or -1. */
int store_wal_recover(store *s, char *err, size_t errlen);
/* Right after a write txn's commit (wmu held): the append's record (wal_rec) is written
 * and flushed, or a checkpoint makes the txn durable. 0 or -1. */
int store_wal_after_commit(store *s, char *err, size_t errlen);
/* LMDB's pages flushed, the log's header on disk naming the last txn (wmu held). */
int store_wal_checkpoint(store *s, char *err, size_t errlen);
/* A store opened with sync off whose last run had a log: once recovered, the data file is
 * flushed and the log deleted (a later sync run starts a new one). */
int store_wal_drop(store *s, char *err, size_t errlen);
/* A last checkpoint, then the log is closed. */
void store_wal_close(store *s);
/* An append's record block: STORE_WAL_REC_HDR bytes of header, the payload (len bytes),
 * zeros up to the log's alignment; aligned in memory for O_DIRECT. Freed with free(). */
#define STORE_WAL_REC_HDR 16
uint8_t *store_wal_record_new(size_t len);
/* An append's record payload: its size, and the payload written into p (that many bytes). */
size_t store_wal_record_size(const store_msg *msgs, size_t n, const store_offset *offs,
                             size_t noffs);
void store_wal_record_write(uint8_t *p, uint64_t first, const store_msg *msgs, size_t n,
                            const store_offset *offs, size_t noffs);

/* The last seq handed out: the log's last key (cur, on the log, is left there) or meta's
 * "last_seq" mark, the higher (store_log.c). */
int store_log_last(store *s, MDB_txn *t, MDB_cursor *cur, uint64_t *last, char *err, size_t errlen);

/* Starts the writer thread (sync stores); 0 or -1 (appends then run in the caller). */
int store_writer_start(store *s);
/* Waits for a job in flight and ends the thread. */
void store_writer_stop(store *s);

/* Message record header: ts_ms i64, qos u8, flags u8, topic_len u16 (big-endian); then
 * the topic, an MQTT 5.0 block when flags say so, the payload (store_record.c). */
#define STORE_MSG_HDR 12
/* Log messages deleted per cleanup txn: bounds the size of one txn. */
#define STORE_CLEANUP_BATCH 10000

/* Kinds of write txn, for what to do on MDB_MAP_FULL. */
enum store_txn_kind {
    STORE_TXN_GROWS, /* adds data: may grow the map up to map_max, then "store full" */
    STORE_TXN_FREES, /* deletes data: may grow past map_max a little, so a full store can
                      * always be cleaned (deleting needs a few fresh pages in LMDB) */
};

/* A write txn body: returns 0, an LMDB/errno code, or STORE_EFN after filling err. It may
 * run more than once (retried after the map grew), so it must not keep effects outside. */
#define STORE_EFN (-1)
/* A txn body's answer when the log's count bound would be exceeded. */
#define STORE_ECOUNT (-30000)
/* ... or when the disk is too full to take it (store_disk_room). */
#define STORE_EDISK (-30001)
typedef int (*store_txn_fn)(store *s, MDB_txn *t, void *arg, char *err, size_t errlen);

/* Runs fn in a write txn and commits it; `what` names the operation in errors. Returns 0,
 * STORE_FULL (map at its limit, count bound, disk full) or -1. */
int store_write(store *s, enum store_txn_kind kind, const char *what, store_txn_fn fn, void *arg,
                char *err, size_t errlen);
/* Begins a read-only txn ; end it with store_read_end(). */
int store_read_begin(store *s, MDB_txn **t, char *err, size_t errlen);
/* Aborts the read txn. */
void store_read_end(store *s, MDB_txn *t);

/* Called by store_walk() with copies of one record, outside any txn: key and value are
 * followed by a NUL byte. Returns 0 to go on, 1 to stop after this record, STORE_EFN to fail. */
typedef int (*store_walk_fn)(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                             void *arg, char *err, size_t errlen);
/* Walks dbi in key order from start (NULL: the first key), at most max records (0: all).
 * Records are copied in bounded chunks and fn runs with no txn open, so fn may call any
 * store function and no read txn stays open for long. Returns records passed, or -1. */
long store_walk(store *s, MDB_dbi dbi, const void *start, size_t startlen, size_t max,
                store_walk_fn fn, void *arg, char *err, size_t errlen);

/* Full disks (store_disk.c): a reserve file in the store's directory, made at open and
 * given back when a delete finds the disk full (0 when there was one to give). */
void store_reserve_make(store *s);
int store_reserve_release(store *s);
/* Sync stores without a write-ahead log: keeps the data file zero-filled past LMDB's last
 * page (caller holds wmu). */
void store_prefill(store *s);
/* Bytes available to the store's filesystem (UINT64_MAX when unknown). */
uint64_t store_disk_avail(const store *s);
/* Once the disk was full: whether an append of about bytes may run (0), leaving free
 * pages for deletes, or STORE_EDISK; an LMDB code on error. */
int store_disk_room(store *s, uint64_t bytes);

/* Reads the seq high-water mark ("last_seq" in meta) inside t. */
int store_meta_last_seq(store *s, MDB_txn *t, uint64_t *last, char *err, size_t errlen);
/* Writes the seq high-water mark inside t; returns an LMDB code. */
int store_meta_put_last_seq(store *s, MDB_txn *t, uint64_t last);

/* Checks a key for an LMDB DB: 1..maxkeysize bytes; what names it in the error. */
int store_check_key(store *s, const char *what, const void *k, size_t len, char *err,
                    size_t errlen);
/* Checks every consumer name of offs (store_check_key). */
int store_check_offsets(store *s, const store_offset *offs, size_t n, char *err, size_t errlen);
/* Writes offs in txn t; 0 or an LMDB code. */
int store_put_offsets(store *s, MDB_txn *t, const store_offset *offs, size_t n);

/* Big-endian integers. */
void store_be64_put(uint8_t *p, uint64_t v);
uint64_t store_be64_get(const uint8_t *p);

/* Message records (log values, retained and will values). */
/* Checks a message given by the API; need_payload rejects an empty payload. */
int store_msg_check(const store_msg *m, int need_payload, char *err, size_t errlen);
/* Bytes store_msg_encode() writes for m. */
size_t store_msg_size(const store_msg *m);
/* Writes m's record into out (store_msg_size(m) bytes). */
void store_msg_encode(const store_msg *m, uint8_t *out);
/* Parses a record (views into v); validates every length and flag. */
int store_msg_decode(const uint8_t *v, size_t vlen, store_msg *m, char *err, size_t errlen);
/* Points m->topic at a NUL-terminated copy in *buf (grown as needed; the caller frees it). */
int store_msg_topic_cstr(store_msg *m, char **buf, size_t *cap, char *err, size_t errlen);

/* Sessions: u32 count, then per filter options u8 (QoS and 5.0 options), len u16, bytes
 * (and a u32 subscription identifier when the options say so); then, when the session has
 * an owner, u16 len and the owner's username. */
/* Checks subs and owner (NULL: none) and returns the encoded size, or 0 with err. */
size_t store_subs_size(const store_sub *subs, size_t n, const char *owner, char *err,
                       size_t errlen);
/* Writes the record into out (store_subs_size() bytes). */
void store_subs_encode(const store_sub *subs, size_t n, const char *owner, uint8_t *out);
/* Parses a record into a malloc'ed array whose filters are NUL-terminated copies inside the
 * same block (free(*subs) frees all); *subs is NULL when n is 0. *owner is a malloc'ed
 * copy, or NULL when the record has none. */
int store_subs_decode(const uint8_t *v, size_t vlen, store_sub **subs, size_t *n, char **owner,
                      char *err, size_t errlen);

#endif
