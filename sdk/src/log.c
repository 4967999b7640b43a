/* The process-wide logger (SPEC §18): logrus-compatible text or JSON lines, levels, global
 * and per-call fields, stderr or a rotated file (log_rotate.c). Formatting rules are
 * described in log.h. One lock serialises formatting and writing, so each line reaches the
 * output whole, with one write(). */
#include "baetyl/log.h"
#include "baetyl/util.h"
#include "baetyl/buf.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log_rotate.h"

#define MAX_CALL_FIELDS 64
#define TRUNC_MARK "...(truncated)"
#define OOM_LINE "log: out of memory formatting a line\n"

typedef struct {
    char *key, *value;
} field;

typedef struct {
    const char *k, *v;
    size_t kl, vl;
} kv;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static atomic_int g_level = BT_LOG_INFO;
static int g_json;
static bt_logfile g_file = {.fd = -1};
static long long g_cfg_bytes;      /* size.max of the config, in bytes */
static long long g_override_bytes; /* bt_log_set_size_max_bytes; 0 = none */
static field *g_fields;
static size_t g_nfields;

static const char *const level_names[] = {"debug", "info", "warning", "error"};

/* ---- lock; fork() in another thread must not leave it held in the child ------------ */

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_mu);
}
static void atfork_release(void)
{
    pthread_mutex_unlock(&g_mu);
}
static void register_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_release, atfork_release);
}

static void lock(void)
{
    pthread_once(&g_once, register_atfork);
    pthread_mutex_lock(&g_mu);
}
static void unlock(void)
{
    pthread_mutex_unlock(&g_mu);
}

/* ---- a growable buffer; on allocation failure it only records the failure ------------ */

typedef struct {
    bt_buf text; /* NUL-terminated */
    int oom;
} sbuf;

static void sb_put(sbuf *b, const void *s, size_t n)
{
    if (!b->oom && bt_buf_append_nul(&b->text, s, n) < 0)
        b->oom = 1;
}
static void sb_puts(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}
static void sb_putc(sbuf *b, char c)
{
    sb_put(b, &c, 1);
}

static void sb_hex(sbuf *b, const char *prefix, uint32_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[8];
    for (int i = digits - 1; i >= 0; i--, v >>= 4)
        tmp[i] = hex[v & 0xf];
    sb_puts(b, prefix);
    sb_put(b, tmp, (size_t)digits);
}

/* ---- UTF-8, as Go decodes it ---------------------------------------------------------- */

/* Decodes one rune; returns its length (>= 1). *ok is 0 for an invalid byte (overlong,
 * surrogate, > U+10FFFF, truncated): Go treats it as one byte of RuneError. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp, int *ok)
{
    size_t w = bt_utf8_decode(s, n, cp);
    *ok = w != 0;
    return w ? w : 1;
}

/* Go's strconv.IsPrint, approximated: everything but controls, format characters,
 * separators other than ' ', private use and noncharacters. Unassigned code points are
 * taken as printable (the one difference with Go). */
static int go_isprint(uint32_t c)
{
    static const uint32_t nonprint[][2] = {
        {0x0080, 0x00A0},   {0x00AD, 0x00AD},    {0x0600, 0x0605},   {0x061C, 0x061C},
        {0x06DD, 0x06DD},   {0x070F, 0x070F},    {0x1680, 0x1680},   {0x180E, 0x180E},
        {0x2000, 0x200F},   {0x2028, 0x202F},    {0x205F, 0x2064},   {0x2066, 0x206F},
        {0x3000, 0x3000},   {0xD800, 0xF8FF},    {0xFDD0, 0xFDEF},   {0xFEFF, 0xFEFF},
        {0xFFF0, 0xFFFB},   {0x110BD, 0x110BD},  {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A},
        {0xE0000, 0xE00FF}, {0xF0000, 0x10FFFF},
    };
    if (c < 0x80)
        return c >= 0x20 && c < 0x7F;
    if ((c & 0xFFFE) == 0xFFFE)
        return 0;
    for (size_t i = 0; i < sizeof nonprint / sizeof nonprint[0]; i++)
        if (c >= nonprint[i][0] && c <= nonprint[i][1])
            return 0;
    return 1;
}

