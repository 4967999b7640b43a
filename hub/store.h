/* Durable state of the hub in LMDB under storage.dir (SPEC §11 Durability, DESIGN §5):
 * an append-only log of QoS 1 messages keyed by a global sequence number, the acknowledged
 * offset of each persistent consumer (a session or a route), persistent sessions'
 * subscriptions, retained messages and the wills of connected clients.
 *
 * Called from one thread (the hub's I/O thread), plus the store's own writer thread for
 * store_submit(). A batch appended with store_append() is committed (and synced, unless the
 * store was opened with sync off) before the call returns: PUBACK only after it returns 0;
 * a submitted one once store_reap() gives it back with rc 0. */
#ifndef HUB_STORE_H
#define HUB_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct store store;

/* One message as stored (views; the store copies what it keeps). In messages the store
 * passes to callbacks, topic is also NUL-terminated. */
typedef struct {
    const char *topic;
    size_t topic_len;
    const void *payload;
    size_t payload_len;
    uint8_t qos;
    uint8_t retain;
    int64_t ts_ms; /* wall clock time of arrival, unix milliseconds (for retention) */
    /* MQTT 5.0: property wire bytes (PUBLISH properties but topic alias, subscription
     * identifier and message expiry; validated when read back) and the message expiry
     * interval counted from ts_ms (0: none), so it ends at the same wall clock time after a
     * restart. */
    const uint8_t *props;
    size_t props_len;
    uint32_t expiry_s;
    /* The publisher's client id when it has a no-local subscription (so that reading the
     * log back, even after a restart, does not send it its own message), else NULL. */
    const char *origin;
    size_t origin_len;
} store_msg;

/* One subscription of a persistent session. */
typedef struct {
    const char *filter;
    uint8_t qos;
    uint8_t opts; /* 5.0 subscription options but QoS: bits 2-5 of the SUBSCRIBE options byte */
    uint32_t id;  /* 5.0 subscription identifier, 0 = none */
} store_sub;

typedef struct {
    const char *dir; /* created if missing */
    int sync; /* 1: fsync each commit (survives power loss); 0: survives process crash only */
    size_t
        map_size;   /* LMDB map size in bytes; 0 = a default that fits small devices (e.g. 1 GiB) */
    size_t map_max; /* when the map fills, it grows (doubling) up to this; 0 = 2 × map_size.
                          * Beyond it writes fail with "store full"; deletes may still grow it a
                          * little so that a full store can always be cleaned up. */
    uint64_t count_max; /* at most this many log messages; 0 = no count bound */
} store_options;

/* Opens (creating) the store. Returns 0 or -1 with err. */
int store_open(const store_options *o, store **out, char *err, size_t errlen);
/* Flushes (when opened with sync off) and closes the store; NULL is a no-op. */
void store_close(store *s);

/* Acknowledged offset of a persistent consumer ("s:<client id>"): every message with
 * seq <= offset is done for that consumer. */
typedef struct {
    const char *consumer;
    uint64_t offset;
} store_offset;

/* store_append's answer when the batch does not fit: the map is at map_max, the log holds
 * count_max messages, or the disk is full (ENOSPC, EDQUOT). Nothing of the batch was written
 * and the store stays consistent; store_full_kind() says which bound was hit. */
#define STORE_FULL (-2)
enum store_full_kind { STORE_FULL_SIZE = 1, STORE_FULL_COUNT, STORE_FULL_DISK };

/* Appends n messages in one transaction (group commit); seqs[i] receives each message's
 * sequence number (strictly increasing, never reused, also across restarts). The noffs
 * offsets are written in the same transaction (consumers' acknowledgements ride along).
 * 0, STORE_FULL, or -1 on any other error. */
int store_append(store *s, const store_msg *msgs, size_t n, uint64_t *seqs,
                 const store_offset *offs, size_t noffs, char *err, size_t errlen);
/* An append run by the writer thread of a sync store, so that the caller's event loop goes
 * on while the commit is flushed. The caller keeps the job and everything it points to
 * until store_reap() gives it back with rc and err set as store_append() would. */
typedef struct {
    const store_msg *msgs;
    size_t n;
    uint64_t *seqs;
    const store_offset *offs;
    size_t noffs;
    int rc;
    char err[200];
} store_job;
/* Starts j; -1 when the store has no writer thread (sync off) or a job is in flight. */
int store_submit(store *s, store_job *j);
/* Whether a submitted job was not reaped yet. */
int store_busy(const store *s);
/* Readable (an eventfd) when the job in flight is done; -1 when there is no writer. */
int store_done_fd(const store *s);
/* The finished job, or NULL (none, or still running unless wait is set). */
store_job *store_reap(store *s, int wait);

