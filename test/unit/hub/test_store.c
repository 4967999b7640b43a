/* The hub's LMDB store: log order and seqs (also across restarts and cleanup), offsets,
 * sessions, retained messages, wills, retention, a full map, corrupt records, a kill -9
 * right after appends returned, concurrent writers, the writer thread and the zeros a sync
 * store writes ahead of its pages. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "../../../hub/crc32c.h"
#include "../../../hub/store.h"
#include "../../../hub/store_internal.h"

/* Messages and subscriptions here are written positionally, without their 5.0 fields. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

/* ---- helpers ------------------------------------------------------------------------- */

typedef struct {
    char dir[64];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/test_store.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static store *open_store(const char *dir, int sync, size_t map_size, size_t map_max)
{
    store_options o = {.dir = dir, .sync = sync, .map_size = map_size, .map_max = map_max};
    store *s = NULL;
    char err[256] = "";
    int rc = store_open(&o, &s, err, sizeof(err));
    if (rc)
        fail_msg("store_open: %s", err);
    assert_non_null(s);
    return s;
}

static store_msg msg(const char *topic, const char *payload, uint8_t qos, int64_t ts)
{
    store_msg m = {topic, strlen(topic), payload, strlen(payload), qos, 0, ts};
    return m;
}

/* Appends n messages "t/<i>" / "p<i>" (i from first) in one batch; returns the first seq. */
static uint64_t append_n(store *s, int first, size_t n, int64_t ts)
{
    store_msg *m = calloc(n, sizeof(*m));
    char(*topics)[32] = calloc(n, 32), (*payloads)[32] = calloc(n, 32);
    uint64_t *seqs = calloc(n, sizeof(*seqs));
    for (size_t i = 0; i < n; i++) {
        snprintf(topics[i], 32, "t/%d", first + (int)i);
        snprintf(payloads[i], 32, "p%d", first + (int)i);
        m[i] = msg(topics[i], payloads[i], 1, ts);
    }
    char err[256] = "";
    if (store_append(s, m, n, seqs, NULL, 0, err, sizeof(err)))
        fail_msg("store_append: %s", err);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(seqs[i], seqs[i - 1] + 1);
    uint64_t first_seq = seqs[0];
    free(m);
    free(topics);
    free(payloads);
    free(seqs);
    return first_seq;
}

/* What scans collect. */
typedef struct {
    uint64_t seqs[4096];
    char topics[4096][16];
    char payloads[4096][16];
    size_t n;
    uint64_t stop_at; /* cb returns 1 at this seq */
} collected;

static int collect_cb(uint64_t seq, const store_msg *m, void *arg)
{
    collected *c = arg;
    if (c->n < 4096) {
        c->seqs[c->n] = seq;
        /* topic must be NUL-terminated as well as sized */
        assert_int_equal(strlen(m->topic), m->topic_len);
        snprintf(c->topics[c->n], 16, "%s", m->topic);
        snprintf(c->payloads[c->n], 16, "%.*s", (int)m->payload_len, (const char *)m->payload);
    }
    c->n++;
    return c->stop_at && seq == c->stop_at;
}

/* ---- log ----------------------------------------------------------------------------- */

typedef struct {
    store_msg m;
    int seen;
} first_t;

static int first_cb(uint64_t sq, const store_msg *m, void *arg)
{
    first_t *fm = arg;
    fm->m = *m;
    fm->seen = 1;
    return 0;
}

/* What the log holds: count, first and last seq (0 when empty). */
typedef struct {
    uint64_t messages, first_seq, last_seq;
} log_stats;

static int stats_cb(uint64_t sq, const store_msg *m, void *arg)
{
    (void)m;
    log_stats *ls = arg;
    if (!ls->messages++)
        ls->first_seq = sq;
    ls->last_seq = sq;
    return 0;
}

static int log_stats_get(store *s, log_stats *ls)
{
    char err[256];
    memset(ls, 0, sizeof *ls);
    return store_scan(s, 0, 0, stats_cb, ls, err, sizeof err) < 0 ? -1 : 0;
}

static void test_append_scan_order(void **state)
{
    fixture *f = *state;
    store *s = open_store(f->dir, 0, 0, 0);
    char err[256] = "";
    assert_int_equal(store_last_seq(s), 0);

    store_msg one = {"a/b", 3, "hello", 5, 1, 1, 1234567};
    uint64_t seq = 0;
    assert_int_equal(store_append(s, &one, 1, &seq, NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(append_n(s, 0, 5, 1000), 2);
    assert_int_equal(append_n(s, 5, 10, 1000), 7);
    assert_int_equal(store_last_seq(s), 16);

    collected *c = calloc(1, sizeof(*c));
    assert_int_equal(store_scan(s, 0, 0, collect_cb, c, err, sizeof(err)), 16);
    assert_int_equal(c->n, 16);
    for (size_t i = 0; i < 16; i++)
        assert_int_equal(c->seqs[i], i + 1);
    assert_string_equal(c->topics[0], "a/b");
    assert_string_equal(c->payloads[0], "hello");
    assert_string_equal(c->topics[1], "t/0");
    assert_string_equal(c->payloads[15], "p14");

    /* the header fields come back as written */
    first_t fm = {0};
    assert_int_equal(store_scan(s, 1, 1, first_cb, &fm, err, sizeof(err)), 1);
    assert_int_equal(fm.m.qos, 1);
    assert_int_equal(fm.m.retain, 1);
    assert_int_equal(fm.m.ts_ms, 1234567);

    log_stats st;
    assert_int_equal(log_stats_get(s, &st), 0);
    assert_int_equal(st.messages, 16);
    assert_int_equal(st.first_seq, 1);
    assert_int_equal(st.last_seq, 16);

    /* empty batch: nothing assigned */
    assert_int_equal(store_append(s, NULL, 0, NULL, NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(store_last_seq(s), 16);
    free(c);
    store_close(s);
}

static void test_scan_middle_max_stop(void **state)
{
    fixture *f = *state;
    store *s = open_store(f->dir, 0, 0, 0);
    char err[256] = "";
    append_n(s, 0, 20, 1000);
    collected *c = calloc(1, sizeof(*c));

    assert_int_equal(store_scan(s, 5, 3, collect_cb, c, err, sizeof(err)), 3);
    assert_int_equal(c->n, 3);
    assert_int_equal(c->seqs[0], 5);
    assert_int_equal(c->seqs[2], 7);
    assert_string_equal(c->payloads[0], "p4");

    memset(c, 0, sizeof(*c));
    c->stop_at = 12;
    assert_int_equal(store_scan(s, 10, 0, collect_cb, c, err, sizeof(err)), 3);
    assert_int_equal(c->n, 3);
    assert_int_equal(c->seqs[2], 12);

    memset(c, 0, sizeof(*c));
    assert_int_equal(store_scan(s, 18, 100, collect_cb, c, err, sizeof(err)), 3);
    assert_int_equal(c->seqs[0], 18);
    memset(c, 0, sizeof(*c));
    assert_int_equal(store_scan(s, 21, 0, collect_cb, c, err, sizeof(err)), 0);
    assert_int_equal(c->n, 0);

    /* many chunks: order and count hold across the walk's chunk boundaries */
    append_n(s, 20, 1000, 1000);
    memset(c, 0, sizeof(*c));
    assert_int_equal(store_scan(s, 0, 0, collect_cb, c, err, sizeof(err)), 1020);
    for (size_t i = 0; i < 1020; i++)
        assert_int_equal(c->seqs[i], i + 1);
    memset(c, 0, sizeof(*c));
    assert_int_equal(store_scan(s, 300, 600, collect_cb, c, err, sizeof(err)), 600);
    assert_int_equal(c->seqs[0], 300);
    assert_int_equal(c->seqs[599], 899);
    free(c);
    store_close(s);
}

/* A scan callback may write to the store: nothing is locked while it runs. */
static int reentrant_cb(uint64_t seq, const store_msg *m, void *arg)
{
    store *s = arg;
    char err[256] = "";
    store_offset o = {"s:c1", seq};
    assert_int_equal(store_set_offsets(s, &o, 1, err, sizeof(err)), 0);
    if (seq == 3) {
        store_msg x = {"x", 1, "y", 1, 1, 0, 5};
        uint64_t nseq;
        assert_int_equal(store_append(s, &x, 1, &nseq, NULL, 0, err, sizeof(err)), 0);
        assert_int_equal(nseq, 601);
    }
    return 0;
}

static void test_scan_callback_reenters(void **state)
{
    fixture *f = *state;
    store *s = open_store(f->dir, 0, 0, 0);
    char err[256] = "";
    append_n(s, 0, 600, 1000);
    assert_int_equal(store_scan(s, 1, 0, reentrant_cb, s, err, sizeof(err)), 601);
    uint64_t off;
    assert_int_equal(store_get_offset(s, "s:c1", &off, err, sizeof(err)), 0);
    assert_int_equal(off, 601);
    store_close(s);
}

static void test_seqs_survive_reopen_and_cleanup(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    store *s = open_store(f->dir, 1, 0, 0);
    assert_int_equal(append_n(s, 0, 5, 1000), 1);
    store_close(s);

    s = open_store(f->dir, 1, 0, 0);
    assert_int_equal(store_last_seq(s), 5);
    assert_int_equal(append_n(s, 5, 1, 1000), 6);
    /* everything expires: the log becomes empty */
    assert_int_equal(store_cleanup(s, 10000, 1000, err, sizeof(err)), 6);
    log_stats st;
    assert_int_equal(log_stats_get(s, &st), 0);
    assert_int_equal(st.messages, 0);
    assert_int_equal(st.last_seq, 0);
    assert_int_equal(store_last_seq(s), 6);
    store_close(s);

    s = open_store(f->dir, 0, 0, 0);
    assert_int_equal(store_last_seq(s), 6);
    assert_int_equal(append_n(s, 6, 2, 1000), 7);
    store_close(s);
    s = open_store(f->dir, 0, 0, 0);
    assert_int_equal(store_last_seq(s), 8);
    store_close(s);
}

static void test_cleanup_by_age(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    store *s = open_store(f->dir, 0, 0, 0);
    /* more than two cleanup batches of old messages, then new ones */
    for (int i = 0; i < 25; i++)
        append_n(s, i * 1000, 1000, 1000 + i);
    append_n(s, 25000, 7, 50000);
    /* retention 10 s at now = 59.999 s: ts < 49.999 s goes */
    assert_int_equal(store_cleanup(s, 59999, 10000, err, sizeof(err)), 25000);
    log_stats st;
    assert_int_equal(log_stats_get(s, &st), 0);
    assert_int_equal(st.messages, 7);
    assert_int_equal(st.first_seq, 25001);
    collected *c = calloc(1, sizeof(*c));
    assert_int_equal(store_scan(s, 0, 0, collect_cb, c, err, sizeof(err)), 7);
    assert_int_equal(c->seqs[0], 25001);
    assert_string_equal(c->payloads[0], "p25000");
    free(c);
    /* nothing more is old: a second run deletes nothing; the boundary itself is kept */
    assert_int_equal(store_cleanup(s, 59999, 10000, err, sizeof(err)), 0);
    assert_int_equal(store_cleanup(s, 60000, 10000, err, sizeof(err)), 0);
    assert_int_equal(store_cleanup(s, 60001, 10000, err, sizeof(err)), 7);
    assert_int_equal(store_cleanup(s, 0, -1, err, sizeof(err)), -1);
    /* a huge retention does not overflow */
    append_n(s, 0, 1, INT64_MIN);
    assert_int_equal(store_cleanup(s, INT64_MIN + 5, INT64_MAX, err, sizeof(err)), 0);
    store_close(s);
}

static void test_trim_consumed(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    store *s = open_store(f->dir, 0, 0, 0);
    append_n(s, 0, 10, 1000);
    assert_int_equal(store_trim(s, 0, 2000, err, sizeof(err)), 0);
    assert_int_equal(store_trim(s, 4, 2000, err, sizeof(err)), 4); /* whatever their age */
    log_stats st;
    assert_int_equal(log_stats_get(s, &st), 0);
    assert_int_equal(st.messages, 6);
    assert_int_equal(st.first_seq, 5);
    assert_int_equal(store_trim(s, 100, 2000, err, sizeof(err)), 6);
    assert_int_equal(store_last_seq(s), 10); /* seqs are never reused */
    assert_int_equal(store_trim(NULL, 1, 0, err, sizeof(err)), -1);
    store_close(s);
}

/* ---- keyed tables ---------------------------------------------------------------------- */

static void test_offsets(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    store *s = open_store(f->dir, 0, 0, 0);
    uint64_t off = 99;
    assert_int_equal(store_get_offset(s, "s:nobody", &off, err, sizeof(err)), 0);
    assert_int_equal(off, 0);

    store_offset batch[] = {{"s:a", 10}, {"s:b", 20}, {"r:route1", (uint64_t)1 << 40}};
    assert_int_equal(store_set_offsets(s, batch, 3, err, sizeof(err)), 0);
    store_offset again = {"s:a", 15};
    assert_int_equal(store_set_offsets(s, &again, 1, err, sizeof(err)), 0);
    assert_int_equal(store_del_offset(s, "s:b", err, sizeof(err)), 0);
    assert_int_equal(store_del_offset(s, "s:b", err, sizeof(err)), 0); /* missing: fine */
    store_close(s);

    s = open_store(f->dir, 0, 0, 0);
    assert_int_equal(store_get_offset(s, "s:a", &off, err, sizeof(err)), 0);
    assert_int_equal(off, 15);
    assert_int_equal(store_get_offset(s, "s:b", &off, err, sizeof(err)), 0);
    assert_int_equal(off, 0);
    assert_int_equal(store_get_offset(s, "r:route1", &off, err, sizeof(err)), 0);
    assert_int_equal(off, (uint64_t)1 << 40);

    /* hostile keys */
    char longkey[600];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = 0;
    store_offset bad[] = {{"s:ok", 1}, {longkey, 2}};
    err[0] = 0;
    assert_int_equal(store_set_offsets(s, bad, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too long"));
    /* the batch is all or nothing */
    assert_int_equal(store_get_offset(s, "s:ok", &off, err, sizeof(err)), 0);
    assert_int_equal(off, 0);
    store_offset empty = {"", 1}, null = {NULL, 1};
    assert_int_equal(store_set_offsets(s, &empty, 1, err, sizeof(err)), -1);
    assert_int_equal(store_set_offsets(s, &null, 1, err, sizeof(err)), -1);
    assert_int_equal(store_get_offset(s, NULL, &off, err, sizeof(err)), -1);
    assert_int_equal(store_del_offset(s, "", err, sizeof(err)), -1);
    store_close(s);
}

typedef struct {
    char ids[8][32], owners[8][32];
    char filters[8][4][32];
    uint8_t qos[8][4];
    size_t nsubs[8];
    size_t n;
    int fail;
} sessions_seen;

static int session_stop_cb(const char *client_id, const char *owner, const store_sub *subs,
                           size_t n, void *arg)
{
    sessions_seen *w = arg;
    w->n++;
    return w->fail ? -1 : 1;
}

static int session_cb(const char *client_id, const char *owner, const store_sub *subs, size_t n,
                      void *arg)
{
    sessions_seen *w = arg;
    assert_true(w->n < 8 && n <= 4);
    snprintf(w->ids[w->n], 32, "%s", client_id);
    snprintf(w->owners[w->n], 32, "%s", owner ? owner : "");
    for (size_t i = 0; i < n; i++) {
        snprintf(w->filters[w->n][i], 32, "%s", subs[i].filter);
        w->qos[w->n][i] = subs[i].qos;
    }
    w->nsubs[w->n++] = n;
    return 0;
}

static void test_sessions(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    store *s = open_store(f->dir, 0, 0, 0);
    store_sub two[] = {{"a/+", 1}, {"b/#", 0}}, one[] = {{"c", 1}};
    assert_int_equal(store_put_session(s, "c1", "alice", two, 2, err, sizeof(err)), 0);
    assert_int_equal(store_put_session(s, "c2", NULL, NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(store_put_session(s, "c3", NULL, two, 2, err, sizeof(err)), 0);
    assert_int_equal(store_put_session(s, "c1", "bob", one, 1, err, sizeof(err)), 0); /* replaces */
    assert_int_equal(store_del_session(s, "c3", err, sizeof(err)), 0);
    store_close(s);

    s = open_store(f->dir, 0, 0, 0);
    sessions_seen w = {0};
    assert_int_equal(store_load_sessions(s, session_cb, &w, err, sizeof(err)), 0);
    assert_int_equal(w.n, 2);
    assert_string_equal(w.ids[0], "c1");
    assert_string_equal(w.owners[0], "bob");
    assert_string_equal(w.owners[1], "");
    assert_int_equal(w.nsubs[0], 1);
    assert_string_equal(w.filters[0][0], "c");
    assert_int_equal(w.qos[0][0], 1);
    assert_string_equal(w.ids[1], "c2");
    assert_int_equal(w.nsubs[1], 0);

    /* a callback stops the walk (> 0) or fails it (< 0) */
    memset(&w, 0, sizeof(w));
    assert_int_equal(store_load_sessions(s, session_stop_cb, &w, err, sizeof(err)), 0);
    assert_int_equal(w.n, 1);
    memset(&w, 0, sizeof(w));
    w.fail = 1;
    err[0] = 0;
    assert_int_equal(store_load_sessions(s, session_stop_cb, &w, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "session c1"));
    assert_int_equal(w.n, 1);

    store_sub badqos[] = {{"x", 3}}, nofilter[] = {{NULL, 0}}, emptyf[] = {{"", 0}};
    assert_int_equal(store_put_session(s, "c4", NULL, badqos, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "qos"));
    assert_int_equal(store_put_session(s, "c4", NULL, nofilter, 1, err, sizeof(err)), -1);
    assert_int_equal(store_put_session(s, "c4", NULL, emptyf, 1, err, sizeof(err)), -1);
    assert_int_equal(store_put_session(s, "c4", NULL, NULL, 2, err, sizeof(err)), -1);
    assert_int_equal(store_put_session(s, "", NULL, one, 1, err, sizeof(err)), -1);
    memset(&w, 0, sizeof(w));
    assert_int_equal(store_load_sessions(s, session_cb, &w, err, sizeof(err)), 0);
    assert_int_equal(w.n, 2);
    store_close(s);
}

typedef struct {
    char topics[8][32], payloads[8][32], ids[8][32];
    uint8_t qos[8], retain[8];
    int64_t ts[8];
    size_t n;
    store *del_from; /* will callback deletes each will it sees */
} msgs_seen;

static void seen_add(msgs_seen *w, const char *id, const store_msg *m)
{
    assert_true(w->n < 8);
    assert_int_equal(strlen(m->topic), m->topic_len);
    snprintf(w->ids[w->n], 32, "%s", id ? id : "");
    snprintf(w->topics[w->n], 32, "%s", m->topic);
    snprintf(w->payloads[w->n], 32, "%.*s", (int)m->payload_len, (const char *)m->payload);
    w->qos[w->n] = m->qos;
    w->retain[w->n] = m->retain;
    w->ts[w->n] = m->ts_ms;
    w->n++;
}

static int retained_cb(const store_msg *m, void *arg)
{
    seen_add(arg, NULL, m);
    return 0;
}

static int will_cb(const char *client_id, const store_msg *m, void *arg)
{
    msgs_seen *w = arg;
    seen_add(w, client_id, m);
    if (w->del_from) {
        char err[256] = "";
        assert_int_equal(store_del_will(w->del_from, client_id, err, sizeof(err)), 0);
    }
    return 0;
}

static void test_retained(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    store *s = open_store(f->dir, 0, 0, 0);
    store_msg a1 = {"r/a", 3, "one", 3, 1, 1, 11}, a2 = {"r/a", 3, "two", 3, 0, 1, 12};
    store_msg b = {"r/b", 3, "bee", 3, 1, 1, 13};
    assert_int_equal(store_put_retained(s, &a1, err, sizeof(err)), 0);
    assert_int_equal(store_put_retained(s, &b, err, sizeof(err)), 0);
    assert_int_equal(store_put_retained(s, &a2, err, sizeof(err)), 0);
    assert_int_equal(store_del_retained(s, "r/b", err, sizeof(err)), 0);
    assert_int_equal(store_del_retained(s, "r/none", err, sizeof(err)), 0);
    store_msg empty = {"r/c", 3, "", 0, 0, 1, 14};
    assert_int_equal(store_put_retained(s, &empty, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "empty payload"));
    store_msg notopic = {"", 0, "x", 1, 0, 1, 14};
    assert_int_equal(store_put_retained(s, &notopic, err, sizeof(err)), -1);
    store_close(s);

    s = open_store(f->dir, 0, 0, 0);
    msgs_seen w = {0};
    assert_int_equal(store_load_retained(s, retained_cb, &w, err, sizeof(err)), 0);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.topics[0], "r/a");
    assert_string_equal(w.payloads[0], "two");
    assert_int_equal(w.qos[0], 0);
    assert_int_equal(w.retain[0], 1);
    assert_int_equal(w.ts[0], 12);
    store_close(s);
}

static void test_wills(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    store *s = open_store(f->dir, 0, 0, 0);
    store_msg w1 = {"will/1", 6, "gone1", 5, 1, 0, 1}, w2 = {"will/2", 6, "gone2", 5, 0, 1, 2};
    store_msg w3 = {"will/3", 6, "", 0, 1, 0, 3}; /* an empty will payload is legal */
    assert_int_equal(store_put_will(s, "c1", &w1, err, sizeof(err)), 0);
    assert_int_equal(store_put_will(s, "c2", &w2, err, sizeof(err)), 0);
    assert_int_equal(store_put_will(s, "c3", &w3, err, sizeof(err)), 0);
    assert_int_equal(store_del_will(s, "c1", err, sizeof(err)), 0);
    store_close(s);

    /* start-up after a crash: publish and delete each will from inside the callback */
    s = open_store(f->dir, 0, 0, 0);
    msgs_seen w = {0};
    w.del_from = s;
    assert_int_equal(store_load_wills(s, will_cb, &w, err, sizeof(err)), 0);
    assert_int_equal(w.n, 2);
    assert_string_equal(w.ids[0], "c2");
    assert_string_equal(w.topics[0], "will/2");
    assert_string_equal(w.payloads[0], "gone2");
    assert_int_equal(w.retain[0], 1);
    assert_string_equal(w.ids[1], "c3");
    assert_string_equal(w.payloads[1], "");
    memset(&w, 0, sizeof(w));
    assert_int_equal(store_load_wills(s, will_cb, &w, err, sizeof(err)), 0);
    assert_int_equal(w.n, 0);
    store_close(s);
}

/* ---- hostile input ------------------------------------------------------------------- */

static void test_invalid_arguments(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    store *s = NULL;
    store_options none = {0};
    assert_int_equal(store_open(NULL, &s, err, sizeof(err)), -1);
    assert_int_equal(store_open(&none, &s, err, sizeof(err)), -1);
    assert_null(s);
    char file[128];
    snprintf(file, sizeof(file), "%s/afile", f->dir);
    FILE *fp = fopen(file, "w");
    fclose(fp);
    store_options onfile = {.dir = file};
    assert_int_equal(store_open(&onfile, &s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "afile"));
    store_close(NULL);

    s = open_store(f->dir, 0, 0, 0);
    store_msg badqos = {"t", 1, "p", 1, 3, 0, 0}, nulltopic = {NULL, 4, "p", 1, 0, 0, 0};
    store_msg nullpayload = {"t", 1, NULL, 4, 0, 0, 0}, longtopic = {"t", 70000, "p", 1, 0, 0, 0};
    uint64_t seq;
    assert_int_equal(store_append(s, &badqos, 1, &seq, NULL, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "qos"));
    assert_int_equal(store_append(s, &nulltopic, 1, &seq, NULL, 0, err, sizeof(err)), -1);
    assert_int_equal(store_append(s, &nullpayload, 1, &seq, NULL, 0, err, sizeof(err)), -1);
    assert_int_equal(store_append(s, &longtopic, 1, &seq, NULL, 0, err, sizeof(err)), -1);
    assert_int_equal(store_append(s, NULL, 1, &seq, NULL, 0, err, sizeof(err)), -1);
    assert_int_equal(store_last_seq(s), 0);
    assert_int_equal(store_append(NULL, &badqos, 1, &seq, NULL, 0, err, sizeof(err)), -1);
    assert_int_equal(store_scan(s, 0, 0, NULL, NULL, err, sizeof(err)), -1);
    assert_int_equal(store_scan(NULL, 0, 0, collect_cb, NULL, err, sizeof(err)), -1);
    assert_int_equal(store_last_seq(NULL), 0);
    assert_int_equal(store_load_wills(s, NULL, NULL, err, sizeof(err)), -1);
    assert_int_equal(store_put_will(s, "c", NULL, err, sizeof(err)), -1);
    /* errors are optional */
    assert_int_equal(store_append(s, &badqos, 1, &seq, NULL, 0, NULL, 0), -1);
    store_close(s);
}

/* Writes values with raw LMDB, as a damaged disk or a foreign writer would. */
static void raw_put(const char *dir, const char *db, const void *k, size_t klen, const void *v,
                    size_t vlen)
{
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &t), 0);
    assert_int_equal(mdb_dbi_open(t, db, 0, &dbi), 0);
    MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
    assert_int_equal(mdb_put(t, dbi, &key, &val, 0), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
    mdb_env_close(env);
}

static void test_corrupt_records(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    store *s = open_store(f->dir, 0, 0, 0);
    append_n(s, 0, 4, 1000);
    store_sub sub = {"a", 1};
    assert_int_equal(store_put_session(s, "c1", NULL, &sub, 1, err, sizeof(err)), 0);
    store_close(s);

    uint8_t k2[8], k3[8], k4[8];
    store_be64_put(k2, 2);
    store_be64_put(k3, 3);
    store_be64_put(k4, 4);
    raw_put(f->dir, "log", k2, 8, "short", 5);
    /* header claims a 100-byte topic in a 20-byte record */
    uint8_t rec[20] = {0};
    rec[8] = 1;
    rec[11] = 100;
    raw_put(f->dir, "log", k3, 8, rec, sizeof(rec));
    uint8_t rec2[16] = {0};
    rec2[8] = 7; /* qos 7 */
    raw_put(f->dir, "log", k4, 8, rec2, sizeof(rec2));

    s = open_store(f->dir, 0, 0, 0);
    collected *c = calloc(1, sizeof(*c));
    assert_int_equal(store_scan(s, 0, 0, collect_cb, c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "corrupt log record at seq 2"));
    assert_int_equal(c->n, 1); /* seq 1 was passed before the error */
    assert_int_equal(c->seqs[0], 1);
    assert_int_equal(store_scan(s, 3, 0, collect_cb, c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "seq 3"));
    assert_non_null(strstr(err, "topic length"));
    assert_int_equal(store_scan(s, 4, 0, collect_cb, c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "invalid qos"));
    free(c);
    /* cleanup removes unreadable records at the head of the log too */
    assert_int_equal(store_cleanup(s, 5000, 1000, err, sizeof(err)), 4);
    store_close(s);

    /* a session record whose count exceeds its bytes */
    uint8_t sess[] = {0, 0, 3, 232, 1, 0, 1, 'a'};
    raw_put(f->dir, "sessions", "c2", 2, sess, sizeof(sess));
    /* trailing garbage after the last filter */
    uint8_t sess2[] = {0, 0, 0, 1, 1, 0, 1, 'a', 'x'};
    raw_put(f->dir, "sessions", "c3", 2, sess2, sizeof(sess2));
    s = open_store(f->dir, 0, 0, 0);
    sessions_seen w = {0};
    assert_int_equal(store_load_sessions(s, session_cb, &w, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "corrupt session c2"));
    assert_int_equal(w.n, 1); /* c1 came first and was fine */
    assert_int_equal(store_del_session(s, "c2", err, sizeof(err)), 0);
    assert_int_equal(store_load_sessions(s, session_cb, &w, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "trailing"));
    assert_int_equal(store_del_session(s, "c3", err, sizeof(err)), 0);
    store_close(s);

    /* an offset that is not 8 bytes, a retained message filed under another topic, a will
     * cut short */
    raw_put(f->dir, "offsets", "s:x", 3, "abc", 3);
    store_msg other = {"r/other", 7, "p", 1, 0, 1, 0};
    uint8_t rrec[64];
    store_msg_encode(&other, rrec);
    raw_put(f->dir, "retained", "r/key", 5, rrec, store_msg_size(&other));
    raw_put(f->dir, "wills", "c9", 2, rrec, 11);
    s = open_store(f->dir, 0, 0, 0);
    uint64_t off;
    assert_int_equal(store_get_offset(s, "s:x", &off, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "corrupt offset"));
    msgs_seen mw = {0};
    assert_int_equal(store_load_retained(s, retained_cb, &mw, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "another topic"));
    assert_int_equal(store_load_wills(s, will_cb, &mw, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "corrupt will c9"));
    assert_int_equal(mw.n, 0);
    store_close(s);

    /* a corrupt high-water mark refuses to open instead of reusing seqs */
    raw_put(f->dir, "meta", "last_seq", 8, "xx", 2);
    store_options o = {.dir = f->dir};
    s = NULL;
    assert_int_equal(store_open(&o, &s, err, sizeof(err)), -1);
    assert_null(s);
    assert_non_null(strstr(err, "corrupt meta last_seq"));
}

/* Random bytes through the record decoders: errors, never a crash (ASan checks reads). */
static void test_decoders_on_garbage(void **state)
{
    uint8_t buf[64];
    unsigned seed = 42;
    int ok_msgs = 0;
    for (int i = 0; i < 200000; i++) {
        size_t len = (size_t)(rand_r(&seed) % (int)sizeof(buf));
        for (size_t j = 0; j < len; j++)
            buf[j] = (uint8_t)rand_r(&seed);
        /* shaped inputs make it past the first checks more often */
        if (len > 12 && i % 3 == 1) { /* a message header with a plausible topic length */
            buf[8] %= 3;
            buf[9] &= 1;
            buf[10] = 0;
            buf[11] %= (uint8_t)(len - 10);
        } else if (len > 4 && i % 3 == 2) { /* a small subscription count and lengths */
            buf[0] = buf[1] = buf[2] = 0;
            buf[3] &= 3;
            buf[5] = 0;
            buf[6] &= 7;
        }
        uint8_t *exact = malloc(len ? len : 1);
        memcpy(exact, buf, len);
        store_msg m;
        if (store_msg_decode(exact, len, &m, NULL, 0) == 0) {
            ok_msgs++;
            assert_true(m.topic_len + m.payload_len + STORE_MSG_HDR == len);
        }
        store_sub *subs;
        size_t n;
        char *owner;
        if (store_subs_decode(exact, len, &subs, &n, &owner, NULL, 0) == 0) {
            for (size_t j = 0; j < n; j++)
                assert_true(strlen(subs[j].filter) > 0);
            assert_true(!owner || strlen(owner) > 0);
            free(subs);
            free(owner);
        }
        free(exact);
    }
    assert_true(ok_msgs > 0);
    /* a valid encoding round-trips */
    store_sub subs[] = {{"a/+/c", 1}, {"#", 0}};
    char e[128];
    size_t size = store_subs_size(subs, 2, "al", e, sizeof(e));
    assert_int_equal(size, 4 + 3 + 5 + 3 + 1 + 2 + 2);
    uint8_t *enc = malloc(size);
    store_subs_encode(subs, 2, "al", enc);
    store_sub *back;
    size_t n;
    char *owner;
    assert_int_equal(store_subs_decode(enc, size, &back, &n, &owner, e, sizeof(e)), 0);
    assert_int_equal(n, 2);
    assert_string_equal(owner, "al");
    free(owner);
    assert_string_equal(back[0].filter, "a/+/c");
    assert_int_equal(back[0].qos, 1);
    assert_string_equal(back[1].filter, "#");
    free(back);
    /* one byte short, one byte long */
    assert_int_equal(store_subs_decode(enc, size - 1, &back, &n, &owner, e, sizeof(e)), -1);
    assert_int_equal(store_subs_decode(enc, size - 4, &back, &n, &owner, e, sizeof(e)), 0);
    assert_null(owner); /* a record without an owner (written before owners were kept) */
    free(back);
    free(enc);
}

/* ---- a full map -------------------------------------------------------------------------- */

static void test_map_full(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    size_t map = 256 << 10;
    store *s = open_store(f->dir, 0, map, 2 * map);
    char payload[1024];
    memset(payload, 'x', sizeof(payload));
    store_msg batch[10];
    for (int i = 0; i < 10; i++)
        batch[i] = (store_msg){"full/t", 6, payload, sizeof(payload), 1, 0, 100};
    uint64_t seqs[10];
    size_t ok = 0;
    int rc;
    while ((rc = store_append(s, batch, 10, seqs, NULL, 0, err, sizeof(err))) == 0) {
        ok += 10;
        assert_true(ok < 10000);
    }
    assert_non_null(strstr(err, "store full"));
    log_stats st;
    assert_int_equal(log_stats_get(s, &st), 0);
    assert_int_equal(st.messages, ok);
    assert_true(ok > 250); /* the growth was used */
    assert_int_equal(store_last_seq(s), ok);
    /* it stays full (nothing was half-written); reads still work */
    err[0] = 0;
    assert_int_equal(store_append(s, batch, 10, seqs, NULL, 0, err, sizeof(err)), STORE_FULL);
    assert_int_equal(store_full_kind(s, NULL), STORE_FULL_SIZE);
    assert_non_null(strstr(err, "store full"));
    assert_int_equal(store_last_seq(s), ok);
    collected *c = calloc(1, sizeof(*c));
    assert_int_equal(store_scan(s, 0, 0, collect_cb, c, err, sizeof(err)), (long)st.messages);
    free(c);
    store_close(s);

    /* reopened, the data is intact; cleanup works on the full store and makes room */
    s = open_store(f->dir, 0, map, 2 * map);
    assert_int_equal(log_stats_get(s, &st), 0);
    assert_true(st.messages >= ok);
    long removed = store_cleanup(s, 1000, 10, err, sizeof(err));
    if (removed < 0)
        fail_msg("cleanup: %s", err);
    assert_int_equal((uint64_t)removed, st.messages);
    if (store_append(s, batch, 10, seqs, NULL, 0, err, sizeof(err)))
        fail_msg("append after cleanup: %s", err);
    assert_true(seqs[0] > ok);
    store_close(s);
}

/* ---- storage.count.max and drop-oldest -------------------------------------------------- */

static void test_count_bound_and_drop_oldest(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    store_options o = {.dir = f->dir, .count_max = 25};
    store *s = NULL;
    if (store_open(&o, &s, err, sizeof(err)))
        fail_msg("store_open: %s", err);
    store_msg batch[10];
    for (int i = 0; i < 10; i++)
        batch[i] = msg("c/t", "payload", 1, 100);
    uint64_t seqs[10];
    assert_int_equal(store_append(s, batch, 10, seqs, NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(store_append(s, batch, 10, seqs, NULL, 0, err, sizeof(err)), 0);
    /* 20 + 10 > 25: nothing of the batch is written, and the excess is told */
    assert_int_equal(store_append(s, batch, 10, seqs, NULL, 0, err, sizeof(err)), STORE_FULL);
    assert_non_null(strstr(err, "storage.count.max"));
    uint64_t excess = 0;
    assert_int_equal(store_full_kind(s, &excess), STORE_FULL_COUNT);
    assert_int_equal(excess, 5);
    log_stats st;
    assert_int_equal(log_stats_get(s, &st), 0);
    assert_int_equal(st.messages, 20);
    /* the 5 oldest go; the batch then fits and the newest 25 remain, in order */
    assert_int_equal(store_drop_oldest(s, excess, 0, err, sizeof(err)), 5);
    assert_int_equal(store_append(s, batch, 10, seqs, NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(seqs[0], 21);
    assert_int_equal(log_stats_get(s, &st), 0);
    assert_int_equal(st.messages, 25);
    collected *c = calloc(1, sizeof(*c));
    assert_int_equal(store_scan(s, 0, 0, collect_cb, c, err, sizeof(err)), 25);
    assert_int_equal(c->seqs[0], 6);
    assert_int_equal(c->seqs[24], 30);
    free(c);
    /* dropping more than there is empties the log; 0 drops nothing */
    assert_int_equal(store_drop_oldest(s, 0, 0, err, sizeof(err)), 0);
    assert_int_equal(store_drop_oldest(s, 1000, 0, err, sizeof(err)), 25);
    assert_int_equal(store_drop_oldest(s, 1, 0, err, sizeof(err)), 0);
    assert_int_equal(store_drop_oldest(NULL, 1, 0, err, sizeof(err)), -1);
    store_close(s);
}

/* ---- kill -9 right after appends returned ----------------------------------------------- */

typedef struct {
    uint64_t seq;
    uint32_t i;
} returned;

static void child_appends(const char *dir, int sync, int fd)
{
    store_options o = {.dir = dir, .sync = sync};
    store *s;
    char err[256];
    if (store_open(&o, &s, err, sizeof(err)))
        _exit(2);
    unsigned seed = (unsigned)getpid();
    for (uint32_t i = 0;;) {
        size_t n = 1 + (size_t)(rand_r(&seed) % 20);
        store_msg m[20];
        char payloads[20][16];
        uint64_t seqs[20];
        for (size_t j = 0; j < n; j++) {
            int len = snprintf(payloads[j], 16, "m%u", i + (uint32_t)j);
            m[j] = (store_msg){"crash/t", 7, payloads[j], (size_t)len, 1, 0, 1000};
        }
        if (store_append(s, m, n, seqs, NULL, 0, err, sizeof(err)))
            _exit(3);
        /* only now is the batch acknowledged: tell the parent */
        for (size_t j = 0; j < n; j++) {
            returned r = {seqs[j], i + (uint32_t)j};
            if (write(fd, &r, sizeof(r)) != sizeof(r))
                _exit(4);
        }
        i += (uint32_t)n;
    }
}

typedef struct {
    uint64_t seq;
    char payload[16];
    int found;
} lookup;

static int lookup_cb(uint64_t seq, const store_msg *m, void *arg)
{
    lookup *l = arg;
    l->found = seq == l->seq;
    snprintf(l->payload, sizeof(l->payload), "%.*s", (int)m->payload_len, (const char *)m->payload);
    return 1;
}

/* Rewrites a write-ahead log as version 1 wrote it (records packed, no padding): a log
 * left by the previous release is still replayed. Offsets as in store_wal.c. */
static void log_to_v1(const char *dir)
{
    enum { HDR_SLOT = 512, HDR_LEN = 36 + 256 + 4, REC_START = 4096, ALIGN = 4096 };
    char path[512];
    snprintf(path, sizeof path, "%s/wal", dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t size = lseek(fd, 0, SEEK_END);
    uint8_t *b = malloc((size_t)size), *out = calloc(1, (size_t)size);
    assert_int_equal(pread(fd, b, (size_t)size, 0), size);
    memcpy(out, b, REC_START);
    int versions = 0;
    for (int slot = 0; slot < 2; slot++) {
        uint8_t *h = out + slot * HDR_SLOT;
        if (h[4] != 2 || crc32c(0, h, HDR_LEN - 4) !=
                             (uint32_t)(h[HDR_LEN - 4] | h[HDR_LEN - 3] << 8 |
                                        h[HDR_LEN - 2] << 16 | (uint32_t)h[HDR_LEN - 1] << 24))
            continue;
        h[4] = 1;
        uint32_t c = crc32c(0, h, HDR_LEN - 4);
        for (int i = 0; i < 4; i++)
            h[HDR_LEN - 4 + i] = (uint8_t)(c >> (8 * i));
        versions++;
    }
    assert_true(versions > 0);
    size_t in = REC_START, o = REC_START;
    int records = 0;
    while (in + 16 <= (size_t)size && memcmp(b + in, "BWR1", 4) == 0) {
        size_t len = b[in + 8] | b[in + 9] << 8 | b[in + 10] << 16 | (size_t)b[in + 11] << 24;
        memcpy(out + o, b + in, 16 + len);
        o += 16 + len;
        in += (16 + len + ALIGN - 1) / ALIGN * ALIGN;
        records++;
    }
    assert_true(records > 0); /* the kill left records after the checkpoint */
    assert_int_equal(pwrite(fd, out, (size_t)size, 0), size);
    close(fd);
    free(b);
    free(out);
}

static void crash_run(const char *dir, int sync, size_t wait_for,
                      void (*before_reopen)(const char *))
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_appends(dir, sync, fds[1]);
    }
    close(fds[1]);
    size_t cap = 1 << 16, n = 0;
    returned *got = malloc(cap * sizeof(*got));
    int killed = 0;
    for (;;) {
        if (n >= wait_for && !killed) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        if (n == cap) {
            cap *= 2;
            got = realloc(got, cap * sizeof(*got));
        }
        ssize_t r = read(fds[0], &got[n], sizeof(*got));
        if (r == 0)
            break;
        if (r < 0 && errno == EINTR)
            continue;
        /* pipe writes of 16 bytes are atomic */
        assert_int_equal(r, sizeof(*got));
        n++;
    }
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_true(n >= wait_for);
    if (before_reopen)
        before_reopen(dir);

    store *s = open_store(dir, sync, 0, 0);
    char err[256] = "";
    uint64_t maxseq = 0;
    for (size_t i = 0; i < n; i++) {
        lookup l = {got[i].seq, "", 0};
        assert_int_equal(store_scan(s, got[i].seq, 1, lookup_cb, &l, err, sizeof(err)), 1);
        if (!l.found)
            fail_msg("seq %llu acknowledged but lost", (unsigned long long)got[i].seq);
        char want[16];
        snprintf(want, sizeof(want), "m%u", got[i].i);
        assert_string_equal(l.payload, want);
        if (got[i].seq > maxseq)
            maxseq = got[i].seq;
    }
    /* the log reads cleanly to the end and seqs go on above what was handed out */
    collected *c = calloc(1, sizeof(*c));
    assert_true(store_scan(s, 0, 0, collect_cb, c, err, sizeof(err)) >= (long)n);
    free(c);
    assert_true(store_last_seq(s) >= maxseq);
    uint64_t next = append_n(s, 0, 1, 1000);
    assert_true(next > maxseq);
    store_close(s);
    free(got);
}

static void test_kill9_nosync(void **state)
{
    fixture *f = *state;
    crash_run(f->dir, 0, 2000, NULL);
}

static void test_kill9_sync(void **state)
{
    fixture *f = *state;
    crash_run(f->dir, 1, 300, NULL);
}

static void test_kill9_sync_log_v1(void **state)
{
    fixture *f = *state;
    crash_run(f->dir, 1, 300, log_to_v1);
}

/* ---- the writer thread --------------------------------------------------------------- */

static int count_cb(uint64_t seq, const store_msg *m, void *arg)
{
    (*(size_t *)arg)++;
    return 0;
}

/* Appends on the writer thread while this thread reads and writes, with a map that has to
 * grow many times under both: every seq is handed out once, in order, and all is there
 * after a reopen. A store without sync has no writer: submit refuses, the caller appends. */
static void test_writer_thread(void **state)
{
    fixture *f = *state;
    store *s = open_store(f->dir, 1, 64 << 10, 16 << 20);
    int fd = store_done_fd(s);
    assert_true(fd >= 0);
    char payload[300], err[256];
    memset(payload, 'w', sizeof payload - 1);
    payload[sizeof payload - 1] = 0;
    enum { JOBS = 60, PER = 40 };
    store_msg m[PER];
    for (size_t i = 0; i < PER; i++)
        m[i] = msg("w/t", payload, 1, 1);
    uint64_t seqs[PER], next = store_last_seq(s) + 1;
    for (int k = 0; k < JOBS; k++) {
        store_offset off = {"s:c", next - 1};
        store_job j = {m, PER, seqs, &off, 1, 0, ""};
        assert_int_equal(store_submit(s, &j), 0);
        assert_int_equal(store_submit(s, &j), -1); /* one at a time */
        size_t seen = 0;
        assert_true(store_scan(s, 1, 0, count_cb, &seen, err, sizeof err) >= 0);
        /* before or after the commit in flight, never part of it */
        assert_true(seen == (size_t)k * PER || seen == (size_t)(k + 1) * PER);
        store_msg r = msg("w/retained", payload, 1, 1);
        assert_int_equal(store_put_retained(s, &r, err, sizeof err), 0);
        assert_ptr_equal(store_reap(s, 1), &j);
        assert_false(store_busy(s));
        assert_null(store_reap(s, 0));
        if (j.rc)
            fail_msg("append on the writer thread: %s", j.err);
        for (size_t i = 0; i < PER; i++)
            assert_int_equal(seqs[i], next + i);
        next += PER;
    }
    uint64_t off;
    assert_int_equal(store_get_offset(s, "s:c", &off, err, sizeof err), 0);
    assert_int_equal(off, next - PER - 1);
    store_close(s);
    s = open_store(f->dir, 0, 0, 0);
    assert_int_equal(store_done_fd(s), -1);
    store_job j = {m, 1, seqs, NULL, 0, 0, ""};
    assert_int_equal(store_submit(s, &j), -1);
    size_t seen = 0;
    assert_int_equal(store_scan(s, 1, 0, count_cb, &seen, err, sizeof err), JOBS * PER);
    assert_int_equal(store_last_seq(s), next - 1);
    store_close(s);
}

/* ---- prefill ------------------------------------------------------------------------- */

/* The data file's size and LMDB's end of pages. */
static void file_and_used(const char *dir, store *s, uint64_t *file, uint64_t *used)
{
    char p[256];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    *file = (uint64_t)st.st_size;
    MDB_envinfo info;
    MDB_stat ms;
    assert_int_equal(mdb_env_info(s->env, &info), 0);
    assert_int_equal(mdb_env_stat(s->env, &ms), 0);
    *used = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
}

/* A sync store without its write-ahead log (no room for one: here a directory named wal is
 * in the way) keeps zeros written ahead of LMDB's pages (within the map), so that commits
 * do not grow the file; what it holds reads back after a reopen. Sync off writes none, and
 * neither does a sync store with its log (its data file is flushed at checkpoints only). */
static void test_prefill(void **state)
{
    fixture *f = *state;
    char wal[512];
    snprintf(wal, sizeof wal, "%s/wal", f->dir);
    assert_int_equal(mkdir(wal, 0700), 0);
    store *s = open_store(f->dir, 1, 1 << 20, 64 << 20);
    uint64_t file, used, mapped = 1 << 20;
    int grew = 0;
    for (int k = 0; k < 400; k++) {
        append_n(s, k * 100, 100, 1000);
        file_and_used(f->dir, s, &file, &used);
        MDB_envinfo info;
        mdb_env_info(s->env, &info);
        assert_true(file <= info.me_mapsize);
        grew |= info.me_mapsize > mapped;
        /* the zeros ahead, unless the map ends there */
        assert_true(file > used || file == info.me_mapsize);
    }
    assert_true(grew); /* 40000 messages outgrow 1 MiB: the zeros follow the map */
    assert_true(file > used);
    char p[256];
    snprintf(p, sizeof p, "%s/data.mdb", f->dir);
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    static uint8_t buf[1 << 16];
    for (uint64_t off = used; off < file; off += sizeof buf) {
        ssize_t r = pread(fd, buf, sizeof buf, (off_t)off);
        assert_true(r > 0);
        for (ssize_t i = 0; i < r; i++)
            assert_int_equal(buf[i], 0);
    }
    close(fd);
    store_close(s);
    s = open_store(f->dir, 1, 0, 0);
    log_stats ls;
    assert_int_equal(log_stats_get(s, &ls), 0);
    assert_int_equal(ls.messages, 40000);
    assert_int_equal(ls.last_seq, 40000);
    store_close(s);

    char dir2[256];
    for (int sync = 0; sync < 2; sync++) { /* sync off; sync with its log */
        snprintf(dir2, sizeof dir2, "%s/%s", f->dir, sync ? "logged" : "nosync");
        s = open_store(dir2, sync, 8 << 20, 64 << 20);
        for (int k = 0; k < 20; k++)
            append_n(s, k * 100, 100, 1000);
        file_and_used(dir2, s, &file, &used);
        assert_true(file <= used);
        store_close(s);
    }
    snprintf(wal, sizeof wal, "%s/wal", dir2);
    struct stat st;
    assert_int_equal(stat(wal, &st), 0);
    assert_true(S_ISREG(st.st_mode));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_scan_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_middle_max_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_callback_reenters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seqs_survive_reopen_and_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cleanup_by_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_consumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_records, setup, teardown),
        cmocka_unit_test(test_decoders_on_garbage),
        cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_bound_and_drop_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_nosync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_sync_log_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefill, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