/* Length to keep of a text longer than BT_LOG_MAX_TEXT: cut before a partial rune. */
static size_t cut_len(const char *s, size_t n)
{
    if (n <= BT_LOG_MAX_TEXT)
        return n;
    size_t cut = BT_LOG_MAX_TEXT;
    for (int i = 0; i < 3 && cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80; i++)
        cut--;
    return cut;
}

/* ---- text format ---------------------------------------------------------------------- */

/* logrus TextFormatter.needsQuoting (QuoteEmptyFields off). */
static int needs_quoting(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '/' || c == '@' || c == '^' || c == '+'))
            return 1;
    }
    return 0;
}

/* Go's %q (strconv.Quote). */
static void go_quote(sbuf *b, const char *s, size_t n, const char *suffix)
{
    const unsigned char *u = (const unsigned char *)s;
    sb_putc(b, '"');
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int ok;
        size_t w = utf8_next(u + i, n - i, &c, &ok);
        if (!ok) {
            sb_hex(b, "\\x", u[i], 2);
        } else if (c == '"' || c == '\\') {
            sb_putc(b, '\\');
            sb_putc(b, (char)c);
        } else if (go_isprint(c)) {
            sb_put(b, u + i, w);
        } else {
            switch (c) {
            case '\a': sb_puts(b, "\\a"); break;
            case '\b': sb_puts(b, "\\b"); break;
            case '\f': sb_puts(b, "\\f"); break;
            case '\n': sb_puts(b, "\\n"); break;
            case '\r': sb_puts(b, "\\r"); break;
            case '\t': sb_puts(b, "\\t"); break;
            case '\v': sb_puts(b, "\\v"); break;
            default:
                if (c < 0x20 || c == 0x7F)
                    sb_hex(b, "\\x", c, 2);
                else if (c < 0x10000)
                    sb_hex(b, "\\u", c, 4);
                else
                    sb_hex(b, "\\U", c, 8);
            }
        }
        i += w;
    }
    if (suffix)
        sb_puts(b, suffix);
    sb_putc(b, '"');
}

static void put_text(sbuf *b, const char *s, size_t n)
{
    size_t keep = cut_len(s, n);
    if (keep == n && !needs_quoting(s, n))
        sb_put(b, s, n);
    else
        go_quote(b, s, keep, keep == n ? NULL : TRUNC_MARK);
}

static void text_pair(sbuf *b, const char *k, size_t kl, const char *v, size_t vl)
{
    if (b->text.len > 0)
        sb_putc(b, ' ');
    put_text(b, k, kl);
    sb_putc(b, '=');
    put_text(b, v, vl);
}

/* ---- JSON format ---------------------------------------------------------------------- */

/* A valid UTF-8 copy (invalid bytes become U+FFFD, as Go's encoding/json does), cut at
 * BT_LOG_MAX_TEXT. NUL bytes are kept (jansson writes \u0000). */
static void utf8_clean(sbuf *b, const char *s, size_t n)
{
    size_t keep = cut_len(s, n);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < keep;) {
        uint32_t c;
        int ok;
        size_t w = utf8_next(u + i, keep - i, &c, &ok);
        if (ok)
            sb_put(b, u + i, w);
        else
            sb_puts(b, "\xEF\xBF\xBD");
        i += w;
    }
    if (keep != n)
        sb_puts(b, TRUNC_MARK);
    sb_put(b, "", 0); /* makes the text non-NULL and terminated even when empty */
}

static int json_set(json_t *o, const char *k, size_t kl, const char *v, size_t vl)
{
    sbuf kb = {0}, vb = {0};
    utf8_clean(&kb, k, kl);
    utf8_clean(&vb, v, vl);
    int rc = -1;
    if (!kb.oom && !vb.oom)
        rc =
            json_object_set_new(o, (char *)kb.text.p, json_stringn((char *)vb.text.p, vb.text.len));
    bt_buf_free(&kb.text);
    bt_buf_free(&vb.text);
    return rc;
}