/* Why the last STORE_FULL happened (enum store_full_kind); for STORE_FULL_COUNT,
 * *excess is how many messages over count_max the batch would have made. */
int store_full_kind(const store *s, uint64_t *excess);
/* The highest sequence number ever assigned (0 if none). */
uint64_t store_last_seq(store *s);

/* Calls cb for each stored message with seq >= from, in order, until cb returns non-zero or
 * max messages were passed (0 = no limit). Views passed to cb are valid only during the call.
 * Returns the number of messages passed, or -1. */
/* (cb runs with no store lock or txn held and may call any store function. On a corrupt record
 * the scan returns -1 after passing the messages before it; err names its seq.) */
typedef int (*store_scan_cb)(uint64_t seq, const store_msg *m, void *arg);
long store_scan(store *s, uint64_t from, size_t max, store_scan_cb cb, void *arg, char *err,
                size_t errlen);

/* set_offsets writes a batch of offsets in one txn. */
int store_set_offsets(store *s, const store_offset *offs, size_t n, char *err, size_t errlen);
/* 0 and *offset = 0 when the consumer is unknown. */
int store_get_offset(store *s, const char *consumer, uint64_t *offset, char *err, size_t errlen);
/* Deleting (offset, session, retained, will) a key that is not there is not an error. */
int store_del_offset(store *s, const char *consumer, char *err, size_t errlen);
/* The offsets whose consumer name starts with prefix, in name order (store_offsets_prefix.c):
 * cb > 0 stops, < 0 fails. Deleting several offsets in one transaction. */
typedef int (*store_offset_cb)(const char *consumer, uint64_t offset, void *arg);
int store_load_offsets(store *s, const char *prefix, store_offset_cb cb, void *arg, char *err,
                       size_t errlen);
int store_del_offsets(store *s, const char *const *names, size_t n, char *err, size_t errlen);

/* Persistent sessions: client id → the username that owns it (NULL: none) and its
 * subscriptions (replaces the previous record). */
int store_put_session(store *s, const char *client_id, const char *owner, const store_sub *subs,
                      size_t n, char *err, size_t errlen);
int store_del_session(store *s, const char *client_id, char *err, size_t errlen);
/* In the load functions below, a callback that returns > 0 stops the walk (the call still
 * returns 0) and one that returns < 0 fails the call (-1, err names the record). Records are
 * validated: a corrupt one fails the call with err. Callbacks run with no store lock or txn
 * held, so they may call any store function (e.g. delete the will they were given). */
typedef int (*store_session_cb)(const char *client_id, const char *owner, const store_sub *subs,
                                size_t n, void *arg);
int store_load_sessions(store *s, store_session_cb cb, void *arg, char *err, size_t errlen);

/* Retained messages: topic → message (an empty payload is never stored: use del). */
int store_put_retained(store *s, const store_msg *m, char *err, size_t errlen);
int store_del_retained(store *s, const char *topic, char *err, size_t errlen);
typedef int (*store_msg_cb)(const store_msg *m, void *arg);
int store_load_retained(store *s, store_msg_cb cb, void *arg, char *err, size_t errlen);

/* Wills of connected clients: written at CONNECT, deleted at DISCONNECT or when the will was
 * published. Wills still present at start-up belong to clients of a crashed hub: the hub
 * publishes them then deletes them. */
int store_put_will(store *s, const char *client_id, const store_msg *m, char *err, size_t errlen);
int store_del_will(store *s, const char *client_id, char *err, size_t errlen);
typedef int (*store_will_cb)(const char *client_id, const store_msg *m, void *arg);
int store_load_wills(store *s, store_will_cb cb, void *arg, char *err, size_t errlen);

/* Deletes log messages older than now_ms - retention_ms; returns how many, or -1. */
long store_cleanup(store *s, int64_t now_ms, int64_t retention_ms, char *err, size_t errlen);
/* Deletes log messages with seq <= upto (every consumer has them); how many, or -1. */
long store_trim(store *s, uint64_t upto, int64_t now_ms, char *err, size_t errlen);
/* Deletes the n oldest log messages whoever still needs them (storage.policy
 * drop-oldest); how many, or -1. */
long store_drop_oldest(store *s, uint64_t n, int64_t now_ms, char *err, size_t errlen);

#endif