/* ---- one entry ------------------------------------------------------------------------ */

void bt_log_time(time_t t, char *buf, size_t len)
{
    struct tm tm;
    localtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    long off = tm.tm_gmtoff;
    if (off == 0) {
        snprintf(buf, len, "%sZ", base);
        return;
    }
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    snprintf(buf, len, "%s%c%02ld:%02ld", base, sign, off / 3600, (off / 60) % 60);
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const kv *)a)->k, ((const kv *)b)->k);
}

/* Adds or replaces (a later value wins, like logrus WithFields). */
static void kv_set(kv *f, size_t *n, const char *k, const char *v)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(f[i].k, k) == 0) {
            f[i].v = v;
            f[i].vl = strlen(v);
            return;
        }
    }
    f[*n] = (kv){.k = k, .kl = strlen(k), .v = v, .vl = strlen(v)};
    (*n)++;
}

static void kv_remove(kv *f, size_t *n, const char *k)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(f[i].k, k) == 0) {
            f[i] = f[--*n];
            return;
        }
    }
}

/* logrus prefixFieldClashes: a field named like a fixed key moves to "fields.<key>". */
static void rename_clashes(kv *f, size_t *n)
{
    static const char *const fixed[][2] = {
        {"time", "fields.time"}, {"level", "fields.level"}, {"msg", "fields.msg"}};
    for (size_t j = 0; j < 3; j++) {
        for (size_t i = 0; i < *n; i++) {
            if (strcmp(f[i].k, fixed[j][0]) == 0) {
                kv_remove(f, n, fixed[j][1]);
                /* kv_remove may have moved entry i; find it again. */
                for (size_t m = 0; m < *n; m++) {
                    if (strcmp(f[m].k, fixed[j][0]) == 0) {
                        f[m].k = fixed[j][1];
                        f[m].kl = strlen(fixed[j][1]);
                    }
                }
                break;
            }
        }
    }
}

/* Formats one line into b (ends with '\n'). Caller holds the lock (global fields). */
static void format_entry(sbuf *b, bt_log_level l, const char *msg, size_t msglen,
                         const char *const *pairs, size_t npairs)
{
    kv *f = calloc(g_nfields + npairs + 1, sizeof *f);
    if (!f) {
        b->oom = 1;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < g_nfields; i++)
        kv_set(f, &n, g_fields[i].key, g_fields[i].value);
    for (size_t i = 0; i < npairs; i++)
        kv_set(f, &n, pairs[2 * i], pairs[2 * i + 1]);
    rename_clashes(f, &n);
    qsort(f, n, sizeof *f, kv_cmp);

    while (msglen > 0 && msg[msglen - 1] == '\n')
        msglen--;
    char ts[64];
    bt_log_time(time(NULL), ts, sizeof ts);
    const char *lv = level_names[l];

    if (!g_json) {
        text_pair(b, "time", 4, ts, strlen(ts));
        text_pair(b, "level", 5, lv, strlen(lv));
        if (msglen > 0)
            text_pair(b, "msg", 3, msg, msglen);
        for (size_t i = 0; i < n; i++)
            text_pair(b, f[i].k, f[i].kl, f[i].v, f[i].vl);
        sb_putc(b, '\n');
    } else {
        json_t *o = json_object();
        int bad = !o;
        for (size_t i = 0; !bad && i < n; i++)
            bad = json_set(o, f[i].k, f[i].kl, f[i].v, f[i].vl) < 0;
        if (!bad)
            bad = json_set(o, "level", 5, lv, strlen(lv)) < 0 ||
                  json_set(o, "msg", 3, msg, msglen) < 0 ||
                  json_set(o, "time", 4, ts, strlen(ts)) < 0;
        char *s = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        if (s) {
            sb_puts(b, s);
            sb_putc(b, '\n');
            free(s);
        } else {
            b->oom = 1;
        }
        json_decref(o);
    }
    free(f);
}

/* Writes a formatted line to the current output. Caller holds the lock. */
static void emit(const char *line, size_t len)
{
    if (g_file.fd < 0) {
        (void)bt_write_all(STDERR_FILENO, line, len);
        return;
    }
    char err[256];
    if (bt_logfile_write(&g_file, line, len, err, sizeof err) < 0) {
        /* The file is gone (disk full, rotation failed): keep the line on stderr. */
        char note[320];
        int m = snprintf(note, sizeof note, "log: %s\n", err);
        if (m > 0)
            (void)bt_write_all(STDERR_FILENO, note,
                               (size_t)m < sizeof note ? (size_t)m : sizeof note - 1);
        (void)bt_write_all(STDERR_FILENO, line, len);
    }
}

static void log_entry(bt_log_level l, const char *msg, size_t msglen, const char *const *pairs,
                      size_t npairs)
{
    sbuf b = {0};
    lock();
    format_entry(&b, l, msg, msglen, pairs, npairs);
    if (!b.oom && b.text.len > 0)
        emit((char *)b.text.p, b.text.len);
    else
        emit(OOM_LINE, sizeof OOM_LINE - 1);
    unlock();
    bt_buf_free(&b.text);
}

static bt_log_level clamp_level(bt_log_level l)
{
    if ((int)l < BT_LOG_DEBUG)
        return BT_LOG_DEBUG;
    if ((int)l > BT_LOG_ERROR)
        return BT_LOG_ERROR;
    return l;
}

/* ---- public API --------------------------------------------------------------------- */

void bt_logger_defaults(bt_logger_config *c)
{
    c->path = "";
    c->level = "info";
    c->format = "text";
    c->age_max = 15;
    c->size_max = 50;
    c->backup_max = 15;
}

int bt_log_parse_level(const char *s)
{
    if (!s)
        return -1;
    if (strcasecmp(s, "debug") == 0)
        return BT_LOG_DEBUG;
    if (strcasecmp(s, "info") == 0)
        return BT_LOG_INFO;
    if (strcasecmp(s, "warn") == 0 || strcasecmp(s, "warning") == 0)
        return BT_LOG_WARN;
    if (strcasecmp(s, "error") == 0)
        return BT_LOG_ERROR;
    return -1;
}

void bt_log_set_level(bt_log_level l)
{
    atomic_store(&g_level, (int)clamp_level(l));
}

int bt_log_enabled(bt_log_level l)
{
    return (int)l >= atomic_load(&g_level);
}

static long long effective_bytes(void)
{
    return g_override_bytes > 0 ? g_override_bytes : g_cfg_bytes;
}

int bt_log_init(const bt_logger_config *c, char *err, size_t errlen)
{
    bt_logger_config d;
    bt_logger_defaults(&d);
    if (!c)
        c = &d;
    const char *lvs = c->level && *c->level ? c->level : "info";
    int level = bt_log_parse_level(lvs);
    if (level < 0) {
        snprintf(err, errlen, "logger.level: unknown level \"%.64s\" (debug, info, warn, error)",
                 lvs);
        return -1;
    }
    const char *fmt = c->format && *c->format ? c->format : "text";
    int json;
    if (strcasecmp(fmt, "text") == 0) {
        json = 0;
    } else if (strcasecmp(fmt, "json") == 0) {
        json = 1;
    } else {
        snprintf(err, errlen, "logger.format: unknown format \"%.64s\" (text, json)", fmt);
        return -1;
    }

    /* size.max in MB; BAETYL_LOG_SIZE_MAX_BYTES (tests) replaces it when set. */
    long long cfg_bytes = c->size_max <= 0                        ? 0
                          : c->size_max > (long)(INT64_MAX >> 20) ? INT64_MAX
                                                                  : (long long)c->size_max << 20;
    const char *env = getenv("BAETYL_LOG_SIZE_MAX_BYTES");
    if (env && *env) {
        char *end;
        errno = 0;
        long long v = strtoll(env, &end, 10);
        if (errno || *end || v < 0) {
            snprintf(err, errlen, "BAETYL_LOG_SIZE_MAX_BYTES: not a byte count: \"%.32s\"", env);
            return -1;
        }
        cfg_bytes = v;
    }

    bt_logfile nf = {.fd = -1};
    if (c->path && *c->path) {
        lock();
        long long bytes = g_override_bytes > 0 ? g_override_bytes : cfg_bytes;
        unlock();
        if (bt_logfile_open(&nf, c->path, bytes, c->backup_max, c->age_max, err, errlen) < 0)
            return -1;
    }
    lock();
    bt_logfile_close(&g_file);
    g_file = nf;
    g_cfg_bytes = cfg_bytes;
    g_file.max_bytes = effective_bytes();
    g_json = json;
    atomic_store(&g_level, level);
    unlock();
    return 0;
}

void bt_log_set_size_max_bytes(long long bytes)
{
    lock();
    g_override_bytes = bytes > 0 ? bytes : 0;
    g_file.max_bytes = effective_bytes();
    unlock();
}

int bt_log_is_file(void)
{
    lock();
    int r = g_file.fd >= 0;
    unlock();
    return r;
}

void bt_log_set_field(const char *key, const char *value)
{
    if (!key)
        return;
    lock();
    for (size_t i = 0; i < g_nfields; i++) {
        if (strcmp(g_fields[i].key, key) != 0)
            continue;
        if (value) {
            char *v = strdup(value);
            if (v) {
                free(g_fields[i].value);
                g_fields[i].value = v;
            }
        } else {
            free(g_fields[i].key);
            free(g_fields[i].value);
            g_fields[i] = g_fields[--g_nfields];
            if (g_nfields == 0) {
                free(g_fields);
                g_fields = NULL;
            }
        }
        unlock();
        return;
    }
    if (value) {
        field *nf = realloc(g_fields, (g_nfields + 1) * sizeof *nf);
        if (nf) {
            g_fields = nf;
            char *k = strdup(key), *v = strdup(value);
            if (k && v) {
                g_fields[g_nfields++] = (field){k, v};
            } else {
                free(k);
                free(v);
            }
        }
    }
    unlock();
}

void bt_logkv(bt_log_level l, const char *msg, ...)
{
    l = clamp_level(l);
    if (!bt_log_enabled(l))
        return;
    const char *pairs[2 * MAX_CALL_FIELDS];
    size_t n = 0;
    va_list ap;
    va_start(ap, msg);
    for (; n < MAX_CALL_FIELDS; n++) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        pairs[2 * n] = k;
        pairs[2 * n + 1] = v ? v : "";
    }
    va_end(ap);
    if (!msg)
        msg = "";
    log_entry(l, msg, strlen(msg), pairs, n);
}

void bt_vlogf(bt_log_level l, const char *fmt, va_list ap)
{
    l = clamp_level(l);
    if (!bt_log_enabled(l))
        return;
    if (!fmt)
        fmt = "";
    char small[512];
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(small, sizeof small, fmt, cp);
    va_end(cp);
    if (n < 0) {
        log_entry(l, fmt, strlen(fmt), NULL, 0);
        return;
    }
    if ((size_t)n < sizeof small) {
        log_entry(l, small, (size_t)n, NULL, 0);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        log_entry(l, small, sizeof small - 1, NULL, 0);
        return;
    }
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    log_entry(l, big, (size_t)n, NULL, 0);
    free(big);
}

void bt_logf(bt_log_level l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bt_vlogf(l, fmt, ap);
    va_end(ap);
}

void bt_log_close(void)
{
    lock(); /* lines are written unbuffered: closing is all the flushing there is */
    bt_logfile_close(&g_file);
    unlock();
}
